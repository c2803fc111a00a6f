-- The HTTP/2 benchmark: as index.lua, each user on its own HTTP/2 connection (h2 by ALPN over
-- TLS, h2c by prior knowledge over plain TCP).
local cicada = require "cicada"
local Bench = cicada.HttpUser:extend("Bench", { verify = false, http2 = "prior_knowledge" })
Bench:task(function(self) self.client:get("/index.html") end)
return { Bench }
