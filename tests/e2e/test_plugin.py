"""The C extension contract: examples/plugin's memcached module, built as an ordinary Lua C
module against include/cicada.h, loaded with require and run against a real memcached and
against a server that misbehaves on purpose."""
import os
import subprocess
import unittest

import servers
from harness import SOURCE, CicadaTest, main

SCRIPT = """
local cicada = require "cicada"
local memcached = require "memcached"

local Cache = cicada.User:extend("Cache", { wait_time = cicada.constant(0) })
local ids, finished = 0, 0
function Cache:on_start()
    ids = ids + 1
    self.id = ids
    self.mc = assert(memcached.connect("127.0.0.1", PORT))
    self.n = 0
end
Cache:task(function(self)
    self.n = self.n + 1
    local key = "user" .. self.id .. ":" .. self.n
    assert(self.mc:set(key, "value-" .. self.n, 60))
    local v = self.mc:get(key)
    if v ~= "value-" .. self.n then error("read back " .. tostring(v)) end
    assert(self.mc:get("missing:" .. key) == nil)
    assert(self.mc:add(key, "x") == nil) -- NOT_STORED: a failure
    assert(self.mc:delete(key) == true)
    assert(self.mc:delete(key) == false)
    if self.n == 25 then
        self.mc:close()
        finished = finished + 1
        -- the last user to finish ends the run: every count below is then exact
        error(finished == 8 and cicada.StopTest or cicada.StopUser)
    end
end)
return { Cache }
"""

FAULTS = """
local cicada = require "cicada"
local memcached = require "memcached"
local ports = { stall = STALL, garbage = GARBAGE, close = CLOSE, half = HALF, refused = REFUSED }

local Faulty = cicada.User:extend("Faulty", { wait_time = cicada.constant(0.05) })
Faulty:task(function(self)
    for _, mode in ipairs { "stall", "garbage", "close", "half", "refused" } do
        local mc, err = memcached.connect("127.0.0.1", ports[mode], { timeout = 0.3 })
        if mc then
            local v, e = mc:get("k")
            cicada.record("result", mode, 0, 0, v == nil and e == nil and "a miss" or nil)
            cicada.record("error", e or "none", 0, 0)
            mc:close()
        else
            cicada.record("error", "connect " .. mode .. ": " .. err, 0, 0)
        end
    end
    error(cicada.StopUser)
end)

-- killed at the end of the run while it waits on a server that never answers
local Waiter = cicada.User:extend("Waiter", { fixed_count = 1 })
Waiter:task(function(self)
    local mc = assert(memcached.connect("127.0.0.1", ports.stall, { timeout = 30 }))
    mc:get("never")
    cicada.record("error", "not reached", 0, 0)
end)
return { Faulty, Waiter }
"""


class Plugin(CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.memcached = servers.memcached()
        cls.faults = servers.tcp_faults()

    @classmethod
    def tearDownClass(cls):
        cls.memcached.stop()
        cls.faults.stop()

    def build(self):
        """Builds the module as its README says, into the test's directory."""
        r = subprocess.run(["make", "-s", "-C", os.path.join(SOURCE, "examples", "plugin"),
                            "OUT=" + self.dir], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(self.path("memcached.so")))

    def test_memcached_module(self):
        self.build()
        # one thread: the users' keys and the finished count live in one Lua state
        r = self.cicada("--headless", "--threads", "1", "-u", "8", "-r", "100", "-t", "120",
                        script=SCRIPT.replace("PORT", str(self.memcached.port)))
        self.assertEqual(r.rc, 1, r.stderr)  # the add failures
        self.assertEqual(r.data["exceptions"], [], r.stderr)
        self.assertEqual(r.count("connect", "memcached"), 8)
        self.assertEqual(r.failures("connect", "memcached"), 0)
        self.assertEqual(r.count("set", "memcached"), 200)
        self.assertEqual(r.failures("set", "memcached"), 0)
        self.assertEqual(r.count("get", "memcached"), 400)
        self.assertEqual(r.failures("get", "memcached"), 0)
        # the hits carry the value's bytes: 'value-1'..'value-9' are 7, up to 'value-25' 8
        self.assertEqual(r.entry("get", "memcached")["total_content_length"], 8 * (9 * 7 + 16 * 8))
        self.assertEqual(r.count("add", "memcached"), 200)
        self.assertEqual(r.failures("add", "memcached"), 200)
        self.assertEqual(r.count("delete", "memcached"), 400)
        errors = {(f["name"], f["error"]) for f in r.data["failures"]}
        self.assertEqual(errors, {("add", "memcached: NOT_STORED")})

    def test_faults_are_counted_failures(self):
        self.build()
        m = self.faults.modes
        refused = servers.free_port()
        script = (FAULTS.replace("STALL", str(m["stall"])).replace("GARBAGE", str(m["garbage"]))
                  .replace("CLOSE", str(m["close"])).replace("HALF", str(m["half"]))
                  .replace("REFUSED", str(refused)))
        r = self.cicada("--headless", "-u", "3", "-r", "100", "-t", "4", "--stop-timeout", "0",
                        script=script)
        self.assertEqual(r.data["exceptions"], [], r.stderr)
        names = {e["name"] for e in r.data["stats"] if e["type"] == "error"}
        self.assertIn("memcached: no reply to get within 0.3 s", names)
        self.assertIn("memcached: the server closed the connection", names)
        self.assertIn("memcached: reply line too long", names)
        self.assertIn(f"connect refused: connect to 127.0.0.1:{refused} failed: connection "
                      "refused", names)
        self.assertNotIn("not reached", names)
        self.assertEqual(r.count("connect", "memcached"), 2 * 4 + 2 + 1)  # refused: failed
        self.assertEqual(r.failures("connect", "memcached"), 2)
        # every get on a misbehaving server failed and was counted
        self.assertEqual(r.count("get", "memcached"), 2 * 4)
        self.assertEqual(r.failures("get", "memcached"), 2 * 4)


if __name__ == "__main__":
    main()
