"""RedisUser against a real redis-server started on a free port, and against a server that
misbehaves on purpose (garbage, a close in the middle of a reply, a stall, a huge reply); and
examples/redis run as its README says."""
import os
import shutil
import subprocess
import tempfile

import servers
from harness import CicadaTest, checks_prelude, main
from harness import one_shot as harness_one_shot

CHECK = checks_prelude("cicada.redis", "redis")


def one_shot(body, attrs=""):
    """A user that runs |body| once in on_start, then ends the test."""
    return harness_one_shot(CHECK, "RedisUser", body, attrs)


class RedisTest(CicadaTest):
    def run_checks(self, script, host, *args, users=1, run_time="30"):
        return super().run_checks(script, host, *args, users=users, run_time=run_time)


class Server(RedisTest):
    @classmethod
    def setUpClass(cls):
        cls.server = servers.RedisServer()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.server.port), *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    def host(self):
        return f"redis://127.0.0.1:{self.server.port}"

    def test_commands_and_errors(self):
        r = self.run_checks(one_shot("""
    local c = self.client
    check("set", c:set("e2e:k", "v") == "OK")
    check("get", c:get("e2e:k") == "v")
    check("missing is nil", c:get("e2e:missing") == nil)
    check("call", c:call("set", "e2e:n", 41) == "OK")
    check("incr", c:incr("e2e:n") == 42)
    check("hset", c:hset("e2e:h", "f", "1", "g", "2") == 2)
    local h = c:hgetall("e2e:h")
    check("hgetall", type(h) == "table" and #h == 4, tostring(h))
    local m = c:mget("e2e:k", "e2e:missing")
    check("null in arrays", m[1] == "v" and m[2] == redis.null and m[2] ~= nil)
    local v, err = c:lpush("e2e:k", "x")
    check("error reply", v == nil and err:find("^WRONGTYPE"), tostring(err))
    local v2, err2 = c:call("NOSUCHCOMMAND", 1)
    check("unknown command", v2 == nil and err2:find("unknown command", 1, true), tostring(err2))
    local big = string.rep("0123456789", 100000)
    check("big value", c:set("e2e:big", big) == "OK")
    check("big back", c:get("e2e:big") == big)
    check("binary", c:set("e2e:bin", "a\\0b\\r\\nc") == "OK" and c:get("e2e:bin") == "a\\0b\\r\\nc")
    local ok = pcall(c.call, c, "GET", {})
    check("bad argument raises", not ok)
    local ok2 = pcall(c.call, c, "SUBSCRIBE", "ch")
    check("subscribe refused", not ok2)
    c:del("e2e:k", "e2e:n", "e2e:h", "e2e:big", "e2e:bin")
"""), self.host())
        self.assertEqual(r.count("SET", "redis"), 4)
        self.assertEqual(r.count("GET", "redis"), 4)
        self.assertEqual(r.count("INCR", "redis"), 1)
        self.assertEqual(r.failures("LPUSH", "redis"), 1)
        self.assertEqual(r.failures("NOSUCHCOMMAND", "redis"), 1)
        errs = self.errors(r, "LPUSH")
        self.assertTrue(errs[0].startswith("WRONGTYPE Operation against a key"), errs)
        self.assertEqual(r.failures("SET", "redis") + r.failures("GET", "redis"), 0)
        self.assertEqual(r.entry("GET", "redis")["total_content_length"], 1 + 1000000 + 6)

    def test_pipelines_and_gather(self):
        r = self.run_checks(one_shot("""
    local c = self.client
    local res, err = c:pipeline({ {"SET", "p:a", 1}, {"INCR", "p:a"}, {"LPUSH", "p:a", "x"},
                                  {"GET", "p:missing"}, {"MGET", "p:a", "p:missing"} })
    check("pipeline", res ~= nil, tostring(err))
    check("results", res[1] == "OK" and res[2] == 2, tostring(res[2]))
    check("error item", type(res[3]) == "table" and res[3][1] == false and res[3][2]:find("WRONGTYPE"))
    check("nil item", res[4] == redis.null)
    check("array item", res[5][1] == "2" and res[5][2] == redis.null)
    local p = c:pipeline()
    for i = 1, 100 do p:rpush("p:list", i) end
    p:llen("p:list")
    local r2 = p:execute()
    check("builder", #r2 == 101 and r2[101] == 100, tostring(r2[101]))
    check("empty pipeline", #c:pipeline({}) == 0)
    -- users that share one client concurrently get their own replies
    local fns = {}
    for i = 1, 20 do
        fns[i] = function()
            c:set("g:" .. i, i)
            return c:get("g:" .. i)
        end
    end
    local out = cicada.gather(fns)
    local good = true
    for i = 1, 20 do good = good and out[i] == tostring(i) end
    check("gather in order", good)
    c:del("p:a", "p:list")
"""), self.host())
        self.assertEqual(r.count("RPUSH", "redis"), 100)
        self.assertEqual(r.count("LLEN", "redis"), 1)
        self.assertEqual(r.failures("LPUSH", "redis"), 1)
        self.assertEqual(r.count("MGET", "redis"), 1)
        self.assertEqual(r.count("SET", "redis"), 21)

    def test_db_and_auth(self):
        self.cli("ACL", "SETUSER", "bob", "on", ">bobpw", "~*", "+@all")
        self.cli("CONFIG", "SET", "requirepass", "secret")
        try:
            port = self.server.port
            r = self.run_checks(one_shot(f"""
    local c = self.client
    check("select + auth", c:set("db:k", "in db 3") == "OK")
    local other = redis.client({{ host = "redis://:secret@127.0.0.1:{port}/0" }})
    check("db 0 differs", other:get("db:k") == nil)
    local bob = redis.client({{ host = "redis://bob:bobpw@127.0.0.1:{port}/3" }})
    check("acl user", bob:get("db:k") == "in db 3")
    local bad = redis.client({{ host = "127.0.0.1:{port}", password = "wrong" }})
    local v, err = bad:get("db:k")
    check("wrong password", v == nil and err:find("AUTH on connect failed: WRONGPASS", 1, true), tostring(err))
    local none = redis.client({{ host = "127.0.0.1:{port}" }})
    local v2, err2 = none:get("db:k")
    check("no password", v2 == nil and err2:find("NOAUTH", 1, true), tostring(err2))
    c:del("db:k")
""", attrs='password = "secret", db = 3'), self.host())
            self.assertEqual(r.failures("GET", "redis"), 2)
            errs = self.errors(r, "GET")
            self.assertTrue(any("AUTH on connect failed: WRONGPASS" in e for e in errs), errs)
        finally:
            subprocess.run(["redis-cli", "-p", str(self.server.port), "-a", "secret",
                            "--no-auth-warning", "CONFIG", "SET", "requirepass", ""],
                           capture_output=True, check=True)

    def test_many_users_load(self):
        script = """
local cicada = require "cicada"
local U = cicada.RedisUser:extend("U", { wait_time = cicada.constant(0) })
U:task(function(self)
    self.client:set("load:k", "v")
    self.client:get("load:k")
end)
return { U }
"""
        r = self.cicada("--headless", "-u", "20", "-r", "100", "-t", "3", "-H", self.host(),
                        script=script)
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        self.assertGreater(r.count("SET", "redis"), 1000)
        self.assertEqual(r.data["total"]["num_failures"], 0, r.data["failures"])

    def test_example(self):
        # nine shoppers and the report (fixed_count = 1)
        r = self.example("redis", self.host(), 10, 3, failures=True)
        self.assertEqual(r.count("HSET", "redis"), 9)
        for name in ("GET", "SET", "HINCRBY", "ZINCRBY", "EXPIRE", "LPUSH"):
            self.assertGreater(r.count(name, "redis"), 0, (name, r.data["stats"]))
        # the one failure on purpose: LPUSH on the session, a hash (a failure in the run, so
        # the exit code is 1)
        self.assertGreater(r.failures("LPUSH", "redis"), 0, r.data["stats"])
        self.assertEqual({(f["name"], f["error"]) for f in r.data["failures"]},
                         {("LPUSH", "WRONGTYPE Operation against a key holding the wrong kind "
                                    "of value")})
        self.assertEqual(r.rc, 1, r.stderr[-2000:])


