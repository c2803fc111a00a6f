"""MqttUser against a real mosquitto broker started on a free port (plain, TLS, with a password
file), a broker stopped in the middle of a run, and a server that misbehaves on purpose; and
examples/mqtt run as its README says."""
import time

import servers
from harness import CicadaTest, checks_prelude, main
from harness import one_shot as harness_one_shot

# A script's checks become requests of type "check": a failed check is a failure whose error
# says what was wrong, which the test then shows.
CHECK = checks_prelude("cicada.mqtt", "mqtt") + """
-- Waits (a bounded number of short sleeps) until fn() is true.
local function wait_for(fn)
    for _ = 1, 300 do
        if fn() then return true end
        cicada.sleep(0.01)
    end
    return fn()
end
"""


def one_shot(body, attrs=""):
    """A user that runs |body| once in on_start, then ends the test."""
    return harness_one_shot(CHECK, "MqttUser", body, attrs)


class MqttTest(CicadaTest):
    def run_checks(self, script, host, *args, users=1, run_time="30"):
        return super().run_checks(script, host, *args, users=users, run_time=run_time)


class Broker(MqttTest):
    @classmethod
    def setUpClass(cls):
        cls.broker = servers.Mosquitto()

    @classmethod
    def tearDownClass(cls):
        cls.broker.stop()

    def host(self):
        return f"mqtt://127.0.0.1:{self.broker.port}"

    def test_publish_subscribe_names_and_delivery(self):
        r = self.run_checks(one_shot("""
    local c = self.client
    check("connect", c:connect())
    check("connected", c:is_connected())
    local got = {}
    local g, err = c:subscribe("e2e/+/data", 2, function(topic, payload, qos, retain, lat)
        got[#got + 1] = { topic = topic, payload = payload, qos = qos, lat = lat }
    end)
    check("granted 2", g == 2, tostring(g) .. " " .. tostring(err))
    for qos = 0, 2 do
        local ok, e = c:publish("e2e/q" .. qos .. "/data", "m" .. qos, { qos = qos, stamp = true })
        check("publish " .. qos, ok, e)
    end
    check("publish plain", c:publish("e2e/plain/data", "plain", 1))
    check("all four back", wait_for(function() return #got == 4 end), tostring(#got))
    table.sort(got, function(a, b) return a.topic < b.topic end)
    check("plain payload", got[1].payload == "plain" and got[1].lat == nil and got[1].qos == 1)
    for i = 2, 4 do
        local m = got[i]
        check("stamp stripped", m.payload == "m" .. (i - 2), m.payload)
        check("latency given", type(m.lat) == "number" and m.lat >= 0, tostring(m.lat))
        check("delivered qos", m.qos == i - 2, tostring(m.qos))
    end
    check("unsubscribe", c:unsubscribe("e2e/+/data"))
    check("publish after", c:publish("e2e/x/data", "after", 1))
    cicada.sleep(0.2)
    check("no handler after unsubscribe", #got == 4, tostring(#got))
    check("disconnect", c:disconnect())
    check("disconnected", not c:is_connected())
"""), self.host())
        for name in ("connect", "disconnect", "subscribe:2:e2e/+/data", "unsubscribe:e2e/+/data",
                     "publish:0:e2e/q0/data", "publish:1:e2e/q1/data", "publish:2:e2e/q2/data",
                     "publish:1:e2e/plain/data", "deliver:0:e2e/+/data", "deliver:1:e2e/+/data",
                     "deliver:2:e2e/+/data"):
            self.assertEqual(r.count(name, "MQTT"), 1, name)
            self.assertEqual(r.failures(name, "MQTT"), 0, name)
        # a stamped payload is the script's bytes plus the 12-byte stamp
        self.assertEqual(r.entry("publish:1:e2e/q1/data", "MQTT")["total_content_length"], 14)
        self.assertEqual(r.entry("deliver:1:e2e/+/data", "MQTT")["total_content_length"], 2)
        self.assertEqual(r.entry("publish:1:e2e/plain/data", "MQTT")["total_content_length"], 5)

    def test_retain_will_and_persistent_session(self):
        self.run_checks(one_shot("""
    local c = self.client
    check("retain", c:publish("e2e/state", "on", { qos = 1, retain = true }))
    local seen
    check("subscribe", c:subscribe("e2e/state", 1, function(t, p, q, retain) seen = { p, retain } end))
    check("retained comes", wait_for(function() return seen end))
    check("retain flag", seen and seen[1] == "on" and seen[2] == true)
    -- a second client with a will: closed without DISCONNECT, the broker publishes the will
    local will
    check("sub will", c:subscribe("e2e/will", 1, function(t, p) will = p end))
    local other = mqtt.client({ host = self.host, will = { topic = "e2e/will", payload = "gone", qos = 1 } })
    check("other connects", other:connect())
    other:close()
    check("will delivered", wait_for(function() return will == "gone" end), tostring(will))
    -- a persistent session keeps its subscription across connections
    local p = mqtt.client({ host = self.host, client_id = "e2e-persistent", clean_session = false })
    local n = 0
    check("p sub", p:subscribe("e2e/queued", 1, function() n = n + 1 end))
    check("p disconnect", p:disconnect())
    check("queued publish", c:publish("e2e/queued", "while away", 1))
    p:on_message(function() n = n + 1 end)
    check("p reconnects", p:connect())
    check("queued message comes", wait_for(function() return n == 1 end), tostring(n))
    p:close()
    c:publish("e2e/state", "", { qos = 1, retain = true })
"""), self.host())

    def test_mqtt5_and_handler_errors(self):
        script = CHECK + """
local U = cicada.MqttUser:extend("U", { protocol = "5", wait_time = cicada.constant(0.01) })
local n, errors = 0, 0
function U:on_start()
    check("v5 subscribe", self.client:subscribe("e2e5/#", 1, function(topic, payload)
        n = n + 1
        if payload == "boom" then error("handler failed on purpose") end
    end))
end
U:task(function(self)
    check("v5 publish 2", self.client:publish("e2e5/a", "x", 2))
    check("v5 publish boom", self.client:publish("e2e5/b", "boom", 1))
    if n >= 20 then error(cicada.StopTest) end
end)
return { U }
"""
        r = self.cicada("--headless", "-u", "1", "-r", "10", "-t", "30", "-H", self.host(),
                        script=script)
        failed = [f for f in r.data["failures"] if f["method"] == "check"]
        self.assertEqual(failed, [], r.stderr[-2000:])
        self.assertGreater(r.count("publish:2:e2e5/a", "MQTT"), 0)
        self.assertEqual(r.failures("publish:2:e2e5/a", "MQTT"), 0)
        # the handler's error is the script's: in the exceptions table, and the user went on
        excs = r.data["exceptions"]
        self.assertEqual(len(excs), 1, excs)
        self.assertIn("handler failed on purpose", excs[0]["message"])
        self.assertGreaterEqual(excs[0]["count"], 2)

    def test_custom_client_names(self):
        script = CHECK + """
local MyClient = mqtt.Client:extend({
    event_name = function(self, kind, qos, topic) return "mqtt:" .. kind .. ":" .. qos end,
})
local U = cicada.MqttUser:extend("U", { client_class = MyClient })
function U:on_start()
    check("sub", self.client:subscribe("e2e/custom/#", 1))
    check("pub", self.client:publish("e2e/custom/1", "x", 1))
    check("pub", self.client:publish("e2e/custom/2", "x", 0))
    error(cicada.StopTest)
end
U:task(function() end)
return { U }
"""
        r = self.run_checks(script, self.host())
        self.assertEqual(r.count("mqtt:publish:1", "MQTT"), 1)
        self.assertEqual(r.count("mqtt:publish:0", "MQTT"), 1)
        self.assertEqual(r.count("mqtt:subscribe:1", "MQTT"), 1)
        self.assertEqual(r.count("connect", "MQTT"), 1)

    def test_publish_without_waiting(self):
        script = """
local cicada = require "cicada"
local U = cicada.MqttUser:extend("U", { wait_time = cicada.constant(0) })
local opts = { qos = 1, wait = false }
function U:on_start() self.client:connect() end
U:task(function(self) self.client:publish("e2e/nowait", "x", opts) end)
return { U }
"""
        r = self.cicada("--headless", "-u", "10", "-r", "100", "-t", "3", "-H", self.host(),
                        script=script)
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        # recorded as the acknowledgements come; what was in flight at the end is not failed
        self.assertGreater(r.count("publish:1:e2e/nowait", "MQTT"), 100)
        self.assertEqual(r.data["total"]["num_failures"], 0, r.data["failures"])

    def test_many_users_load(self):
        script = """
local cicada = require "cicada"
local U = cicada.MqttUser:extend("U", { wait_time = cicada.constant(0.01) })
function U:on_start() self.client:connect() end
U:task(function(self) self.client:publish("e2e/load/" .. (self.i or 1), "x", 1) end)
return { U }
"""
        r = self.cicada("--headless", "-u", "50", "-r", "100", "-t", "3", "-H", self.host(),
                        script=script)
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        self.assertEqual(r.count("connect", "MQTT"), 50)
        self.assertGreater(r.count("publish:1:e2e/load/1", "MQTT"), 50)
        self.assertEqual(r.data["total"]["num_failures"], 0, r.data["failures"])

    def run_example(self, name, users):
        """Runs examples/mqtt/|name| as its README says, for 3 s with |users| users; asserts
        that it ended well, with no failure and no exception. Returns the Result."""
        r = self.example("mqtt", self.host(), users, 3, file=name)
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        return r

    def test_example(self):
        # weights 5:1: five devices and a dashboard
        r = self.run_example("cicadafile.lua", 6)
        self.assertGreaterEqual(r.count("connect", "MQTT"), 6)
        self.assertEqual(r.count("subscribe:1:devices/{id}/commands", "MQTT"), 5)
        self.assertGreaterEqual(r.count("publish:1:devices/{id}/state", "MQTT"), 5)
        self.assertEqual(r.count("subscribe:1:devices/+/reading", "MQTT"), 1)
        self.assertEqual(r.count("subscribe:1:devices/offline", "MQTT"), 1)
        tasks = sum(r.count(n, "MQTT") for n in ("publish:0:telemetry/temperature",
                                                 "publish:1:devices/{id}/reading",
                                                 "publish:2:devices/{id}/events"))
        self.assertGreater(tasks, 0, r.data["stats"])

    def test_custom_client_example(self):
        r = self.run_example("custom_client.lua", 5)
        self.assertEqual(r.count("connect", "MQTT"), 5)
        self.assertEqual(r.count("mqtt:subscribe:0", "MQTT"), 5)
        self.assertGreater(r.count("mqtt:publish:1", "MQTT"), 0)
        # every publish and subscribe goes by the class's names, none by its topic
        names = {e["name"] for e in r.data["stats"]}
        self.assertEqual(names, {"connect", "mqtt:subscribe:0", "mqtt:publish:1"})


