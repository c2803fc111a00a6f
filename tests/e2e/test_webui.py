"""The web UI's server end to end: the real binary without --headless against the demo shop.

Every JSON endpoint is checked for Locust's shape, the CSV downloads for Locust's columns, then
the event stream, /metrics, the HTML report, web authentication, HTTPS, --autostart with
--autoquit, and --html. Assertions are on shapes, states and counts, never on timings: every
wait is for a condition, with a generous limit.
"""
import base64
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import servers
from harness import CICADA, CicadaTest, main

SCRIPT = """
local cicada = require "cicada"
local Web = cicada.HttpUser:extend("Web", { wait_time = cicada.constant(0.05) })
Web:task(3, function(self) self.client:get("/items") end)
Web:task("fail", 1, function(self)
    self.client:get("/items", { name = "/wrong", catch_response = true }, function(r)
        r:failure("not what we wanted")
    end)
end)
Web:task("boom", 1, function(self) error("boom <b>") end)
local Admin = cicada.HttpUser:extend("Admin", { wait_time = cicada.constant(0.2) })
Admin:task(function(self) self.client:get("/health") end)
return { Web, Admin }
"""

STAT_KEYS = {
    "method", "name", "safe_name", "num_requests", "num_failures", "min_response_time",
    "max_response_time", "current_rps", "current_fail_per_sec", "avg_response_time",
    "median_response_time", "total_rps", "total_fail_per_sec", "response_time_percentile_0.95",
    "response_time_percentile_0.99", "avg_content_length"}
TOP_KEYS = {
    "stats", "errors", "total_rps", "total_fail_per_sec", "current_rps", "current_fail_per_sec",
    "fail_ratio", "current_response_time_percentiles", "state", "user_count", "workers",
    "worker_count"}
CSV_STATS_HEAD = ("Type,Name,Request Count,Failure Count,Median Response Time,"
                  "Average Response Time,Min Response Time,Max Response Time,"
                  "Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,"
                  "99.9%,99.99%,100%")
START_LINE = re.compile(r"Starting web interface at (https?)://([^\s]+):(\d+)")


class UI:
    """cicada with its web UI, on a port it picks (read back from its log)."""

    def __init__(self, test, *args, script=SCRIPT):
        # failures must not decide the exit code: 0 means no sanitizer or leak report either
        self.proc = test.start("--web-port", "0", "--threads", "2", "--exit-code-on-error", "0",
                               *args, script=script)
        self.lines = []
        self.started = threading.Event()
        self.scheme = self.port = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.started.wait(60):
            self.stop()
            raise AssertionError("no web interface line:\n" + "".join(self.lines))
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            m = START_LINE.search(line)
            if m and not self.port:
                self.scheme, self.port = m.group(1), int(m.group(3))
            if self.port and "Starting cicada" in line:  # from then on, a signal ends the run
                self.started.set()
        self.started.set()

    def log(self):
        return "".join(self.lines)[-4000:]

    def stop(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=10)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        log = "".join(self.lines)
        assert "Sanitizer" not in log and "runtime error:" not in log, log[-6000:]
        return self.proc.returncode


