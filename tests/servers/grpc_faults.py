#!/usr/bin/python3
"""grpc_faults.py: a gRPC server (h2c, prior knowledge) that misbehaves on purpose.

It does not read requests (any method gets the same answer): each fault has its own port.
Prints "listening on http://127.0.0.1:PORT" (the "ok" mode) first, then "MODE
http://127.0.0.1:PORT" for every other mode, then serves until killed.

  ok               a well-formed reply: an empty message, grpc-status 0
  garbage          an HTTP/1.1 answer instead of HTTP/2 frames
  garbage_message  a well-framed reply whose protobuf bytes are garbage, then grpc-status 0
  bad_prefix       a message prefix with flag byte 7
  huge             a prefix announcing a 100 MB message, then grpc-status 0
  close_mid        the head and half a message, then the connection closes
  stall            reads the request and never answers
  no_status        the head and a message, then the end of the stream without trailers
  http_503         :status 503 and nothing else
  not_grpc         :status 200 with an HTML body
  rst              RST_STREAM(INTERNAL_ERROR)
"""
import socketserver
import struct
import threading

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
MODES = ["ok", "garbage", "garbage_message", "bad_prefix", "huge", "close_mid", "stall",
         "no_status", "http_503", "not_grpc", "rst"]


def frame(type_, flags, stream, payload=b""):
    return (struct.pack(">I", len(payload))[1:] + bytes([type_, flags])
            + struct.pack(">I", stream) + payload)


def block(headers):
    """A header block of literal fields without indexing and without Huffman codes (RFC 7541
    6.2.2), every string shorter than 127 bytes."""
    out = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out += b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v
    return out


HEAD = block([(":status", "200"), ("content-type", "application/grpc")])
OK_TRAILERS = block([("grpc-status", "0")])


def message(payload, flag=0):
    return bytes([flag]) + struct.pack(">I", len(payload)) + payload


def answer(mode, s, stream):
    """Sends the reply of |mode| on |stream|; False when the connection is to close."""
    def send(*frames):
        s.sendall(b"".join(frames))

    if mode == "ok":
        send(frame(HEADERS, END_HEADERS, stream, HEAD), frame(DATA, 0, stream, message(b"")),
             frame(HEADERS, END_HEADERS | END_STREAM, stream, OK_TRAILERS))
    elif mode == "garbage_message":
        send(frame(HEADERS, END_HEADERS, stream, HEAD),
             frame(DATA, 0, stream, message(b"\xff\xff\xff\xff")),
             frame(HEADERS, END_HEADERS | END_STREAM, stream, OK_TRAILERS))
    elif mode == "bad_prefix":
        send(frame(HEADERS, END_HEADERS, stream, HEAD),
             frame(DATA, 0, stream, b"\x07\x00\x00\x00\x00"),
             frame(HEADERS, END_HEADERS | END_STREAM, stream, OK_TRAILERS))
    elif mode == "huge":
        send(frame(HEADERS, END_HEADERS, stream, HEAD),
             frame(DATA, 0, stream, b"\x00" + struct.pack(">I", 100 << 20)),
             frame(HEADERS, END_HEADERS | END_STREAM, stream, OK_TRAILERS))
    elif mode == "close_mid":
        send(frame(HEADERS, END_HEADERS, stream, HEAD),
             frame(DATA, 0, stream, b"\x00\x00\x00\x00\x10\x0a\x03abc"))
        return False
    elif mode == "stall":
        pass
    elif mode == "no_status":
        send(frame(HEADERS, END_HEADERS, stream, HEAD),
             frame(DATA, END_STREAM, stream, message(b"")))
    elif mode == "http_503":
        send(frame(HEADERS, END_HEADERS | END_STREAM, stream, block([(":status", "503")])))
    elif mode == "not_grpc":
        send(frame(HEADERS, END_HEADERS, stream,
                   block([(":status", "200"), ("content-type", "text/html")])),
             frame(DATA, END_STREAM, stream, b"<html>hello</html>"))
    elif mode == "rst":
        send(frame(RST_STREAM, 0, stream, struct.pack(">I", 2)))
    return True


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
                    if not answer(mode, s, stream):
                        return
        except (ConnectionError, OSError):
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    servers = []
    for mode in MODES:
        srv = Server(("127.0.0.1", 0), Handler)
        srv.mode = mode
        servers.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print(f"listening on http://127.0.0.1:{servers[0].server_address[1]}", flush=True)
    for srv in servers[1:]:
        print(f"{srv.mode} http://127.0.0.1:{srv.server_address[1]}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
