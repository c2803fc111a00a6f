"""WebSocket: WebSocketUser against an aiohttp server (ws and wss) and a server that
misbehaves on purpose (tests/servers/ws_faults.py)."""
import os
import shutil
import tempfile

import harness
import servers
from harness import CicadaTest


def setUpModule():
    global echo, faults, certs
    certs = tempfile.mkdtemp(prefix="cicada-ws-certs-")
    servers.make_certs(certs)
    echo = servers.Process([servers.PYTHON, os.path.join(servers.SERVERS, "ws_echo.py"),
                            os.path.join(certs, "server.pem"), os.path.join(certs, "server.key")],
                           lines=2)
    echo.tls_url = echo.lines[1].split()[-1]
    faults = servers.Process([servers.PYTHON, os.path.join(servers.SERVERS, "ws_faults.py")])


def tearDownModule():
    echo.stop()
    faults.stop()
    shutil.rmtree(certs, ignore_errors=True)


ECHO = """
local cicada = require "cicada"

local Chat = cicada.WebSocketUser:extend("Chat", {
    wait_time = cicada.constant(0),
    protocols = { "chat.v1", "other" },
    headers = { ["X-Token"] = "secret" },
    origin = "http://example.test",
})

function Chat:on_start()
    assert(self.client:connect("/echo"))
    assert(self.client.protocol == "chat.v1", "subprotocol " .. tostring(self.client.protocol))
end

local n = 0
Chat:task(function(self)
    n = n + 1
    if n > 50 then
        self.client:close()
        error(cicada.StopTest)
    end
    assert(self.client:send("hello " .. n))
    local m, kind = self.client:receive(30)
    assert(m == "hello " .. n and kind == "text", tostring(m))
    assert(self.client:send_binary("\\0\\1\\2\\255", { name = "bin" }))
    m, kind = self.client:receive(30, { name = "bin back" })
    assert(m == "\\0\\1\\2\\255" and kind == "binary")
    assert(self.client:ping("x"))
end)

return { Chat }
"""


