"""Cooperative LuaSocket inside users: Debian's lua-redis, unchanged, against redis-server;
LuaSocket's own socket.http and LuaSec's ssl.https against nginx; the socket API (patterns,
timeouts, OpenResty's extras, TLS, select) against a line server that also misbehaves on
purpose (tests/servers/socket_faults.py)."""
import os
import shutil
import socket
import tempfile

import servers
from harness import SOURCE, CicadaTest, main

# A script's checks become requests of type "check": a failed check is a failure whose error
# says what was wrong, which the test then shows.
CHECK = """
local cicada = require "cicada"
local function check(name, ok, msg)
    cicada.record("check", name, 0, 0, (not ok) and (msg or "failed") or nil)
end
local function eq(name, got, want)
    check(name, got == want, "got " .. tostring(got) .. ", want " .. tostring(want))
end
"""


def one_shot(body):
    """A user that runs |body| once in on_start, then ends the test."""
    return CHECK + f"""
local U = cicada.User:extend("U", {{}})
function U:on_start()
{body}
    error(cicada.StopTest)
end
U:task(function() end)
return {{ U }}
"""


def redis_command(port, *args):
    """One RESP command to redis on 127.0.0.1:|port|; returns the raw reply line(s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        data = b""
        while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode()


class Checks(CicadaTest):
    def run_checks(self, script, *args, users=1, run_time="60"):
        r = self.cicada("--headless", "-u", str(users), "-r", "100", "-t", run_time, *args,
                        script=script)
        self.assertIsNotNone(r.data, r.stderr[-3000:])
        checks = [e for e in r.data["stats"] if e["type"] == "check"]
        failed = [f for f in r.data["failures"] if f["method"] == "check"]
        self.assertEqual(failed, [], r.stderr[-3000:])
        self.assertTrue(checks, "no check ran:\n" + r.stderr[-3000:])
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        self.assertEqual(r.rc, 0, r.stderr[-3000:])
        return r


class RedisTest(Checks):
    @classmethod
    def setUpClass(cls):
        cls.redis = servers.RedisServer()
        cls.certs = tempfile.mkdtemp(prefix="cicada-certs-")
        servers.make_certs(cls.certs)
        cls.faults = servers.socket_faults(cls.certs)

    @classmethod
    def tearDownClass(cls):
        cls.redis.stop()
        cls.faults.stop()
        shutil.rmtree(cls.certs, ignore_errors=True)

    def test_lua_redis_with_100_users(self):
        # Debian's lua-redis, unchanged, over cicada's socket module: 100 users, 10 rounds each
        # of INCR, SET and GET, each recorded with cicada.measure
        port = self.redis.port
        r = self.cicada("--headless", "-u", "100", "-r", "1000", "-t", "20", script=CHECK + f"""
            local redis = require "redis"
            local inflight, overlapped = 0, false
            -- each call waits on the network: the others run meanwhile
            local function measured(name, fn)
                inflight = inflight + 1
                if inflight > 1 and not overlapped then
                    overlapped = true
                    cicada.record("check", "calls overlap", 0, 0)
                end
                local ok, res = cicada.measure("redis", name, fn)
                inflight = inflight - 1
                return ok, res
            end
            local R = cicada.User:extend("RedisUser", {{ wait_time = cicada.constant(0) }})
            local n = 0
            function R:on_start()
                n = n + 1
                self.id = cicada.env.worker_index .. "-" .. n
                self.client = redis.connect("127.0.0.1", {port})
                self.round = 0
            end
            R:task(function(self)
                self.round = self.round + 1
                local c, key, value = self.client, "user:" .. self.id, "v" .. self.round
                measured("INCR", function() return c:incr("counter") end)
                measured("SET", function() assert(c:set(key, value)) end)
                local ok, got = measured("GET", function() return c:get(key) end)
                if got ~= value then
                    cicada.record("check", "values", 0, 0, "got " .. tostring(got))
                end
                if self.round == 10 then
                    c:quit()
                    error(cicada.StopUser)
                end
            end)
            return {{ R }}
        """)
        self.assertEqual(r.rc, 0, r.stderr[-3000:])
        for cmd in ("INCR", "SET", "GET"):
            self.assertEqual(r.count(cmd, "redis"), 1000, r.stderr[-2000:])
            self.assertEqual(r.failures(cmd, "redis"), 0, r.data["failures"])
        self.assertEqual(r.failures("values", "check"), 0, r.data["failures"])
        self.assertGreaterEqual(r.count("calls overlap", "check"), 1)  # one per worker thread
        self.assertEqual(r.data["exceptions"], [])
        # the server saw every increment
        self.assertEqual(redis_command(port, "GET", "counter"), "$4\r\n1000\r\n")
        self.assertEqual(redis_command(port, "DEL", "counter"), ":1\r\n")

    def test_the_example(self):
        # examples/luasocket as it is, against this redis-server
        example = os.path.join(SOURCE, "examples", "luasocket", "cicadafile.lua")
        r = self.cicada("--headless", "-f", example, "-H", f"redis://127.0.0.1:{self.redis.port}",
                        "-u", "20", "-r", "100", "-t", "2")
        self.assertEqual(r.rc, 0, r.stderr[-3000:])
        self.assertEqual(r.data["failures"], [])
        self.assertEqual(r.data["exceptions"], [])
        self.assertEqual({e["type"] for e in r.data["stats"]}, {"redis"})
        self.assertGreater(r.count("SETEX", "redis"), 0)
        self.assertEqual(r.count("QUIT", "redis"), 20)  # on_stop, after the end killed the users

    def test_lua_redis_failures(self):
        # refused, timed out and garbage: lua-redis raises with LuaSocket's error text, which
        # cicada.measure records as a failure; no crash, no hung user
        closed = servers.free_port()
        r = self.cicada("--headless", "-u", "1", "-t", "60", script=one_shot(f"""
            local redis = require "redis"
            -- garbage may echo in an error message: keep the output printable
            local function try(name, fn)
                local ok, err = cicada.measure("redis", name, function()
                    local ok2, e = pcall(fn)
                    if not ok2 then error((tostring(e):gsub("[^%w%p ]", "?")), 0) end
                    return e
                end)
                check(name .. " failed", not ok, "it worked")
                return tostring(err)
            end
            local e = try("refused", function() return redis.connect("127.0.0.1", {closed}) end)
            check("refused says so", e:find("connection refused", 1, true), e)
            e = try("timeout", function()
                local c = redis.connect({{ host = "127.0.0.1", port = {self.faults.modes["stall"]},
                                          timeout = 0.2 }})
                return c:ping()
            end)
            check("timeout says so", e:find("timeout", 1, true), e)
            e = try("garbage", function()
                local c = redis.connect("127.0.0.1", {self.faults.modes["garbage"]})
                return c:ping()
            end)
            check("garbage is an error", #e > 0, e)
        """))
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        self.assertEqual([f for f in r.data["failures"] if f["method"] == "check"], [])
        errors = {f["name"]: f["error"] for f in r.data["failures"] if f["method"] == "redis"}
        self.assertEqual(set(errors), {"refused", "timeout", "garbage"}, r.stderr[-2000:])
        self.assertIn("connection refused", errors["refused"])
        self.assertIn("timeout", errors["timeout"])


class SocketApiTest(Checks):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="cicada-certs-")
        servers.make_certs(cls.certs)
        cls.srv = servers.socket_faults(cls.certs)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.certs, ignore_errors=True)

    def connect(self, command):
        """Lua: a connected socket that sent |command|."""
        return f"""(function()
            local s = assert(socket.tcp())
            assert(s:connect("127.0.0.1", {self.srv.port}))
            assert(s:send("{command}\\r\\n"))
            return s
        end)()"""

    def test_receive_patterns(self):
        self.run_checks(one_shot(f"""
            local socket = require "socket"
            local s = {self.connect("lines 3")}
            eq("line", s:receive(), "line 1")
            eq("*l", s:receive("*l"), "line 2")
            eq("bytes", s:receive(4), "line")
            eq("prefix", s:receive("*l", "the "), "the  3")
            local data, err, partial = s:receive()
            eq("end", data, nil)
            eq("closed", err, "closed")
            eq("nothing left", partial, "")
            s:close()

            s = {self.connect("bytes 100000")}
            local all = s:receive("*a")
            eq("*a", #all, 100000)
            eq("*a content", all:sub(1, 12), "012345678901")
            s:close()

            s = {self.connect("bytes 25")}
            eq("count with prefix", s:receive(12, "0123456789"), "012345678901")
            eq("rest", s:receive(23), "23456789012345678901234")
            s:close()

            s = {self.connect("echo")}
            eq("send index", s:send("abcdef\\r\\n", 1, 3), 3)
            eq("send rest", s:send("abcdef\\r\\n", 4), 8)
            eq("echoed", s:receive(), "abcdef")
            eq("send table", s:send({{"x", 1, {{"y", true}}, "\\n"}}), 8)
            eq("table echoed", s:receive(), "x1ytrue")
            local big = string.rep("z", 300000)
            eq("big send", s:send(big .. "\\n"), 300001)
            eq("big echo", #s:receive(), 300000)
            eq("peer", select(2, s:getpeername()), {self.srv.port})
            eq("family", select(3, s:getpeername()), "inet")
            check("sock name", s:getsockname() == "127.0.0.1")
            check("stats", s:getstats() > 300000)
            check("nodelay", s:setoption("tcp-nodelay", true) == 1)
            check("keepalive", s:setoption("keepalive", true) == 1 and s:getoption("keepalive"))
            check("tostring", tostring(s):find("^tcp{{client}}") ~= nil, tostring(s))
            s:close()
            eq("receive on closed", select(2, s:receive()), "closed")
            eq("send on closed", select(2, s:send("x")), "closed")
        """))

    def test_failures_give_luasocket_errors(self):
        closed = servers.free_port()
        self.run_checks(one_shot(f"""
            local socket = require "socket"
            local s = socket.tcp()
            local ok, err = s:connect("127.0.0.1", {closed})
            eq("refused", err, "connection refused")
            eq("refused result", ok, nil)
            local c, e = socket.connect("127.0.0.1", {closed})
            eq("socket.connect refused", e, "connection refused")
            ok, err = socket.tcp():connect("no-such-host.invalid", 80)
            check("unknown host", ok == nil and err ~= nil, tostring(err))

            s = {self.connect("stall")}
            s:settimeout(0.2)
            local data, err2, partial = s:receive()
            eq("timeout", err2, "timeout")
            eq("timeout partial", partial, "")
            eq("timeout data", data, nil)

            -- a zero timeout polls: the user still yields, and gets "timeout" at once
            s:settimeout(0)
            data, err2 = s:receive()
            eq("zero timeout", err2, "timeout")
            s:close()

            -- a socket closed by another part of the user wakes the receive waiting on it
            s = {self.connect("stall")}
            local res = cicada.gather {{
                function() return select(2, s:receive()) end,
                function() socket.sleep(0.05); s:close(); return "closed it" end,
            }}
            eq("closed under a receive", res[1], "closed")

            s = {self.connect("trickle 6")}
            s:settimeout(0.2, "t")
            data, err2, partial = s:receive("*l")
            eq("total timeout", err2, "timeout")
            check("partial of a total timeout", #partial >= 1 and #partial < 6, partial)
            s:settimeout(nil, "t")
            s:settimeout(1)
            -- the block timeout starts again with each byte: the line arrives
            local rest = s:receive("*l", partial)
            eq("block timeout renewed", rest, "xxxxxx")
            s:close()

            s = {self.connect("close-mid")}
            data, err2, partial = s:receive()
            eq("close mid-line", err2, "closed")
            eq("close mid-line partial", partial, "partial")
            s:close()

            s = {self.connect("reset-mid")}
            data, err2, partial = s:receive(100)
            eq("reset mid-receive", err2, "closed")
            eq("reset partial", partial, "partial")
            s:close()

            s = assert(socket.connect("127.0.0.1", {self.srv.modes["garbage"]}))
            s:send("hello\\r\\n")
            local got, n = {{}}, 0
            for i = 1, 1000 do
                local d, e, p = s:receive(1000)
                n = n + #(d or p or "")
                if e then eq("garbage ends", e, "closed") break end
            end
            eq("garbage bytes", n, 4096)
            s:close()
        """))

    def test_openresty_extras(self):
        self.run_checks(one_shot(f"""
            local socket = require "socket"
            local s = {self.connect("multipart")}
            local reader = s:receiveuntil("\\r\\n--abcedhb")
            eq("until", reader(), "hello, world! -agentzh")
            local parts = {{}}
            reader = s:receiveuntil("--abcedhb")
            eq("until again", reader(), "tail" .. "hello, world! -agentzh\\r\\n")
            s:close()

            s = {self.connect("multipart")}
            reader = s:receiveuntil("\\r\\n--abcedhb")
            local chunks = {{}}
            while true do
                local d, e = reader(4)
                if not d then
                    eq("reader end", e, nil)
                    break
                end
                chunks[#chunks + 1] = d
            end
            eq("chunks", table.concat(chunks, "|"), "hell|o, w|orld|! -a|gent|zh")
            reader = s:receiveuntil("--abcedhb", {{ inclusive = true }})
            eq("inclusive", reader(), "tailhello, world! -agentzh\\r\\n--abcedhb")
            s:settimeout(0.1)
            local d, e, p = s:receiveany(10)
            eq("receiveany timeout", e, "timeout")
            s:close()

            s = {self.connect("bytes 5")}
            eq("receiveany", s:receiveany(3), "012")
            eq("receiveany rest", s:receiveany(30), "34")
            s:close()

            -- keep-alive pool: the next connect to the same place takes the same connection
            s = {self.connect("count")}
            s:send("which\\r\\n")
            local first = s:receive()
            eq("fresh", s:getreusedtimes(), 0)
            eq("setkeepalive", s:setkeepalive(10000, 4), 1)
            eq("pooled object is closed", select(2, s:receive()), "closed")
            local s2 = socket.tcp()
            assert(s2:connect("127.0.0.1", {self.srv.port}))
            eq("reused", s2:getreusedtimes(), 1)
            s2:send("which\\r\\n")
            eq("same connection", s2:receive(), first)
            s2:send("which\\r\\n")
            eq("partial read", s2:receive(1), string.sub(first, 1, 1))
            eq("unread data refused", select(2, s2:setkeepalive()), "unread data in buffer")
            eq("rest of the line", s2:receive(), string.sub(first, 2))
            eq("then pooled", s2:setkeepalive(), 1)
            -- an answer that reaches a pooled connection before the loop has looked at it:
            -- the connection is not handed out again (the thread sleeps without yielding)
            local s4 = socket.tcp()
            assert(s4:connect("127.0.0.1", {self.srv.port}))
            eq("reused again", s4:getreusedtimes(), 2)
            s4:send("which\\r\\n")
            local fd = s4:getfd()
            assert(s4:setkeepalive())
            -- block (no yield) until the answer is in the kernel's buffer, up to 30 s
            local ffi = require "ffi"
            ffi.cdef [[
                struct pollfd {{ int fd; short events; short revents; }};
                int poll(struct pollfd *fds, unsigned long nfds, int timeout);
            ]]
            local pfd = ffi.new("struct pollfd[1]")
            pfd[0].fd, pfd[0].events = fd, 1 -- POLLIN
            eq("answer arrived", ffi.C.poll(pfd, 1, 30000), 1)
            local s5 = socket.tcp()
            assert(s5:connect("127.0.0.1", {self.srv.port}))
            eq("stale not reused", s5:getreusedtimes(), 0)
            s5:close()
            -- a named pool keeps its connections apart
            local s3 = socket.tcp()
            assert(s3:connect("127.0.0.1", {self.srv.port}, {{ pool = "other" }}))
            eq("other pool is fresh", s3:getreusedtimes(), 0)
            s3:close()

            s = {self.connect("echo")}
            s:settimeouts(1000, 1000, 100)
            eq("settimeouts read", select(2, s:receive()), "timeout")
            s:close()
        """))

    def test_tls(self):
        tls = self.srv.modes["tls-echo"]
        ca = os.path.join(self.certs, "ca.pem")
        self.run_checks(one_shot(f"""
            local socket = require "socket"
            local ssl = require "ssl"
            -- OpenResty: upgrade in place
            local s = socket.tcp()
            assert(s:connect("127.0.0.1", {tls}))
            local ok, err = s:sslhandshake(nil, "localhost", false)
            check("sslhandshake", ok, err)
            s:send("over tls\\r\\n")
            eq("tls echo", s:receive(), "over tls")
            s:close()

            -- LuaSec: wrap, sni, dohandshake; verified against the test CA
            s = socket.tcp()
            assert(s:connect("127.0.0.1", {tls}))
            local conn = assert(ssl.wrap(s, {{ mode = "client", protocol = "any",
                                              verify = "peer", cafile = "{ca}" }}))
            eq("tcp object closed", select(2, s:send("x")), "closed")
            conn:sni("localhost")
            ok, err = conn:dohandshake()
            eq("dohandshake", ok, true)
            check("info", conn:info().protocol:find("TLS") ~= nil)
            eq("verified", conn:getpeerverification(), true)
            conn:send("luasec\\r\\n")
            eq("luasec echo", conn:receive("*l"), "luasec")
            conn:close()

            -- an untrusted certificate fails the handshake with a reason
            s = socket.tcp()
            assert(s:connect("127.0.0.1", {tls}))
            conn = assert(ssl.wrap(s, {{ mode = "client", protocol = "any", verify = "peer" }}))
            conn:sni("localhost")
            ok, err = conn:dohandshake()
            eq("untrusted", ok, false)
            check("untrusted reason", tostring(err):find("verif") ~= nil, tostring(err))

            -- TLS to a server that does not speak it
            s = {self.connect("echo")}
            ok, err = s:sslhandshake(nil, "localhost", false)
            eq("not tls", ok, nil)
            check("not tls reason", err ~= nil)
        """))

    def test_select_dns_time_and_exceptions(self):
        self.run_checks(one_shot(f"""
            local socket = require "socket"
            local quiet = {self.connect("stall")}
            local talker = {self.connect("lines 1")}
            local r, w, e = socket.select({{quiet, talker}}, nil, 5)
            eq("select readable", r[1], talker)
            eq("select map", r[talker], 1)
            eq("select no error", e, nil)
            r, w, e = socket.select({{quiet}}, nil, 0.1)
            eq("select timeout", e, "timeout")
            r, w = socket.select(nil, {{quiet}}, 1)
            eq("select writable", w[1], quiet)
            quiet:close()
            talker:close()

            eq("toip", socket.dns.toip("localhost"), "127.0.0.1")
            local ai = socket.dns.getaddrinfo("127.0.0.1")
            eq("getaddrinfo", ai[1].addr, "127.0.0.1")
            check("gethostname", type(socket.dns.gethostname()) == "string")
            local t0 = socket.gettime()
            socket.sleep(0.05)
            check("sleep", socket.gettime() - t0 >= 0.04)

            local f = socket.protect(function(x)
                local try = socket.newtry(function() cicada.record("check", "finalizer", 0, 0) end)
                try(x, "boom")
                return "fine"
            end)
            eq("protect ok", f(true), "fine")
            local v, msg = f(nil)
            eq("protect catches try", msg, "boom")
            check("protect passes errors on", not pcall(socket.protect(function() error("x") end)))
            check("udp is refused", socket.udp() == nil)
            check("socket.unix is refused", not pcall(require, "socket.unix"))
            check("ssl.core is refused", not pcall(require, "ssl.core"))
        """))

    def test_killed_user_cancels_its_wait(self):
        # users wait with no timeout on a server that never answers: in a receive, a TLS
        # handshake, a select. The end of the run kills them: their on_stop runs, the run
        # ends, and nothing leaks (the ASan build checks)
        stall = self.srv.modes["stall"]
        r = self.cicada("--headless", "-u", "30", "-r", "100", "-t", "1", script=CHECK + f"""
            local socket = require "socket"
            local function user(name, wait)
                local U = cicada.User:extend(name, {{}})
                function U:on_start()
                    self.s = assert(socket.connect("127.0.0.1", {stall}))
                    self.s:send("hello\\r\\n")
                    -- and one connection parked in a pool when the run ends
                    self.k = socket.tcp()
                    assert(self.k:connect("127.0.0.1", {self.srv.port}, {{ pool = "parked" }}))
                    if self.k:getreusedtimes() == 0 then self.k:send("count\\r\\n") end
                    self.k:send("x\\r\\n")
                    self.k:receive()
                    assert(self.k:setkeepalive())
                end
                U:task(function(self)
                    cicada.record("check", "waiting", 0, 0)
                    local _, e = wait(self.s)
                    cicada.record("check", "returned", 0, 0, name .. " returned " .. tostring(e))
                end)
                function U:on_stop() cicada.record("check", "on_stop", 0, 0) end
                return U
            end
            return {{
                user("Receiver", function(s) return s:receive() end),
                user("Handshaker", function(s) return s:sslhandshake(nil, "localhost", false) end),
                user("Selector", function(s) return socket.select({{ s }}) end),
            }}
        """)
        self.assertEqual(r.rc, 0, r.stderr[-3000:])
        self.assertEqual(r.count("waiting", "check"), 30)
        self.assertEqual(r.count("returned", "check"), 0, r.data["failures"])
        self.assertEqual(r.count("on_stop", "check"), 30)
        self.assertEqual(r.data["exceptions"], [])


class HttpTest(Checks):
    @classmethod
    def setUpClass(cls):
        cls.bin = servers.httpbin()
        cls.nginx = servers.Nginx(upstream=cls.bin.port)

    @classmethod
    def tearDownClass(cls):
        cls.nginx.stop()
        cls.bin.stop()

    def test_socket_http(self):
        base = f"http://127.0.0.1:{self.nginx.http}"
        closed = servers.free_port()
        self.run_checks(one_shot(f"""
            local http = require "socket.http"
            local ltn12 = require "ltn12"
            local body, code, headers, status = http.request("{base}/index.html")
            eq("string form", body, "<html><body>hello from nginx</body></html>\\n")
            eq("code", code, 200)
            eq("headers", headers["content-length"], tostring(#body))
            check("status line", status:find("200") ~= nil, status)

            local t = {{}}
            local one, code2 = http.request {{ url = "{base}/big.txt", sink = ltn12.sink.table(t) }}
            eq("sink form", one, 1)
            eq("sink code", code2, 200)
            eq("sink size", #table.concat(t), 16 * 65536)

            local _, c404 = http.request("{base}/missing")
            eq("404", c404, 404)
            local nothing, err = http.request("http://127.0.0.1:{closed}/")
            eq("refused result", nothing, nil)
            eq("refused", err, "connection refused")

            -- a POST with a body, echoed by the httpbin
            local out = {{}}
            local req = "name=cicada"
            local ok, pc = http.request {{
                url = "{self.bin.url}/post", method = "POST",
                headers = {{ ["content-type"] = "application/x-www-form-urlencoded",
                            ["content-length"] = tostring(#req) }},
                source = ltn12.source.string(req), sink = ltn12.sink.table(out),
            }}
            eq("post", pc, 200)
            check("post echoed", table.concat(out):find("cicada", 1, true) ~= nil, table.concat(out))

            -- basic authentication: LuaSocket encodes it with mime (Debian's mime.core)
            local ab, ac = http.request("http://user:secret@127.0.0.1:{self.bin.port}/basic-auth/user/secret")
            eq("basic auth", ac, 200)
            local _, bad = http.request("http://user:wrong@127.0.0.1:{self.bin.port}/basic-auth/user/secret")
            eq("basic auth refused", bad, 401)

            -- measured, as a script would
            local mok = cicada.measure("http", "socket.http", function()
                local b, c = http.request("{base}/index.html")
                assert(c == 200)
            end)
            check("measured", mok)
        """))

    def test_ssl_https(self):
        # LuaSec's own ssl/https.lua over cicada's ssl (it does not verify by default)
        self.run_checks(one_shot(f"""
            local https = require "ssl.https"
            local body, code = https.request("https://127.0.0.1:{self.nginx.https11}/index.html")
            eq("https code", code, 200)
            eq("https body", body, "<html><body>hello from nginx</body></html>\\n")
        """))


if __name__ == "__main__":
    main()
