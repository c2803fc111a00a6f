"""Distributed mode: cicada masters and workers, a cicada worker under Locust's own master,
--processes, and the faults: a worker killed mid-run, a master that disappears, a worker
started before its master, CURVE."""
import csv
import json
import os
import shutil
import signal
import subprocess
import time
import unittest

import servers
from harness import CICADA, CicadaTest, main

PYTHON = "/usr/bin/python3"

# Every user makes 30 requests with response times that depend only on the request's number,
# then stops: the same samples however the users are spread over threads and processes.
DETERMINISTIC = """
local cicada = require "cicada"
local A = cicada.User:extend("A", { weight = 3, wait_time = cicada.constant(0.005) })
function A:on_start() self.n = 0 end
A:task(function(self)
    self.n = self.n + 1
    cicada.record("t", "a", self.n * 1.7, self.n)
    if self.n == 30 then error(cicada.StopUser) end
end)
local B = cicada.User:extend("B", { wait_time = cicada.constant(0.005) })
function B:on_start() self.n = 0 end
B:task(function(self)
    self.n = self.n + 1
    cicada.record("t", "b", self.n * 11.3, 1, self.n % 5 == 0 and "every fifth" or nil)
    if self.n == 30 then error(cicada.StopUser) end
end)
return { A, B }
"""

# Requests named after the process (NODE in the environment), made until the run ends.
STEADY = """
local cicada = require "cicada"
local node = os.getenv("NODE") or "single"
local U = cicada.User:extend("U", { wait_time = cicada.constant(0.05) })
U:task(function() cicada.record("node", node, 1, 0) end)
return { U }
"""

LOCUSTFILE = """
from locust import User, constant, task

class A(User):
    weight = 3
    wait_time = constant(1)

    @task
    def t(self):
        pass

class B(User):
    wait_time = constant(1)

    @task
    def t(self):
        pass
"""


def free_port():
    return servers.free_port()


