#!/usr/bin/python3
"""redis_faults.py: a server that speaks to Redis clients and misbehaves on purpose, one fault
per port.

Prints "listening on redis://127.0.0.1:PORT" (the first port, which answers garbage), then one
line per fault, "MODE redis://127.0.0.1:PORT", and serves until killed:

  garbage    answers every read with a line whose type byte RESP does not know ("!")
  close_mid  answers with the first bytes of a bulk string ("$10\\r\\nhel"), then closes
  stall      reads commands and never answers
  huge       answers with a bulk string announced as 1 GB and sends 4 MiB of it, then stalls
  slow_ok    answers every command "+OK", each a little later than the last (a server that
             gets slower as it goes; for reply timeouts that must re-arm)
"""
import time

from fault_ports import run

MODES = ("garbage", "close_mid", "stall", "huge", "slow_ok")


def serve(conn, mode):
    delay = 0.0
    while True:
        data = conn.recv(65536)
        if not data:
            return
        if mode == "garbage":
            conn.sendall(b"!this is not RESP\r\n")
        elif mode == "close_mid":
            conn.sendall(b"$10\r\nhel")
            time.sleep(0.05)
            return
        elif mode == "stall":
            continue
        elif mode == "huge":
            conn.sendall(b"$1000000000\r\n")
            chunk = b"x" * 65536
            for _ in range(64):
                conn.sendall(chunk)
        elif mode == "slow_ok":
            delay += 0.01
            time.sleep(delay)
            conn.sendall(b"+OK\r\n" * data.count(b"*"))


if __name__ == "__main__":
    run("redis", MODES, serve)
