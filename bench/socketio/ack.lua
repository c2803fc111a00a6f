-- The Socket.IO benchmark: each user calls "ack" (an emit the server acknowledges) in a loop.
local cicada = require "cicada"

local Caller = cicada.SocketIOUser:extend("Caller", { wait_time = cicada.constant(0) })

function Caller:on_start()
    assert(self.client:connect())
end

Caller:task(function(self)
    self.client:call("ack", "ping")
end)

return { Caller }
