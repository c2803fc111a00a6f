"""bench/browser/browsers.py: how many browser users one core sustains, for each browser user.

cicada (one thread) and every browser it starts run pinned to CPU 0; the test shop
(tests/servers/browser_site.py) runs on CPU 1. Each user loads the shop's page (an HTML
document, a style sheet, a script, an image and a JSON fetch), clicks a button, and thinks for
a second. For each user kind the user count grows step by step; each step runs on its own until
every browser has started (warm-up), then measures for MEASURE seconds (page loads that start
in that window; memory and CPU sampled in it). A core sustains the largest count at which page
loads per second still rose (by at least RISE over the step before) and the p95 page load (the
"browser" entry: loadEventEnd) stayed under P95_LIMIT_MS.

Memory per user is the proportional set size (PSS, /proc/PID/smaps_rollup) of cicada and all
its descendants (guards, chromedriver, Chromium), sampled during the measurement, divided by the
user count. "Users per core by CPU" divides the users by the CPU time (user + system) that
cicada and its descendants used per second of the measurement: what one core would sustain at
that load if nothing else ran on it, which the users-sustained figure cannot show on a busy
machine.

Run with: bench/run [path/to/cicada] --only browsers
Environment: BENCH_BROWSER_STEPS (user counts tried, "1,2,4,6,8,12,16,24"),
BENCH_BROWSER_SECONDS (measured per step, 20), BENCH_BROWSER_SHARE (the users_per_browser
values compared with 8 users, "1,4,8"; empty: no comparison).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SITE = os.path.join(HERE, "..", "..", "tests", "servers", "browser_site.py")
PYTHON = "/usr/bin/python3"

STEPS = tuple(int(x) for x in os.environ.get("BENCH_BROWSER_STEPS", "1,2,4,6,8,12,16,24")
              .split(","))
MEASURE = int(os.environ.get("BENCH_BROWSER_SECONDS", "20"))  # seconds measured per step
RISE = 0.05           # page loads/s must rise by this share to count as still rising
P95_LIMIT_MS = 1000   # the p95 page load a sustained count must stay under

SHARE_USERS = 8       # users of the users_per_browser comparison
SHARE = tuple(int(x) for x in os.environ.get("BENCH_BROWSER_SHARE", "1,4,8").split(",") if x)

KINDS = (
    ("WebdriverUser", "webdriver.lua", {}),
    ("BrowserUser", "cdp.lua", {}),
)


def pinned(cmd, cpu):
    return (["taskset", "-c", cpu] if shutil.which("taskset") else []) + cmd


def descendants(pid):
    """|pid| and every process below it."""
    children = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_by_process(pids):
    """{(pid, start time): user + system CPU seconds so far} of the live processes |pids|."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            out[(p, int(fields[19]))] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return out


class CpuMeter:
    """CPU time used by a process tree between start() and the last sample(). Browsers end
    and replace processes all the time (renderers, utilities), and the time of one that ended
    is not always added to a parent's in the tree (it may have been re-parented to init), so
    each process is followed by itself, from its first sample to its last: one that ends
    between two samples loses at most a sample period of its time."""

    def __init__(self, pid):
        self.pid = pid
        self.first, self.last = {}, {}

    def sample(self):
        now = cpu_by_process(descendants(self.pid))
        for k in now:
            self.first.setdefault(k, 0.0)  # started after start(): all of its time counts
        self.last.update(now)

    def start(self):
        self.first = cpu_by_process(descendants(self.pid))
        self.last = dict(self.first)

    def seconds(self):
        return sum(v - self.first.get(k, 0.0) for k, v in self.last.items())


def pss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def browsers_alive(pid):
    """Chromium processes (not counting chromedriver) below |pid|."""
    n = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() == "chromium":
                    n += 1
        except OSError:
            pass
    return n


