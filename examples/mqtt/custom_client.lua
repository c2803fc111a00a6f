-- A client class of your own, as in Locust's "custom client" MQTT example: it names every
-- request "mqtt:<kind>:<qos>" instead of "<kind>:<qos>:<topic>", and adds a method of its own.
--
--   cicada -f examples/mqtt/custom_client.lua --headless -H mqtt://127.0.0.1:1883 -u 10 -r 5 -t 30s
local cicada = require "cicada"
local mqtt = require "cicada.mqtt"

local MyClient = mqtt.Client:extend({
    -- the name of each publish and subscribe in the statistics (connect and disconnect keep
    -- theirs)
    event_name = function(self, kind, qos, topic)
        return "mqtt:" .. kind .. ":" .. qos
    end,
})

-- A method of the client class: build the topic and payload in one place.
function MyClient:report(sensor, value)
    return self:publish("sensors/" .. sensor, string.format('{"value": %.2f}', value), 1)
end

local Sensor = cicada.MqttUser:extend("Sensor", {
    client_class = MyClient,
    wait_time = cicada.between(0.1, 0.5),
})

function Sensor:on_start()
    self.client:subscribe("sensors/#", 0)
end

Sensor:task(function(self)
    self.client:report("humidity", math.random() * 100)
end)

return { Sensor }
