#!/usr/bin/python3
"""grpc_server.py: the gRPC server of cicada's end-to-end tests, on python3-grpcio.

Serves cicada.test.Tester (tests/data/grpc/test.proto) and the server reflection service
(grpc.reflection.v1alpha, and v1 unless --no-v1) on 127.0.0.1, in plain text (h2c) and, given
--cert and --key, over TLS as well. Its code is generated at start with grpc_tools into a
temporary directory. Prints "listening on http://127.0.0.1:PORT", then "tls https://..." when
TLS is on, then serves until killed.

Tester's methods do what the request asks: wait delay_ms, then fail with fail_code and
fail_message, or answer. They echo the request's x-... metadata into the reply, and send
x-echo (initial metadata) and x-trailer, x-trailer-bin (trailing metadata).
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
PROTOS = os.path.join(HERE, "..", "data", "grpc")


def generate(out):
    for name in ("test.proto", "reflection.proto"):
        rc = protoc.main(["protoc", "-I" + PROTOS, "--python_out=" + out,
                          "--grpc_python_out=" + out, os.path.join(PROTOS, name)])
        if rc != 0:
            raise RuntimeError("grpc_tools could not compile " + name)
    sys.path.insert(0, out)
    return (importlib.import_module("test_pb2"), importlib.import_module("test_pb2_grpc"),
            importlib.import_module("reflection_pb2"))


def code_of(n):
    for c in grpc.StatusCode:
        if c.value[0] == n:
            return c
    return grpc.StatusCode.UNKNOWN


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--no-v1", action="store_true", help="reflection in v1alpha only")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cicada-grpc-")
    try:
        serve(args, *generate(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def serve(args, pb, pb_grpc, refl):
    def seen(context):
        out = {}
        for k, v in context.invocation_metadata():
            if k.startswith("x-") and not k.endswith("-bin"):
                out[k] = out[k] + "," + v if k in out else v
        return out

    def begin(request, context):
        context.send_initial_metadata((("x-echo", request.text or "-"),))
        if request.delay_ms:
            time.sleep(request.delay_ms / 1000)

    def end(request, context):
        context.set_trailing_metadata((("x-trailer", "t-" + (request.text or "-")),
                                       ("x-trailer-bin", b"\x00\x01\xff")))
        if request.fail_code:
            context.abort(code_of(request.fail_code), request.fail_message)

    class Tester(pb_grpc.TesterServicer):
        def Echo(self, request, context):
            begin(request, context)
            end(request, context)
            return pb.EchoReply(text=request.text, metadata=seen(context), blob=request.blob,
                                count=len(request.items))

        def ServerStream(self, request, context):
            begin(request, context)
            for i in range(request.replies):
                yield pb.EchoReply(text=request.text, index=i)
            end(request, context)

        def ClientStream(self, requests, context):
            texts, last = [], None
            for r in requests:
                texts.append(r.text)
                last = r
            if last is not None:
                begin(last, context)
                end(last, context)
            return pb.EchoReply(text=",".join(texts), count=len(texts), metadata=seen(context))

        def Bidi(self, requests, context):
            i = 0
            for r in requests:
                if r.fail_code:
                    end(r, context)
                yield pb.EchoReply(text=r.text, index=i)
                i += 1

    from google.protobuf import descriptor_pb2, descriptor_pool
    pool = descriptor_pool.Default()
    services = ["cicada.test.Tester", "grpc.reflection.v1alpha.ServerReflection"]
    if not args.no_v1:
        services.append("grpc.reflection.v1.ServerReflection")

    def file_response(fd):
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        return refl.ServerReflectionResponse(
            file_descriptor_response=refl.FileDescriptorResponse(
                file_descriptor_proto=[proto.SerializeToString()]))

    def reflect(requests, context):
        for r in requests:
            kind = r.WhichOneof("message_request")
            try:
                if kind == "list_services":
                    resp = refl.ServerReflectionResponse(
                        list_services_response=refl.ListServiceResponse(
                            service=[refl.ServiceResponse(name=s) for s in services]))
                elif kind == "file_containing_symbol":
                    resp = file_response(pool.FindFileContainingSymbol(r.file_containing_symbol))
                elif kind == "file_by_filename":
                    resp = file_response(pool.FindFileByName(r.file_by_filename))
                else:
                    raise KeyError(kind)
            except KeyError as e:
                resp = refl.ServerReflectionResponse(error_response=refl.ErrorResponse(
                    error_code=grpc.StatusCode.NOT_FOUND.value[0], error_message=str(e)))
            resp.original_request.CopyFrom(r)
            yield resp

    handler = {"ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
        reflect, request_deserializer=refl.ServerReflectionRequest.FromString,
        response_serializer=refl.ServerReflectionResponse.SerializeToString)}
    generic = [grpc.method_handlers_generic_handler("grpc.reflection.v1alpha.ServerReflection",
                                                    handler)]
    if not args.no_v1:
        generic.append(grpc.method_handlers_generic_handler(
            "grpc.reflection.v1.ServerReflection", handler))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    pb_grpc.add_TesterServicer_to_server(Tester(), server)
    server.add_generic_rpc_handlers(generic)
    port = server.add_insecure_port("127.0.0.1:0")
    tls_port = None
    if args.cert:
        with open(args.key, "rb") as k, open(args.cert, "rb") as c:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        tls_port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    if tls_port:
        print(f"tls https://127.0.0.1:{tls_port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
