#!/usr/bin/python3
"""tcp_faults.py: a TCP server that misbehaves on purpose, one fault per port, for any
request-reply protocol.

Prints "listening on tcp://127.0.0.1:PORT" (the first port, which stalls), then one line per
fault, "MODE tcp://127.0.0.1:PORT", and serves until killed:

  stall     reads requests and never answers
  garbage   answers every read with random bytes that contain no line ending
  close     closes the connection after the first read, without a byte
  half      answers every read with the first half of a line ("VALUE k 0 10\\r\\nabc"), then
            closes
"""
import os
import socket
import threading

MODES = ("stall", "garbage", "close", "half")


def serve(conn, mode):
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            if mode == "stall":
                continue
            if mode == "garbage":
                conn.sendall(bytes(b for b in os.urandom(65536) if b not in (10, 13)))
            elif mode == "close":
                return
            elif mode == "half":
                conn.sendall(b"VALUE k 0 10\r\nabc")
                return


def listen(mode):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)

    def accept():
        while True:
            conn, _ = s.accept()
            threading.Thread(target=serve, args=(conn, mode), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return s.getsockname()[1]


def main():
    ports = {m: listen(m) for m in MODES}
    print(f"listening on tcp://127.0.0.1:{ports['stall']}", flush=True)
    for m in MODES:
        print(f"{m} tcp://127.0.0.1:{ports[m]}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