class Tls(RedisTest):
    """redis-server with TLS only, its certificate from the test CA (servers.make_certs)."""

    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="cicada-redis-tls-")
        servers.make_certs(cls.certs)
        cls.port = servers.free_port()
        d = cls.certs
        cls.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(cls.port), "--bind", "127.0.0.1",
             "--tls-cert-file", f"{d}/server.pem", "--tls-key-file", f"{d}/server.key",
             "--tls-ca-cert-file", f"{d}/ca.pem", "--tls-auth-clients", "no", "--save", "",
             "--appendonly", "no", "--dir", d],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.wait_port(cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait()
        shutil.rmtree(cls.certs, ignore_errors=True)

    def test_tls(self):
        ca = os.path.join(self.certs, "ca.pem")
        r = self.run_checks(one_shot(f"""
    local good = redis.client({{ host = "rediss://localhost:{self.port}", tls = {{ ca_file = "{ca}" }} }})
    check("verified", good:set("tls:k", "v") == "OK")
    check("read back", good:get("tls:k") == "v")
    local untrusted = redis.client({{ host = "rediss://localhost:{self.port}" }})
    local v, err = untrusted:get("tls:k")
    check("untrusted", v == nil and err:find("certificate verification failed", 1, true), tostring(err))
    local insecure = redis.client({{ host = "rediss://localhost:{self.port}", verify = false }})
    check("insecure", insecure:get("tls:k") == "v")
"""), f"rediss://localhost:{self.port}")
        self.assertEqual(r.count("SET", "redis"), 1)
        self.assertEqual(r.failures("GET", "redis"), 1)


class Faults(RedisTest):
    @classmethod
    def setUpClass(cls):
        cls.faults = servers.redis_faults()

    @classmethod
    def tearDownClass(cls):
        cls.faults.stop()

    def test_faults_are_counted_failures(self):
        m = self.faults.modes
        refused = f"127.0.0.1:{servers.free_port()}"
        r = self.run_checks(one_shot(f"""
    local function try(url, what, opts)
        opts = opts or {{}}
        opts.host = url
        opts.timeout = opts.timeout or 1
        local c = redis.client(opts)
        local v, err = c:get("k")
        c:close()
        check(what, v == nil and err, tostring(err))
        return err or ""
    end
    local e = try("{m['garbage']}", "garbage")
    check("garbage error", e:find('protocol error: Protocol error, got "!" as reply type byte', 1, true), e)
    e = try("{m['close_mid']}", "close_mid")
    check("close_mid error", e:find("closed the connection before the reply", 1, true), e)
    e = try("{m['stall']}", "stall")
    check("stall error", e:find("no reply within 1.0 s", 1, true), e)
    e = try("{m['huge']}", "huge", {{ max_reply = 1048576, timeout = 10 }})
    check("huge error", e:find("exceeds max_reply", 1, true), e)
    e = try("{refused}", "refused")
    check("refused error", e:find("connection refused", 1, true), e)
    -- a pipeline on a stalled server: every command fails, each recorded
    local s = redis.client({{ host = "{m['stall']}", timeout = 1 }})
    local res, perr = s:pipeline({{ {{"SET", "a", 1}}, {{"INCR", "n"}} }})
    check("pipeline fails", res == nil and perr:find("no reply", 1, true), tostring(perr))
    s:close()
    -- a server that answers ever later, each reply well within the timeout: no failure
    local slow = redis.client({{ host = "{m['slow_ok']}", timeout = 1 }})
    local all = true
    for i = 1, 25 do all = all and slow:set("k", i) == "OK" end
    check("slow but in time", all)
    slow:close()
"""), self.faults.url)
        self.assertEqual(r.failures("GET", "redis"), 5)
        self.assertEqual(r.failures("SET", "redis"), 1)
        self.assertEqual(r.failures("INCR", "redis"), 1)
        self.assertEqual(r.count("SET", "redis"), 26)


if __name__ == "__main__":
    main()
