#!/usr/bin/python3
"""ws_echo.py: a WebSocket server for the tests (aiohttp, Debian's python3-aiohttp).

Usage: ws_echo.py [CERT KEY]
Prints "listening on ws://127.0.0.1:PORT" first and, given a certificate, "tls on
wss://127.0.0.1:PORT" second; serves until killed. Subprotocols offered by clients are
answered with the first of "chat.v2", "chat.v1" they name.

  /echo        echoes every message, text as text and binary as binary; the text
               "close <code> <reason>" makes the server close with that code
  /headers     first sends the request's headers as JSON, then echoes
  /hello       sends "hello" and "world" at once, then echoes
  /count?n=N   sends N numbered messages ("1".."N"), then echoes
  /heartbeat   echoes, and pings the client every second: a client that does not answer
               with a pong within half a second is dropped
  /closes      sends, as JSON, the [code, reason] of each close the clients began so far
Pings are answered by aiohttp.
"""
import asyncio
import json
import ssl
import sys

from aiohttp import WSMsgType, web


# The close frames the clients sent, in order.
closes = []


async def handle(request):
    path = request.path
    # a client's close is noted before it is answered (autoclose off), so the next
    # connection's /closes has it
    ws = web.WebSocketResponse(protocols=("chat.v2", "chat.v1"), autoping=True,
                               autoclose=False, max_msg_size=64 << 20,
                               heartbeat=1.0 if path == "/heartbeat" else None)
    await ws.prepare(request)
    if path == "/headers":
        await ws.send_str(json.dumps(dict(request.headers)))
    elif path == "/hello":
        await ws.send_str("hello")
        await ws.send_str("world")
    elif path == "/count":
        for i in range(int(request.query.get("n", "10"))):
            await ws.send_str(str(i + 1))
    elif path == "/closes":
        await ws.send_str(json.dumps(closes))
    while True:
        msg = await ws.receive()
        if msg.type == WSMsgType.CLOSE:
            closes.append([msg.data, msg.extra or ""])
            await ws.close()
            break
        if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            break
        if msg.type == WSMsgType.TEXT:
            if msg.data.startswith("close "):
                parts = msg.data.split(" ", 2)
                await ws.close(code=int(parts[1]),
                               message=(parts[2] if len(parts) > 2 else "").encode())
                break
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def main():
    app = web.Application()
    for p in ("/echo", "/headers", "/hello", "/count", "/heartbeat", "/closes"):
        app.router.add_get(p, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"listening on ws://127.0.0.1:{port}", flush=True)
    if len(sys.argv) > 2:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        tls = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await tls.start()
        port = tls._server.sockets[0].getsockname()[1]
        print(f"tls on wss://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
