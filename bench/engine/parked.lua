-- The memory benchmark: users that ran one task and are parked in wait_time for an hour.
local cicada = require "cicada"
local Parked = cicada.User:extend("Parked", { wait_time = cicada.constant(3600) })
Parked:task(function(self) self.visits = (self.visits or 0) + 1 end)
return { Parked }