def fetch(url, data=None, headers=None, context=None, timeout=30):
    """(status, headers, body bytes); HTTP errors are answers too."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as res:
            return res.status, res.headers, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(url, **kw):
    status, _, body = fetch(url, **kw)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


def post_form(url, fields):
    data = urllib.parse.urlencode(fields, doseq=True).encode()
    status, _, body = fetch(url, data=data,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


def swarm(url, fields, timeout=120):
    """POST /swarm, again while the worker threads are still loading the script."""
    deadline = time.monotonic() + timeout
    while True:
        r = post_form(url + "/swarm", fields)
        if r["success"] or "still loading" not in r["message"] or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


class Endpoints(CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.demo = servers.demo_server()

    @classmethod
    def tearDownClass(cls):
        cls.demo.stop()

    def wait_stats(self, ui, predicate, what, timeout=60):
        last = {}

        def check():
            nonlocal last
            last = get_json(ui.url + "/stats/requests")
            return predicate(last)

        try:
            self.wait_for(check, timeout, what)
        except AssertionError:
            self.fail(f"timed out waiting for {what}; last /stats/requests: "
                      f"{json.dumps(last)[:1500]}\n{ui.log()}")
        return last

    def test_locust_endpoints(self):
        ui = UI(self, "-H", self.demo.url)
        try:
            self.check_ready(ui)
            self.check_swarm_errors(ui)
            self.check_running(ui)
            self.check_downloads(ui)
            self.check_other_endpoints(ui)
            self.check_stream(ui)
            self.check_metrics(ui)
            self.check_edit_stop_reset(ui)
            self.check_class_picker(ui)
        finally:
            rc = ui.stop()
        self.assertEqual(rc, 0, ui.log())

    def check_ready(self, ui):
        status, headers, body = fetch(ui.url + "/")
        self.assertEqual(status, 200)
        self.assertIn("text/html", headers["Content-Type"])
        self.assertIn(b'id="stats-table"', body)
        for asset, ctype in (("app.js", "javascript"), ("charts.js", "javascript"),
                             ("chart.js", "javascript"), ("style.css", "text/css")):
            status, headers, body = fetch(ui.url + "/assets/" + asset)
            self.assertEqual(status, 200, asset)
            self.assertIn(ctype, headers["Content-Type"])
            self.assertGreater(len(body), 100)
        self.assertEqual(fetch(ui.url + "/assets/nothing.js")[0], 404)
        self.assertIn(b"Chart.js v3", fetch(ui.url + "/assets/chart.js")[2][:200])

        stats = get_json(ui.url + "/stats/requests")
        self.assertEqual(set(stats), TOP_KEYS)
        self.assertEqual(stats["state"], "ready")
        self.assertEqual(stats["user_count"], 0)
        self.assertEqual([e["name"] for e in stats["stats"]], ["Aggregated"])
        self.assertIsNone(stats["stats"][0]["method"])
        self.assertEqual(stats["workers"], [])
        self.assertEqual(stats["worker_count"], 0)
        state = get_json(ui.url + "/ui/state")
        self.assertEqual(state["user_classes"], ["Web", "Admin"])
        self.assertEqual(state["host"], self.demo.url)

    def check_swarm_errors(self, ui):
        r = post_form(ui.url + "/swarm", {"user_count": "2", "spawn_rate": "5", "run_time": "x"})
        self.assertEqual(r, {"success": False, "host": self.demo.url, "message":
                             "Valid run_time formats are : 20, 20s, 3m, 2h, 1h20m, 3h30m10s, etc."})
        r = post_form(ui.url + "/swarm", {"user_count": "2", "spawn_rate": "5",
                                           "user_classes": "Nobody"})
        self.assertFalse(r["success"])
        self.assertIn("Nobody", r["message"])
        r = post_form(ui.url + "/swarm", {"user_count": "many", "spawn_rate": "5"})
        self.assertFalse(r["success"])
        self.assertEqual(get_json(ui.url + "/stats/requests")["state"], "ready")
        # /swarm takes a form POST only
        self.assertEqual(fetch(ui.url + "/swarm")[0], 405)

    def check_running(self, ui):
        r = swarm(ui.url, {"user_count": "4", "spawn_rate": "100", "host": self.demo.url})
        self.assertEqual(r, {"success": True, "message": "Swarming started",
                             "host": self.demo.url})
        stats = self.wait_stats(
            ui, lambda s: s["state"] == "running" and s["user_count"] == 4 and
            {e["name"] for e in s["stats"]} >= {"/items", "/health", "/wrong"} and s["errors"],
            "four users running with requests and failures")
        self.assertEqual(set(stats), TOP_KEYS)
        for e in stats["stats"]:
            self.assertEqual(set(e), STAT_KEYS, e)
        self.assertEqual(stats["stats"][-1]["name"], "Aggregated")
        names = [e["name"] for e in stats["stats"][:-1]]
        self.assertEqual(names, sorted(names))
        items = next(e for e in stats["stats"] if e["name"] == "/items")
        self.assertEqual(items["method"], "GET")
        self.assertGreater(items["num_requests"], 0)
        self.assertGreater(items["avg_content_length"], 0)
        err = stats["errors"][0]
        self.assertLessEqual({"method", "name", "error", "occurrences"}, set(err))
        self.assertEqual((err["method"], err["name"]), ("GET", "/wrong"))
        self.assertIn("not what we wanted", err["error"])
        self.assertGreater(stats["fail_ratio"], 0)
        self.assertEqual(set(stats["current_response_time_percentiles"]),
                         {"response_time_percentile_0.5", "response_time_percentile_0.95"})

        exc = self.wait_for_exceptions(ui)
        self.assertEqual(set(exc), {"exceptions"})
        row = exc["exceptions"][0]
        self.assertEqual(set(row), {"count", "msg", "traceback", "nodes"})
        self.assertIn("boom <b>", row["msg"])
        self.assertIn("stack traceback", row["traceback"])
        self.assertEqual(row["nodes"], "local")

    def wait_for_exceptions(self, ui):
        box = {}

        def check():
            box["e"] = get_json(ui.url + "/exceptions")
            return box["e"]["exceptions"]

        self.wait_for(check, 60, "an exception")
        return box["e"]

    def check_downloads(self, ui):
        for path, head in (("/stats/requests/csv", CSV_STATS_HEAD),
                           ("/stats/failures/csv",
                            "Method,Name,Error,Occurrences,First Seen,Last Seen"),
                           ("/exceptions/csv", "Count,Message,Traceback,Nodes")):
            status, headers, body = fetch(ui.url + path)
            self.assertEqual(status, 200, path)
            self.assertEqual(headers["Content-Type"], "text/csv")
            self.assertRegex(headers["Content-Disposition"], r"^attachment;filename=cicada_.*\.csv$")
            text = body.decode()
            self.assertTrue(text.startswith(head + "\r\n"), (path, text[:200]))
        text = fetch(ui.url + "/stats/requests/csv")[2].decode()
        self.assertIn("\r\nGET,/items,", text)
        self.assertIn("\r\n,Aggregated,", text)
        self.assertIn("GET,/wrong,", fetch(ui.url + "/stats/failures/csv")[2].decode())
        status, _, body = fetch(ui.url + "/stats/requests_full_history/csv")
        self.assertEqual(status, 404)
        self.assertIn(b"full history", body)

        status, headers, body = fetch(ui.url + "/stats/report")
        self.assertEqual(status, 200)
        self.assertIn("text/html", headers["Content-Type"])
        self.assertIsNone(headers["Content-Disposition"])
        html = body.decode()
        for section in ("Request Statistics", "Response Time Statistics", "Failures Statistics",
                        "Exceptions Statistics", "Charts", "Final ratio"):
            self.assertIn(f"<h2>{section}</h2>", html)
        self.assertIn("<td>/items</td>", html)
        self.assertIn("boom &lt;b&gt;", html)  # escaped
        self.assertNotIn("<script src=", html)  # self-contained
        self.assertIn('href="?download=1"', html)
        status, headers, body = fetch(ui.url + "/stats/report?download=1")
        self.assertRegex(headers["Content-Disposition"], r"^attachment;filename=cicada_.*\.html$")
        self.assertNotIn(b'href="?download=1"', body)

        results = get_json(ui.url + "/stats/results")
        self.assertIn("/items", [e["name"] for e in results["stats"]])
        self.assertGreater(results["total"]["num_requests"], 0)

    def check_other_endpoints(self, ui):
        tasks = get_json(ui.url + "/tasks")
        self.assertEqual(set(tasks), {"per_class", "total"})
        self.assertEqual(set(tasks["per_class"]), {"Web", "Admin"})
        self.assertIn("ratio", tasks["per_class"]["Web"])
        self.assertIn("fail", tasks["per_class"]["Web"]["tasks"])
        self.assertAlmostEqual(sum(c["ratio"] for c in tasks["total"].values()), 1.0, places=6)

        logs = get_json(ui.url + "/logs")
        self.assertEqual(set(logs), {"master", "workers"})
        self.assertEqual(logs["workers"], {})
        self.assertTrue(any("Starting web interface" in l for l in logs["master"]), logs)
        self.assertTrue(any("Ramping to 4 users" in l for l in logs["master"]), logs)

        self.assertEqual(get_json(ui.url + "/worker-count"), {"worker_count": 0})
        run = get_json(ui.url + "/ui/run")
        self.assertEqual(run["state"], "running")
        self.assertEqual(run["target"], 4)
        self.assertEqual(sum(run["classes"].values()), 4)
        hist = self.wait_history(ui)
        self.assertEqual(set(hist), {"start_time", "from", "n", "points"})
        self.assertEqual(len(hist["points"][0]), 7)
        self.assertEqual(fetch(ui.url + "/nothing")[0], 404)

    def wait_history(self, ui):
        box = {}

        def check():
            box["h"] = get_json(ui.url + "/ui/history")
            return box["h"]["n"] >= 2

        self.wait_for(check, 60, "chart points")
        return box["h"]

    def check_stream(self, ui):
        conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=30)
        conn.request("GET", "/stream")
        res = conn.getresponse()
        self.assertEqual(res.status, 200)
        self.assertEqual(res.getheader("Content-Type"), "text/event-stream")
        self.assertEqual(res.getheader("Cache-Control"), "no-cache")
        events = {}
        stats_events = 0
        event = None
        deadline = time.monotonic() + 60
        # the first push comes at once, then one every second: wait for a second "stats"
        while stats_events < 2 and time.monotonic() < deadline:
            line = res.readline().decode()
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: "):
                events[event] = json.loads(line[6:])
                stats_events += event == "stats"
        conn.close()
        self.assertEqual(stats_events, 2, events.keys())
        self.assertEqual(set(events["stats"]), TOP_KEYS)
        self.assertIn("state", events["run"])
        self.assertIn("points", events["history"])
        self.assertIn("exceptions", events["exceptions"])
        self.assertIn("lines", events["logs"])

    def check_metrics(self, ui):
        status, headers, body = fetch(ui.url + "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        text = body.decode()
        sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.e+-]+$')
        values = {}
        for line in text.splitlines():
            if line.startswith("#"):
                self.assertRegex(line, r"^# (HELP|TYPE) cicada_\w+ ")
                continue
            self.assertRegex(line, sample)
            k, v = line.rsplit(" ", 1)
            values[k] = float(v)
        self.assertEqual(values["cicada_users"], 4)
        self.assertEqual(values['cicada_state{state="running"}'], 1)
        self.assertGreater(values['cicada_requests_total{method="GET",name="/items"}'], 0)
        self.assertGreater(values['cicada_failures_total{method="GET",name="/wrong"}'], 0)
        self.assertIn('cicada_response_time_seconds{method="GET",name="/items",quantile="0.95"}',
                      values)
        self.assertGreater(values['cicada_response_time_seconds_count{method="GET",name="/items"}'],
                           0)
        self.assertGreater(values["cicada_exceptions_total"], 0)

    def check_edit_stop_reset(self, ui):
        r = post_form(ui.url + "/swarm", {"user_count": "2", "spawn_rate": "100"})
        self.assertTrue(r["success"], r)
        self.wait_stats(ui, lambda s: s["user_count"] == 2, "the user count to drop to 2")

        status, _, body = fetch(ui.url + "/stop")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"success": True, "message": "Test stopped"})
        self.wait_stats(ui, lambda s: s["state"] == "stopped" and s["user_count"] == 0,
                        "the test to stop")

        status, headers, body = fetch(ui.url + "/stats/reset")
        self.assertEqual((status, body), (200, b"ok"))
        self.wait_stats(ui, lambda s: s["stats"][-1]["num_requests"] == 0 and not s["errors"],
                        "the statistics to reset")
        self.assertEqual(get_json(ui.url + "/exceptions"), {"exceptions": []})

    def check_class_picker(self, ui):
        r = post_form(ui.url + "/swarm", {"user_count": "2", "spawn_rate": "100",
                                           "user_classes": ["Admin"], "run_time": "1h"})
        self.assertEqual(r["user_classes"], ["Admin"])
        self.assertEqual(r["run_time"], 3600)
        stats = self.wait_stats(
            ui, lambda s: s["user_count"] == 2 and s["stats"][-1]["num_requests"] >= 4,
            "the Admin-only test")
        self.assertEqual([e["name"] for e in stats["stats"]], ["/health", "Aggregated"])
        run = get_json(ui.url + "/ui/run")
        self.assertEqual(run["classes"], {"Web": 0, "Admin": 2})
        fetch(ui.url + "/stop")
        self.wait_stats(ui, lambda s: s["state"] == "stopped", "the test to stop")

    def test_classes_picked_while_loading(self):
        # the worker threads load the script only once the file |go| exists: a start with
        # picked classes meanwhile is told to try again (as any start is then), and the retry
        # once they have loaded runs the pick
        go = self.path("go")
        head = 'local cicada = require "cicada"\n'
        slow = SCRIPT.replace(head, head + 'if cicada.env.role == "worker" then while not '
                              f'io.open({json.dumps(go)}) do io.popen("sleep 0.05"):close() '
                              'end end\n')
        ui = UI(self, "-H", self.demo.url, script=slow)
        try:
            pick = {"user_count": "2", "spawn_rate": "100", "user_classes": ["Admin"]}
            r = post_form(ui.url + "/swarm", pick)
            self.assertEqual((r["success"], r["message"]),
                             (False, "the script is still loading: try again"))
            with open(go, "w"):
                pass
            r = swarm(ui.url, pick)
            self.assertTrue(r["success"], r)
            self.assertEqual(r["user_classes"], ["Admin"])
            stats = self.wait_stats(
                ui, lambda s: s["user_count"] == 2 and s["stats"][-1]["num_requests"] >= 2,
                "the Admin-only test")
            self.assertEqual([e["name"] for e in stats["stats"]], ["/health", "Aggregated"])
        finally:
            with open(go, "w"):  # a signal during loading waits for the load to end
                pass
            self.assertEqual(ui.stop(), 0, ui.log())


class Security(CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.demo = servers.demo_server()

    @classmethod
    def tearDownClass(cls):
        cls.demo.stop()

    def test_basic_auth(self):
        ui = UI(self, "-H", self.demo.url, "--web-auth", "alice:s3cret:x")
        try:
            for path in ("/", "/stats/requests", "/metrics", "/stream", "/assets/app.js"):
                status, headers, _ = fetch(ui.url + path)
                self.assertEqual(status, 401, path)
                self.assertIn('Basic realm="cicada"', headers["WWW-Authenticate"])
            bad = "Basic " + base64.b64encode(b"alice:wrong").decode()
            self.assertEqual(fetch(ui.url + "/", headers={"Authorization": bad})[0], 401)
            good = "Basic " + base64.b64encode(b"alice:s3cret:x").decode()
            status, _, body = fetch(ui.url + "/", headers={"Authorization": good})
            self.assertEqual(status, 200)
            self.assertIn(b"cicada", body)
            stats = get_json(ui.url + "/stats/requests", headers={"Authorization": good})
            self.assertEqual(stats["state"], "ready")
            r = urllib.request.Request(ui.url + "/swarm", data=b"user_count=1&spawn_rate=1",
                                       headers={"Authorization": bad})
            with self.assertRaises(urllib.error.HTTPError) as cm:
                urllib.request.urlopen(r, timeout=30)
            self.assertEqual(cm.exception.code, 401)
            self.assertEqual(get_json(ui.url + "/stats/requests",
                                      headers={"Authorization": good})["state"], "ready")
            # start a test, so that the run has loaded before it is stopped
            form = b"user_count=1&spawn_rate=10"
            deadline = time.monotonic() + 120
            while True:
                r = json.loads(fetch(ui.url + "/swarm", data=form,
                                     headers={"Authorization": good})[2])
                if r["success"] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            self.assertTrue(r["success"], r)
        finally:
            self.assertEqual(ui.stop(), 0, ui.log())

    def test_https(self):
        servers.make_certs(self.dir)
        ui = UI(self, "-H", self.demo.url, "--tls-cert", self.path("server.pem"),
                "--tls-key", self.path("server.key"))
        try:
            self.assertEqual(ui.scheme, "https")
            ctx = ssl.create_default_context(cafile=self.path("ca.pem"))
            status, _, body = fetch(ui.url + "/", context=ctx)
            self.assertEqual(status, 200)
            self.assertIn(b'id="stats-table"', body)
            # a big answer (the chart library) and keep-alive over TLS
            conn = http.client.HTTPSConnection("127.0.0.1", ui.port, context=ctx, timeout=30)
            for _ in range(3):
                conn.request("GET", "/assets/chart.js")
                res = conn.getresponse()
                data = res.read()
                self.assertEqual(res.status, 200)
                self.assertGreater(len(data), 100000)
            # the event stream over TLS
            conn.request("GET", "/stream")
            res = conn.getresponse()
            self.assertEqual(res.getheader("Content-Type"), "text/event-stream")
            self.assertEqual(res.readline(), b"retry: 1000\n")
            self.assertEqual(res.readline(), b"\n")
            self.assertEqual(res.readline(), b"event: stats\n")
            self.assertIn(b'"state"', res.readline())
            conn.close()
            deadline = time.monotonic() + 120
            while True:
                r = json.loads(fetch(ui.url + "/swarm", data=b"user_count=1&spawn_rate=10",
                                     context=ctx)[2])
                if r["success"] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            self.assertTrue(r["success"], r)
            # an untrusted client fails its handshake; plain HTTP gets no HTTP answer
            with self.assertRaises(ssl.SSLError):
                with socket.create_connection(("127.0.0.1", ui.port), timeout=30) as s:
                    ssl.create_default_context().wrap_socket(s, server_hostname="localhost")
            with socket.create_connection(("127.0.0.1", ui.port), timeout=30) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertFalse(s.recv(100).startswith(b"HTTP/"))
            # the server still works after both
            self.assertEqual(fetch(ui.url + "/stats/requests", context=ctx)[0], 200)
        finally:
            self.assertEqual(ui.stop(), 0, ui.log())

    def test_bad_certificate_and_taken_port(self):
        bad = self.write("bad.pem", "not a certificate\n")
        r = self.cicada("--web-port", "0", "--tls-cert", bad, "--tls-key", bad, "-H",
                        self.demo.url, script=SCRIPT, want_json=False, timeout=60)
        self.assertNotEqual(r.rc, 0)
        self.assertIn("certificate", r.stderr)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            r = self.cicada("--web-port", str(port), "-H", self.demo.url, script=SCRIPT,
                            want_json=False, timeout=60)
        self.assertNotEqual(r.rc, 0)
        self.assertIn("cannot listen", r.stderr)


class Unattended(CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.demo = servers.demo_server()

    @classmethod
    def tearDownClass(cls):
        cls.demo.stop()

    def check_report(self, path):
        with open(path) as f:
            html = f.read()
        for section in ("Request Statistics", "Response Time Statistics", "Failures Statistics",
                        "Exceptions Statistics", "Charts", "Final ratio"):
            self.assertIn(f"<h2>{section}</h2>", html)
        self.assertIn("<td>/items</td>", html)
        self.assertIn("Chart.js v3", html)  # the library is inlined
        self.assertNotIn("<script src=", html)
        self.assertNotIn("@@", html.replace("Chart.js v3", ""))  # every placeholder filled
        data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                         html, re.S)
        return json.loads(data.group(1)), html

    def test_autostart_autoquit_html(self):
        r = self.cicada("--autostart", "--autoquit", "1", "-t", "2", "-u", "3", "-r", "30",
                        "--web-port", "0", "-H", self.demo.url, "--threads", "2",
                        "--html", self.path("report_{u}_{r}_{t}.html"),
                        "--exit-code-on-error", "0", script=SCRIPT, timeout=120)
        self.assertEqual(r.rc, 0, r.stderr[-3000:])
        self.assertIn("Starting web interface at http://127.0.0.1:", r.stderr)
        self.assertGreater(r.count("/items"), 0)
        data, html = self.check_report(self.path("report_3_30_2.html"))
        self.assertGreater(len(data["points"]), 0)
        self.assertIn("Web", html)

    def test_autoquit_after_stop(self):
        ui = UI(self, "--autostart", "--autoquit", "1", "-u", "2", "-r", "20", "-H",
                self.demo.url)
        try:
            self.wait_for(lambda: get_json(ui.url + "/stats/requests")["user_count"] == 2, 60,
                          "the users to start")
            self.assertEqual(json.loads(fetch(ui.url + "/stop")[2])["success"], True)
            ui.proc.wait(timeout=60)  # ends by itself, a second after the test stopped
        finally:
            rc = ui.stop()
        self.assertEqual(rc, 0, ui.log())
        self.assertIn("Quitting in 1 seconds (--autoquit)", ui.log())

    def test_headless_html(self):
        r = self.cicada("--headless", "-t", "2", "-u", "2", "-r", "20", "-H", self.demo.url,
                        "--threads", "1", "--html", self.path("out/headless.html"),
                        script=SCRIPT.replace('error("boom <b>")', "return"), timeout=120)
        # the directory does not exist: the report cannot be written, the run still ends
        self.assertIn("cannot write the HTML report", r.stderr)
        os.makedirs(self.path("out"))
        r = self.cicada("--headless", "-t", "2", "-u", "2", "-r", "20", "-H", self.demo.url,
                        "--threads", "1", "--html", self.path("out/headless.html"),
                        script=SCRIPT, timeout=120)
        self.assertNotIn("Starting web interface", r.stderr)
        self.check_report(self.path("out/headless.html"))


if __name__ == "__main__":
    main()
