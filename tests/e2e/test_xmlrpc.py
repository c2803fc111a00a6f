"""cicada.xmlrpc against real servers: the XML-RPC server of Locust's guide
(examples/xmlrpc/server.py, Python's standard xmlrpc.server) and one that misbehaves on
purpose (tests/servers/xmlrpc_faults.py)."""
import os
import unittest

import servers
from harness import SOURCE, CicadaTest, main

EXAMPLE = os.path.join(SOURCE, "examples", "xmlrpc")

# A script's checks become requests of type "check": a failed check is a failure whose error
# says what was wrong, which the test then shows.
CHECK = """
local cicada = require "cicada"
local xmlrpc = require "cicada.xmlrpc"
local function check(name, ok, msg)
    cicada.record("check", name, 0, 0, (not ok) and (msg or "failed") or nil)
end
"""


def one_shot(body, attrs=""):
    """An XmlRpcUser that runs |body| once in on_start, then ends the test."""
    return CHECK + f"""
local U = xmlrpc.XmlRpcUser:extend("U", {{ {attrs} }})
function U:on_start()
{body}
    error(cicada.StopTest)
end
U:task(function() end)
return {{ U }}
"""


def example_server():
    return servers.Process([servers.PYTHON, os.path.join(EXAMPLE, "server.py"), "--port", "0",
                            "--max-sleep", "0.02"])


