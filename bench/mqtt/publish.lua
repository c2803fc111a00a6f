-- The MQTT benchmark: each user connects in on_start, then publishes a 64-byte message to its
-- own topic with no wait, waiting only for the broker (QoS 0: the write; QoS 1: the PUBACK).
-- The QoS comes from the environment, MQTT_QOS (default 1).
local cicada = require "cicada"
local qos = tonumber(os.getenv("MQTT_QOS") or "1")
local payload = string.rep("x", 64)
local n = 0
local Bench = cicada.MqttUser:extend("Bench", {})
function Bench:on_start()
    n = n + 1
    self.topic = "bench/" .. cicada.env.worker_index .. "/" .. n
    self.client:connect()
end
Bench:task(function(self) self.client:publish(self.topic, payload, qos) end)
return { Bench }
