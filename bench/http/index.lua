-- The HTTP benchmark: one task, GET /index.html, no wait (as wrk does it, but as a user).
local cicada = require "cicada"
local Bench = cicada.HttpUser:extend("Bench", { verify = false })
Bench:task(function(self) self.client:get("/index.html") end)
return { Bench }
