"""The web UI in headless Chromium (Debian's chromium and chromium-driver over WebDriver):
start a test from the form, see the statistics table fill and the charts grow, change the user
count of the running test, stop it, download the CSV, and render the HTML report offline.

Screenshots are saved under $CICADA_ARTIFACTS (default: tests/artifacts in the build tree)
and their paths printed. No timing assertions: every wait is for a condition.
"""
import json
import os
import shutil
import unittest
import urllib.request

import servers
import webdriver
from harness import CICADA, CicadaTest, main
from test_webui import UI

ARTIFACTS = os.environ.get("CICADA_ARTIFACTS") or os.path.join(
    os.path.dirname(os.path.abspath(CICADA)), "tests", "artifacts")

SCRIPT = """
local cicada = require "cicada"
local Shopper = cicada.HttpUser:extend("Shopper", { wait_time = cicada.constant(0.1) })
Shopper:task(4, function(self) self.client:get("/items") end)
Shopper:task("flaky", 1, function(self) self.client:get("/flaky") end)
local Admin = cicada.HttpUser:extend("Admin", { wait_time = cicada.constant(0.5) })
Admin:task("health", function(self) self.client:get("/health") end)
return { Shopper, Admin }
"""

# How many pixels of a canvas are painted: the charts really drew.
PAINTED = """
const c = document.querySelector(arguments[0]);
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
return n;
"""


