"""The gRPC benchmark for Locust: a User on python3-grpcio, made cooperative with gevent as
Locust's gRPC example does, calling SayHello on the hello server (examples/grpc) and firing a
request event per call (request_type "grpc", the method's path, the reply's size)."""
import atexit
import importlib
import os
import shutil
import sys
import tempfile
import time

import grpc
import grpc.experimental.gevent as grpc_gevent
from grpc_tools import protoc
from locust import User, task

grpc_gevent.init_gevent()

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "grpc")
_out = tempfile.mkdtemp(prefix="bench-grpc-")
atexit.register(shutil.rmtree, _out, True)
protoc.main(["protoc", "-I" + PROTO_DIR, "--python_out=" + _out, "--grpc_python_out=" + _out,
             os.path.join(PROTO_DIR, "hello.proto")])
sys.path.insert(0, _out)
hello_pb2 = importlib.import_module("hello_pb2")
hello_pb2_grpc = importlib.import_module("hello_pb2_grpc")

NAME = "/locust.hello.HelloService/SayHello"


class Bench(User):
    def on_start(self):
        self.channel = grpc.insecure_channel(self.host)
        self.stub = hello_pb2_grpc.HelloServiceStub(self.channel)

    @task
    def hello(self):
        start = time.perf_counter()
        exc, length = None, 0
        try:
            length = self.stub.SayHello(hello_pb2.HelloRequest(name="Test")).ByteSize()
        except grpc.RpcError as e:
            exc = e
        self.environment.events.request.fire(
            request_type="grpc", name=NAME, response_time=(time.perf_counter() - start) * 1000,
            response_length=length, exception=exc, context=None)