class GuideServer(CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.server = example_server()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def run_checks(self, script, *args, host=None):
        r = self.cicada("--headless", "-u", "1", "-r", "10", "-t", "30", "-H",
                        host or self.server.url, *args, script=script)
        self.assertIsNotNone(r.data, r.stderr[-3000:])
        checks = [e for e in r.data["stats"] if e["type"] == "check"]
        failed = [f for f in r.data["failures"] if f["method"] == "check"]
        self.assertEqual(failed, [], r.stderr[-3000:])
        self.assertTrue(checks, "no check ran:\n" + r.stderr[-3000:])
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        return r

    def test_example_runs_as_the_readme_says(self):
        # the README's command, bounded in users and time
        r = self.cicada("-f", os.path.join(EXAMPLE, "cicadafile.lua"), "--headless", "-u", "5",
                        "-r", "5", "-t", "4", "-H", self.server.url)
        self.assertEqual(r.rc, 0, r.stderr[-3000:])
        for name in ("get_time", "get_random_number", "types", "divide", "system.listMethods"):
            self.assertGreater(r.count(name, "xmlrpc"), 0, name)
            self.assertEqual(r.failures(name, "xmlrpc"), 0, name)
        self.assertEqual(r.data["exceptions"], [])
        # the guide's user records nothing but xmlrpc entries: no HTTP entry under them
        self.assertEqual({e["type"] for e in r.data["stats"]}, {"xmlrpc"})

    def test_types_round_trip(self):
        self.run_checks(one_shot("""
    local c = self.client
    local sent = { 42, -7, 2 ^ 40, 1.5, xmlrpc.double(2), true, false, "a & <b>\\r\\n\\t",
                   xmlrpc.base64("\\0\\1\\255"), xmlrpc.datetime("20260102T03:04:05"),
                   { 1, "two", { 3 } }, { name = "ann", nested = { x = 1 } }, xmlrpc.array {},
                   {}, xmlrpc.struct {}, xmlrpc.null, nil }
    local types, err = c.types(unpack(sent, 1, 17))
    check("types call", types ~= nil, tostring(err))
    local want = { "int", "int", "int", "float", "float", "bool", "bool", "str", "Binary",
                   "DateTime", "list", "dict", "list", "dict", "dict", "NoneType", "NoneType" }
    check("type count", types and #types == #want, types and #types)
    for i, w in ipairs(want) do
        check("type " .. i, types and types[i] == w, i .. ": " .. tostring(types and types[i]) .. " ~= " .. w)
    end
    -- echo sends each value back as the server read it (big ints only go one way: Python
    -- refuses to send an int beyond 32 bits)
    local back = c:echo(42, 1.5, xmlrpc.double(2), true, "a & <b>\\n\\t", xmlrpc.base64("\\0\\1\\255"),
                        xmlrpc.datetime(0), { 1, "two", { 3 } }, { name = "ann" }, xmlrpc.array {}, nil)
    check("echo", back ~= nil)
    check("int", back[1] == 42)
    check("double", back[2] == 1.5)
    check("whole double", back[3] == 2)
    check("bool", back[4] == true)
    check("string", back[5] == "a & <b>\\n\\t", back[5])
    check("base64 comes back as its bytes", back[6] == "\\0\\1\\255")
    check("datetime", tostring(back[7]) == "19700101T00:00:00" and back[7]:timestamp() == 0,
          tostring(back[7]))
    check("datetime equality", back[7] == xmlrpc.datetime(0))
    check("array", back[8][1] == 1 and back[8][2] == "two" and back[8][3][1] == 3)
    check("struct", back[9].name == "ann")
    check("empty array", type(back[10]) == "table" and next(back[10]) == nil)
    check("nil", back[11] == xmlrpc.null)
    check("arguments counted", #back == 11, #back)
    -- dotted names, with and without the colon
    local methods = c.system.listMethods()
    check("dotted", type(methods) == "table" and #methods > 5)
    check("dotted colon", #c.system:listMethods() == #methods)
    check("call", c:call("get_random_number", 5, 5) == 5)
    -- misuse raises where the script made the call
    local ok, e = pcall(function() c.echo(function() end) end)
    check("misuse raises", not ok and tostring(e):find("cannot be sent", 1, true), tostring(e))
    local ok2, e2 = pcall(function() c.echo({ 1, nil, 3 }) end)
    check("holes raise", not ok2 and tostring(e2):find("holes", 1, true), tostring(e2))
""", attrs="allow_none = true"))

    def test_faults_are_failures_named_after_them(self):
        r = self.run_checks(one_shot("""
    local v, err, fault = self.client.divide(1, 0)
    check("fault returns nil", v == nil)
    check("fault text", err == "Fault 1: <class 'ZeroDivisionError'>:division by zero", err)
    check("fault table", fault and fault.faultCode == 1, tostring(fault))
    for i = 1, 3 do
        local _, e2, f2 = self.client.fail(42, "boom & bust")
        check("custom fault", f2 and f2.faultCode == 42 and f2.faultString == "boom & bust", e2)
    end
    local _, e3 = self.client.no_such_method()
    check("unknown method", e3 and e3:find("^Fault 1:"), e3)
    -- nil without allow_none is refused before anything is sent
    local ok, e4 = pcall(self.client.echo, nil)
    check("nil refused", not ok and tostring(e4):find("allow_none", 1, true), tostring(e4))
"""))
        errors = {(f["name"], f["error"]): f["occurrences"] for f in r.data["failures"]
                  if f["method"] == "xmlrpc"}
        self.assertEqual(errors[("divide", "Fault 1: <class 'ZeroDivisionError'>:division by zero")], 1)
        self.assertEqual(errors[("fail", "Fault 42: boom & bust")], 3)
        self.assertEqual(r.failures("fail", "xmlrpc"), 3)
        self.assertEqual(r.count("echo", "xmlrpc"), 0)  # refused before it was sent
        self.assertEqual(r.rc, 1)

    def test_proxy_over_a_session_and_a_url(self):
        self.run_checks(CHECK + """
local http = require "cicada.http"
local U = cicada.HttpUser:extend("U", {})
function U:on_start()
    -- a proxy on the user's own HTTP session, at a path on its host
    local p = xmlrpc.ServerProxy(self.client, { path = "/RPC2", name = "rpc2" })
    check("path", p.get_random_number(3, 3) == 3)
    -- a session with headers of its own takes the general path, which adds them
    self.client.headers["X-Test"] = "1"
    self.client.auth = { "ann", "secret" }
    check("general path", p.get_random_number(6, 6) == 6)
    -- and one from a URL, with a session of its own
    local q = xmlrpc.ServerProxy(self.host .. "/", { timeout = 5 })
    check("url", q.get_random_number(4, 4) == 4)
    check("session", xmlrpc.session_of(q) ~= self.client)
    error(cicada.StopTest)
end
U:task(function() end)
return { U }
""")


class Faults(CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.server = servers.Process([servers.PYTHON,
                                      os.path.join(servers.SERVERS, "xmlrpc_faults.py")])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_bad_input_is_a_counted_failure(self):
        # each fault three times, on its own proxy; the stall has a short timeout so the user
        # is never stuck; the user carries on after every failure
        script = CHECK + """
local U = cicada.User:extend("U", {})
function U:on_start()
    for _, path in ipairs({ "ok", "garbage", "not-xml", "html", "truncated", "bad-value", "empty",
                            "bad-fault", "close-mid", "stall", "http-500" }) do
        local p = xmlrpc.ServerProxy(cicada.env.host .. "/" .. path, { timeout = 0.5, name = path })
        for i = 1, 3 do
            local v, err = p.anything(i)
            check(path .. " result", (v ~= nil) == (path == "ok"), tostring(err))
        end
    end
    error(cicada.StopTest)
end
U:task(function() end)
return { U }
"""
        r = self.cicada("--headless", "-u", "1", "-r", "1", "-t", "60", "-H", self.server.url,
                        script=script, timeout=90)
        self.assertIsNotNone(r.data, r.stderr[-3000:])
        self.assertEqual([f for f in r.data["failures"] if f["method"] == "check"], [])
        self.assertEqual(r.data["exceptions"], [], r.stderr[-2000:])
        errors = {}
        for f in r.data["failures"]:
            if f["method"] == "xmlrpc":
                errors.setdefault(f["name"], []).append(f["error"])
        self.assertEqual(r.count("ok", "xmlrpc"), 3)
        self.assertEqual(r.failures("ok", "xmlrpc"), 0)
        for path in ("garbage", "not-xml", "html", "truncated", "bad-value", "empty", "bad-fault",
                     "close-mid", "stall", "http-500"):
            self.assertEqual(r.count(path, "xmlrpc"), 3, path)
            self.assertEqual(r.failures(path, "xmlrpc"), 3, path)
            self.assertTrue(errors.get(path), path)
        one = {k: v[0] for k, v in errors.items()}
        self.assertIn("not well-formed XML", one["not-xml"])
        self.assertTrue(one["not-xml"].startswith("ResponseError: "), one["not-xml"])
        self.assertIn("the document is <html>, not an XML-RPC <methodResponse>", one["html"])
        self.assertIn("not well-formed XML", one["truncated"])
        self.assertIn("not an integer: 'one'", one["bad-value"])
        self.assertEqual(one["empty"], "ResponseError: the response is empty")
        self.assertIn("a fault without faultString", one["bad-fault"])
        self.assertEqual(one["http-500"], "ProtocolError: 500 Internal Server Error")
        self.assertIn("timed out", one["stall"])
        self.assertNotIn("ResponseError", one["close-mid"])  # the HTTP layer saw it first
        self.assertNotIn("ResponseError", one["garbage"])
        self.assertEqual(r.rc, 1)


if __name__ == "__main__":
    main()
