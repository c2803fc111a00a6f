"""GrpcUser and cicada.grpc against real servers: python3-grpcio (tests/servers/grpc_server.py,
and the hello server of examples/grpc), a gRPC server that misbehaves on purpose
(tests/servers/grpc_faults.py), and the protobuf codec's bytes against python3-protobuf's."""
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import servers
from harness import SOURCE, CicadaTest, main

PROTOS = os.path.join(SOURCE, "tests", "data", "grpc")
TEST_PROTO = os.path.join(PROTOS, "test.proto")

# A script's checks become requests of type "check": a failed check is a failure whose error
# says what was wrong, which the test then shows.
CHECK = """
local cicada = require "cicada"
local grpc = require "cicada.grpc"
local function check(name, ok, msg)
    cicada.record("check", name, 0, 0, (not ok) and (msg or "failed") or nil)
end
"""


def one_shot(body, attrs=""):
    """A GrpcUser that runs |body| once in on_start, then ends the test."""
    return CHECK + f"""
local U = cicada.GrpcUser:extend("U", {{ proto = "{TEST_PROTO}", {attrs} }})
function U:on_start()
{body}
    error(cicada.StopTest)
end
U:task(function() end)
return {{ U }}
"""


class GrpcTest(CicadaTest):
    def run_checks(self, script, host, *args, users=1, expect_rc=None, run_time="60"):
        r = self.cicada("--headless", "-u", str(users), "-r", "100", "-t", run_time, "-H", host,
                        *args, script=script)
        self.assertIsNotNone(r.data, r.stderr[-3000:])
        checks = [e for e in r.data["stats"] if e["type"] == "check"]
        failed = [f for f in r.data.get("failures", []) if f["method"] == "check"]
        self.assertEqual(failed, [], r.stderr[-3000:])
        self.assertTrue(checks, "no check ran:\n" + r.stderr[-3000:])
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        if expect_rc is not None:
            self.assertEqual(r.rc, expect_rc, r.stderr[-2000:])
        return r

    def grpc_failures(self, r):
        return {f["name"]: f["error"] for f in r.data["failures"] if f["method"] == "grpc"}


