"""Load over time and pass/fail: load shapes, stages, open-model classes, thresholds and
--check-*, --json-stream."""
import json

from harness import CicadaTest, main

HEAD = 'local cicada = require "cicada"\n'

TWO_CLASSES = HEAD + """
local A = cicada.User:extend("A", { wait_time = cicada.constant(3600) })
A:task(function() cicada.record("t", "a", 1, 0) end)
local B = cicada.User:extend("B", { wait_time = cicada.constant(3600) })
B:task(function() cicada.record("t", "b", 1, 0) end)
"""


class Load(CicadaTest):
    def test_stages_drive_users_and_classes(self):
        log = self.path("shape.log")
        r = self.cicada("--headless", "-t", "60", script=TWO_CLASSES + f"""
            cicada.events.spawning_complete:add_listener(function(e)
                local f = assert(io.open({json.dumps(log)}, "a"))
                f:write(e.user_count, "\\n")
                f:close()
            end)
            return {{ A, B, cicada.stages {{
                {{ duration = 1.5, users = 4, spawn_rate = 100 }},
                {{ duration = 1.5, users = 6, spawn_rate = 100, classes = {{ "B" }} }},
                {{ duration = 1.5, users = 2, spawn_rate = 100 }},
            }} }}
        """, timeout=60)
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        self.assertIn("The load shape ended the test", r.stderr)
        self.assertEqual(self.read("shape.log").split(), ["4", "6", "2"])
        # the second stage allowed B only: A's users left, B ran six
        self.assertIn('All users spawned: {"A": 2, "B": 2} (4 total users)', r.stderr)
        self.assertIn('All users spawned: {"A": 0, "B": 6} (6 total users)', r.stderr)
        self.assertEqual(r.count("a"), 2)
        self.assertEqual(r.count("b"), 2 + 4)

    def test_custom_shape_class(self):
        r = self.cicada("--headless", "-u", "99", script=TWO_CLASSES + """
            local Shape = cicada.LoadTestShape:extend("Steps", {})
            -- ticks come about a second apart, never exactly: each step is half a second
            -- away from the ticks on both sides (at 0, 1 and 2 s)
            function Shape:tick()
                local t = self:get_run_time()
                if t < 0.5 then return 2, 50 end
                if t < 1.5 then return 3, 50 end
                return nil
            end
            return { A, B, Shape }
        """, timeout=60)
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        self.assertIn("-u and -r are ignored", r.stderr)
        self.assertEqual(r.count("a") + r.count("b"), 3)

    def test_thresholds_and_checks(self):
        script = HEAD + """
            local U = cicada.User:extend("U", { wait_time = cicada.constant(0.01) })
            function U:on_start() self.n = 0 end
            U:task(function(self)
                self.n = self.n + 1
                cicada.record("GET", "/x", self.n % 10 == 0 and 50 or 5, 0, self.n % 4 == 0 and "boom" or nil)
            end)
        """
        passing = script + """
            cicada.thresholds {
                total = { "p50 < 10", "max <= 50", "fail_ratio < 0.5" },
                ["GET /x"] = { "p99 >= 40", "requests > 10" },
            }
            return { U }
        """
        r = self.cicada("--headless", "-u", "2", "-r", "10", "-t", "2", "--exit-code-on-error", "0",
                        script=passing)
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        self.assertIn("PASS  total: p50 < 10 (measured: 5", r.stderr)
        self.assertIn("PASS  GET /x: p99 >= 40 (measured: 50", r.stderr)
        failing = script + """
            cicada.thresholds { total = { "p99 < 10" } }
            return { U }
        """
        r = self.cicada("--headless", "-u", "2", "-r", "10", "-t", "2", script=failing)
        self.assertEqual(r.rc, 3)
        self.assertIn("FAIL  total: p99 < 10 (measured: 50", r.stderr)
        # aborting: the run ends as soon as the threshold fails, long before -t
        aborting = script + """
            cicada.thresholds { ["/x"] = { { "failures < 5", abort = true } } }
            return { U }
        """
        r = self.cicada("--headless", "-u", "2", "-r", "10", "-t", "120", script=aborting,
                        timeout=60)
        self.assertEqual(r.rc, 3)
        self.assertIn("a threshold with abort = true does not hold", r.stderr)
        # the command line's checks, as locust-plugins: the fail ratio decides, not failures
        r = self.cicada("--headless", "-u", "2", "-r", "10", "-t", "2", "--check-fail-ratio", "0.5",
                        script=script + "return { U }")
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        r = self.cicada("--headless", "-u", "2", "-r", "10", "-t", "2", "--check-fail-ratio", "0.1",
                        script=script + "return { U }")
        self.assertEqual(r.rc, 3)
        self.assertIn("FAIL  total: fail_ratio <= 0.1", r.stderr)
        r = self.cicada("--headless", "-u", "2", "-r", "10", "-t", "2", "--check-rps", "100000",
                        "--check-avg-response-time", "1000", script=script + "return { U }")
        self.assertEqual(r.rc, 3)
        self.assertIn("FAIL  total: rps >= 100000", r.stderr)
        self.assertIn("PASS  total: avg <= 1000", r.stderr)
        # a threshold that cannot be read names the file and line
        r = self.cicada("--headless", script=HEAD + 'cicada.thresholds { total = { "p95 is low" } }\n',
                        want_json=False)
        self.assertEqual(r.rc, 2)
        self.assertRegex(r.stderr, r"cicadafile\.lua:2: cannot read the threshold 'p95 is low'")

    def test_json_stream(self):
        stream = self.path("stream.jsonl")
        r = self.cicada("--headless", "-u", "2", "-r", "10", "-t", "3.5", "--json-stream", stream,
                        script=TWO_CLASSES + "return { A, B }")
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        with open(stream) as f:
            lines = [json.loads(line) for line in f]
        self.assertGreaterEqual(len(lines), 3)
        for line in lines:
            self.assertEqual(set(line), {"time", "state", "user_count", "total", "stats"})
            self.assertIn("current_rps", line["total"])
        self.assertEqual(lines[-1]["total"]["num_requests"], 2)
        self.assertEqual(max(line["user_count"] for line in lines), 2)
        # "-" streams to stdout, one JSON object per line
        r = self.cicada("--headless", "-u", "2", "-r", "10", "-t", "2.5", "--json-stream", "-",
                        "--only-summary", script=TWO_CLASSES + "return { A, B }", want_json=False)
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        self.assertGreaterEqual(len(lines), 2, r.stdout)
        self.assertEqual(lines[-1]["total"]["num_requests"], 2)


if __name__ == "__main__":
    main()
