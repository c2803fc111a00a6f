"""What a run writes: the console tables, Locust's CSV files, the JSON results; and SIGINT."""
import csv
import json
import os
import signal

from harness import CicadaTest, main

SCRIPT = """
local cicada = require "cicada"
local U = cicada.User:extend("U", { wait_time = cicada.constant(0.05) })
function U:on_start() self.n = 0 end
U:task(function(self)
    self.n = self.n + 1
    cicada.record("GET", "/items", 2 + (self.n % 5), 100)
    if self.n % 4 == 0 then cicada.record("POST", "/cart", 30, 0, "HTTP 500, \\"full\\"") end
end)
return { U }
"""

PERCENTILES = ["50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%"]


class Output(CicadaTest):
    def test_csv_files(self):
        prefix = self.path("out/run")
        r = self.cicada("--headless", "-u", "3", "-r", "100", "-t", "2.5", "--csv", prefix,
                        "--csv-full-history", script=SCRIPT)
        self.assertEqual(r.rc, 1, r.stderr)  # failures were recorded
        with open(prefix + "_stats.csv", newline="") as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[0], ["Type", "Name", "Request Count", "Failure Count",
                                   "Median Response Time", "Average Response Time",
                                   "Min Response Time", "Max Response Time",
                                   "Average Content Size", "Requests/s", "Failures/s"] + PERCENTILES)
        self.assertEqual([row[:2] for row in rows[1:]],  # sorted by name, Aggregated last
                         [["POST", "/cart"], ["GET", "/items"], ["", "Aggregated"]])
        items = rows[2]
        self.assertEqual(int(items[2]), r.count("/items"))
        self.assertEqual(float(items[8]), 100.0)
        self.assertEqual(int(rows[3][2]), r.data["total"]["num_requests"])
        self.assertEqual(int(rows[3][3]), r.data["total"]["num_failures"])

        with open(prefix + "_stats_history.csv", newline="") as f:
            hist = list(csv.reader(f))
        self.assertEqual(hist[0][:6], ["Timestamp", "User Count", "Type", "Name", "Requests/s",
                                       "Failures/s"])
        self.assertEqual(hist[0][6:17], PERCENTILES)
        self.assertEqual(hist[0][17:], ["Total Request Count", "Total Failure Count",
                                        "Total Median Response Time",
                                        "Total Average Response Time", "Total Min Response Time",
                                        "Total Max Response Time", "Total Average Content Size"])
        names = {row[3] for row in hist[1:]}
        self.assertEqual(names, {"/items", "/cart", "Aggregated"})  # full history: every entry
        last_total = [row for row in hist if row[3] == "Aggregated"][-1]
        self.assertEqual(int(last_total[17]), r.data["total"]["num_requests"])

        with open(prefix + "_failures.csv", newline="") as f:
            fails = list(csv.reader(f))
        self.assertEqual(fails[0], ["Method", "Name", "Error", "Occurrences", "First Seen",
                                    "Last Seen"])
        self.assertEqual(fails[1][:3], ["POST", "/cart", 'HTTP 500, "full"'])
        self.assertEqual(int(fails[1][3]), r.failures("/cart"))
        with open(prefix + "_exceptions.csv", newline="") as f:
            self.assertEqual(next(csv.reader(f)), ["Count", "Message", "Traceback", "Nodes"])

    def test_json_on_stdout_and_console_summary(self):
        r = self.cicada("--headless", "-u", "2", "-r", "100", "-t", "1.5", "--json",
                        script=SCRIPT, want_json=False)
        d = json.loads(r.stdout)
        self.assertEqual(set(d), {"stats", "total", "failures", "exceptions", "user_count",
                                  "start_time", "end_time", "dropped_iterations"})
        self.assertEqual(d["dropped_iterations"], {})  # per open-model class; none here
        items = [e for e in d["stats"] if e["name"] == "/items"][0]
        for key in ("type", "name", "num_requests", "num_failures", "avg_response_time",
                    "min_response_time", "max_response_time", "total_content_length",
                    "requests_per_sec", "percentiles"):
            self.assertIn(key, items)
        self.assertEqual(list(items["percentiles"]),
                         ["50", "66", "75", "80", "90", "95", "98", "99", "99.9", "99.99", "100"])
        # response times were 2..6 ms exactly: the percentiles stay inside, within 1%
        for v in items["percentiles"].values():
            self.assertGreaterEqual(v, 2 * 0.99)
            self.assertLessEqual(v, 6 * 1.01)
        self.assertEqual(items["min_response_time"], 2.0)
        self.assertEqual(items["max_response_time"], 6.0)
        self.assertLess(d["start_time"], d["end_time"])
        self.assertEqual(d["failures"][0]["error"], 'HTTP 500, "full"')
        # Locust's tables on stderr
        self.assertIn("Response time percentiles (approximated)", r.stderr)
        self.assertIn("Error report", r.stderr)
        self.assertRegex(r.stderr, r"GET +/items +\d+ +0\(0\.00%\)")

    def test_only_summary(self):
        r = self.cicada("--headless", "-u", "1", "-t", "2.5", "--only-summary", script=SCRIPT)
        self.assertEqual(r.stderr.count("# reqs"), 2)  # the final stats and percentile tables
        r = self.cicada("--headless", "-u", "1", "-t", "2.5", script=SCRIPT)
        self.assertGreater(r.stderr.count("# reqs"), 2)  # and a table every 2 seconds

    def test_sigint_writes_final_results(self):
        prefix = self.path("sig")
        json_path = self.path("sig.json")
        p = self.start("--headless", "-u", "2", "-r", "100", "-t", "60", "--csv", prefix,
                       "--json-file", json_path, script=SCRIPT)
        # wait until a second of history is written: the test is running
        self.wait_for(lambda: os.path.exists(prefix + "_stats_history.csv")
                      and open(prefix + "_stats_history.csv").read().count("\n") >= 2,
                      what="the first history row")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 1, err)  # recorded failures decide the exit code
        self.assertIn("Got SIGINT", err)
        with open(json_path) as f:
            d = json.load(f)
        self.assertGreater(d["total"]["num_requests"], 0)
        with open(prefix + "_stats.csv", newline="") as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[-1][1], "Aggregated")
        self.assertEqual(int(rows[-1][2]), d["total"]["num_requests"])

    def test_sigint_while_loading_writes_results(self):
        # the worker threads load the script only once the file |go| exists, which the test
        # writes after the signal: the run ends as one that never started, results written
        prefix = self.path("early")
        json_path = self.path("early.json")
        go = self.path("go")
        p = self.start("--headless", "-u", "2", "-t", "60", "--csv", prefix, "--json-file",
                       json_path, script=f"""
            local cicada = require "cicada"
            if cicada.env.role == "worker" then
                while not io.open({json.dumps(go)}) do io.popen("sleep 0.05"):close() end
            end
            local U = cicada.User:extend("U", {{ wait_time = cicada.constant(0.1) }})
            U:task(function() cicada.record("t", "task", 1, 0) end)
            return {{ U }}
        """)
        try:
            self.wait_for(lambda: "Starting cicada" in (p.stderr.readline() or ""),
                          what="the start line")
            p.send_signal(signal.SIGINT)
            self.wait_for(lambda: "Got SIGINT" in (p.stderr.readline() or ""), what="the signal")
        finally:
            with open(go, "w"):
                pass
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertNotIn("All users spawned", err)
        with open(json_path) as f:
            self.assertEqual(json.load(f)["total"]["num_requests"], 0)
        with open(prefix + "_stats.csv", newline="") as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[-1][1:3], ["Aggregated", "0"])

    def test_second_sigint_exits_at_once(self):
        # on_stop never returns: the first signal waits for it, the second one does not
        p = self.start("--headless", "-u", "1", "-t", "60", script="""
            local cicada = require "cicada"
            local U = cicada.User:extend("U", { wait_time = cicada.constant(3600) })
            function U:on_stop() cicada.record("t", "on_stop", 0, 0) cicada.sleep(3600) end
            U:task(function() cicada.record("t", "task", 0, 0) end)
            return { U }
        """)
        self.wait_for(lambda: "All users spawned" in (p.stderr.readline() or ""),
                      what="the users to start")
        p.send_signal(signal.SIGINT)
        self.wait_for(lambda: "Got SIGINT" in (p.stderr.readline() or ""), what="the first signal")
        self.assertIsNone(p.poll())
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=30)
        self.assertNotEqual(p.returncode, 0)


if __name__ == "__main__":
    main()
