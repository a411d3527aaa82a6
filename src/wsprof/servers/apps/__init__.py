"""The seeds' real frameworks as bundled apps: FastAPI, Flask-SocketIO, Quart + python-socketio.

Each module builds its app the way that framework's documentation does and
serves it the way its docs deploy it, on the socket wsprof bound (so port 0
never races and the READY line is printed once the socket listens). Heavy
imports stay inside functions: ``serve`` imports only the chosen stack, and
the green stacks monkey-patch before Flask is imported.
"""
