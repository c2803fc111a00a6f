#!/usr/bin/python3
"""http_faults.py: an HTTP server that misbehaves on purpose, one fault per path.

Prints "listening on http://127.0.0.1:PORT" first, then serves until killed.

  /ok                 a normal keep-alive response ("ok")
  /close-after        a normal keep-alive response, then the connection is closed silently,
                      as servers drop idle keep-alive connections
  /reset-mid          part of the headers, then a TCP reset
  /reset-end          a head without a length (the body ends with the connection), a body,
                      then a TCP reset instead of a close: the body may be cut short
  /close-mid          Content-Length 100, 10 bytes, then a clean close
  /no-response        the connection closes without a byte
  /stall              never answers
  /bad-status         a malformed status line
  /bad-header         a header line without a colon
  /bad-chunked        an invalid chunk size
  /bad-gzip           Content-Encoding gzip over bytes that are not gzip
  /huge               a 100 MB body
  /garbage            random bytes
The second port it prints ("tls-garbage on 127.0.0.1:PORT") answers anything, a TLS
ClientHello included, with plain HTTP: a TLS handshake there fails.
"""
import os
import socket
import struct
import sys
import threading


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return head.split(" ")[1] if " " in head else "/"


def ok(conn, body=b"ok"):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s"
                 % (len(body), body))


def reset(conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def handle(conn):
    try:
        while True:
            path = read_head(conn)
            if path is None:
                break
            if path.startswith("/ok"):
                ok(conn)
                continue
            if path == "/close-after":
                ok(conn)
                break
            if path == "/reset-mid":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Len")
                reset(conn)
                return
            if path == "/reset-end":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it?")
                reset(conn)
                return
            if path == "/close-mid":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                break
            if path == "/no-response":
                break
            if path == "/stall":
                threading.Event().wait(600)
                break
            if path == "/bad-status":
                conn.sendall(b"HTTX/1.1 two hundred\r\n\r\n")
                break
            if path == "/bad-header":
                conn.sendall(b"HTTP/1.1 200 OK\r\nThis is not a header\r\nContent-Length: 0\r\n\r\n")
                break
            if path == "/bad-chunked":
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n")
                break
            if path == "/bad-gzip":
                body = b"this is not gzip at all"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
                continue
            if path == "/huge":
                size = 100 * 1024 * 1024
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                block = b"x" * 65536
                for _ in range(size // len(block)):
                    conn.sendall(block)
                continue
            if path == "/garbage":
                conn.sendall(os.urandom(4096))
                break
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    except OSError:
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def tls_garbage(conn):
    try:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    except OSError:
        pass
    conn.close()


def serve(sock, fn):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=fn, args=(conn,), daemon=True).start()


def listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(512)
    return s


def main():
    http, tls = listener(), listener()
    print(f"listening on http://127.0.0.1:{http.getsockname()[1]}", flush=True)
    print(f"tls-garbage on 127.0.0.1:{tls.getsockname()[1]}", flush=True)
    threading.Thread(target=serve, args=(tls, tls_garbage), daemon=True).start()
    serve(http, handle)


if __name__ == "__main__":
    main()
