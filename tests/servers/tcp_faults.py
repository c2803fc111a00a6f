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

from fault_ports import run

MODES = ("stall", "garbage", "close", "half")


def serve(conn, mode):
    while True:
        data = conn.recv(65536)
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


if __name__ == "__main__":
    run("tcp", MODES, serve)
