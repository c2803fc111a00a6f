"""The extension contract: any system is tested by wrapping its client and recording request
events, here a pure-Lua fake client wrapped with cicada.measure and events.request:fire."""
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


if __name__ == "__main__":
    main()
