-- The Redis benchmark: each user sets a key and gets it back, with no wait, as
-- redis-benchmark's SET and GET tests do (one command in flight per connection, -P 1).
local cicada = require "cicada"
local value = string.rep("x", 3) -- redis-benchmark's default payload is 3 bytes
local Bench = cicada.RedisUser:extend("Bench", {})
Bench:task(function(self)
    self.client:set("key:__rand_int__", value)
    self.client:get("key:__rand_int__")
end)
return { Bench }
