"""KafkaUser against librdkafka's mock cluster, run in a helper process of ours
(tests/servers/kafka_mock.c): producing, consuming by assignment and in a group, end-to-end
latency, a full producer queue, brokers taken down, and examples/kafka as its README says."""
import socket
import threading
import time

import servers
from harness import CicadaTest, checks_prelude, main
from harness import one_shot as harness_one_shot

CHECK = checks_prelude("cicada.kafka", "kafka")

# the mock answers a fetch only when its wait runs out: keep that short
FAST_FETCH = '["fetch.wait.max.ms"] = "10"'


def one_shot(body, attrs=""):
    """A KafkaUser that runs |body| once in on_start, then ends the test."""
    return harness_one_shot(CHECK, "KafkaUser", body, attrs)


class KafkaTest(CicadaTest):
    def run_checks(self, script, host, *args, users=1, run_time="90"):
        return super().run_checks(script, host, *args, users=users, run_time=run_time, timeout=180)


class Kafka(KafkaTest):
    @classmethod
    def setUpClass(cls):
        cls.mock = servers.kafka_mock(3, ["orders:3", "events:1", "grouped:2", "full:1",
                                          "many:3"])

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()

    def test_produce_and_consume_assigned(self):
        r = self.run_checks(one_shot(f"""
    local c = self.kafka:consumer({{
        assign = {{ {{ "orders", 0, "beginning" }}, {{ "orders", 1, "beginning" }},
                   {{ "orders", 2, "beginning" }} }},
        settings = {{ {FAST_FETCH} }},
    }})
    for i = 1, 60 do
        local ok, partition, offset = self.kafka:produce("orders", "value " .. i, {{
            key = "k" .. i,
            headers = {{ source = "test", {{ "n", tostring(i) }} }},
            partition = (i - 1) % 3,
        }})
        check("delivered", ok == true and partition == (i - 1) % 3 and offset >= 0,
              tostring(partition))
    end
    self.kafka:produce("orders", "named", {{ name = "orders (named)", partition = 0 }})
    self.kafka:produce("orders", "plain", {{ partition = 1, stamp = false }})
    local seen, plain, named = {{}}, false, false
    local deadline = cicada.monotonic() + 30
    while cicada.monotonic() < deadline do
        local m, err = c:poll(1)
        if m then
            if m.value == "plain" then
                plain = m.latency_ms == nil and m.headers == nil
            elseif m.value == "named" then
                named = m.latency_ms ~= nil
            elseif m.key then
                local i = tonumber(m.key:sub(2))
                seen[i] = true
                check("message", m.value == "value " .. i and m.topic == "orders"
                      and m.partition == (i - 1) % 3 and m.headers.source == "test"
                      and m.headers.n == tostring(i) and m.latency_ms >= 0
                      and m.timestamp > 0, m.value)
            end
        end
        local n = 0
        for _ in pairs(seen) do n = n + 1 end
        if n == 60 and plain and named then break end
    end
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    check("all consumed", n == 60 and plain and named, tostring(n))
    c:close()
"""), self.mock.url)
        self.assertEqual(r.count("orders", "kafka"), 61)
        self.assertEqual(r.failures("orders", "kafka"), 0)
        self.assertEqual(r.count("orders (named)", "kafka"), 1)
        # the stamped messages, each with its end-to-end latency
        self.assertEqual(r.count("e2e:orders", "kafka"), 61)

    def test_consumer_group(self):
        r = self.run_checks(one_shot(f"""
    local c = self.kafka:consumer({{
        group_id = "readers", topics = {{ "grouped" }}, offset_reset = "earliest",
        settings = {{ {FAST_FETCH}, ["session.timeout.ms"] = "6000" }},
    }})
    for i = 1, 20 do
        check("delivered", self.kafka:produce("grouped", "m" .. i, {{ key = tostring(i) }}))
    end
    local got = 0
    local deadline = cicada.monotonic() + 60
    while got < 20 and cicada.monotonic() < deadline do
        local m = c:poll(1)
        if m then got = got + 1 end
    end
    check("group consumed", got == 20, tostring(got))
    local m, err = c:poll(0)
    check("nothing more", m == nil and err == "timeout", tostring(err))
    c:close()
    check("closed", not pcall(c.poll, c, 0))
"""), self.mock.url)
        self.assertEqual(r.count("e2e:grouped", "kafka"), 20)

    def test_full_queue_suspends_producers(self):
        # a queue of 5 messages and 400 produces at once: they wait for room, none fails
        r = self.run_checks(one_shot("""
    local fns = {}
    for i = 1, 400 do
        fns[i] = function() return (self.kafka:produce("full", "x" .. i)) end
    end
    local results = cicada.gather(fns)
    local ok = 0
    for i = 1, 400 do if results[i] == true then ok = ok + 1 end end
    check("all delivered", ok == 400, tostring(ok))
    check("waited for room", self.kafka:queue_full_waits() > 0)
""", attrs='producer_settings = { ["queue.buffering.max.messages"] = 5, ["linger.ms"] = 2 }'),
            self.mock.url)
        self.assertEqual(r.count("full", "kafka"), 400)
        self.assertEqual(r.failures("full", "kafka"), 0)

    def test_many_users_share_a_producer(self):
        script = CHECK + """
local W = cicada.KafkaUser:extend("W", { wait_time = cicada.constant(0),
                                         producer_settings = { ["linger.ms"] = 1 } })
W:task(function(self)
    local ok, err = self.kafka:produce("many", "payload", { key = tostring(math.random(1000)) })
    check("delivered", ok, err)
end)
return { W }
"""
        r = self.run_checks(script, self.mock.url, "--threads", "2", users=20, run_time="3")
        self.assertGreater(r.count("many", "kafka"), 0)
        self.assertEqual(r.failures("many", "kafka"), 0)

    def test_bad_settings_and_arguments(self):
        r = self.cicada("--headless", "-u", "1", "-r", "10", "-t", "30", "-H", self.mock.url,
                        script=one_shot("""
    local ok, e = pcall(self.kafka.produce, self.kafka, "events", "x", { headers = { a = {} } })
    check("bad header", not ok and tostring(e):find("headers") ~= nil, tostring(e))
    local bad = kafka.client({ bootstrap = self.host, producer = { ["no.such.setting"] = 1 } })
    ok, e = pcall(bad.produce, bad, "events", "x")
    check("bad setting", not ok and tostring(e):find("no.such.setting") ~= nil, tostring(e))
    ok, e = pcall(self.kafka.consumer, self.kafka, { topics = { "orders" }, assign = { { "orders", 0 } } })
    check("topics or assign", not ok, tostring(e))
    ok, e = pcall(self.kafka.consumer, self.kafka, { topics = { "orders" } })
    check("no group", not ok and tostring(e):find("needs a group (group_id)", 1, true) ~= nil,
          tostring(e))
    ok, e = pcall(self.kafka.consumer, self.kafka, { assign = { { "orders", 0, "sideways" } } })
    check("bad offset", not ok and tostring(e):find("sideways") ~= nil, tostring(e))
"""))
        self.assertEqual([f for f in r.data["failures"] if f["method"] == "check"], [],
                         r.stderr[-2000:])
        self.assertEqual(r.data["exceptions"], [])

    def test_missing_host(self):
        r = self.cicada("--headless", "-u", "1", "-t", "5", want_json=False, script=CHECK + """
local U = cicada.KafkaUser:extend("U", {})
U:task(function() end)
return { U }
""")
        self.assertNotEqual(r.rc, 0)
        self.assertIn("has no host", r.stderr)


