#!/usr/bin/python3
"""mqtt_faults.py: a server that MQTT clients connect to and that misbehaves on purpose, one
fault per port.

Prints "listening on mqtt://127.0.0.1:PORT" (the first port, which answers garbage), then one
line per fault, "MODE mqtt://127.0.0.1:PORT", and serves until killed:

  garbage     answers CONNECT with a packet of a reserved type (0)
  close_mid   answers CONNECT with the first 3 bytes of a CONNACK, then closes
  stall       reads CONNECT and never answers
  drop_pub    accepts the connection (CONNACK 0), then closes it at the first PUBLISH
  bad_length  accepts the connection, then sends a packet whose remaining length never ends
  stall_ack   accepts the connection (CONNACK 0), then reads everything and never answers
"""
import time

from fault_ports import run

MODES = ("garbage", "close_mid", "stall", "drop_pub", "bad_length", "stall_ack")
CONNACK_OK = b"\x20\x02\x00\x00"


def serve(conn, mode):
    first = True
    while True:
        data = conn.recv(65536)
        if not data:
            return
        if mode == "stall":
            continue
        if first:
            first = False
            if mode == "garbage":
                conn.sendall(b"\x00\x00")
            elif mode == "close_mid":
                conn.sendall(CONNACK_OK[:3])
                time.sleep(0.05)
                return
            elif mode == "bad_length":
                conn.sendall(CONNACK_OK + b"\x30\xff\xff\xff\xff\xff")
            else:
                conn.sendall(CONNACK_OK)
            continue
        if mode == "drop_pub" and data[0] & 0xF0 == 0x30:
            return


if __name__ == "__main__":
    run("mqtt", MODES, serve)