class Calls(GrpcTest):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="cicada-grpc-certs-")
        servers.make_certs(cls.certs)
        cls.srv = servers.grpc_server(os.path.join(cls.certs, "server.pem"),
                                      os.path.join(cls.certs, "server.key"))
        cls.host = f"127.0.0.1:{cls.srv.port}"

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.certs, ignore_errors=True)

    def test_four_kinds_and_metadata(self):
        r = self.run_checks(one_shot("""
    local E = "cicada.test.Tester/"
    -- unary, with metadata both ways
    local reply, st = self.client:call(E .. "Echo", { text = "hi", items = { { name = "a" }, { name = "b" } } },
        { metadata = { ["x-one"] = "1", ["x-list"] = { "a", "b" }, ["x-raw-bin"] = "\\0\\1\\255" } })
    check("unary", reply and reply.text == "hi" and reply.count == 2, tostring(st))
    check("status ok", st.ok and st.code == 0 and st.name == "OK" and st.error == nil and tostring(st) == "OK")
    check("request metadata", reply.metadata["x-one"] == "1" and reply.metadata["x-list"] == "a,b",
          tostring(reply.metadata["x-list"]))
    check("default metadata", reply.metadata["x-default"] == "d", tostring(reply.metadata["x-default"]))
    check("headers", st.headers["x-echo"] == "hi", tostring(st.headers["x-echo"]))
    check("trailers", st.trailers["x-trailer"] == "t-hi", tostring(st.trailers["x-trailer"]))
    check("binary trailer", st.trailers["x-trailer-bin"] == "\\0\\1\\255")
    check("length", st.length == #self.client:encode("cicada.test.EchoReply", reply), tostring(st.length))
    check("defaults", reply.blob == "" and reply.index == 0 and next(reply.metadata) ~= nil)
    -- server streaming
    local list, st2 = self.client:call(E .. "ServerStream", { text = "s", replies = 3 })
    check("server stream", list and #list == 3 and list[1].index == 0 and list[3].index == 2, tostring(st2))
    check("server stream trailers", st2.ok and st2.trailers["x-trailer"] == "t-s")
    -- client streaming
    local one, st3 = self.client:call(E .. "ClientStream", { { text = "a" }, { text = "b" }, { text = "c" } })
    check("client stream", one and one.text == "a,b,c" and one.count == 3, tostring(st3))
    -- bidirectional, all at once and in turns
    local all, st4 = self.client:call(E .. "Bidi", { { text = "x" }, { text = "y" } })
    check("bidi", all and #all == 2 and all[2].text == "y" and all[2].index == 1, tostring(st4))
    local call = self.client:open(E .. "Bidi", { name = "pingpong" })
    local ok = true
    for i = 1, 5 do
        call:send({ text = "m" .. i })
        local m = call:recv()
        ok = ok and m and m.text == "m" .. i and m.index == i - 1
    end
    local h = call:headers()
    call:close_send()
    local last, st5 = call:recv()
    check("ping-pong", ok and last == nil and st5.ok, tostring(st5))
    check("stream headers", type(h) == "table")
    -- a stub, as Locust's self.stub
    local stub = self.client:service("cicada.test.Tester")
    check("stub", stub:Echo({ text = "via stub" }).text == "via stub")
    -- iterating a server stream as it comes
    local n = 0
    local c2 = self.client:open(E .. "ServerStream", nil, { text = "it", replies = 4 })
    for msg in c2:messages() do n = n + 1 end
    check("messages()", n == 4 and c2:status().ok)
""", attrs='metadata = { ["x-default"] = "d" }'), self.host, expect_rc=0)
        self.assertEqual(r.count("/cicada.test.Tester/Echo", "grpc"), 2)
        self.assertEqual(r.count("/cicada.test.Tester/ServerStream", "grpc"), 2)
        self.assertEqual(r.count("/cicada.test.Tester/ClientStream", "grpc"), 1)
        self.assertEqual(r.count("/cicada.test.Tester/Bidi", "grpc"), 1)
        self.assertEqual(r.count("pingpong", "grpc"), 1)
        # the length is the replies' bytes: {text="s"} (3 bytes) with index 0, 1, 2 (0 or 2
        # bytes more), then {text="it"} (4 bytes) with index 0..3
        stream = r.entry("/cicada.test.Tester/ServerStream", "grpc")
        self.assertEqual(stream["total_content_length"], (3 + 5 + 5) + (4 + 6 + 6 + 6))

    def test_statuses_and_deadlines(self):
        r = self.run_checks(one_shot("""
    local E = "cicada.test.Tester/"
    local reply, st = self.client:call(E .. "Echo", { text = "bad", fail_code = 3, fail_message = "bad name" })
    check("invalid argument", reply == nil and st.code == 3 and st.name == "INVALID_ARGUMENT"
          and st.message == "bad name" and st.error == "INVALID_ARGUMENT: bad name", tostring(st))
    check("trailers of a failure", st.trailers["x-trailer"] == "t-bad")
    for _, code in ipairs({ 5, 7, 8, 14, 16 }) do
        local _, s = self.client:call(E .. "Echo", { fail_code = code, fail_message = "m" .. code },
                                      { name = "code" .. code })
        check("code " .. code, s.code == code and s.message == "m" .. code, tostring(s))
    end
    local _, s2 = self.client:call(E .. "Echo", { text = "slow", delay_ms = 3000 }, { timeout = 0.2 })
    check("deadline", s2.code == 4 and s2.error == "DEADLINE_EXCEEDED: Deadline Exceeded", tostring(s2))
    local _, s3 = self.client:call(E .. "Missing", { text = "x" })
    check("unimplemented", s3.code == 12, tostring(s3))
    local list, s4 = self.client:call(E .. "ServerStream", { text = "f", replies = 2, fail_code = 9, fail_message = "late" })
    check("failure after messages", list == nil and s4.code == 9 and s4.length > 0, tostring(s4))
    local c = self.client:open(E .. "ServerStream", { timeout = 0.3, name = "partial" }, { text = "p", replies = 1, delay_ms = 2000 })
    local m, s5 = c:recv()
    check("deadline of a stream", m == nil and s5.code == 4, tostring(s5))
    -- encoding errors are the script's: raised, naming the field
    local ok, err = pcall(self.client.call, self.client, E .. "Echo", { text = 5 })
    check("bad field", not ok and tostring(err):find("field 'text' of cicada.test.EchoRequest: expected a string", 1, true), tostring(err))
    ok, err = pcall(self.client.call, self.client, E .. "Echo", { txet = "x" })
    check("unknown field", not ok and tostring(err):find("no field named 'txet'", 1, true), tostring(err))
    ok, err = pcall(self.client.call, self.client, "cicada.test.Tester/Nope", {})
    check("unknown method", not ok and tostring(err):find("no method cicada.test.Tester/Nope", 1, true), tostring(err))
    ok, err = pcall(self.client.call, self.client, E .. "Echo", {}, { metadata = { ["grpc-timeout"] = "1S" } })
    check("reserved metadata", not ok and tostring(err):find("reserved", 1, true), tostring(err))
"""), self.host, expect_rc=1)
        fails = self.grpc_failures(r)
        self.assertEqual(fails["/cicada.test.Tester/Echo"], "DEADLINE_EXCEEDED: Deadline Exceeded"
                         if "DEADLINE" in fails["/cicada.test.Tester/Echo"]
                         else "INVALID_ARGUMENT: bad name")
        errors = {f["error"] for f in r.data["failures"] if f["method"] == "grpc"}
        for e in ("INVALID_ARGUMENT: bad name", "NOT_FOUND: m5", "PERMISSION_DENIED: m7",
                  "RESOURCE_EXHAUSTED: m8", "UNAVAILABLE: m14", "UNAUTHENTICATED: m16",
                  "DEADLINE_EXCEEDED: Deadline Exceeded", "FAILED_PRECONDITION: late"):
            self.assertIn(e, errors)
        self.assertTrue(any(e.startswith("UNIMPLEMENTED") for e in errors), errors)
        self.assertEqual(r.failures("partial", "grpc"), 1)

    def test_message_limit(self):
        r = self.run_checks(one_shot("""
    local reply, st = self.client:call("cicada.test.Tester/Echo", { blob = string.rep("x", 5000) })
    check("over max_message", reply == nil and st.code == 8, tostring(st))
    local r2 = self.client:call("cicada.test.Tester/Echo", { blob = string.rep("x", 100) })
    check("under max_message", r2 and #r2.blob == 100)
""", attrs="max_message = 1000"), self.host)
        [err] = self.grpc_failures(r).values()
        self.assertTrue(err.startswith("RESOURCE_EXHAUSTED: a reply of 5003 bytes"), err)

    def test_tls(self):
        ca = os.path.join(self.certs, "ca.pem")
        host = f"grpcs://localhost:{self.srv.tls_port}"
        self.run_checks(one_shot("""
    local reply, st = self.client:call("cicada.test.Tester/Echo", { text = "secure" })
    check("over TLS", reply and reply.text == "secure", tostring(st))
""", attrs=f'ca_file = "{ca}"'), host, expect_rc=0)
        r = self.run_checks(one_shot("""
    local reply, st = self.client:call("cicada.test.Tester/Echo", { text = "x" })
    check("unverified", reply == nil and st.code == 14 and st.message:find("certificate", 1, true), tostring(st))
"""), host)
        self.assertIn("certificate", list(self.grpc_failures(r).values())[0])
        # h2c against the TLS port, and TLS against the h2c port, fail cleanly
        r = self.run_checks(one_shot("""
    local _, st = self.client:call("cicada.test.Tester/Echo", { text = "x" }, { timeout = 5 })
    check("plain to a TLS port", not st.ok, tostring(st))
"""), f"127.0.0.1:{self.srv.tls_port}")

    def test_reflection_and_descriptor_files(self):
        script = CHECK + """
local U = cicada.GrpcUser:extend("U", { reflection = true, service = "cicada.test.Tester" })
function U:on_start()
    local reply, st = self.stub:Echo({ text = "reflected" })
    check("reflection", reply and reply.text == "reflected", tostring(st))
    local list = self.client:call("cicada.test.Tester/ServerStream", { text = "r", replies = 2 })
    check("reflected stream", list and #list == 2)
    error(cicada.StopTest)
end
U:task(function() end)
return { U }
"""
        self.run_checks(script, self.host, "-u", "5", expect_rc=0)
        # v1alpha only, over TLS
        certs = self.certs
        old = servers.grpc_server(os.path.join(certs, "server.pem"),
                                  os.path.join(certs, "server.key"), v1=False)
        try:
            self.run_checks(script.replace("reflection = true,", f'reflection = true, ca_file = "{certs}/ca.pem",'),
                            f"grpcs://localhost:{old.tls_port}", expect_rc=0)
        finally:
            old.stop()
        desc = self.path("test.desc")
        subprocess.run(["protoc", "--include_imports", "-I" + PROTOS, "--descriptor_set_out=" + desc,
                        TEST_PROTO], check=True)
        self.run_checks(CHECK + f"""
local U = cicada.GrpcUser:extend("U", {{ descriptor = "{desc}" }})
function U:on_start()
    local reply, st = self.client:call("/cicada.test.Tester/Echo", {{ text = "desc" }})
    check("descriptor", reply and reply.text == "desc", tostring(st))
    error(cicada.StopTest)
end
U:task(function() end)
return {{ U }}
""", self.host, expect_rc=0)

    def test_bad_proto_stops_the_run(self):
        bad = self.write("bad.proto", 'syntax = "proto3";\nmessage X { nope y = 1; }\n')
        r = self.cicada("--headless", "-u", "1", "-t", "5", "-H", self.host, script=CHECK + f"""
local U = cicada.GrpcUser:extend("U", {{ proto = "{bad}" }})
U:task(function() end)
return {{ U }}
""")
        self.assertNotEqual(r.rc, 0)
        self.assertIn("protoc could not compile", r.stderr)
        self.assertIn("nope", r.stderr)

    def test_many_users_and_killed_streams(self):
        # 20 users, each with a unary task and a stream it holds open across a wait; the run
        # ends while many are in the middle of a call: no crash, no hung user
        r = self.cicada("--headless", "-u", "20", "-r", "200", "-t", "3", "-H", self.host,
                        script=f"""
local cicada = require "cicada"
local U = cicada.GrpcUser:extend("U", {{ proto = "{TEST_PROTO}", wait_time = cicada.constant(0) }})
U:task(3, function(self)
    self.client:call("cicada.test.Tester/Echo", {{ text = "load", delay_ms = 5 }})
end)
U:task(1, function(self)
    local c = self.client:open("cicada.test.Tester/Bidi")
    c:send({{ text = "a", delay_ms = 0 }})
    c:recv()
    c:send({{ text = "b" }})
    cicada.sleep(0.05)
    c:recv()
    c:close_send()
    c:recv()
end)
U:task(1, function(self)
    self.client:call("cicada.test.Tester/Echo", {{ text = "slow", delay_ms = 4000 }})
end)
return {{ U }}
""")
        self.assertIsNotNone(r.data, r.stderr[-2000:])
        self.assertGreater(r.count("/cicada.test.Tester/Echo", "grpc"), 20)
        self.assertGreater(r.count("/cicada.test.Tester/Bidi", "grpc"), 5)
        self.assertEqual(r.data["exceptions"], [], r.stderr[-2000:])
        self.assertEqual(r.data["total"]["num_failures"], 0, r.data["failures"])


