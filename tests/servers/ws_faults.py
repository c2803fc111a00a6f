#!/usr/bin/python3
"""ws_faults.py: a WebSocket server that misbehaves on purpose, one fault per path.

Prints "listening on ws://127.0.0.1:PORT" first, then serves until killed (stdlib only).

  /ok              a proper handshake, then echoes one text message and closes with 1000
  /garbage         answers the upgrade request with bytes that are not HTTP
  /not-found       answers 404 Not Found
  /bad-accept      answers 101 with a Sec-WebSocket-Accept that does not match the key
  /no-upgrade      answers 101 without the Upgrade header
  /bad-protocol    answers 101 choosing a subprotocol the client did not offer
  /stall-handshake reads the request and never answers
  /stall           a proper handshake, then silence
  /close-mid       a proper handshake, then half a frame, then closes the connection
  /close-no-frame  a proper handshake, then closes the connection without a close frame
  /masked          a proper handshake, then a masked frame (servers must not mask)
  /bad-utf8        a proper handshake, then a text frame that is not UTF-8
  /huge            a proper handshake, then a frame header announcing 1 GiB
  /reset           a proper handshake, then a TCP reset

Socket.IO faults (the client's path option; it adds its query string):
  /sio-garbage/    the WebSocket opens, then a text message that is not Engine.IO
  /sio-no-open/    the WebSocket opens, then silence
  /sio-bad-open/   an Engine.IO open packet that is not JSON
  /sio-refuse/     the namespace is refused (CONNECT_ERROR "nope")
  /sio-no-ping/    the namespace is joined; the server never pings (interval 200 ms)
  /sio-stall/      the namespace is joined; events are never acknowledged
  /sio-close-mid/  the namespace is joined; the first event gets half a frame, then a close
  /sio-bad-packet/ the namespace is joined; the first event gets a malformed packet
"""
import base64
import hashlib
import os
import socket
import struct
import sys
import threading
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None, {}
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    path = head[0].split(" ")[1] if " " in head[0] else "/"
    headers = {}
    for line in head[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return path, headers


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def switch(conn, headers, accept=None, upgrade=True, protocol=None):
    lines = ["HTTP/1.1 101 Switching Protocols", "Connection: Upgrade"]
    if upgrade:
        lines.append("Upgrade: websocket")
    lines.append("Sec-WebSocket-Accept: " + (accept or accept_for(headers.get("sec-websocket-key", ""))))
    if protocol:
        lines.append("Sec-WebSocket-Protocol: " + protocol)
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())


def frame(opcode, payload, mask=False):
    head = bytes([0x80 | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def read_frame(conn):
    """One client frame: (opcode, payload), or None at the end."""
    def need(n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf
    h = need(2)
    if h is None:
        return None
    opcode, n = h[0] & 0x0F, h[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", need(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", need(8))[0]
    key = need(4) if h[1] & 0x80 else b"\0\0\0\0"
    payload = need(n) if n else b""
    return opcode, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def socketio_fault(conn, fault):
    if fault == "sio-garbage":
        conn.sendall(frame(1, b"hello, not engine.io"))
        time.sleep(0.5)
        return
    if fault == "sio-no-open":
        time.sleep(3600)
        return
    if fault == "sio-bad-open":
        conn.sendall(frame(1, b"0{not json"))
        time.sleep(0.5)
        return
    ping = b"200" if fault == "sio-no-ping" else b"25000"
    conn.sendall(frame(1, b'0{"sid":"s1","upgrades":[],"pingInterval":' + ping
                       + b',"pingTimeout":200}'))
    f = read_frame(conn)  # the client's CONNECT
    if f is None:
        return
    if fault == "sio-refuse":
        conn.sendall(frame(1, b'44{"message":"nope"}'))
        time.sleep(0.5)
        return
    conn.sendall(frame(1, b'40{"sid":"n1"}'))
    if fault == "sio-no-ping":
        time.sleep(3600)
        return
    while True:
        f = read_frame(conn)
        if f is None:
            return
        if f[1].startswith(b"42"):
            break
        time.sleep(0.01)
    if fault == "sio-stall":
        while read_frame(conn) is not None:
            pass
    elif fault == "sio-close-mid":
        conn.sendall(frame(1, b'430["x"]' + b"y" * 200)[:50])
    elif fault == "sio-bad-packet":
        conn.sendall(frame(1, b"4x"))
        time.sleep(0.5)


def handle(conn):
    try:
        path, headers = read_head(conn)
        if path is None:
            return
        if path == "/garbage":
            conn.sendall(os.urandom(200))
            time.sleep(0.2)
        elif path == "/not-found":
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")
            time.sleep(0.2)
        elif path == "/bad-accept":
            switch(conn, headers, accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        elif path == "/no-upgrade":
            switch(conn, headers, upgrade=False)
        elif path == "/bad-protocol":
            switch(conn, headers, protocol="not-offered")
        elif path == "/stall-handshake":
            time.sleep(3600)
        else:
            switch(conn, headers)
            if path == "/ok":
                f = read_frame(conn)
                if f:
                    conn.sendall(frame(1, f[1]))
                conn.sendall(frame(8, struct.pack("!H", 1000) + b"done"))
                read_frame(conn)
            elif path == "/stall":
                time.sleep(3600)
            elif path == "/close-mid":
                conn.sendall(frame(1, b"x" * 100)[:40])
            elif path == "/close-no-frame":
                time.sleep(0.1)
            elif path == "/masked":
                conn.sendall(frame(1, b"masked", mask=True))
                time.sleep(0.5)
            elif path == "/bad-utf8":
                conn.sendall(frame(1, b"\xff\xfe\xfd"))
                time.sleep(0.5)
            elif path == "/huge":
                conn.sendall(bytes([0x82, 127]) + struct.pack("!Q", 1 << 30) + b"x" * 100)
                time.sleep(0.5)
            elif path == "/reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif path.startswith("/sio-"):
                socketio_fault(conn, path.split("/")[1])
    except OSError:
        pass
    finally:
        conn.close()


def main():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    srv.listen(128)
    print(f"listening on ws://127.0.0.1:{srv.getsockname()[1]}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
