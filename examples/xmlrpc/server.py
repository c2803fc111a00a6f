#!/usr/bin/python3
"""server.py: the XML-RPC server of Locust's guide to testing other systems, on Python's
standard xmlrpc.server, plus a few methods that show every XML-RPC type.

    /usr/bin/python3 examples/xmlrpc/server.py [--port 8877] [--max-sleep 1.0]

Prints "listening on http://127.0.0.1:PORT" once it accepts connections. Each request is
served on a thread of its own, so slow calls of many users overlap.

  get_time()                  sleeps up to --max-sleep seconds, returns time.time()
  get_random_number(low, high) sleeps up to --max-sleep seconds, returns a random integer
  echo(*args)                 returns its arguments, as an array (every type round-trips)
  types(*args)                the Python type of each argument as the server read it
  divide(a, b)                a / b; dividing by zero is a fault
  fail(code, message)         always a fault with that faultCode and faultString
"""
import argparse
import random
import socketserver
import sys
import time
from xmlrpc.server import SimpleXMLRPCServer
import xmlrpc.client


class Server(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8877, help="0 picks a free port")
    ap.add_argument("--max-sleep", type=float, default=1.0,
                    help="the longest sleep of get_time and get_random_number, in seconds")
    args = ap.parse_args()

    server = Server((args.host, args.port), logRequests=False, allow_none=True,
                    use_builtin_types=False)

    def get_time():
        time.sleep(random.random() * args.max_sleep)
        return time.time()

    def get_random_number(low, high):
        time.sleep(random.random() * args.max_sleep)
        return random.randint(low, high)

    def echo(*values):
        return list(values)

    def types(*values):
        return [type(v).__name__ for v in values]

    def divide(a, b):
        return a / b

    def fail(code, message):
        raise xmlrpc.client.Fault(code, message)

    for fn in (get_time, get_random_number, echo, types, divide, fail):
        server.register_function(fn)
    server.register_introspection_functions()
    print(f"listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