class Credentials(MqttTest):
    @classmethod
    def setUpClass(cls):
        cls.broker = servers.Mosquitto(users={"alice": "secret"})

    @classmethod
    def tearDownClass(cls):
        cls.broker.stop()

    def test_refused_and_accepted(self):
        host = f"mqtt://127.0.0.1:{self.broker.port}"
        r = self.run_checks(one_shot("""
    local ok, err = self.client:connect()
    check("refused", ok == nil and err:find("not authorised", 1, true), tostring(err))
    -- an operation tries to connect, and fails as the connect did
    local ok2, err2 = self.client:publish("t", "x", 1)
    check("publish refused", ok2 == nil and err2:find("not connected", 1, true), tostring(err2))
    local good = mqtt.client({ host = self.host, username = "alice", password = "secret" })
    check("accepted", good:connect())
    check("publish", good:publish("t", "x", 1))
    good:disconnect()
    local v5 = mqtt.client({ host = self.host, username = "alice", password = "nope", protocol = 5 })
    local ok3, err3 = v5:connect()
    check("refused v5", ok3 == nil and err3:find("Not authorized", 1, true), tostring(err3))
""", attrs='username = "alice", password = "wrong"'), host)
        self.assertEqual(r.count("connect", "MQTT"), 4)
        self.assertEqual(r.failures("connect", "MQTT"), 3)
        errs = self.errors(r, "connect")
        self.assertTrue(any("not authorised (CONNACK 5)" in e for e in errs), errs)
        self.assertTrue(any("Not authorized (reason 0x87)" in e for e in errs), errs)
        self.assertEqual(r.failures("publish:1:t", "MQTT"), 1)