@unittest.skipUnless(webdriver.available(), "needs chromium and chromium-driver")
class Browser(CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.demo = servers.demo_server()
        os.makedirs(ARTIFACTS, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        cls.demo.stop()

    def shot(self, b, name):
        path = b.screenshot(os.path.join(ARTIFACTS, name))
        print(f"\nscreenshot: {path}", flush=True)
        return path

    def text(self, b, css):
        return b.js("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                    css)

    def test_ui_flow(self):
        ui = UI(self, "-H", self.demo.url, "-u", "3", "-r", "30", script=SCRIPT)
        try:
            with webdriver.Browser() as b:
                try:
                    self.flow(b, ui)
                except BaseException:
                    # what the page showed, for whoever reads the failure
                    try:
                        self.shot(b, "webui-failure.png")
                        print(b.js("return document.body.innerText")[:3000], flush=True)
                    except Exception:
                        pass
                    print(ui.log(), flush=True)
                    raise
        finally:
            self.assertEqual(ui.stop(), 0, ui.log())

    def flow(self, b, ui):
        b.get(ui.url + "/")
        # a run that waits for its start opens the form by itself
        b.wait_js("return document.querySelector('#form-dialog').open", what="the start form")
        self.assertEqual(self.text(b, "#nav-state"), "READY")
        self.assertEqual(b.find("#f-users").prop("value"), "3")  # -u is the default
        self.assertEqual(b.find("#f-host").prop("value"), self.demo.url)
        boxes = b.find_all("#f-classes input[type=checkbox]")
        self.assertEqual(len(boxes), 2)
        users = b.find("#f-users")
        users.clear()
        users.send_keys("6")
        rate = b.find("#f-rate")
        rate.clear()
        rate.send_keys("60")
        # (while the worker threads still load the script the form says so: start again)
        def started():
            if self.text(b, "#nav-state") == "RUNNING":
                return True
            if b.js("return document.querySelector('#form-dialog').open"):
                error = b.js("const e = document.querySelector('#form-error');"
                             "return e.hidden ? '' : e.textContent")
                if "still loading" in error or not b.js("return window.cicadaUI.submitted"):
                    b.js("window.cicadaUI.submitted = true")
                    b.find("#form-submit").click()
            return False

        b.wait(started, what="RUNNING")

        # the table fills, the navbar follows
        b.wait(lambda: self.text(b, "#nav-users") == "6", what="6 users")
        rows = b.wait_js("""
            const names = [...document.querySelectorAll('#stats-table tbody tr td:nth-child(2)')]
                .map((td) => td.textContent);
            return names.includes('/items') && names.includes('/health') &&
                names.includes('/flaky') && names[names.length - 1] === 'Aggregated' && names;
        """, what="the statistics rows")
        self.assertEqual(rows[-1], "Aggregated")
        total_before = int(b.js(
            "return document.querySelector('#stats-table tr.total td:nth-child(3)').textContent"
            ".replace(/,/g, '')"))
        b.wait(lambda: int(b.js(
            "return document.querySelector('#stats-table tr.total td:nth-child(3)').textContent"
            ".replace(/,/g, '')")) > total_before, what="the request count to grow")
        self.assertFalse(b.js("return document.querySelector('#form-dialog').open"))
        self.assertEqual(self.text(b, "#conn"), "live")  # the event stream, not polling

        # the charts get points and draw them
        b.find("button[data-tab=charts]").click()
        first = int(b.wait_js("return +document.querySelector('#chart-rps').dataset.points || 0",
                              what="chart points"))
        b.wait(lambda: int(b.js("return +document.querySelector('#chart-rps').dataset.points"))
               > first, what="the charts to grow")
        b.wait(lambda: b.js(PAINTED, "#chart-rps") > 1000, what="the RPS chart to draw")
        b.wait(lambda: b.js(PAINTED, "#chart-users") > 1000, what="the users chart to draw")
        self.shot(b, "webui-charts.png")

        # change the user count of the running test
        b.find("#btn-edit").click()
        b.wait_js("return document.querySelector('#form-dialog').open", what="the edit form")
        self.assertTrue(b.js("return document.querySelector('#form-dialog').classList"
                             ".contains('edit')"))
        users = b.find("#f-users")
        users.clear()
        users.send_keys("2")
        b.find("#form-submit").click()
        b.wait(lambda: self.text(b, "#nav-users") == "2", what="2 users")
        stats = json.load(urllib.request.urlopen(ui.url + "/stats/requests", timeout=30))
        self.assertEqual(stats["user_count"], 2)

        # when the event stream breaks, the page polls, then goes back to the stream
        count = lambda: int(b.js(
            "return document.querySelector('#stats-table tr.total td:nth-child(3)').textContent"
            ".replace(/,/g, '')"))
        b.js("window.cicadaUI.es.close()")
        b.wait(lambda: self.text(b, "#conn") == "polling", what="polling")
        polled = count()
        b.wait(lambda: count() > polled, what="polled statistics")
        b.wait(lambda: self.text(b, "#conn") == "live", what="the stream again")

        # the other tabs render
        b.find("button[data-tab=failures]").click()
        b.wait_js("return document.querySelectorAll('#failures-table tbody tr').length > 0",
                  what="the failures of /flaky")
        self.assertIn("/flaky", self.text(b, "#failures-table tbody"))
        b.find("button[data-tab=ratio]").click()
        b.wait_js("return document.querySelector('#ratio-total').textContent.includes('Shopper')",
                  what="the ratio tree")
        b.find("button[data-tab=logs]").click()
        b.wait_js("return document.querySelector('#logs').textContent.includes('Ramping to 2')",
                  what="the log lines")
        b.find("button[data-tab=stats]").click()
        self.shot(b, "webui.png")

        # stop
        b.find("#btn-stop").click()
        b.wait(lambda: self.text(b, "#nav-state") == "STOPPED", what="STOPPED")
        b.wait(lambda: b.find("#btn-new").displayed, what="the New test button")

        # download the CSV the page links to
        b.find("button[data-tab=download]").click()
        href = b.find("#dl-requests").prop("href")
        self.assertTrue(href.startswith(ui.url + "/"), href)
        with urllib.request.urlopen(href, timeout=30) as res:
            self.assertIn("attachment", res.headers["Content-Disposition"])
            csv = res.read().decode()
        self.assertTrue(csv.startswith("Type,Name,Request Count,Failure Count,"), csv[:100])
        self.assertIn("\r\nGET,/items,", csv)
        self.assertIn("\r\n,Aggregated,", csv)

        # nothing went wrong in the page (script errors, refused resources)
        severe = [e for e in b.console() if e.get("level") == "SEVERE"]
        self.assertEqual(severe, [])

        # the HTML report, opened from a file with nothing to fetch
        report_href = b.find("#dl-report").prop("href")
        report = self.path("report.html")
        with urllib.request.urlopen(report_href, timeout=30) as res:
            with open(report, "wb") as f:
                shutil.copyfileobj(res, f)
        b.get("file://" + report)
        points = int(b.wait_js("return +document.body.dataset.chartPoints",
                               what="the report's charts"))
        self.assertGreater(points, 0)
        sections = b.js("return [...document.querySelectorAll('h2')].map((h) => h.textContent)")
        self.assertEqual(sections, ["Run", "Request Statistics", "Response Time Statistics",
                                    "Failures Statistics", "Exceptions Statistics", "Charts",
                                    "Final ratio"])
        for canvas in ("#chart-rps", "#chart-times", "#chart-users"):
            b.wait(lambda c=canvas: b.js(PAINTED, c) > 1000, what=f"the report's {canvas}")
        self.assertIn("/items", self.text(b, "#request-statistics"))
        self.assertIn("Shopper", self.text(b, "#final-ratio"))
        self.assertEqual([e for e in b.console() if e.get("level") == "SEVERE"], [])
        self.shot(b, "report.png")


if __name__ == "__main__":
    main()
