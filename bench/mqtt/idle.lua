-- The MQTT memory benchmark: users that connect in on_start, then wait an hour, each holding a
-- connected client (keep-alives go on every 60 s).
local cicada = require "cicada"
local Idle = cicada.MqttUser:extend("Idle", { wait_time = cicada.constant(3600) })
function Idle:on_start() self.client:connect() end
Idle:task(function() end)
return { Idle }
