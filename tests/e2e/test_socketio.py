"""Socket.IO: SocketIOUser against npm's socket.io 4 (node) and Debian's python3-socketio
(aiohttp), and against servers that misbehave on purpose (tests/servers/ws_faults.py)."""
import os
import shutil
import subprocess
import unittest

import harness
import servers
from harness import CicadaTest

SERVERS = servers.SERVERS


def npm_socketio():
    """node_modules with socket.io 4 (scripts/install-deps installs it into a cache through
    socketio-npm, which retries the registry; this finds it there, or installs it)."""
    p = subprocess.run([os.path.join(SERVERS, "socketio-npm")], capture_output=True,
                       text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError("tests/servers/socketio-npm could not install socket.io:\n"
                           + p.stderr[-2000:])
    return p.stdout.strip()


class NodeServer(servers.Process):
    def __init__(self, node_path, ping_ms):
        env = dict(os.environ, NODE_PATH=node_path)
        self.proc = subprocess.Popen(["node", os.path.join(SERVERS, "socketio_server.js"),
                                      str(ping_ms)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        self.lines = [self.proc.stdout.readline().strip()]
        if not self.lines[0]:
            raise RuntimeError("the node Socket.IO server did not start")
        self.url = self.lines[0].split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1])


# Each user runs ITER rounds, then stops; the last one to finish ends the run (the users share
# one worker thread, so |finished| counts them all): the counts are exact.
FLOW = """
local cicada = require "cicada"
local sio = require "cicada.socketio"
local finished = 0

local Chat = cicada.SocketIOUser:extend("Chat", { wait_time = cicada.constant(0) })

function Chat:on_start()
    self.welcomes = 0
    self.client:on("welcome", function(d)
        assert(type(d.sid) == "string")
        self.welcomes = self.welcomes + 1
    end)
    self.client:on("question", function(n) return n + 1 end)
    assert(self.client:connect())
    self.rounds = 0
end

Chat:task(function(self)
    self.rounds = self.rounds + 1
    if self.rounds > ITER then
        assert(self.welcomes == 1, "welcome handler ran " .. self.welcomes .. " times")
        -- an event from the server with a binary attachment (a BINARY_EVENT packet)
        assert(self.client:emit("echo", { blob = sio.binary("\\0\\1\\2\\255"), n = 7 },
                                { name = "bin echo" }))
        local ev, d = self.client:wait("echo", 30)
        assert(ev == "echo" and d.blob == "\\0\\1\\2\\255" and d.n == 7, "binary event")
        -- idle longer than the server's ping interval and timeout together (300 + 1000 ms):
        -- the client must have answered the server's pings to still be connected
        cicada.sleep(2)
        assert(self.client:call("ack", "still here") == "still here", "dropped while idle")
        assert(self.client:disconnect())
        cicada.record("T", "done", 0, 0, nil)
        finished = finished + 1
        if finished == 2 then error(cicada.StopTest) end
        error(cicada.StopUser)
    end
    local a, b, c = self.client:call("ack", sio.args(1, "two", { three = 3 }))
    assert(a == 1 and b == "two" and c.three == 3, "ack " .. tostring(a))
    assert(self.client:emit("echo", { x = self.rounds }))
    local ev, d = self.client:wait("echo", 30)
    assert(ev == "echo" and d.x == self.rounds, "echo")
    local buf, n = self.client:call("binary", sio.binary("\\0\\1\\2\\255"), { name = "bin" })
    assert(buf == "\\0\\1\\2\\255" and n == 4, "binary " .. tostring(n))
    assert(self.client:emit("ask"))
    local _, answer = self.client:wait("answer_was", 30)
    assert(answer == 43, "server's ack got " .. tostring(answer))
    assert(self.client:send("hi", { name = "greeting" }))
end)

return { Chat }
""".replace("ITER", "10")

NAMESPACES = """
local cicada = require "cicada"
local sio = require "cicada.socketio"
local U = cicada.User:extend("U", { wait_time = cicada.constant(0) })
U:task(function(self)
    local ok = sio.client({ base_url = self.host, namespace = "/admin",
                            auth = { token = "secret" } })
    assert(ok:connect({ name = "admin ok" }))
    assert(ok:call("ack", "in admin", { name = "admin ack" }) == "in admin")
    local bad = sio.client({ base_url = self.host, namespace = "/admin",
                             auth = { token = "wrong" } })
    local c, err = bad:connect({ name = "admin refused" })
    assert(c == nil and err:find("not authorized"), tostring(err))
    -- a call nobody acknowledges times out
    local r, e = ok:call("nobody-answers", 1, { timeout = 0.3, name = "unanswered" })
    assert(r == nil and e:find("no acknowledgement"), tostring(e))
    -- the server disconnects the client: what waits fails, later calls fail at once
    ok:emit("kick")
    local w, e2 = ok:wait("never", 30)
    assert(w == nil and e2:find("disconnected"), tostring(e2))
    local r2, e3 = ok:call("ack", 1, { name = "after kick" })
    assert(r2 == nil, "call after kick")
    -- a handler that raises: an exception, and the client goes on
    local h = sio.client({ base_url = self.host })
    h:on("welcome", function() error("handler failed on purpose") end)
    assert(h:connect({ name = false }))
    assert(h:call("ack", 2, { name = false }) == 2)
    cicada.sleep(0.2)
    h:close()
    cicada.record("T", "done", 0, 0, nil)
    error(cicada.StopTest)
end)
return { U }
"""


class Flows:
    """The same checks against each server; subclasses set cls.server."""

    def test_flow(self):
        r = self.cicada("--headless", "-u", "2", "-r", "10", "--threads", "1", "-t", "120",
                        "-H", self.server.url, script=FLOW, timeout=180)
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        self.assertEqual(r.count("done", "T"), 2)
        self.assertEqual(r.data["total"]["num_failures"], 0, r.data["failures"])
        self.assertEqual(r.count("connect", "WS"), 2)
        self.assertEqual(r.count("ack", "WSC"), 22)
        self.assertEqual(r.count("bin", "WSC"), 20)
        self.assertEqual(r.count("echo", "WSE"), 20)
        self.assertEqual(r.count("echo", "WSR"), 22)
        self.assertEqual(r.count("bin echo", "WSE"), 2)
        self.assertEqual(r.count("ask", "WSE"), 20)
        self.assertEqual(r.count("question", "WSR"), 20)
        self.assertEqual(r.count("answer_was", "WSR"), 20)
        self.assertEqual(r.count("welcome", "WSR"), 2)
        self.assertEqual(r.count("greeting", "WSS"), 20)
        # acknowledged calls are timed: a round trip takes some time
        self.assertGreater(r.entry("ack", "WSC")["max_response_time"], 0)
        # WSR entries count the bytes of each event
        self.assertGreater(r.entry("echo", "WSR")["total_content_length"], 20 * 10)

    def test_namespaces_and_failures(self):
        r = self.cicada("--headless", "-u", "1", "-r", "10", "-t", "120", "-H", self.server.url,
                        script=NAMESPACES, timeout=180)
        self.assertEqual(r.count("done", "T"), 1, r.stderr[-3000:])
        self.assertEqual(r.failures("admin ok", "WS"), 0)
        self.assertEqual(r.failures("admin refused", "WS"), 1)
        self.assertEqual(r.failures("admin ack", "WSC"), 0)
        self.assertEqual(r.failures("unanswered", "WSC"), 1)
        self.assertEqual(r.failures("after kick", "WSC"), 1)
        messages = [e["message"] for e in r.data["exceptions"]]
        self.assertEqual(len(messages), 1, messages)
        self.assertIn("handler failed on purpose", messages[0])

    def test_example(self):
        """examples/socketio as its README runs it, for a few seconds: nothing fails."""
        r = self.example("socketio", self.server.url, 10, 8)
        # each user joins /admin once and is welcomed there
        self.assertEqual(r.count("connect", "WS"), 10)
        self.assertEqual(r.count("welcome", "WSR"), 10)
        # tasks of weights 5, 3, 1 and 1: some 100 of them, so each ran
        for name, type_ in (("ack", "WSC"), ("echo", "WSE"), ("echo", "WSR"), ("binary", "WSC"),
                            ("ask", "WSE"), ("question", "WSR"), ("answer_was", "WSR")):
            self.assertGreater(r.count(name, type_), 0, f"{type_} {name}")
        self.assertEqual(r.rc, 0, r.stderr[-3000:])


class NodeSocketIOTest(Flows, CicadaTest):
    @classmethod
    def setUpClass(cls):
        # scripts/install-deps installs node and npm; without them this server is not tested
        if not (shutil.which("node") and shutil.which("npm")):
            raise unittest.SkipTest("node and npm are not installed (scripts/install-deps)")
        cls.server = NodeServer(npm_socketio(), 300)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()


class PythonSocketIOTest(Flows, CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.server = servers.Process([servers.PYTHON, os.path.join(SERVERS, "socketio_server.py"),
                                      "300"])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()


FAULTS = """
local cicada = require "cicada"
local sio = require "cicada.socketio"
local U = cicada.User:extend("U", { wait_time = cicada.constant(0) })
U:task(function(self)
    -- only no-open waits out the connect deadline; the other faults end by the server's doing
    for _, f in ipairs({ "garbage", "no-open", "bad-open", "refuse" }) do
        local c = sio.client({ base_url = self.host, path = "/sio-" .. f .. "/",
                               timeout = f == "no-open" and 1 or 30 })
        assert(c:connect({ name = "connect " .. f }) == nil)
    end
    for _, f in ipairs({ "no-ping", "stall", "close-mid", "bad-packet" }) do
        local c = sio.client({ base_url = self.host, path = "/sio-" .. f .. "/", timeout = 30 })
        assert(c:connect({ name = "connect " .. f }))
        if f == "no-ping" then
            local w, err = c:wait(nil, 30)
            cicada.record("WAIT", f, 0, 0, err)
        else
            c:call("x", nil, { timeout = 1, name = "call " .. f })
        end
        c:close()
    end
    error(cicada.StopTest)
end)
return { U }
"""


class SocketIOFaultTest(CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.server = servers.Process([servers.PYTHON, os.path.join(SERVERS, "ws_faults.py")])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_faults(self):
        r = self.cicada("--headless", "-u", "1", "-r", "10", "-t", "120", "-H", self.server.url,
                        script=FAULTS, timeout=180)
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        errors = {f["name"]: f["error"] for f in r.data["failures"]}
        expect = {
            "connect garbage": "not an Engine.IO packet",
            "connect no-open": "no Engine.IO open packet",
            "connect bad-open": "not a JSON object",
            "connect refuse": "refused the namespace / : nope".replace("/ :", "/:"),
            "no-ping": "no ping from the server",
            "call stall": "no acknowledgement within 1 s",
            "call close-mid": "without a close frame",
            "call bad-packet": "Socket.IO: ",
        }
        for name, text in expect.items():
            self.assertIn(name, errors, f"{name} did not fail: {errors}")
            self.assertIn(text, errors[name], name)
        for f in ("no-ping", "stall", "close-mid", "bad-packet"):
            self.assertEqual(r.failures("connect " + f, "WS"), 0)


if __name__ == "__main__":
    harness.main()