class Faults(GrpcTest):
    @classmethod
    def setUpClass(cls):
        cls.srv = servers.grpc_faults()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_every_fault_is_a_counted_failure(self):
        modes = "\n".join(f'    {{ "{m}", "{u}" }},' for m, u in self.srv.modes.items())
        r = self.run_checks(CHECK + f"""
local U = cicada.User:extend("U", {{}})
function U:on_start()
    local modes = {{
{modes}
    }}
    for _, mu in ipairs(modes) do
        local c = grpc.client({{ host = mu[2], proto = "{TEST_PROTO}", timeout = 1 }})
        local reply, st = c:call("cicada.test.Tester/Echo", {{ text = "x" }}, {{ name = mu[1] }})
        check(mu[1], reply == nil and not st.ok, tostring(st))
        local list, st2 = c:call("cicada.test.Tester/ServerStream", {{ text = "x" }}, {{ name = mu[1] .. "/stream" }})
        check(mu[1] .. "/stream", list == nil and not st2.ok, tostring(st2))
        local b = c:open("cicada.test.Tester/Bidi", {{ name = mu[1] .. "/bidi" }})
        b:send({{ text = "x" }})
        local m, st3 = b:recv()
        for _ = 1, 5 do -- a good message may come before the fault
            if m == nil then break end
            m, st3 = b:recv()
        end
        check(mu[1] .. "/bidi", m == nil and not st3.ok, tostring(st3))
        c:close()
    end
    local ok = grpc.client({{ host = "{self.srv.url}", proto = "{TEST_PROTO}" }})
    local reply, st = ok:call("cicada.test.Tester/Echo", {{ text = "x" }}, {{ name = "ok" }})
    check("ok", reply ~= nil and st.ok, tostring(st))
    error(cicada.StopTest)
end
U:task(function() end)
return {{ U }}
""", "127.0.0.1:1", expect_rc=1)
        fails = self.grpc_failures(r)
        expected = {
            "garbage": "UNAVAILABLE: malformed response from",
            "garbage_message": "INTERNAL: cannot decode the reply: malformed cicada.test.EchoReply",
            "bad_prefix": "INTERNAL: malformed message prefix (flag byte 7)",
            "huge": "RESOURCE_EXHAUSTED: a reply of 104857600 bytes is over the limit",
            "close_mid": "UNAVAILABLE:",
            "stall": "DEADLINE_EXCEEDED: Deadline Exceeded",
            "no_status": "INTERNAL: the server ended the call without a grpc-status",
            "http_503": "UNAVAILABLE: HTTP status 503 Service Unavailable",
            "not_grpc": "UNKNOWN: the response is not gRPC (content-type: text/html)",
            "rst": "INTERNAL: ",
        }
        for mode, prefix in expected.items():
            self.assertTrue(fails[mode].startswith(prefix), (mode, fails[mode]))
            self.assertIn(mode + "/stream", fails)
            self.assertIn(mode + "/bidi", fails)
        # the close comes as an end of stream, or as a failed write when the client was
        # sending meanwhile (window updates): both are the connection lost
        self.assertRegex(fails["close_mid"], "closed the connection|broken pipe|reset")
        self.assertIn("reset the HTTP/2 stream: INTERNAL_ERROR", fails["rst"])
        self.assertEqual(r.failures("ok", "grpc"), 0)
        self.assertEqual(r.count("ok", "grpc"), 1)