def run_step(cicada, tmp, script, users, site_url, extra_env):
    """One step: |users| users of |script|. Page loads count from the end of the warm-up for
    MEASURE seconds (the script names them "page" from BENCH_FROM to BENCH_UNTIL). Memory and
    CPU are sampled in that window too; a pass over the processes' memory can take seconds on
    a busy machine, so the users go on browsing until the last pass is done, and the run is
    then ended with SIGINT (-t only bounds it)."""
    out = os.path.join(tmp, f"browsers-{users}.json")
    warm = 10 + 3 * users  # every browser started and loading pages by then (one core)
    launch = time.time()
    env = dict(os.environ, BENCH_FROM=str(launch + warm), BENCH_UNTIL=str(launch + warm + MEASURE),
               TMPDIR=tmp, **extra_env)
    cmd = pinned([cicada, "-f", os.path.join(HERE, script), "--headless", "--threads", "1",
                  "-u", str(users), "-r", str(users), "-t", str(warm + MEASURE + 120),
                  "-H", site_url, "--only-summary", "--json-file", out,
                  "--loglevel", "WARNING"], "0")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    samples = []
    cpu = []

    def sample():
        time.sleep(max(0.0, launch + warm + 1 - time.time()))
        meter = CpuMeter(proc.pid)
        meter.start()
        t0 = t1 = time.monotonic()
        while proc.poll() is None and time.time() < launch + warm + MEASURE - 1:
            samples.append(pss_kib(descendants(proc.pid)))
            time.sleep(1)
            meter.sample()
            t1 = time.monotonic()
        if proc.poll() is None:
            if t1 > t0:
                cpu.append(meter.seconds() / (t1 - t0))
            proc.send_signal(signal.SIGINT)  # the window is over: end the run, with its report

    t = threading.Thread(target=sample)
    t.start()
    _, err = proc.communicate(timeout=warm + MEASURE + 240)
    t.join()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"cicada exited with {proc.returncode}: {err.decode()[-2000:]}")
    with open(out) as f:
        data = json.load(f)
    page = next((e for e in data["stats"] if e["type"] == "browser" and e["name"] == "page"), None)
    n = page["num_requests"] if page else 0
    fails = page["num_failures"] if page else 0
    p95 = page["percentiles"].get("95") if page else None
    mem = max(samples) if samples else 0
    return {"users": users, "loads": n, "rate": n / MEASURE, "fails": fails, "p95": p95,
            "median": page["median_response_time"] if page else None, "pss_kib": mem,
            "cores": cpu[0] if cpu else float("nan")}


def per_core(users, cores):
    """Users per core by CPU: nan when no CPU use was sampled."""
    return users / cores if cores > 0 else float("nan")


def run(cicada, tmp):
    print("\n## Browsers: users one core sustains (cicada and its browsers on CPU 0, "
          "the test shop on CPU 1)\n")
    print(f"Each user: load the shop's page, click, think 1 s. Measured {MEASURE} s per step "
          f"after warm-up. Sustained: page loads/s still rising by {RISE:.0%} and p95 page "
          f"load under {P95_LIMIT_MS} ms.\n")
    site = subprocess.Popen(pinned([PYTHON, SITE], "1"), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    url = site.stdout.readline().split()[-1]
    summary = []
    try:
        for label, script, env in KINDS:
            print(f"### {label}\n")
            print("| users | page loads/s | failed | median page load | p95 page load | "
                  "CPU used (cores) | users per core by CPU | memory (PSS) | per user |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            best, prev = None, None
            for users in STEPS:
                r = run_step(cicada, tmp, script, users, url, env)
                p95 = r["p95"] if r["p95"] is not None else float("inf")
                med = r["median"] if r["median"] is not None else float("nan")
                print(f"| {users} | {r['rate']:.2f} | {r['fails']} | {med:.0f} ms | "
                      f"{p95:.0f} ms | {r['cores']:.2f} | {per_core(users, r['cores']):.1f} | "
                      f"{r['pss_kib'] / 1024:.0f} MiB | {r['pss_kib'] / 1024 / users:.0f} MiB |",
                      flush=True)
                rising = prev is None or r["rate"] >= prev["rate"] * (1 + RISE)
                if rising and p95 <= P95_LIMIT_MS and r["fails"] == 0:
                    best = r
                else:
                    break
                prev = r
            if best:
                summary.append((label, best))
            print()
        # what sharing a Chromium saves: the same users, 1, 4 and 8 to a browser
        if SHARE:
            print(f"### BrowserUser: {SHARE_USERS} users, by users_per_browser\n")
            print("| users_per_browser | Chromium processes | page loads/s | p95 page load | "
                  "CPU used (cores) | memory (PSS) | per user |")
            print("|---:|---:|---:|---:|---:|---:|---:|")
        for per in SHARE:
            r = run_step(cicada, tmp, "cdp.lua", SHARE_USERS, url,
                         {"BENCH_PER_BROWSER": str(per)})
            p95 = r["p95"] if r["p95"] is not None else float("inf")
            print(f"| {per} | {-(-SHARE_USERS // per)} | {r['rate']:.2f} | {p95:.0f} ms | "
                  f"{r['cores']:.2f} | {r['pss_kib'] / 1024:.0f} MiB | "
                  f"{r['pss_kib'] / 1024 / SHARE_USERS:.0f} MiB |", flush=True)
        print()
    finally:
        site.kill()
        site.wait()
    if summary:
        print("| browser user | users sustained on the core | page loads/s | p95 page load | "
              "users per core by CPU | memory per user |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, b in summary:
            print(f"| {label} | {b['users']} | {b['rate']:.2f} | {b['p95']:.0f} ms | "
                  f"{per_core(b['users'], b['cores']):.1f} | "
                  f"{b['pss_kib'] / 1024 / b['users']:.0f} MiB |")


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "build", "cicada"),
        sys.argv[2] if len(sys.argv) > 2 else "/tmp")
