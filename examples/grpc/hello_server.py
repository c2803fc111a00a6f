#!/usr/bin/python3
"""hello_server.py: the hello server of Locust's gRPC example, on python3-grpcio.

SayHello waits a second (--delay) and answers "Hello from Locust, <name>!". The Python code for
hello.proto is generated at start with grpc_tools (Debian's python3-grpc-tools) into a
temporary directory. Prints "listening on http://HOST:PORT", then serves until stopped.

    /usr/bin/python3 examples/grpc/hello_server.py [--port 50051] [--delay 1]
"""
import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
from concurrent import futures

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=50051, help="0: any free port")
    ap.add_argument("--delay", type=float, default=1.0, help="seconds SayHello waits")
    ap.add_argument("--workers", type=int, default=100)
    args = ap.parse_args()
    out = tempfile.mkdtemp(prefix="hello-grpc-")
    try:
        if protoc.main(["protoc", "-I" + HERE, "--python_out=" + out, "--grpc_python_out=" + out,
                        os.path.join(HERE, "hello.proto")]) != 0:
            sys.exit("grpc_tools could not compile hello.proto")
        sys.path.insert(0, out)
        pb = importlib.import_module("hello_pb2")
        pb_grpc = importlib.import_module("hello_pb2_grpc")

        class HelloService(pb_grpc.HelloServiceServicer):
            def SayHello(self, request, context):
                if args.delay:
                    time.sleep(args.delay)
                return pb.HelloResponse(message=f"Hello from Locust, {request.name}!")

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
        pb_grpc.add_HelloServiceServicer_to_server(HelloService(), server)
        port = server.add_insecure_port(f"{args.host}:{args.port}")
        server.start()
        print(f"listening on http://{args.host}:{port}", flush=True)
        try:
            server.wait_for_termination()
        except KeyboardInterrupt:
            server.stop(0)
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
