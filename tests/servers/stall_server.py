#!/usr/bin/python3
"""stall_server.py: an HTTP/1.1 server that answers at once, except during one window in
which every request is held until the window ends, as a server that stalls (a GC pause, a
failover) does. The window opens STALL_AFTER seconds after the first request and lasts
STALL_FOR seconds (arguments, default 2 and 1).

Prints "listening on http://127.0.0.1:PORT" first. Keep-alive, asyncio, standard library.
"""
import asyncio
import sys

STALL_AFTER = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
STALL_FOR = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
window = None  # (start, end) in loop time, set by the first request
held = 0


async def handle(reader, writer):
    global window, held
    loop = asyncio.get_running_loop()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"content-length:" in head.lower():
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(n)
            now = loop.time()
            if window is None:
                window = (now + STALL_AFTER, now + STALL_AFTER + STALL_FOR)
            if window[0] <= now < window[1]:
                held += 1
                await asyncio.sleep(window[1] - now)
            body = b"ok" if not head.startswith(b"GET /held") else str(held).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