class Example(GrpcTest):
    def test_hello_example(self):
        srv = servers.hello_server(delay=0)
        try:
            r = self.cicada("-f", os.path.join(SOURCE, "examples", "grpc", "cicadafile.lua"),
                            "--headless", "-u", "4", "-r", "10", "-t", "3",
                            "-H", f"127.0.0.1:{srv.port}")
        finally:
            srv.stop()
        self.assertIsNotNone(r.data, r.stderr[-2000:])
        e = r.entry("/locust.hello.HelloService/SayHello", "grpc")
        self.assertIsNotNone(e, r.stderr[-2000:])
        self.assertGreater(e["num_requests"], 0)
        self.assertEqual(e["num_failures"], 0, r.data["failures"])
        # "Hello from Locust, Test!" is field 1: 2 bytes of key and length, 24 of text
        self.assertGreaterEqual(e["total_content_length"], 26)
        self.assertEqual(r.rc, 0, r.stderr[-2000:])


# ---- the codec against python3-protobuf ----------------------------------------------------

U64_MAX = "18446744073709551615"
CASES = [
    ("Scalars", {}),
    ("Scalars", {"f_double": 1.5, "f_float": 0.25, "f_int32": -7, "f_int64": -9007199254740993,
                 "f_uint32": 4294967295, "f_uint64": U64_MAX, "f_sint32": -2147483648,
                 "f_sint64": "-9223372036854775808", "f_fixed32": 4294967295,
                 "f_fixed64": "18446744073709551000", "f_sfixed32": -5, "f_sfixed64": -6,
                 "f_bool": True, "f_string": "héllo", "f_bytes": b"\x00\xff\x01",
                 "f_color": "GREEN", "f_optional": 0}),
    ("Scalars", {"f_int32": 150, "f_int64": 9007199254740992, "f_color": "NEGATIVE",
                 "f_string": "x" * 300}),
    ("Repeated", {"ints": [1, -1, 150, 2147483647], "unpacked": [3, 270, -2], "sints": [-1, 1, 0],
                  "doubles": [0.5, -2.0], "fixeds": [1, 2], "flags": [True, False, True],
                  "colors": ["RED", "GREEN", "NEGATIVE"], "names": ["a", "", "c"],
                  "blobs": [b"\x01", b""], "points": [{"x": 1}, {}, {"y": -1}],
                  "bigs": [U64_MAX, 1]}),
    ("Maps", {"counts": {"b": 2, "a": 1, "": 0}, "names": {3: "three", -1: "minus", 0: ""},
              "points": {"9007199254740993": {"x": 1}, 5: {}},
              "flags": {True: "RED", False: "COLOR_UNSPECIFIED"},
              "blobs": {U64_MAX: b"\x00", 0: b""},
              "nested": {"in": {"counts": {"z": 26}}}}),
    ("Choice", {"label": "n", "number": 0}),
    ("Choice", {"text": "t"}),
    ("Choice", {"point": {"x": 3}}),
    ("Choice", {"color": "RED"}),
    ("Tree", {"name": "root", "left": {"name": "l", "left": {"name": "ll"}},
              "children": [{"name": "c1"}, {"name": "c2", "inner": {"kind": "LEAF", "id": -1}}],
              "inner": {"id": U64_MAX.replace("18446744073709551615", "9223372036854775807")}}),
    ("Everything", {"scalars": {"f_int32": 1}, "repeated": {"ints": [1]}, "maps": {},
                    "choice": {"text": "x"}, "tree": {},
                    "legacy": {"id": "L", "zero": 0, "plain": [1, 2], "packed": [3, 4],
                               "at": {"x": 0}}}),
]


