"""Browser users in headless Chromium: WebdriverUser (chromedriver, W3C WebDriver) and BrowserUser
(Chrome DevTools Protocol), against the test shop in tests/servers/browser_site/ and the demo
server's page.

Each test checks, through the JSON results: sessions opened and closed, page-load timings and
per-resource timings recorded with values above zero, typing and clicking having their effect on
the page (read back with a script in the page), a wrong selector counted as a failure; and, by
scanning /proc, that no process cicada started (chromedriver, Chromium) is left once cicada has
exited: after users that stopped themselves, after SIGINT in the middle of their work, after
SIGKILL, after an on_start that raised and after a browser that could not start. Every run
starts cicada with a TMPDIR of its own, which its browsers inherit, so they are told apart from
anyone else's.

No timing assertions, and no waiting for a time: every run is ended (SIGINT, or SIGKILL) once
cicada's own live statistics (--json-stream, a line a second) show that its users got where the
test needs them, however long a loaded machine takes to start its browsers.
"""
import json
import os
import signal
import subprocess
import time
import unittest

import servers
import webdriver
from harness import CICADA, SOURCE, CicadaTest, Result, main

SITE = os.path.join(servers.SERVERS, "browser_site.py")

# What a user does once: a page load, typing and a click whose effects are read back from the
# page, a wait for an element the page adds late, and a selector that matches nothing.
WEBDRIVER = """
local cicada = require "cicada"
local webdriver = require "cicada.webdriver"
local Shopper = webdriver.WebdriverUser:extend("Shopper", {
    record_commands = true, sessions_per_driver = 2 })
local function check(name, ok, detail)
    cicada.record("check", name, 0, 0, (not ok) and tostring(detail) or nil)
end
Shopper:task(function(self)
    local b = self.browser
    assert(b:navigate("/", { name = "home" }))
    assert(b:type("#q", "blue shoes"))
    assert(b:click("#go"))
    local r = b:execute("return document.getElementById('result').textContent")
    check("typed", r == "searched: blue shoes", r)
    assert(b:click("#counter"))
    assert(b:click("#counter"))
    local n = b:execute("return document.getElementById('counter').textContent")
    check("clicked", n == "2", n)
    check("waited", b:wait_for("#late", { timeout = 20 }) ~= nil, "late")
    local none, werr = b:wait_for("#never", { timeout = 0.3 })
    check("wait timeout", none == nil and tostring(werr):find("timeout") ~= nil, werr)
    -- elements pass both ways, also inside lists and tables
    local items = b:find_all("#items .item")
    local n = b:execute("return arguments[0].length", items)
    check("elements in", n == 10 and #items == 10, n)
    local got = b:execute("return { first: [arguments[0].list[0]], none: arguments[1] }",
        { list = items }, nil)
    local first = type(got) == "table" and type(got.first) == "table" and got.first[1]
    check("elements out", first and first:text() == "Item 1 2.50", first and first:text())
    local el, err = b:find("#no-such-element")
    check("wrong selector", el == nil and err ~= nil, "found")
    check("text", b:text("#title") == "Test shop", b:text("#title"))
    check("attribute", b:attribute("#q", "placeholder") == "search", "placeholder")
    assert(b:navigate(os.getenv("DEMO_URL") .. "/", { name = "demo" }))
    %(end)s
end)
return { Shopper }
"""

