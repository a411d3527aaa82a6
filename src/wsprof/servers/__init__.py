"""Real server stacks (raw WebSocket and Socket.IO) and the launcher that runs them.

Nothing is imported here: ``serve`` runs inside green-thread servers that must
monkey-patch before threading or subprocess are loaded.
"""