def lua_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if abs(v) > 2 ** 53:
            return '"%d"' % v
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (str, bytes)):
        b = v.encode() if isinstance(v, str) else v
        return '"' + "".join("\\%d" % c for c in b) + '"'
    if isinstance(v, list):
        return "{ " + ", ".join(lua_value(x) for x in v) + " }"
    if isinstance(v, dict):
        return "{ " + ", ".join("[%s] = %s" % (lua_value(k), lua_value(x)) for k, x in v.items()) + " }"
    raise TypeError(v)


def fill(msg, d):
    """Sets |d| on the python3-protobuf message |msg| (enums by name, 64-bit as strings too)."""
    from google.protobuf.descriptor import FieldDescriptor as F
    for k, v in d.items():
        f = msg.DESCRIPTOR.fields_by_name[k]

        def conv(fd, x):
            if fd.enum_type is not None and isinstance(x, str):
                return fd.enum_type.values_by_name[x].number
            if fd.cpp_type in (F.CPPTYPE_INT64, F.CPPTYPE_UINT64, F.CPPTYPE_INT32,
                               F.CPPTYPE_UINT32) and isinstance(x, str):
                return int(x)
            return x

        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            kf = f.message_type.fields_by_name["key"]
            vf = f.message_type.fields_by_name["value"]
            m = getattr(msg, k)
            for mk, mv in v.items():
                mk = conv(kf, mk)
                if vf.message_type is not None:
                    fill(m[mk], mv)
                else:
                    m[mk] = conv(vf, mv)
        elif f.label == F.LABEL_REPEATED:
            if f.message_type is not None:
                for item in v:
                    fill(getattr(msg, k).add(), item)
            else:
                getattr(msg, k).extend([conv(f, x) for x in v])
        elif f.message_type is not None:
            getattr(msg, k).SetInParent()
            fill(getattr(msg, k), v)
        else:
            setattr(msg, k, conv(f, v))


