"""The FastAPI server of the Flask-vs-FastAPI article: a route that is not a byte echo.

Run: ``uvicorn --loop uvloop --app-dir tests/apps fastapi_echo:app --port PORT``, then
``wsprof load ws://127.0.0.1:PORT/ws --reply any``.
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(f"Echo: {data}")
    except WebSocketDisconnect:
        pass