class Tls(MqttTest):
    @classmethod
    def setUpClass(cls):
        cls.broker = servers.Mosquitto(tls=True)

    @classmethod
    def tearDownClass(cls):
        cls.broker.stop()

    def test_tls_verification(self):
        b = self.broker
        r = self.run_checks(one_shot(f"""
    local ca = "{b.path('ca.pem')}"
    local good = mqtt.client({{ host = "mqtts://localhost:{b.tls_port}", tls = {{ ca_file = ca }} }})
    check("verified", good:connect())
    check("tls publish", good:publish("tls/t", "x", 2))
    good:disconnect()
    local byip = mqtt.client({{ host = "mqtts://127.0.0.1:{b.tls_port}", tls = {{ ca_file = ca }} }})
    check("ip in the certificate", byip:connect())
    byip:close()
    local untrusted = mqtt.client({{ host = "mqtts://localhost:{b.tls_port}" }})
    local ok, err = untrusted:connect()
    check("untrusted", ok == nil and err:find("certificate verification failed", 1, true), tostring(err))
    local insecure = mqtt.client({{ host = "mqtts://localhost:{b.tls_port}", verify = false }})
    check("insecure", insecure:connect())
    insecure:close()
"""), f"mqtt://127.0.0.1:{b.port}")
        self.assertEqual(r.failures("connect", "MQTT"), 1)
        self.assertEqual(r.count("publish:2:tls/t", "MQTT"), 1)
        self.assertEqual(r.failures("publish:2:tls/t", "MQTT"), 0)