class Example(KafkaTest):
    """examples/kafka as its README says, on a mock of its own: in Kafka's, the example's
    orders would reach Kafka.test_produce_and_consume_assigned, which reads "orders" from the
    beginning."""

    @classmethod
    def setUpClass(cls):
        cls.mock = servers.kafka_mock(3, ["orders:3"])

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()

    def test_example(self):
        # the reader's group gets its partitions about 3 s in on the mock: 10 s leaves it time
        # to consume on a loaded machine
        r = self.example("kafka", self.mock.bootstrap, 5, 10)
        for name in ("orders", "orders (64 KiB)", "e2e:orders"):
            self.assertGreater(r.count(name, "kafka"), 0, (name, r.data["stats"]))
        self.assertEqual(r.rc, 0, r.stderr[-2000:])


class BrokerDown(KafkaTest):
    """Brokers taken down: produces fail with librdkafka's error once their message timeout
    runs out, and are counted; the run ends on time, with no crash or hang."""

    def setUp(self):
        super().setUp()
        self.mock = servers.kafka_mock(3, ["down:3"])

    def tearDown(self):
        self.mock.stop()
        super().tearDown()

    SCRIPT = CHECK + """
local W = cicada.KafkaUser:extend("W", {
    wait_time = cicada.constant(0.01),
    producer_settings = { ["message.timeout.ms"] = 1500, ["linger.ms"] = 1,
                          ["queue.buffering.max.messages"] = 20 },
})
W:task(function(self)
    self.kafka:produce("down", "x", { partition = math.random(0, 2) })
end)
local R = cicada.KafkaUser:extend("R", { fixed_count = 1 })
function R:on_start()
    self.c = self.kafka:consumer({ assign = { { "down", 0, "end" }, { "down", 1, "end" },
                                              { "down", 2, "end" } },
                                   settings = { ["fetch.wait.max.ms"] = "10" } })
end
R:task(function(self) self.c:poll(0.5) end)
return { W, R }
"""

    def run_with_downs(self, brokers):
        """Runs the script for 7 s, taking |brokers| down after 2 s; returns the JSON."""
        p = self.start("--headless", "-u", "6", "-r", "100", "-t", "7", "-H", self.mock.url,
                       "--json-file", self.path("result.json"), script=self.SCRIPT)
        try:
            time.sleep(2)
            for b in brokers:
                self.mock.down(b)
            out, err = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertIn(p.returncode, (0, 1), err[-3000:])
        import json
        with open(self.path("result.json")) as f:
            data = json.load(f)
        self.assertEqual(data["exceptions"], [])
        e = next(s for s in data["stats"] if s["name"] == "down" and s["type"] == "kafka")
        errors = {f["error"] for f in data["failures"] if f["name"] == "down"}
        self.assertTrue(errors <= {"Local: Message timed out"}, errors)
        self.assertGreater(e["num_failures"], 0, err[-2000:])
        return e, err

    def test_one_broker_down_mid_run(self):
        e, err = self.run_with_downs([1])
        # the partitions led by the other brokers carry on
        self.assertGreater(e["num_requests"] - e["num_failures"], 0, err[-2000:])

    def test_every_broker_down_mid_run(self):
        self.run_with_downs([1, 2, 3])

    def test_every_broker_down_from_the_start(self):
        # nothing is ever delivered: whatever is recorded is a failure, and the run ends on
        # time with users still waiting on messages in librdkafka's queue
        for b in (1, 2, 3):
            self.mock.down(b)
        r = self.cicada("--headless", "-u", "4", "-r", "100", "-t", "3", "-H", self.mock.url,
                        script=self.SCRIPT, timeout=120)
        self.assertIn(r.rc, (0, 1), r.stderr[-3000:])
        self.assertEqual(r.data["exceptions"], [])
        self.assertEqual(r.count("down", "kafka"), r.failures("down", "kafka"))