BROWSER = """
local cicada = require "cicada"
local browser = require "cicada.browser"
local Shopper = browser.BrowserUser:extend("Shopper", {
    record_commands = true, users_per_browser = 2 })
local function check(name, ok, detail)
    cicada.record("check", name, 0, 0, (not ok) and tostring(detail) or nil)
end
Shopper:task(function(self)
    local p = self.page
    assert(p:navigate("/", { name = "home" }))
    assert(p:type("#q", "blue shoes"))
    assert(p:click("#go"))
    local r = p:evaluate("document.getElementById('result').textContent")
    check("typed", r == "searched: blue shoes", r)
    assert(p:click("#counter"))
    assert(p:click("#counter"))
    local n = p:evaluate("document.getElementById('counter').textContent")
    check("clicked", n == "2", n)
    check("waited", p:wait_for("#late", { timeout = 20 }) == true, "late")
    local none, werr = p:wait_for("#never", { timeout = 0.3 })
    check("wait timeout", none == nil and tostring(werr):find("timeout") ~= nil, werr)
    local ok, err = p:click("#no-such-element")
    check("wrong selector", ok == nil and err ~= nil, "clicked")
    check("text", p:text("#title") == "Test shop", p:text("#title"))
    check("attribute", p:attribute("#q", "placeholder") == "search", "placeholder")
    assert(p:navigate("/broken.html", { name = "broken" }))
    assert(p:navigate(os.getenv("DEMO_URL") .. "/", { name = "demo" }))
    %(end)s
end)
return { Shopper }
"""

STOP_USER = "error(cicada.StopUser)"
KEEP_GOING = "cicada.sleep(0.2)"

# A user whose own on_start fails: its browser is still closed.
FAILING_START = """
local cicada = require "cicada"
local m = require "cicada.%(module)s"
local U = m.%(cls)s:extend("Broken", { record_commands = true })
function U:on_start() error("on_start broke") end
U:task(function(self) end)
return { U }
"""

BAD_BINARY = """
local cicada = require "cicada"
local m = require "cicada.%(module)s"
local U = m.%(cls)s:extend("NoBrowser", { chromium = "/nonexistent/chromium", start_timeout = 20 })
U:task(function(self) end)
return { U }
"""

# A user whose page's renderer crashes (chrome://crash): the call that sees it fails, and a
# later one opens a new page or session; the crashed one is closed all the same.
CRASH = """
local cicada = require "cicada"
local m = require "cicada.%(module)s"
local U = m.%(cls)s:extend("Crashing", { record_commands = true })
U:task(function(self)
    local b = self.%(field)s
    assert(b:navigate("/", { name = "home" }))
    b:navigate("chrome://crash", { name = "crash" })
    b:navigate("/", { name = "after crash" }) -- fails when the crash is news to it
    local ok, err = b:navigate("/", { name = "recovered" })
    cicada.record("check", "recovered", 0, 0, (not ok) and tostring(err) or nil)
    error(cicada.StopUser)
end)
return { U }
"""

# How long a run may take to get where a test interrupts it (its browsers started, its pages
# loaded) and then to end: bounds for a machine busy with other work, not expectations.
READY_WITHIN = 240
END_WITHIN = 180


def live_stats(stream):
    """The statistics of the last complete line of a --json-stream file:
    {(type, name): entry}, empty before the first line."""
    try:
        with open(stream) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    for line in reversed(lines):
        try:
            data = json.loads(line)
        except ValueError:  # the line being written
            continue
        return {(e["type"], e["name"]): e for e in data["stats"]}
    return {}


def counted(stats, name, type_, key="num_requests"):
    e = stats.get((type_, name))
    return e[key] if e else 0


def open_failed(stats, opened):
    """Whether opening a browser (the (name, type) entry |opened|) failed: whatever the test
    waits for then never comes, and its assertions say why at once."""
    return counted(stats, *opened, key="num_failures") > 0