class WebSocketTest(CicadaTest):
    def run_task(self, body):
        """Runs |body| (Lua, with cicada, ws and cjson at hand) once in one user against the
        echo server; it must end without an error."""
        script = """
            local cicada = require "cicada"
            local ws = require "cicada.websocket"
            local cjson = require "cjson"
            local U = cicada.User:extend("U", { wait_time = cicada.constant(0) })
            U:task(function(self)
""" + body + """
                cicada.record("T", "ok", 0, 0, nil)
                error(cicada.StopTest)
            end)
            return { U }
        """
        r = self.cicada("--headless", "-u", "1", "-r", "10", "-t", "120", "-H", echo.url,
                        script=script, timeout=180)
        self.assertEqual(r.data["exceptions"], [], r.stderr[-2000:])
        self.assertEqual(r.count("ok", "T"), 1)
        return r

    def test_echo(self):
        r = self.cicada("--headless", "-u", "1", "-r", "10", "-t", "120", "-H", echo.url,
                        script=ECHO, timeout=180)
        self.assertEqual(r.data["exceptions"], [], r.stderr[-2000:])
        self.assertEqual(r.count("connect", "WS"), 1)
        self.assertEqual(r.count("send", "WS"), 50)
        self.assertEqual(r.count("recv", "WS"), 50)
        self.assertEqual(r.count("bin", "WS"), 50)
        self.assertEqual(r.count("bin back", "WS"), 50)
        self.assertEqual(r.count("ping", "WS"), 50)
        self.assertEqual(r.data["total"]["num_failures"], 0)
        # response length is the message size
        self.assertEqual(r.entry("bin back", "WS")["total_content_length"], 50 * 4)

    def test_headers_and_queue(self):
        r = self.run_task("""
                local c = assert(ws.connect(self.host .. "/headers",
                    { headers = { ["X-Token"] = "t1" }, origin = "http://o.test" }))
                local body = assert(c:receive(30))
                local h = cjson.decode(body)
                assert(h["X-Token"] == "t1", "X-Token")
                assert(h["Origin"] == "http://o.test", "Origin")
                assert(h["Sec-WebSocket-Version"] == "13")
                c:close()
                -- connect's headers add to the client's, false removes one; receive_timeout is
                -- receive()'s default (nothing more comes from /headers)
                local c2 = assert(ws.client({ base_url = self.host, receive_timeout = 0.2,
                    headers = { ["X-Token"] = "t1", ["X-Gone"] = "x" } }):connect("/headers",
                    { headers = { ["X-Gone"] = false, ["X-More"] = "m" } }))
                local body2 = assert(c2:receive(30))
                local h2 = cjson.decode(body2)
                assert(h2["X-Token"] == "t1" and h2["X-More"] == "m" and h2["X-Gone"] == nil,
                       "merged headers")
                local none, werr = c2:receive({ name = "short wait" })
                assert(none == nil and werr:find("timeout"), tostring(werr))
                c2:close()
                -- messages that arrive before receive() is called wait in order
                local q = assert(ws.connect(self.host .. "/count?n=20", { name = "count" }))
                local deadline = cicada.monotonic() + 30
                while q:queued() < 20 and cicada.monotonic() < deadline do cicada.sleep(0.05) end
                local n = q:queued()
                assert(n == 20, "queued " .. n)
                for i = 1, 20 do
                    assert(q:receive(30, { name = false }) == tostring(i))
                end
                -- a close code from the server ends receive() with an error naming it
                assert(q:send("close 4001 bye", { name = false }))
                local m, err = q:receive(30, { name = "closed" })
                assert(m == nil and err:find("4001") and err:find("bye"), tostring(err))
                local code, reason = q:close_status()
                assert(code == 4001 and reason == "bye")
        """)
        self.assertEqual(r.failures("closed", "WS"), 1)
        self.assertEqual(r.failures("short wait", "WS"), 1)

    def test_close_code_and_heartbeat(self):
        r = self.run_task("""
                -- the server pings every second and drops a client whose pong does not come
                -- within half a second: idle through three of its pings
                local h = assert(ws.connect(self.host .. "/heartbeat", { name = false }))
                cicada.sleep(3.5)
                assert(h:send("still here", { name = false }))
                assert(h:receive(30, { name = "after pings" }) == "still here")
                -- a close the client begins carries its code and reason to the server
                local c = assert(ws.connect(self.host .. "/echo", { name = false }))
                assert(c:close(4321, "done here"))
                local l = assert(ws.connect(self.host .. "/closes", { name = false }))
                local body = assert(l:receive(30, { name = false }))
                local found = false
                for _, e in ipairs(cjson.decode(body)) do
                    if e[1] == 4321 and e[2] == "done here" then found = true end
                end
                assert(found, "the server saw no close 4321: " .. body)
                assert(h:close())
                l:close()
        """)
        self.assertEqual(r.failures("after pings", "WS"), 0)

    def test_wss(self):
        script = """
            local cicada = require "cicada"
            local ws = require "cicada.websocket"
            local U = cicada.User:extend("U", { wait_time = cicada.constant(0) })
            U:task(function(self)
                local c = ws.connect(self.host .. "/echo", { ca_file = CA, name = "tls" })
                assert(c, "tls connect failed")
                assert(c:send("secure"))
                assert(c:receive(30) == "secure")
                c:close()
                local bad = ws.connect(self.host .. "/echo", { name = "untrusted" })
                assert(bad == nil)
                local ok = ws.connect(self.host .. "/echo", { verify = false, name = "insecure" })
                assert(ok)
                ok:close()
                error(cicada.StopTest)
            end)
            return { U }
        """.replace("CA", repr(os.path.join(certs, "ca.pem")).replace("'", '"'))
        r = self.cicada("--headless", "-u", "1", "-r", "10", "-t", "120", "-H", echo.tls_url,
                        script=script, timeout=180)
        self.assertEqual(r.data["exceptions"], [], r.stderr[-2000:])
        self.assertEqual(r.count("tls", "WS"), 1)
        self.assertEqual(r.failures("tls", "WS"), 0)
        self.assertEqual(r.failures("untrusted", "WS"), 1)
        self.assertEqual(r.failures("insecure", "WS"), 0)
        errors = [f["error"] for f in r.data["failures"] if f["name"] == "untrusted"]
        self.assertIn("certificate", errors[0])

    def test_faults(self):
        """Every fault is a counted failure with its own error; nobody hangs or crashes."""
        script = """
            local cicada = require "cicada"
            local ws = require "cicada.websocket"
            local U = cicada.User:extend("U", { wait_time = cicada.constant(0) })
            local paths = { "/ok", "/garbage", "/not-found", "/bad-accept", "/no-upgrade",
                "/bad-protocol", "/stall-handshake", "/stall", "/close-mid", "/close-no-frame",
                "/masked", "/bad-utf8", "/huge", "/reset" }
            -- only the stalls wait out a deadline: every other fault ends by the server's doing
            local stalls = { ["/stall-handshake"] = true, ["/stall"] = true }
            U:task(function(self)
                for _, p in ipairs(paths) do
                    local t = stalls[p] and 1 or 30
                    local c = ws.client({ base_url = self.host, timeout = t,
                                          protocols = "chat.v1", max_message = 1 << 20 })
                    if c:connect(p, { name = "connect " .. p }) then
                        if p == "/ok" then c:send("hi", { name = false }) end
                        local m = c:receive(t, { name = "recv " .. p })
                        if m then c:receive(t, { name = "recv2 " .. p }) end
                        c:abort()
                    end
                end
                -- a server that reads nothing holds the sender back, then fails it
                local c = ws.client({ base_url = self.host, timeout = 1 })
                assert(c:connect("/stall", { name = false }))
                local big = string.rep("x", 256 * 1024)
                for i = 1, 400 do
                    if not c:send(big, { name = "send /stall" }) then break end
                end
                c:abort()
                error(cicada.StopTest)
            end)
            return { U }
        """.replace("1 << 20", "1048576")
        r = self.cicada("--headless", "-u", "1", "-r", "10", "-t", "120", "-H", faults.url,
                        script=script, timeout=180)
        self.assertEqual(r.data["exceptions"], [], r.stderr[-2000:])
        errors = {f["name"]: f["error"] for f in r.data["failures"]}
        expect = {
            "connect /garbage": "malformed response",
            "connect /not-found": "404 Not Found",
            "connect /bad-accept": "Sec-WebSocket-Accept does not match",
            "connect /no-upgrade": "Upgrade",
            "connect /bad-protocol": "not offered",
            "connect /stall-handshake": "timed out",
            "recv /stall": "timeout",
            "recv /close-mid": "without a close frame",
            "recv /close-no-frame": "without a close frame",
            "recv /masked": "1002",
            "recv /bad-utf8": "UTF-8",
            "recv /huge": "max_message",
            "recv /reset": "reset",
            "recv2 /ok": "code 1000",
            "send /stall": "the server read nothing for 1 s",
        }
        for name, text in expect.items():
            self.assertIn(name, errors, f"{name} did not fail: {errors}")
            self.assertIn(text, errors[name], name)
        self.assertEqual(r.failures("recv /ok", "WS"), 0)
        self.assertEqual(r.failures("connect /ok", "WS"), 0)
        # the send held back is recorded with the time it waited: its 1 s deadline at least
        self.assertGreaterEqual(r.entry("send /stall", "WS")["max_response_time"], 999)

    def test_example(self):
        """examples/websocket as its README runs it, for a few seconds: nothing fails."""
        r = self.example("websocket", echo.url, 10, 8)
        self.assertEqual(r.count("connect", "WS"), 10)  # each user's on_start
        # tasks of weights 5, 2 and 1: some 80 of them, so each ran
        for name in ("send", "recv", "send binary", "recv binary", "ping"):
            self.assertGreater(r.count(name, "WS"), 0, name)
        self.assertEqual(r.rc, 0, r.stderr[-2000:])


if __name__ == "__main__":
    harness.main()
