-- MqttUser through every feature: connect with a will, publish with QoS 0, 1 and 2 (retained,
-- stamped for end-to-end latency), subscribe with per-topic handlers, unsubscribe, disconnect,
-- and a second client per user. See docs/mqtt.md.
--
--   mosquitto -c examples/mqtt/mosquitto.conf &
--   cicada -f examples/mqtt/cicadafile.lua --headless -H mqtt://127.0.0.1:1883 -u 20 -r 5 -t 1m
local cicada = require "cicada"
local mqtt = require "cicada.mqtt"

-- Devices publish readings; each listens for its own commands.
local Device = cicada.MqttUser:extend("Device", {
    weight = 5,
    wait_time = cicada.between(0.5, 1.5),
    keepalive = 30,
    will = { topic = "devices/offline", payload = "a device dropped", qos = 1 },
})

function Device:on_start()
    local ok, err = self.client:connect()
    if not ok then
        cicada.log.warning("device could not connect: " .. err)
        return
    end
    self.commands = 0
    -- a handler runs for each message on the filter; it must not wait
    self.client:subscribe("devices/" .. self.client.client_id .. "/commands", 1,
        function(topic, payload)
            self.commands = self.commands + 1
            if payload == "reboot" then
                -- publishing from a handler sends without waiting (and is still recorded)
                self.client:publish("devices/" .. self.client.client_id .. "/status", "rebooting",
                                    { name = "devices/{id}/status" })
            end
        end, { name = "devices/{id}/commands" })
    -- a retained state message: new subscribers get it at once
    self.client:publish("devices/" .. self.client.client_id .. "/state", "online",
                        { qos = 1, retain = true, name = "devices/{id}/state" })
end

-- QoS 0: fire and forget (waits only when the socket is full)
Device:task(5, function(self)
    self.client:publish("telemetry/temperature", string.format("%.1f", 15 + math.random() * 10))
end)

-- QoS 1, stamped: dashboards measure the delivery; "name" groups every device's topic
Device:task(3, function(self)
    local ok, err = self.client:publish("devices/" .. self.client.client_id .. "/reading",
                                        tostring(math.random(0, 100)),
                                        { qos = 1, stamp = true, name = "devices/{id}/reading" })
    if not ok then cicada.log.debug("publish failed: " .. err) end
end)

-- QoS 2: exactly once, timed to the PUBCOMP
Device:task(1, function(self)
    self.client:publish("devices/" .. self.client.client_id .. "/events", "door opened",
                        { qos = 2, name = "devices/{id}/events" })
end)

function Device:on_stop()
    self.client:publish("devices/" .. self.client.client_id .. "/state", "",
                        { qos = 1, retain = true, name = "devices/{id}/state" })
    self.client:disconnect()
end

-- Dashboards subscribe to every reading (stamped ones are recorded as deliver:1:<filter>) and
-- send commands to devices now and then.
local Dashboard = cicada.MqttUser:extend("Dashboard", {
    weight = 1,
    wait_time = cicada.between(2, 5),
    protocol = "5",
})

function Dashboard:on_start()
    self.seen = {}
    self.client:subscribe("devices/+/reading", 1, function(topic, payload, qos, retain, latency_ms)
        local id = topic:match("^devices/([^/]+)/reading$")
        if id then self.seen[#self.seen + 1] = id end
        if #self.seen > 100 then table.remove(self.seen, 1) end
    end, { name = "devices/+/reading" })
    self.client:subscribe("devices/offline", 1, function(topic, payload)
        cicada.log.info("will received: " .. payload)
    end)
end

Dashboard:task(function(self)
    local id = self.seen[#self.seen]
    if id then
        self.client:publish("devices/" .. id .. "/commands", "reboot",
                            { qos = 1, name = "devices/{id}/commands" })
    end
end)

-- Now and then a dashboard watches the temperatures for a while, with a second client.
Dashboard:task(function(self)
    local watcher = mqtt.client({ host = self.host })
    local n = 0
    watcher:subscribe("telemetry/#", 0, function() n = n + 1 end)
    cicada.sleep(1)
    watcher:unsubscribe("telemetry/#")
    watcher:disconnect()
    cicada.record("custom", "temperatures seen in 1 s", 0, n)
end)

return { Device, Dashboard }