class BrokerDown(MqttTest):
    def test_broker_stopped_mid_run(self):
        broker = servers.Mosquitto()
        try:
            script = CHECK + """
local U = cicada.MqttUser:extend("U", { wait_time = cicada.constant(0.05), connect_timeout = 2,
                                         timeout = 2, keepalive = 5 })
function U:on_start() self.client:connect() end
U:task(function(self)
    local ok, err = self.client:publish("down/t", "x", 1)
    if not ok then
        self.failed = true
    elseif self.failed then
        self.failed = false
        cicada.record("check", "recovered", 0, 0, nil)
    end
end)
return { U }
"""
            p = self.start("--headless", "-u", "5", "-r", "50", "-t", "14", "-H",
                           f"mqtt://127.0.0.1:{broker.port}", "--json-file",
                           self.path("result.json"), script=script)
            time.sleep(3)
            broker.kill()
            time.sleep(3)
            broker.start()
            out, err = p.communicate(timeout=120)
            self.assertIn(p.returncode, (0, 1), err[-3000:])
            from harness import Result
            r = Result(p, out, err, self.path("result.json"))
            pub = r.entry("publish:1:down/t", "MQTT")
            self.assertGreater(pub["num_requests"], 0)
            self.assertGreater(pub["num_failures"], 0)
            self.assertGreater(r.count("recovered", "check"), 0, err[-3000:])
            errs = self.errors(r, "publish:1:down/t") + self.errors(r, "connect")
            self.assertTrue(all("127.0.0.1" in e for e in errs), errs)
            self.assertTrue(any("connection refused" in e or "closed the connection" in e
                                or "connection lost" in e for e in errs), errs)
            self.assertEqual(r.data["exceptions"], [])
        finally:
            broker.stop()