class Distributed(CicadaTest):
    def setUp(self):
        super().setUp()
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        super().tearDown()

    def spawn(self, argv, name, env=None):
        """Starts a process with its output in the file |name|; returns the Popen."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        out = open(self.path(name), "w")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir,
                             env=full_env)
        out.close()
        self.procs.append(p)
        return p

    def log(self, name):
        return self.read(name)

    def wait_log(self, name, text, timeout=60):
        self.wait_for(lambda: text in self.log(name), timeout=timeout, what=f"{text!r} in {name}")

    def worker(self, port, name, *extra, script="cicadafile.lua", env=None):
        return self.spawn([CICADA, "-f", self.path(script), "--worker", "--master-port", str(port),
                           "--threads", "1", *extra], name, env=env)

    def master(self, port, name, *extra, script="cicadafile.lua"):
        return self.spawn([CICADA, "-f", self.path(script), "--master", "--master-bind-host",
                           "127.0.0.1", "--master-bind-port", str(port), "--headless",
                           "--json-file", self.path(name + ".json"), *extra], name)

    def results(self, name):
        with open(self.path(name + ".json")) as f:
            return json.load(f)

    @staticmethod
    def entries(data):
        keep = ("num_requests", "num_failures", "min_response_time", "max_response_time",
                "total_content_length", "percentiles")
        out = {(e["type"], e["name"]): {k: e[k] for k in keep} for e in data["stats"]}
        out["total"] = {k: data["total"][k] for k in keep}
        for e in out.values():  # the average may differ in its last digit (summing order)
            e["percentiles"] = {k: round(v, 6) for k, v in e["percentiles"].items()}
        return out

    def test_master_with_two_workers_equals_one_process(self):
        self.write("cicadafile.lua", DETERMINISTIC)
        one = self.cicada("--headless", "--threads", "2", "-u", "8", "-r", "100", "-t", "3",
                          script=DETERMINISTIC)
        self.assertEqual(one.rc, 1, one.stderr)  # the "every fifth" failures
        port = free_port()
        m = self.master(port, "master", "-u", "8", "-r", "100", "-t", "3", "--expect-workers", "2")
        w1 = self.worker(port, "w1")
        w2 = self.worker(port, "w2")
        self.assertEqual(m.wait(timeout=60), 1, self.log("master"))
        self.assertEqual(w1.wait(timeout=30), 1)  # workers exit as their master quits them
        self.assertEqual(w2.wait(timeout=30), 1)
        dist = self.results("master")
        # 6 A and 2 B users, 30 requests each, the same samples: identical statistics,
        # percentiles included (full histograms travel between cicada nodes)
        self.assertEqual(self.entries(dist), self.entries(one.data))
        self.assertEqual(dist["total"]["num_requests"], 8 * 30)
        self.assertEqual(dist["user_count"], {"A": 6, "B": 2})
        log = self.log("master")
        self.assertIn("reported as ready. 2 workers connected.", log)
        self.assertRegex(log, r"Worker\s+State\s+Users\s+CPU %")  # the workers' table

    def test_processes(self):
        r = self.cicada("--headless", "--processes", "2", "-u", "8", "-r", "100", "-t", "3",
                        script=DETERMINISTIC)
        self.assertEqual(r.rc, 1, r.stderr[-3000:])
        self.assertEqual(r.count("a", "t"), 6 * 30)
        self.assertEqual(r.count("b", "t"), 2 * 30)
        self.assertEqual(r.failures("b", "t"), 2 * 6)
        self.assertEqual(r.stderr.count("got quit message from master"), 2)

    def test_cicada_worker_under_locust_master(self):
        self.write("locustfile.py", LOCUSTFILE)
        self.write("cicadafile.lua", DETERMINISTIC)
        port = free_port()
        prefix = self.path("locust")
        locust = self.spawn([PYTHON, "-m", "locust", "-f", self.path("locustfile.py"), "--master",
                             "--headless", "-u", "4", "-r", "10", "-t", "6s", "--expect-workers",
                             "1", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                             str(port), "--csv", prefix], "locust")
        w = self.worker(port, "w1")
        locust.wait(timeout=90)
        self.assertEqual(w.wait(timeout=30), 1, self.log("w1"))
        with open(prefix + "_stats.csv") as f:
            rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
        # Locust's master split 4 users as 3 A and 1 B; each made 30 requests on cicada
        self.assertEqual(int(rows[("t", "a")]["Request Count"]), 3 * 30, self.log("locust"))
        self.assertEqual(int(rows[("t", "b")]["Request Count"]), 30)
        self.assertEqual(int(rows[("t", "b")]["Failure Count"]), 6)
        self.assertEqual(int(rows[("", "Aggregated")]["Request Count"]), 4 * 30)
        self.assertEqual(float(rows[("t", "a")]["Min Response Time"]), 1.7)
        self.assertNotIn("Traceback", self.log("locust"))

    def test_killed_worker_is_missing_and_its_stats_stay(self):
        self.write("cicadafile.lua", STEADY)
        port = free_port()
        m = self.master(port, "master", "-u", "4", "-r", "100", "-t", "12", "--expect-workers",
                        "2")
        self.worker(port, "w1", env={"NODE": "w1"})
        w2 = self.worker(port, "w2", env={"NODE": "w2"})
        self.wait_log("master", "All users spawned")
        time.sleep(4)  # two reports from each worker
        w2.send_signal(signal.SIGKILL)
        w2.wait()
        self.assertEqual(m.wait(timeout=60), 0, self.log("master"))
        log = self.log("master")
        self.assertIn("failed to send heartbeat, setting state to missing", log)
        self.assertIn("--run-time limit reached", log.split("setting state to missing")[1])
        data = self.results("master")
        counts = {e["name"]: e["num_requests"] for e in data["stats"]}
        self.assertGreater(counts.get("w2", 0), 0, counts)  # what it reported before it died
        self.assertGreater(counts.get("w1", 0), counts["w2"])  # the other one carried on

    def test_master_that_disappears(self):
        self.write("cicadafile.lua", STEADY)
        port = free_port()
        m = self.master(port, "master", "-u", "2", "-r", "100", "-t", "60")
        w = self.worker(port, "w1", "--heartbeat-timeout", "2")
        self.wait_log("master", "All users spawned")
        m.send_signal(signal.SIGKILL)
        m.wait()
        self.assertEqual(w.wait(timeout=30), 1)  # stopped its users and left on its own
        self.assertIn("Lost the master", self.log("w1"))

    def test_worker_started_before_its_master(self):
        self.write("cicadafile.lua", STEADY)
        port = free_port()
        w = self.worker(port, "w1")
        time.sleep(1.5)
        m = self.master(port, "master", "-u", "2", "-r", "100", "-t", "2")
        self.assertEqual(m.wait(timeout=60), 0, self.log("master"))
        self.assertEqual(w.wait(timeout=30), 0, self.log("w1"))
        self.assertGreater(self.results("master")["total"]["num_requests"], 0)

    def test_web_ui_lists_the_workers(self):
        import re
        import urllib.request
        self.write("cicadafile.lua", STEADY)
        port = free_port()
        m = self.spawn([CICADA, "-f", self.path("cicadafile.lua"), "--master",
                        "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                        "--web-port", "0", "--autostart", "--autoquit", "0", "-u", "3", "-r",
                        "100", "-t", "4"], "master")
        self.worker(port, "w1", env={"NODE": "w1"})
        self.wait_log("master", "All users spawned")
        url = re.search(r"Starting web interface at (http://\S+)", self.log("master")).group(1)
        with urllib.request.urlopen(url.rstrip("/") + "/stats/requests") as resp:
            stats = json.load(resp)
        self.assertEqual(stats["worker_count"], 1)
        self.assertEqual(len(stats["workers"]), 1)
        w = stats["workers"][0]
        self.assertEqual((w["state"], w["user_count"]), ("running", 3))
        self.assertIn("cpu_usage", w)
        self.assertEqual(stats["user_count"], 3)
        self.assertEqual(m.wait(timeout=60), 0, self.log("master"))

    def keys(self, name):
        p = subprocess.run([CICADA, "keygen"], capture_output=True, text=True, check=True)
        self.write(name + ".key", p.stdout)
        self.write(name + ".pub", "".join(line + "\n" for line in p.stdout.splitlines()
                                          if line.startswith("public-key")))

    def test_curve(self):
        self.write("cicadafile.lua", STEADY)
        for k in ("master", "worker", "stranger"):
            self.keys(k)
        port = free_port()
        m = self.master(port, "master", "-u", "2", "-r", "100", "-t", "2", "--curve-secret-key",
                        self.path("master.key"), "--curve-allow", self.path("worker.pub"))
        w = self.worker(port, "w1", "--curve-secret-key", self.path("worker.key"),
                        "--curve-server-key", self.path("master.pub"))
        self.assertEqual(m.wait(timeout=60), 0, self.log("master"))
        self.assertEqual(w.wait(timeout=30), 0, self.log("w1"))
        self.assertGreater(self.results("master")["total"]["num_requests"], 0)
        # a worker whose key is not allowed never joins
        port = free_port()
        m = self.master(port, "master2", "-u", "2", "-r", "100", "-t", "2", "--curve-secret-key",
                        self.path("master.key"), "--curve-allow", self.path("worker.pub"),
                        "--expect-workers-max-wait", "3")
        self.worker(port, "w2", "--curve-secret-key", self.path("stranger.key"),
                    "--curve-server-key", self.path("master.pub"))
        self.assertEqual(m.wait(timeout=60), 1)
        self.assertIn("Gave up waiting for workers to connect: 0 of 1", self.log("master2"))
        # and a worker without CURVE at all is told what is missing
        r = self.cicada("--worker", "--curve-server-key", self.path("master.pub"),
                        script=STEADY, want_json=False)
        self.assertEqual(r.rc, 2)
        self.assertIn("--curve-server-key and --curve-allow need --curve-secret-key", r.stderr)


HTTP_USERS = """
local cicada = require "cicada"
local Shopper = cicada.HttpUser:extend("Shopper", { wait_time = cicada.constant(0.02) })
Shopper:task(function(self) self.client:get("/items") end)
return { Shopper }
"""


class ManyHosts(CicadaTest):
    """A master, two workers and a target, each in a network namespace of its own, joined by
    veth pairs to a bridge in a fifth: a distributed test across four hosts, and nothing of it
    leaves those namespaces."""

    SUBNET = "10.231.7"

    def ip(self, *args, check=True):
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0 or not shutil.which("ip"):
            self.skipTest("needs root and iproute2 to make network namespaces")
        tag = str(os.getpid())
        self.hub = "cchub" + tag
        self.hosts = {name: "cc" + name + tag for name in ("m", "w1", "w2", "t")}
        self.addr = {"m": self.SUBNET + ".1", "w1": self.SUBNET + ".2", "w2": self.SUBNET + ".3",
                     "t": self.SUBNET + ".4"}
        self.procs = []
        self.ip("netns", "add", self.hub)
        self.ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        self.ip("-n", self.hub, "link", "set", "br0", "up")
        for name, ns in self.hosts.items():
            self.ip("netns", "add", ns)
            self.ip("-n", ns, "link", "set", "lo", "up")
            # the pair is made inside the host's namespace, then one end moves to the hub
            self.ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "p" + name)
            self.ip("-n", ns, "link", "set", "p" + name, "netns", self.hub)
            self.ip("-n", self.hub, "link", "set", "p" + name, "master", "br0")
            self.ip("-n", self.hub, "link", "set", "p" + name, "up")
            self.ip("-n", ns, "addr", "add", self.addr[name] + "/24", "dev", "eth0")
            self.ip("-n", ns, "link", "set", "eth0", "up")

    def tearDown(self):
        for p in getattr(self, "procs", []):
            if p.poll() is None:
                p.kill()
            p.wait()
        for ns in list(getattr(self, "hosts", {}).values()) + [getattr(self, "hub", None)]:
            if ns:
                self.ip("netns", "del", ns, check=False)
        super().tearDown()

    def on(self, host, argv, name):
        out = open(self.path(name), "w")
        p = subprocess.Popen(["ip", "netns", "exec", self.hosts[host], *argv], stdout=out,
                             stderr=subprocess.STDOUT, cwd=self.dir)
        out.close()
        self.procs.append(p)
        return p

    def test_distributed_run_across_namespaces(self):
        self.write("cicadafile.lua", HTTP_USERS)
        script = self.path("cicadafile.lua")
        self.on("t", [CICADA, "demo-server", "--host", self.addr["t"], "--port", "8080"], "target")
        master = self.on("m", [CICADA, "-f", script, "--master", "--master-bind-host",
                               self.addr["m"], "--headless", "--expect-workers", "2", "-u", "20",
                               "-r", "20", "-t", "20", "-H", f"http://{self.addr['t']}:8080",
                               "--json-file", self.path("master.json")], "master")
        for w in ("w1", "w2"):
            self.on(w, [CICADA, "-f", script, "--worker", "--master-host", self.addr["m"],
                        "--threads", "1"], w)
        self.assertEqual(master.wait(timeout=120), 0, self.read("master")[-3000:])
        with open(self.path("master.json")) as f:
            data = json.load(f)
        items = [e for e in data["stats"] if e["name"] == "/items"][0]
        self.assertGreater(items["num_requests"], 1000)
        self.assertEqual(items["num_failures"], 0)
        self.assertEqual(data["user_count"], {"Shopper": 20})
        log = self.read("master")
        self.assertEqual(log.count("reported as ready"), 2 * 2)  # at start, and after the stop
        for w in ("w1", "w2"):  # both hosts ran users: each worker was sent half of them
            self.assertIn("got quit message from master", self.read(w))


if __name__ == "__main__":
    main()
