-- Cache users on memcached through the C module memcached.so (make -C examples/plugin).
-- Run: cicada -f examples/plugin/cicadafile.lua --headless -H 127.0.0.1:11211
local cicada = require "cicada"
local memcached = require "memcached"

local Cache = cicada.User:extend("Cache", {
    host = "127.0.0.1:11211",
    wait_time = cicada.between(0.01, 0.05),
})

function Cache:on_start()
    local host, port = self.host:match("^([^:]+):(%d+)$")
    self.mc = assert(memcached.connect(host or self.host, tonumber(port) or 11211))
    self.n = 0
end

function Cache:on_stop()
    self.mc:close()
end

-- read-mostly, as caches are used: the misses fill the cache
Cache:task(9, "read", function(self)
    local key = "item:" .. math.random(1000)
    if self.mc:get(key) == nil then self.mc:set(key, string.rep("x", 100), 300) end
end)

Cache:task(1, "count", function(self)
    if self.mc:incr("visits") == nil then self.mc:add("visits", "0") end
end)

return { Cache }
