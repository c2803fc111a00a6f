-- The MQTT benchmark as Locust's MqttUser works: publish returns at once (wait = false) and
-- each message is recorded when the broker has it (QoS 0: written; QoS 1: PUBACK). The QoS
-- comes from the environment, MQTT_QOS (default 1).
local cicada = require "cicada"
local qos = tonumber(os.getenv("MQTT_QOS") or "1")
local payload = string.rep("x", 64)
local opts = { qos = qos, wait = false }
local n = 0
local Bench = cicada.MqttUser:extend("Bench", {})
function Bench:on_start()
    n = n + 1
    self.topic = "bench/" .. cicada.env.worker_index .. "/" .. n
    self.client:connect()
end
Bench:task(function(self) self.client:publish(self.topic, payload, opts) end)
return { Bench }