class Codec(GrpcTest):
    """cicada's bytes for each case equal python3-protobuf's deterministic serialisation, and
    what cicada decodes from python's bytes encodes back to them."""

    def test_bytes_match_python_protobuf(self):
        out = self.path("py")
        os.makedirs(out)
        desc = self.path("types.desc")
        subprocess.run(["protoc", "-I" + PROTOS, "--python_out=" + out, "--include_imports",
                        "--descriptor_set_out=" + desc, os.path.join(PROTOS, "types.proto"),
                        os.path.join(PROTOS, "nested", "common.proto")], check=True)
        sys.path.insert(0, out)
        try:
            types_pb2 = importlib.import_module("types_pb2")
        finally:
            sys.path.remove(out)
        expected, lines = [], []
        for i, (name, d) in enumerate(CASES):
            msg = getattr(types_pb2, name)()
            fill(msg, d)
            data = msg.SerializeToString(deterministic=True)
            expected.append(data.hex())
            lines.append(f'    {{ "cicada.types.{name}", {lua_value(d)}, "{lua_value(data)[1:-1]}" }},')
        result = self.path("codec.txt")
        self.run_checks(CHECK + f"""
local U = cicada.User:extend("U", {{}})
local function hex(s)
    return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
function U:on_start()
    local s = grpc.load_descriptor("{desc}")
    local cases = {{
{chr(10).join(lines)}
    }}
    local f = assert(io.open("{result}", "w"))
    for i, c in ipairs(cases) do
        local ok, bytes = pcall(s.encode, s, c[1], c[2])
        check("encode " .. i, ok, tostring(bytes))
        local back = s:decode(c[1], c[3])
        local again = s:encode(c[1], back)
        f:write(hex(ok and bytes or ""), " ", hex(again), "\\n")
    end
    f:close()
    -- the Lua values of python's bytes
    local sc = s:decode("cicada.types.Scalars", cases[2][3])
    check("uint64 max is a string", sc.f_uint64 == "{U64_MAX}", tostring(sc.f_uint64))
    check("int64 past 2^53 is a string", sc.f_int64 == "-9007199254740993", tostring(sc.f_int64))
    check("int32", sc.f_int32 == -7 and sc.f_sint32 == -2147483648)
    check("float", sc.f_float == 0.25 and sc.f_double == 1.5)
    check("enum name", sc.f_color == "GREEN")
    check("bytes", sc.f_bytes == "\\0\\255\\1")
    check("proto3 optional zero kept", sc.f_optional == 0)
    local empty = s:decode("cicada.types.Scalars", "")
    check("defaults", empty.f_int32 == 0 and empty.f_string == "" and empty.f_bool == false
          and empty.f_color == "COLOR_UNSPECIFIED" and empty.f_optional == nil and next(empty) == nil)
    local small = s:decode("cicada.types.Scalars", cases[3][3])
    check("2^53 is a number", small.f_int64 == 9007199254740992 and small.f_color == "NEGATIVE")
    local m = s:decode("cicada.types.Maps", cases[5][3])
    check("maps", m.counts.b == 2 and m.names[-1] == "minus" and m.points["9007199254740993"].x == 1
          and m.flags[true] == "RED" and m.blobs["{U64_MAX}"] == "\\0" and m.nested["in"].counts.z == 26)
    local rp = s:decode("cicada.types.Repeated", cases[4][3])
    check("lists", #rp.ints == 4 and rp.unpacked[2] == 270 and rp.colors[3] == "NEGATIVE"
          and rp.points[3].y == -1 and rp.bigs[1] == "{U64_MAX}" and #rp.names == 3)
    local ch = s:decode("cicada.types.Choice", cases[7][3])
    check("oneof", ch.text == "t" and ch.number == nil and ch.point == nil)
    check("oneof zero", s:decode("cicada.types.Choice", cases[6][3]).number == 0)
    local ok, err = pcall(s.encode, s, "cicada.types.Choice", {{ number = 1, text = "x" }})
    check("two members of a oneof", not ok and tostring(err):find("oneof value", 1, true), tostring(err))
    ok, err = pcall(s.encode, s, "cicada.types.Scalars", {{ f_int32 = 2147483648 }})
    check("out of range", not ok and tostring(err):find("out of range", 1, true), tostring(err))
    ok, err = pcall(s.encode, s, "cicada.types.Scalars", {{ f_uint32 = -1 }})
    check("negative unsigned", not ok, tostring(err))
    ok, err = pcall(s.encode, s, "cicada.types.Scalars", {{ f_color = "BLUE" }})
    check("unknown enum name", not ok and tostring(err):find("'BLUE' is not a value of cicada.types.Color", 1, true), tostring(err))
    local b64 = s:encode("cicada.types.Scalars", {{ f_int64 = -5LL, f_uint64 = 18446744073709551615ULL }})
    local d64 = s:decode("cicada.types.Scalars", b64)
    check("cdata 64-bit", d64.f_int64 == -5 and d64.f_uint64 == "{U64_MAX}")
    local t = s:decode("cicada.types.Repeated", "")
    table.insert(t.ints, 7)
    check("an absent list is an empty one, kept", #t.ints == 1 and s:decode("cicada.types.Repeated", s:encode("cicada.types.Repeated", t)).ints[1] == 7)
    error(cicada.StopTest)
end
U:task(function() end)
return {{ U }}
""", "127.0.0.1:1", expect_rc=0)
        with open(result) as f:
            got = [line.split(" ") for line in f.read().splitlines()]
        self.assertEqual(len(got), len(CASES))
        for (name, d), want, (enc, again) in zip(CASES, expected, got):
            self.assertEqual(enc.strip(), want, f"{name} {d}")
            self.assertEqual(again.strip(), want, f"{name} decoded and encoded again")


if __name__ == "__main__":
    main()
