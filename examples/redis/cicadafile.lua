-- RedisUser through every feature: commands as methods and through call(), nil and error
-- replies, pipelines (a list, and the builder), a transaction, a second client with its own
-- database, concurrent commands with cicada.gather. See docs/redis.md.
--
--   redis-server --port 6379 --save '' &
--   cicada -f examples/redis/cicadafile.lua --headless -H redis://127.0.0.1:6379 -u 20 -r 5 -t 1m
local cicada = require "cicada"
local redis = require "cicada.redis"

local Shopper = cicada.RedisUser:extend("Shopper", {
    wait_time = cicada.between(0.05, 0.2),
    timeout = 5,
})

function Shopper:on_start()
    self.id = math.random(1, 1000000)
    self.client:hset("session:" .. self.id, "user", "u" .. self.id, "cart", 0)
end

-- A cache lookup: a missing key is nil, with no error.
Shopper:task(5, function(self)
    local key = "product:" .. math.random(1, 500)
    local v, err = self.client:get(key)
    if v == nil and err == nil then
        self.client:set(key, "a product description", "EX", 30)
    end
end)

-- A cart update in one round trip; each command is recorded as its reply comes.
Shopper:task(3, function(self)
    local res, err = self.client:pipeline({
        { "HINCRBY", "session:" .. self.id, "cart", 1 },
        { "ZINCRBY", "popular", 1, "product:" .. math.random(1, 500) },
        { "EXPIRE", "session:" .. self.id, 600 },
    })
    if not res then cicada.log.debug("pipeline failed: " .. err) end
end)

-- The builder, and the top of a sorted set (an array reply).
Shopper:task(1, function(self)
    local p = self.client:pipeline()
    p:zrevrange("popular", 0, 4, "WITHSCORES")
    p:zcard("popular")
    local res = p:execute()
    if res and type(res[1]) == "table" then
        cicada.record("custom", "top products listed", 0, #res[1] / 2)
    end
end)

-- A transaction: EXEC's reply is an array of the commands' replies.
Shopper:task(1, function(self)
    local res = self.client:pipeline({
        { "MULTI" },
        { "INCR", "orders" },
        { "LPUSH", "orders:recent", self.id },
        { "LTRIM", "orders:recent", 0, 99 },
        { "EXEC" },
    })
    local exec = res and res[5]
    if type(exec) == "table" and exec[1] == false then cicada.log.warning(exec[2]) end
end)

-- An error reply is a failure with Redis's text: WRONGTYPE here, on purpose (the session is a
-- hash, not a list).
Shopper:task(1, function(self)
    local v, err = self.client:lpush("session:" .. self.id, "oops")
    if v == nil then cicada.log.debug(err) end
end)

-- Concurrent commands on one connection: each gets its own reply.
Shopper:task(1, function(self)
    local keys = {}
    for i = 1, 5 do keys[i] = "product:" .. math.random(1, 500) end
    cicada.gather({
        function() return self.client:get(keys[1]) end,
        function() return self.client:get(keys[2]) end,
        function() return self.client:mget(keys[3], keys[4], keys[5]) end,
    })
end)

function Shopper:on_stop()
    self.client:del("session:" .. self.id)
end

-- Reports read a second database through a client of their own.
local Report = cicada.RedisUser:extend("Report", {
    fixed_count = 1,
    wait_time = cicada.constant(5),
})

function Report:on_start()
    local u = redis.parse_url(self.host)
    self.stats = redis.client({ host = u.host, port = u.port, password = u.password, db = 1 })
end

Report:task(function(self)
    local orders = self.client:get("orders")
    self.stats:call("SET", "report:orders", orders or 0)
end)

return { Shopper, Report }
