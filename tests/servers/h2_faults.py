#!/usr/bin/python3
"""h2_faults.py: an HTTP/2 (h2c, prior knowledge) server that misbehaves on purpose.

It reads no request headers (the client's HPACK may use Huffman codes and its dynamic table):
each fault has its own port. Prints "listening on http://127.0.0.1:PORT" (the "ok" mode) first,
then "MODE http://127.0.0.1:PORT" for every other mode, then serves until killed.

  ok           200 "hello" to every request
  rst          RST_STREAM(INTERNAL_ERROR) for every request
  refuse       RST_STREAM(REFUSED_STREAM) for every request
  goaway       GOAWAY(ENHANCE_YOUR_CALM, "calm down") at the first request, then closes
  garbage      an HTTP/1.1 answer instead of frames
  close_mid    response headers and half a body, then closes the connection
  bad_status   a response whose :status is not a number
  alternate    answers the 1st, 3rd, 5th... request of a connection, never the others
"""
import socketserver
import struct
import sys
import threading

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(type_, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([type_, flags]) + struct.pack(">I", stream) + payload


def block(headers):
    """A header block: literal fields without indexing, new names, no Huffman (RFC 7541
    6.2.2)."""
    out = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out += b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v
    return out


class Handler(socketserver.BaseRequestHandler):
    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                raise ConnectionError
            buf += chunk
        return buf

    def handle(self):
        mode = self.server.mode
        s = self.request
        try:
            if self.recv_exact(len(PREFACE)) != PREFACE:
                return
            if mode == "garbage":
                s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            s.sendall(frame(SETTINGS, 0, 0))
            nth = 0
            while True:
                head = self.recv_exact(9)
                length = int.from_bytes(head[:3], "big")
                type_, flags = head[3], head[4]
                stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                payload = self.recv_exact(length)
                if type_ == SETTINGS and not flags & ACK:
                    s.sendall(frame(SETTINGS, ACK, 0))
                elif type_ == PING and not flags & ACK:
                    s.sendall(frame(PING, ACK, 0, payload))
                elif type_ == GOAWAY:
                    return
                elif type_ == HEADERS:
                    nth += 1
                    if not self.answer(mode, stream, nth):
                        return
        except (ConnectionError, OSError):
            pass

    def answer(self, mode, stream, nth):
        s = self.request
        ok = frame(HEADERS, END_HEADERS, stream, block([(":status", "200"),
                                                         ("content-length", "5")]))
        if mode == "ok" or (mode == "alternate" and nth % 2 == 1):
            s.sendall(ok + frame(DATA, END_STREAM, stream, b"hello"))
        elif mode == "rst":
            s.sendall(frame(RST_STREAM, 0, stream, struct.pack(">I", 0x2)))
        elif mode == "refuse":
            s.sendall(frame(RST_STREAM, 0, stream, struct.pack(">I", 0x7)))
        elif mode == "goaway":
            s.sendall(frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0xB) + b"calm down"))
            return False
        elif mode == "close_mid":
            s.sendall(ok + frame(DATA, 0, stream, b"he"))
            return False
        elif mode == "bad_status":
            s.sendall(frame(HEADERS, END_HEADERS | END_STREAM, stream,
                            block([(":status", "abc")])))
        return True


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


MODES = ["ok", "rst", "refuse", "goaway", "garbage", "close_mid", "bad_status", "alternate"]


def main():
    servers = []
    for mode in MODES:
        srv = Server(("127.0.0.1", 0), Handler)
        srv.mode = mode
        servers.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print(f"listening on http://127.0.0.1:{servers[0].server_address[1]}")
    for srv in servers[1:]:
        print(f"{srv.mode} http://127.0.0.1:{srv.server_address[1]}")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