class Faults(MqttTest):
    @classmethod
    def setUpClass(cls):
        cls.faults = servers.mqtt_faults()

    @classmethod
    def tearDownClass(cls):
        cls.faults.stop()

    def test_faults_are_counted_failures(self):
        m = self.faults.modes
        r = self.run_checks(one_shot(f"""
    local function try(url, what)
        local c = mqtt.client({{ host = url, connect_timeout = 1, timeout = 1 }})
        local ok, err = c:connect()
        c:close()
        check(what, ok == nil and err, tostring(err))
        return err or ""
    end
    local e1 = try("{m['garbage']}", "garbage")
    check("garbage error", e1:find("protocol error", 1, true), e1)
    local e2 = try("{m['close_mid']}", "close_mid")
    check("close_mid error", e2:find("closed the connection before accepting it", 1, true), e2)
    local e3 = try("{m['stall']}", "stall")
    check("stall error", e3:find("timed out after 1.0 s", 1, true), e3)
    local d = mqtt.client({{ host = "{m['drop_pub']}", timeout = 1 }})
    check("drop_pub connects", d:connect())
    local ok, err = d:publish("t", "x", 1)
    check("drop_pub publish fails", ok == nil and err:find("connection lost before the acknowledgement", 1, true), tostring(err))
    d:close()
    local b = mqtt.client({{ host = "{m['bad_length']}", timeout = 1 }})
    b:connect()
    local ok2, err2 = b:publish("t", "x", 1)
    check("bad_length fails", ok2 == nil and err2:find("protocol error", 1, true), tostring(err2))
    b:close()
    local refused = mqtt.client({{ host = "mqtt://127.0.0.1:{servers.free_port()}" }})
    local ok3, err3 = refused:connect()
    check("refused", ok3 == nil and err3:find("connection refused", 1, true), tostring(err3))
"""), self.faults.url)
        self.assertEqual(r.failures("connect", "MQTT"), 4)
        self.assertEqual(r.failures("publish:1:t", "MQTT"), 2)

    def test_no_acknowledgement_after_connack(self):
        # the broker accepts the connection, then never answers: each wait ends at the timeout
        r = self.run_checks(one_shot(f"""
    local c = mqtt.client({{ host = "{self.faults.modes['stall_ack']}", timeout = 0.5 }})
    check("connects", c:connect())
    check("qos 0 waits for nothing", c:publish("t", "x", 0))
    local ok, err = c:publish("t", "x", 1)
    check("qos 1 times out", ok == nil and err:find("no publish acknowledgement within 0.5 s", 1,
          true), tostring(err))
    ok, err = c:subscribe("t", 1)
    check("subscribe times out", ok == nil and err:find("no SUBACK within 0.5 s", 1, true),
          tostring(err))
    c:close()
"""), self.faults.url)
        self.assertEqual(r.failures("connect", "MQTT"), 0)
        self.assertEqual(r.count("publish:0:t", "MQTT"), 1)
        self.assertEqual(r.failures("publish:0:t", "MQTT"), 0)
        self.assertEqual(r.count("publish:1:t", "MQTT"), 1)
        self.assertEqual(self.errors(r, "publish:1:t"),
                         ["no publish acknowledgement within 0.5 s"])
        self.assertEqual(self.errors(r, "subscribe:1:t"), ["no SUBACK within 0.5 s"])


if __name__ == "__main__":
    main()
