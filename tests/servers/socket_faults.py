#!/usr/bin/python3
"""socket_faults.py: a line-oriented TCP server, well-behaved or misbehaving on purpose, for
the cooperative LuaSocket tests.

Usage: socket_faults.py CERT_DIR   (server.pem and server.key, for the TLS echo port)

Prints "listening on tcp://127.0.0.1:PORT" first, then one "NAME on 127.0.0.1:PORT" line for
each further port, and serves until killed.

The first port reads one command line from each connection and then:
  echo            answers each following line with the same line (CRLF), until the client closes
  lines N         sends N numbered lines "line 1".."line N" (CRLF), then closes
  bytes N         sends N bytes ("0123456789" repeated), then closes
  multipart       sends "hello, world! -agentzh\\r\\n--abcedhb" twice, with "tail" between, and
                  keeps the connection open
  close-mid       sends "partial" without a line end, then closes cleanly
  reset-mid       sends "partial" without a line end, then resets the connection
  stall           never answers
  trickle N       sends N bytes one at a time, 50 ms apart, then a line end, and stays open
  count           answers each following line with how many connections this port has had,
                  as one line (for keep-alive tests: the number stays the same on one connection)
The further ports:
  garbage         answers the first bytes of anything with random bytes after a zero byte
                  (so that no client reads them as a valid reply by chance), then closes
  stall           accepts, reads, never answers
  tls-echo        TLS (the certificate of CERT_DIR), then the line echo of "echo" above
"""
import os
import socket
import ssl
import struct
import sys
import threading
import time

accepted = 0
accepted_lock = threading.Lock()


def read_line(f):
    line = f.readline()
    if not line:
        return None
    return line.rstrip(b"\r\n").decode("latin-1")


def reset(conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def echo(conn, f):
    while True:
        line = f.readline()
        if not line:
            return
        conn.sendall(line.rstrip(b"\r\n") + b"\r\n")


def handle(conn):
    global accepted
    with accepted_lock:
        accepted += 1
        number = accepted
    f = conn.makefile("rb")
    try:
        cmd = read_line(f)
        if cmd is None:
            return
        word, _, arg = cmd.partition(" ")
        if word == "echo":
            echo(conn, f)
        elif word == "lines":
            conn.sendall(b"".join(b"line %d\r\n" % i for i in range(1, int(arg) + 1)))
        elif word == "bytes":
            n = int(arg)
            data = (b"0123456789" * (n // 10 + 1))[:n]
            conn.sendall(data)
        elif word == "multipart":
            part = b"hello, world! -agentzh\r\n--abcedhb"
            conn.sendall(part + b"tail" + part)
            threading.Event().wait(600)
        elif word == "close-mid":
            conn.sendall(b"partial")
        elif word == "reset-mid":
            conn.sendall(b"partial")
            time.sleep(0.05)
            reset(conn)
            return
        elif word == "stall":
            threading.Event().wait(600)
        elif word == "trickle":
            for _ in range(int(arg)):
                conn.sendall(b"x")
                time.sleep(0.05)
            conn.sendall(b"\n")
            threading.Event().wait(600)
        elif word == "count":
            while read_line(f) is not None:
                conn.sendall(b"%d\r\n" % number)
        else:
            conn.sendall(b"unknown command\r\n")
    except OSError:
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def garbage(conn):
    try:
        conn.recv(65536)
        conn.sendall(b"\0" + os.urandom(4095))
    except OSError:
        pass
    conn.close()


def stall(conn):
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
    conn.close()


def tls_echo(ctx):
    def run(conn):
        try:
            with ctx.wrap_socket(conn, server_side=True) as tconn:
                echo(tconn, tconn.makefile("rb"))
        except (OSError, ssl.SSLError):
            pass
    return run


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
    cert_dir = sys.argv[1]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(cert_dir, "server.pem"), os.path.join(cert_dir, "server.key"))
    main_port = listener()
    others = [("garbage", listener(), garbage), ("stall", listener(), stall),
              ("tls-echo", listener(), tls_echo(ctx))]
    print(f"listening on tcp://127.0.0.1:{main_port.getsockname()[1]}", flush=True)
    for name, sock, fn in others:
        print(f"{name} on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
        threading.Thread(target=serve, args=(sock, fn), daemon=True).start()
    serve(main_port, handle)


if __name__ == "__main__":
    main()