class GarbageBroker(KafkaTest):
    """A "broker" that answers every request with bytes that are not Kafka's protocol, or never
    answers: the produces fail with a timeout, counted, and the run ends on time."""

    def serve(self, answer):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        self.addCleanup(srv.close)

        def conn(s):
            try:
                while s.recv(65536):
                    if answer:
                        s.sendall(answer)
            except OSError:
                pass
            finally:
                s.close()

        def accept():
            while True:
                try:
                    s, _ = srv.accept()
                except OSError:
                    return
                threading.Thread(target=conn, args=(s,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return f"127.0.0.1:{srv.getsockname()[1]}"

    SCRIPT = CHECK + """
local U = cicada.KafkaUser:extend("U", {
    producer_settings = { ["message.timeout.ms"] = 800, ["socket.timeout.ms"] = 500 },
})
function U:on_start()
    for i = 1, 3 do
        local ok, err = self.kafka:produce("orders", "x", { partition = 0 })
        check("failed", ok == nil and err == "Local: Message timed out", tostring(err))
    end
    error(cicada.StopTest)
end
U:task(function() end)
return { U }
"""

    def run_against(self, answer):
        host = self.serve(answer)
        r = self.run_checks(self.SCRIPT, host, run_time="60")
        self.assertEqual(r.failures("orders", "kafka"), 3)

    def test_garbage_answers(self):
        self.run_against(b"\x00\x00\x00\x0cnot kafka at all\r\n" * 3)

    def test_silent_broker(self):
        self.run_against(None)


if __name__ == "__main__":
    main()
