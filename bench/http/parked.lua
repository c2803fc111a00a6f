-- The memory benchmark: HTTP users that made one request (so each holds an open keep-alive
-- connection) and wait an hour.
local cicada = require "cicada"
local Parked = cicada.HttpUser:extend("Parked", { wait_time = cicada.constant(3600) })
Parked:task(function(self) self.client:get("/index.html") end)
return { Parked }
