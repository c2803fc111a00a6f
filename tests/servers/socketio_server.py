#!/usr/bin/python3
"""socketio_server.py: the Socket.IO server of socketio_server.js on Debian's python3-socketio
(python-socketio 5 with aiohttp), for the tests and benchmarks.

Usage: socketio_server.py [PING_INTERVAL_MS]; prints "listening on http://127.0.0.1:PORT".
The ping timeout is half the interval, and at least 1000 ms.
Namespace "/": on connection it emits "welcome" {sid}; "echo" is emitted back with the same
arguments; "ack" answers its acknowledgement with its arguments; "binary" answers with the bytes
it got and their length; "ask" makes the server emit "question" 42 asking for an
acknowledgement, and emit "answer_was" with the answer; "kick" disconnects the client.
Namespace "/admin" requires auth {"token": "secret"}.
"""
import asyncio
import sys

import socketio
from aiohttp import web

ping_ms = int(sys.argv[1]) if len(sys.argv) > 1 else 25000
# a pong may be late on a loaded machine: at least a second before the server gives up
sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=ping_ms / 1000,
                           ping_timeout=max(1, ping_ms / 2000), max_http_buffer_size=16 << 20)
app = web.Application()
sio.attach(app)


def register(ns):
    @sio.on("connect", namespace=ns)
    async def connect(sid, environ, auth=None):
        if ns == "/admin" and (auth or {}).get("token") != "secret":
            raise socketio.exceptions.ConnectionRefusedError("not authorized")
        await sio.emit("welcome", {"sid": sid}, to=sid, namespace=ns)

    @sio.on("echo", namespace=ns)
    async def echo(sid, *args):
        await sio.emit("echo", args if len(args) != 1 else args[0], to=sid, namespace=ns)

    @sio.on("ack", namespace=ns)
    async def ack(sid, *args):
        return args

    @sio.on("binary", namespace=ns)
    async def binary(sid, data):
        return data, len(data) if isinstance(data, bytes) else -1

    @sio.on("ask", namespace=ns)
    async def ask(sid, *args):
        async def got(answer):
            await sio.emit("answer_was", answer, to=sid, namespace=ns)
        await sio.emit("question", 42, to=sid, namespace=ns,
                       callback=lambda answer: asyncio.ensure_future(got(answer)))

    @sio.on("kick", namespace=ns)
    async def kick(sid, *args):
        await sio.disconnect(sid, namespace=ns)


register("/")
register("/admin")


async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"listening on http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