def marked_processes(marker):
    """Pids of live processes whose command line or environment mentions |marker|."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state in (b"Z", b"X"):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except (OSError, IndexError):
            continue
        if marker.encode() in cmd or marker.encode() in env:
            found.append(int(pid))
    return found


@unittest.skipUnless(webdriver.available(), "needs chromium and chromium-driver")
class BrowserUsers(CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.site = servers.Process([servers.PYTHON, SITE])
        cls.demo = servers.demo_server()

    @classmethod
    def tearDownClass(cls):
        cls.site.stop()
        cls.demo.stop()

    def setUp(self):
        super().setUp()
        self.tmp = self.path("tmp")
        os.makedirs(self.tmp)
        self.env = {"TMPDIR": self.tmp, "DEMO_URL": self.demo.url}

    def tearDown(self):
        for pid in marked_processes(self.tmp):  # never leave a browser behind, even on failure
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        super().tearDown()

    def assert_nothing_left(self, timeout=60):
        deadline = time.monotonic() + timeout
        while marked_processes(self.tmp) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(marked_processes(self.tmp), [], "browser processes left behind")
        while os.listdir(self.tmp) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(os.listdir(self.tmp), [], "scratch directories left behind")

    def run_once(self, script, opened, closed, users=2):
        """Runs |users| users on one thread, sharing one browser process, each through the task
        once; a user then stops (StopUser), which closes its browser (|closed| recorded). The
        run is ended once every user is done, or one of them went round again (its task raised
        before the end) or could not open its browser (|opened| failed): the assertions then
        say what failed."""
        def ready(stats):
            return (counted(stats, *closed) >= users or counted(stats, "home", "browser") > users
                    or open_failed(stats, opened))

        rc, r = self.run_until(script % {"end": STOP_USER}, users, ready, "users done",
                               args=("--threads", "1"))
        self.assertIn(rc, (0, 1), r.stderr[-3000:])
        self.assertIsNotNone(r.data, r.stderr[-3000:])
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        return r

    def assert_checks(self, r, *more):
        for name in ("typed", "clicked", "waited", "wait timeout", "wrong selector", "text",
                     "attribute", *more):
            self.assertGreaterEqual(r.count(name, "check"), 1, f"{name}: {r.stderr}")
            self.assertEqual(r.failures(name, "check"), 0, f"{name}: {r.data['failures']}")

    def assert_page_loads(self, r, name):
        for type_ in ("browser", "browser-dcl", "browser-ttfb"):
            e = r.entry(name, type_)
            self.assertIsNotNone(e, f"{type_} {name}: {[x['name'] for x in r.data['stats']]}")
            self.assertGreaterEqual(e["num_requests"], 1)
            self.assertEqual(e["num_failures"], 0, r.data["failures"])
            self.assertGreater(e["min_response_time"], 0)
        self.assertGreater(r.entry(name, "browser")["total_content_length"], 0)

    # ---- WebdriverUser --------------------------------------------------------------------

    def test_webdriver_user(self):
        r = self.run_once(WEBDRIVER, ("new session", "webdriver"), ("delete session", "webdriver"))
        self.assert_checks(r, "elements in", "elements out")
        self.assert_page_loads(r, "home")
        self.assert_page_loads(r, "demo")
        # the wrong selector: a counted failure under the command that failed
        self.assertGreaterEqual(r.failures("find", "webdriver"), 1)
        self.assertGreaterEqual(r.failures("wait_for", "webdriver"), 1)
        self.assertTrue(any("#never not found" in f["error"] for f in r.data["failures"]),
                        r.data["failures"])
        self.assertTrue(any("no such element" in f["error"] for f in r.data["failures"]),
                        r.data["failures"])
        # every session opened was deleted (two users share one chromedriver)
        opened = r.count("new session", "webdriver")
        self.assertEqual(opened, 2)
        self.assertEqual(r.failures("new session", "webdriver"), 0)
        self.assertEqual(r.count("delete session", "webdriver"), opened)
        self.assertEqual(r.failures("delete session", "webdriver"), 0)
        for cmd in ("navigate", "click", "type", "execute"):
            self.assertGreaterEqual(r.count(cmd, "webdriver"), 1, cmd)
        self.assert_nothing_left()

    def test_webdriver_sigint(self):
        self.interrupt(WEBDRIVER, ("new session", "webdriver"), ("delete session", "webdriver"),
                       signal.SIGINT)

    def test_webdriver_sigkill(self):
        self.interrupt(WEBDRIVER, ("new session", "webdriver"), None, signal.SIGKILL)

    def test_webdriver_failing_on_start(self):
        r = self.failing_on_start("webdriver", "WebdriverUser", ("new session", "webdriver"),
                                  ("delete session", "webdriver"))
        self.assertEqual(r.count("new session", "webdriver"), 1)
        self.assertEqual(r.count("delete session", "webdriver"), 1)
        self.assertEqual(r.failures("delete session", "webdriver"), 0)

    def test_webdriver_bad_binary(self):
        r = self.bad_binary("webdriver", "WebdriverUser", ("new session", "webdriver"))
        self.assertEqual(r.failures("new session", "webdriver"), 1, r.data["failures"])
        self.assertTrue(any("no chrome binary at /nonexistent/chromium" in f["error"]
                            for f in r.data["failures"]), r.data["failures"])

    # ---- BrowserUser (DevTools) -----------------------------------------------------------

    def test_browser_user(self):
        r = self.run_once(BROWSER, ("new page", "cdp"), ("close page", "cdp"))
        self.assert_checks(r)
        self.assert_page_loads(r, "home")
        self.assert_page_loads(r, "demo")
        self.assertGreaterEqual(r.failures("click", "cdp"), 1)
        self.assertGreaterEqual(r.failures("wait_for", "cdp"), 1)
        self.assertTrue(any("#never not found" in f["error"] for f in r.data["failures"]),
                        r.data["failures"])
        self.assertTrue(any("no element matches #no-such-element" in f["error"]
                            for f in r.data["failures"]), r.data["failures"])
        # every resource of the page, timed by the browser
        for path in ("/", "/static/app.js", "/static/site.css", "/static/logo.svg", "/api/items"):
            e = r.entry(self.site.url + path, "browser-resource")
            self.assertIsNotNone(e, f"{path}: {[x['name'] for x in r.data['stats']]}")
            self.assertGreaterEqual(e["num_requests"], 1)
            self.assertEqual(e["num_failures"], 0)
            self.assertGreater(e["min_response_time"], 0)
            self.assertGreater(e["total_content_length"], 0)
        # a resource that is not there fails its own entry, not the page's load
        missing = r.entry(self.site.url + "/static/missing.png", "browser-resource")
        self.assertIsNotNone(missing)
        self.assertEqual(missing["num_failures"], missing["num_requests"])
        self.assertTrue(any(f["error"] == "HTTP 404" for f in r.data["failures"]))
        self.assertEqual(r.failures("broken", "browser"), 0)
        # each user had a page of its own, opened and closed (two users share one Chromium)
        self.assertEqual(r.count("new page", "cdp"), 2)
        self.assertEqual(r.failures("new page", "cdp"), 0)
        self.assertEqual(r.count("close page", "cdp"), 2)
        self.assertEqual(r.failures("close page", "cdp"), 0)
        self.assert_nothing_left()

    def test_browser_sigint(self):
        self.interrupt(BROWSER, ("new page", "cdp"), ("close page", "cdp"), signal.SIGINT)

    def test_browser_sigkill(self):
        self.interrupt(BROWSER, ("new page", "cdp"), None, signal.SIGKILL)

    def test_browser_failing_on_start(self):
        r = self.failing_on_start("browser", "BrowserUser", ("new page", "cdp"),
                                  ("close page", "cdp"))
        self.assertEqual(r.count("new page", "cdp"), 1)
        self.assertEqual(r.count("close page", "cdp"), 1)
        self.assertEqual(r.failures("close page", "cdp"), 0)

    def test_browser_bad_binary(self):
        r = self.bad_binary("browser", "BrowserUser", ("new page", "cdp"))
        self.assertEqual(r.failures("new page", "cdp"), 1, r.data["failures"])
        self.assertTrue(any("cannot start /nonexistent/chromium" in f["error"]
                            for f in r.data["failures"]), r.data["failures"])

    def test_webdriver_crash(self):
        self.crashed("webdriver", "WebdriverUser", "browser", ("new session", "webdriver"),
                     ("delete session", "webdriver"))

    def test_browser_crash(self):
        self.crashed("browser", "BrowserUser", "page", ("new page", "cdp"), ("close page", "cdp"))

    # ---- the example ----------------------------------------------------------------------

    def test_example(self):
        """examples/browser as its README runs it (4 users, one a second: two of each class),
        ended once every kind of entry it records was recorded, or something failed."""
        pages = ("/", "/ (first visit)", "/ (items)", "/page2.html (from a click)")
        # each class's own: WebdriverShopper checks "items listed", CdpShopper "items fetched"
        # and records every resource; the other entries come from both
        checks = ("items listed", "items fetched")
        resources = ("/", "/page2.html", "/static/app.js", "/static/site.css",
                     "/static/logo.svg", "/api/items")

        def ready(stats):
            if any(e["num_failures"] for e in stats.values()):
                return True
            return (counted(stats, "/ (first visit)", "browser") >= 2  # both CdpShoppers
                    and all(counted(stats, p, "browser") for p in pages)
                    and all(counted(stats, c, "check") for c in checks)
                    and all(counted(stats, self.site.url + p, "browser-resource")
                            for p in resources))

        example = os.path.join(SOURCE, "examples", "browser", "cicadafile.lua")
        rc, r = self.run_until(None, 4, ready, "every entry of the example", file=example,
                               rate=1)
        self.assertIn(rc, (0, 1), r.stderr[-3000:])
        self.assertIsNotNone(r.data, r.stderr[-3000:])
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        self.assertEqual(r.data["failures"], [])
        for name in pages:
            for type_ in ("browser", "browser-dcl", "browser-ttfb"):
                self.assertGreater(r.count(name, type_), 0, f"{type_} {name}")
        self.assertEqual(r.count("/ (first visit)", "browser"), 2)  # each CdpShopper's on_start
        for name in checks:
            self.assertGreater(r.count(name, "check"), 0, name)
        for path in resources:
            self.assertGreater(r.count(self.site.url + path, "browser-resource"), 0, path)
        self.assert_nothing_left()

    # ---- shared -------------------------------------------------------------------------

    def crashed(self, module, cls, field, opened, closed):
        """One user whose page crashes goes on in a new page or session: both were opened and
        closed, and the navigation after the crash's failure succeeded."""
        script = CRASH % {"module": module, "cls": cls, "field": field}
        _, r = self.run_until(script, 1, lambda stats: (counted(stats, *closed) >= 2
                                                        or open_failed(stats, opened)),
                              "two closed browsers")
        self.assertIsNotNone(r.data, r.stderr[-3000:])
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        self.assertEqual(r.count("recovered", "check"), 1, r.stderr[-3000:])
        self.assertEqual(r.failures("recovered", "check"), 0, r.data["failures"])
        self.assertEqual(r.failures("crash", "browser"), 1, r.data["failures"])
        self.assertEqual(r.count(*opened), 2)
        self.assertEqual(r.failures(*opened), 0, r.data["failures"])
        self.assertEqual(r.failures(*closed), 0, r.data["failures"])
        self.assert_nothing_left()


    def run_until(self, script, users, ready, what, sig=signal.SIGINT, args=(), file=None,
                  rate=None):
        """Starts |users| users of |script| (or of the script |file|), |rate| a second (all at
        once by default), and sends |sig| to cicada once ready(stats) holds for its live
        statistics (see live_stats). Returns (the exit status, the Result of the run, None
        after SIGKILL)."""
        json_path, stream = self.path("result.json"), self.path("stream.jsonl")
        argv = [CICADA, "-f", file or self.write("cicadafile.lua", script), "--headless",
                "-u", str(users), "-r", str(rate or users), "-t", "600s", "-H", self.site.url,
                "--json-file", json_path, "--json-stream", stream, *args]
        # into files, not pipes: a pipe nobody reads while the test waits could stall cicada
        out_path, err_path = self.path("stdout.txt"), self.path("stderr.txt")
        with open(out_path, "w") as out, open(err_path, "w") as err:
            p = subprocess.Popen(argv, stdout=out, stderr=err, env={**os.environ, **self.env},
                                 cwd=self.dir)
        try:
            deadline = time.monotonic() + READY_WITHIN
            while not ready(live_stats(stream)):
                self.assertIsNone(p.poll(), f"cicada ended before {what}:\n{self.tail(err_path)}")
                self.assertLess(time.monotonic(), deadline,
                                f"no {what} within {READY_WITHIN} s: {sorted(live_stats(stream))}"
                                f"\n{self.tail(err_path)}")
                time.sleep(0.2)
            os.kill(p.pid, sig)
            p.wait(timeout=END_WITHIN)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        with open(out_path) as out, open(err_path) as err:
            r = Result(p, out.read(), err.read(), None if sig == signal.SIGKILL else json_path)
        return p.returncode, r

    def tail(self, path):
        with open(path) as f:
            return f.read()[-3000:]

    def interrupt(self, script, opened, closed, sig):
        """Runs two users until both have opened their browser (|opened|: the (name, type) of
        that entry) and loaded the site's page, then sends |sig| to cicada. After SIGINT,
        every page or session opened was closed and that was recorded (|closed|), and the
        final statistics were written."""
        def ready(stats):
            return ((counted(stats, *opened) >= 2 and counted(stats, "home", "browser") >= 1)
                    or open_failed(stats, opened))

        rc, r = self.run_until(script % {"end": KEEP_GOING}, 2, ready,
                               "two open browsers and a page load", sig)
        if sig == signal.SIGKILL:
            self.assertEqual(rc, -signal.SIGKILL)
            self.assertFalse(open_failed(live_stats(self.path("stream.jsonl")), opened),
                             r.stderr[-3000:])
        else:
            self.assertIn(rc, (0, 1), r.stderr[-3000:])
            self.assertIsNotNone(r.data, r.stderr[-3000:])
            self.assertEqual(r.failures(*opened), 0, r.data["failures"])
            n = r.count(*opened)  # 2, or more if a browser crashed and its users reopened
            self.assertGreaterEqual(n, 2, r.stderr[-3000:])
            self.assertEqual(r.count(*closed), n, r.stderr[-3000:])
            self.assertEqual(r.failures(*closed), 0, r.data["failures"])
            self.assertGreaterEqual(r.count("home", "browser"), 1)
        self.assert_nothing_left()

    def failing_on_start(self, module, cls, opened, closed):
        """One user whose on_start raises: the error is in the exceptions table with its
        traceback, and its browser was closed all the same (|closed| recorded). The run is
        ended once that close shows in the live statistics (the error is reported right after),
        or the browser did not open."""
        _, r = self.run_until(FAILING_START % {"module": module, "cls": cls}, 1,
                              lambda stats: (counted(stats, *closed) >= 1
                                             or open_failed(stats, opened)), "closed browser")
        self.assertIsNotNone(r.data, r.stderr[-3000:])
        self.assertEqual(r.failures(*opened), 0, r.data["failures"])
        broke = [e for e in r.data["exceptions"] if "on_start broke" in e["message"]]
        self.assertEqual(len(broke), 1, f"{r.data['exceptions']}\n{r.stderr[-3000:]}")
        self.assertEqual(broke[0]["count"], 1)
        self.assertIn("cicadafile.lua:5: on_start broke", broke[0]["traceback"])
        self.assertIn("stack traceback", broke[0]["traceback"])
        self.assert_nothing_left()
        return r

    def bad_binary(self, module, cls, opened):
        """A browser that cannot start: the open is a counted failure and the user's error is
        in the exceptions table. The run is ended once the failure shows."""
        _, r = self.run_until(BAD_BINARY % {"module": module, "cls": cls}, 1,
                              lambda stats: counted(stats, *opened, key="num_failures") >= 1,
                              "failed open")
        self.assertIsNotNone(r.data, r.stderr[-3000:])
        self.assertTrue(any("did not open" in e["message"] for e in r.data["exceptions"]),
                        r.data["exceptions"])
        self.assert_nothing_left()
        return r


if __name__ == "__main__":
    main()
