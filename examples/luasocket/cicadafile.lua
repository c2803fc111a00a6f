-- Debian's lua-redis, a pure-Lua Redis client written for LuaSocket, used unchanged: inside
-- cicada `require "socket"` is cooperative, so each user's commands wait for Redis without
-- holding up the other users of the thread. Each command is recorded as a request of type
-- "redis" named after the command, the way Locust's guide wraps a client library.
-- Run it (see README.md):
--   redis-server --port 6379 --save "" &
--   cicada -f examples/luasocket/cicadafile.lua --headless -H redis://127.0.0.1:6379 -u 100 -r 50 -t 30s
local cicada = require "cicada"
local redis = require "redis" -- /usr/share/lua/5.1/redis.lua, over cicada's socket module

-- A client whose every command is timed and recorded: a success, or a failure with the
-- error lua-redis raised ("connection error: timeout", a Redis error reply...).
local function recorded(client)
    return setmetatable({}, {
        __index = function(t, command)
            local method = client[command]
            if type(method) ~= "function" then return method end
            local name = command:upper()
            local f = function(_, ...)
                local ok, res = cicada.measure("redis", name, method, client, ...)
                if not ok then error(res, 0) end -- the task ends here, as Locust's would
                return res
            end
            rawset(t, command, f)
            return f
        end,
    })
end

local RedisUser = cicada.User:extend("RedisUser", { wait_time = cicada.between(0.01, 0.1) })

function RedisUser:on_start()
    -- lua-redis parses the URL itself (with LuaSocket's socket.url); ?timeout= is in seconds
    local url = self.host:gsub("/*$", "/")
    self.redis = recorded(redis.connect(url .. "?timeout=5"))
    self.id = tostring(math.random(1e9))
end

function RedisUser:on_stop()
    self.redis:quit()
end

-- a session cache: write, then read back
RedisUser:task("session", 5, function(self)
    local key = "session:" .. self.id
    self.redis:setex(key, 60, "user " .. self.id)
    assert(self.redis:get(key) == "user " .. self.id, "read back a different value")
end)

-- a page counter
RedisUser:task("counter", 3, function(self)
    self.redis:incr("page:views")
end)

-- a capped list of recent events
RedisUser:task("events", 2, function(self)
    local key = "events:" .. self.id
    self.redis:lpush(key, cicada.now())
    self.redis:ltrim(key, 0, 99)
    self.redis:lrange(key, 0, 9)
end)

return { RedisUser }
