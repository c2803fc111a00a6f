"""The extension contract: any system is tested by wrapping its client and recording request
events, here a pure-Lua fake client wrapped with cicada.measure and events.request:fire."""
import os

from harness import CicadaTest, main

FAKEKV = """
-- fakekv.lua: a pure-Lua client of a pretend key-value service; each call takes a little time.
local cicada = require "cicada"
local M = {}
M.__index = M
function M.new(latency) return setmetatable({ data = {}, latency = latency }, M) end
function M:get(key)
    cicada.sleep(self.latency)
    local v = self.data[key]
    if v == nil then error("no such key: " .. key, 0) end
    return v
end
function M:set(key, value)
    cicada.sleep(self.latency)
    self.data[key] = value
    return true
end
return M
"""

SCRIPT = """
local cicada = require "cicada"
local fakekv = require "fakekv"

-- every method call on the wrapped client is one request event, as Locust's guide does it
local function wrap(raw)
    return setmetatable({}, { __index = function(_, method)
        return function(_, ...)
            local t0 = cicada.monotonic()
            local ok, res = pcall(raw[method], raw, ...)
            cicada.events.request:fire {
                request_type = "kv",
                name = method,
                response_time = (cicada.monotonic() - t0) * 1000,
                response_length = ok and #tostring(res) or 0,
                exception = (not ok) and res or nil,
            }
            return ok and res or nil
        end
    end })
end

cicada.events.request:add_listener(function(r)
    if r.request_type == "kv" then cicada.record("check", "heard", 0, 0) end
end)

local KvUser = cicada.User:extend("KvUser", { wait_time = cicada.constant(0.001) })
function KvUser:on_start()
    self.client = wrap(fakekv.new(0.001))
    self.n = 0
end
KvUser:task(function(self)
    self.n = self.n + 1
    self.client:set("k" .. self.n, "value-" .. self.n) -- 7 or 8 bytes
    self.client:get("k" .. self.n)
    self.client:get("missing")
    -- cicada.measure: times a block, success or failure carrying the error
    cicada.measure("kv", "measured", function()
        if self.n % 2 == 0 then error("even", 0) end
    end)
    if self.n == 20 then error(cicada.StopUser) end
end)
return { KvUser }
"""


class Extension(CicadaTest):
    def test_wrapped_pure_lua_client(self):
        self.write("fakekv.lua", FAKEKV)
        r = self.cicada("--headless", "-u", "3", "-r", "100", "-t", "3",
                        script=SCRIPT)
        self.assertEqual(r.rc, 1, r.stderr)  # failures were recorded
        self.assertEqual(r.count("set", "kv"), 60)
        self.assertEqual(r.failures("set", "kv"), 0)
        self.assertEqual(r.count("get", "kv"), 120)
        self.assertEqual(r.failures("get", "kv"), 60)
        # 'value-1' .. 'value-9' are 7 bytes, 'value-10' .. 'value-20' 8: per user 63 + 88
        self.assertEqual(r.entry("get", "kv")["total_content_length"], 3 * (63 + 88))
        self.assertEqual(r.count("measured", "kv"), 60)
        self.assertEqual(r.failures("measured", "kv"), 30)
        errors = {(f["name"], f["error"]): f["occurrences"] for f in r.data["failures"]}
        self.assertEqual(errors[("measured", "even")], 30)
        self.assertEqual(sum(n for (name, e), n in errors.items()
                             if name == "get" and e == "no such key: missing"), 60)
        # the Lua listener heard every event fired through events.request (not the measured ones)
        self.assertEqual(r.count("heard", "check"), 180)
        self.assertEqual(r.data["exceptions"], [])

OFFLOAD = """
local cicada = require "cicada"
local fifo = ...

-- Reader blocks in a plain read of a FIFO, on the offload pool; Writer, on the same loop (one
-- thread), is the one who writes to it. Were the read made on the loop, Writer could never
-- run: the run would hang.
local reading = false
local Reader = cicada.User:extend("Reader", { fixed_count = 1, wait_time = cicada.constant(60) })
Reader:task(function(self)
    reading = true
    local line, n, t = cicada.offload(function(path, opts)
        local f = assert(io.open(path, "r"))
        local l = f:read("*l")
        f:close()
        return l, #l * opts.k, { nested = { "x", "y" }, nan = 0 / 0, big = math.huge }
    end, fifo, { k = 10 })
    local good = t.nested[2] == "y" and t.nan ~= t.nan and t.big == math.huge
    cicada.record("offload", line, 1, n, (not good) and "bad values" or nil)
    local ok, err = pcall(cicada.offload, function() error("boom in the pool", 0) end)
    cicada.record("offload", "raised", 1, 0, ok and "no error" or err)
    local up = 1
    ok, err = pcall(function() local r = cicada.offload(function() return up end); return r end)
    cicada.record("offload", "upvalue", 1, 0, ok and "no error" or err)
    ok, err = pcall(cicada.offload, function(f) return f end, print)
    cicada.record("offload", "argument", 1, 0, ok and "no error" or err)
    -- a user killed at the end of the run (2 s) while its work is in flight: the work ends
    -- on its own, its result is dropped
    cicada.offload(function()
        local ffi = require "ffi"
        if not rawget(_G, "usleep") then ffi.cdef "int usleep(unsigned int)"; usleep = true end
        ffi.C.usleep(3000000)
    end)
    cicada.record("offload", "not reached", 1, 0)
end)

local Writer = cicada.User:extend("Writer", { fixed_count = 1, wait_time = cicada.constant(60) })
Writer:task(function(self)
    -- opening a FIFO blocks until its reader opens it: wait until the read is on its way
    while not reading do cicada.sleep(0.05) end
    local f = assert(io.open(fifo, "w"))
    f:write("hello from the loop\\n")
    f:close()
    cicada.record("wrote", "fifo", 1, 0)
end)
return { Reader, Writer }
"""


class Offload(CicadaTest):
    def test_blocking_work_leaves_the_loop_free(self):
        fifo = self.path("fifo")
        os.mkfifo(fifo)
        script = OFFLOAD.replace("local fifo = ...", "local fifo = %r" % fifo)
        r = self.cicada("--headless", "--threads", "1", "-u", "2", "-r", "10", "-t", "2",
                        "--stop-timeout", "0",
                        script=script, timeout=60)
        self.assertEqual(r.rc, 1, r.stderr)  # the three expected failures below
        self.assertEqual(r.count("fifo", "wrote"), 1)
        line = r.entry("hello from the loop", "offload")
        self.assertIsNotNone(line, r.stderr)
        self.assertEqual(line["num_failures"], 0, r.data["failures"])
        self.assertEqual(line["total_content_length"], len("hello from the loop") * 10)
        errors = {f["name"]: f["error"] for f in r.data["failures"]}
        self.assertEqual(errors["raised"], "boom in the pool")
        self.assertIn("uses 'up' from outside it", errors["upvalue"])
        self.assertIn("cicadafile.lua:", errors["upvalue"])  # the caller's line
        self.assertIn("cannot pass a function", errors["argument"])
        self.assertEqual(r.count("not reached", "offload"), 0)
        self.assertEqual(r.data["exceptions"], [])


if __name__ == "__main__":
    main()
