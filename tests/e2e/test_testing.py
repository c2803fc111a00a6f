"""Tests that double as load: `cicada test FILE` (TAP, JUnit XML, exit codes, failures named
by file:line, fixtures with setup and teardown) and the same files under `cicada -f` as load
tests against cicada's demo server."""
import os
import re
import unittest
import xml.etree.ElementTree as ET

import servers
from harness import SOURCE, CicadaTest, main

EXAMPLE = os.path.join(SOURCE, "examples", "testing", "cicadafile.lua")

PASSING = """\
local tests = {}
local log = io.open(os.getenv("FIXTURE_LOG"), "a")
local function note(s) log:write(s, "\\n") log:flush() end

tests.fixtures = {}
tests.fixtures.account = { scope = "module", function(rest)
    local r = rest:post("/login", { username = "e2e", password = "secret" })
    note("setup account")
    return r.js.token, function() note("teardown account") end
end }
function tests.fixtures.item(rest)
    note("setup item")
    return rest:get("/items/2").js, function() note("teardown item") end
end
function tests.fixtures.pair(item, account)
    note("setup pair")
    return { item = item, account = account }, function() note("teardown pair") end
end

function tests.test_health(http)
    assert(http:get("/health").status_code == 200)
end

function tests.test_item(item)
    assert(item.id == 2, "item " .. tostring(item.id))
end

function tests.test_pair(pair, item, host, client, http)
    assert(pair.item == item, "one item per test")
    assert(type(pair.account) == "string" and #pair.account > 0)
    assert(host:find("^http://127%.0%.0%.1:"), host)
    assert(client == http)
end

function tests.test_cart(rest, account)
    local r = rest:post("/cart", { item_id = 3 }, { headers = { Authorization = "Bearer " .. account } })
    assert(r.status_code == 200, "cart " .. r.status_code)
end

return tests
"""

# Line numbers matter: the tests below check that failures name them (see line()).
FAILING = """\
local testing = require "cicada.testing"
local tests = {}
tests.fixtures = {}
function tests.fixtures.broken()
    error("cannot set up")
end
function tests.fixtures.leaky()
    return 1, function() error("teardown went wrong") end
end

function tests.test_ok(http)
    assert(http:get("/health").status_code == 200)
end

function tests.test_assert(http)
    local r = http:get("/items/404")
    assert(r.status_code == 200, "expected 200, got " .. r.status_code)
end

function tests.test_error()
    local t = nil
    return t.field
end

function tests.test_missing_fixture(nope)
end

function tests.test_broken_fixture(broken)
end

function tests.test_teardown(leaky)
end

function tests.test_skip()
    testing.skip("not on this server")
end

function tests.test_raise_table()
    error({ code = 7 })
end

return tests
"""


def line(text, snippet):
    """The line number of |snippet| in |text|."""
    return next(i + 1 for i, l in enumerate(text.splitlines()) if snippet in l)


class Functional(CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.demo = servers.demo_server()

    @classmethod
    def tearDownClass(cls):
        cls.demo.stop()

    def run_test(self, name, text, *args, env=None):
        path = self.write(name, text)
        r = self.cicada("test", path, *args, want_json=False, env=env)
        return r, path

    def test_passing_file(self):
        log = self.path("fixtures.log")
        r, path = self.run_test("test_pass.lua", PASSING, "-H", self.demo.url, "--junit-xml",
                                self.path("junit.xml"), env={"FIXTURE_LOG": log})
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.splitlines(), [
            "TAP version 13",
            "ok 1 - test_health",
            "ok 2 - test_item",
            "ok 3 - test_pair",
            "ok 4 - test_cart",
            "1..4",
            "# 4 passed, 0 failed, 0 errors, 0 skipped",
        ])
        # fixtures: function scope around each test, module scope once, teardowns in reverse
        with open(log) as f:
            self.assertEqual(f.read().splitlines(), [
                "setup item", "teardown item",
                "setup item", "setup account", "setup pair", "teardown pair", "teardown item",
                "teardown account",
            ])
        suite = ET.parse(self.path("junit.xml")).getroot()
        self.assertEqual(suite.tag, "testsuites")
        self.assertEqual(suite.get("tests"), "4")
        self.assertEqual(suite.get("failures"), "0")
        ts = suite.find("testsuite")
        self.assertEqual(ts.get("name"), "test_pass")
        cases = ts.findall("testcase")
        self.assertEqual([c.get("name") for c in cases],
                         ["test_health", "test_item", "test_pair", "test_cart"])
        self.assertEqual(cases[0].get("file"), path)
        self.assertEqual(cases[0].get("line"), str(line(PASSING, "test_health(http)")))
        self.assertEqual([list(c) for c in cases], [[], [], [], []])

    def test_failing_file(self):
        r, path = self.run_test("test_fail.lua", FAILING, "-H", self.demo.url, "--junit-xml",
                                self.path("junit.xml"))
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        out = r.stdout
        lines = out.splitlines()
        self.assertEqual([l for l in lines if re.match(r"(not )?ok ", l)], [
            "ok 1 - test_ok",
            "not ok 2 - test_assert",
            "not ok 3 - test_error",
            "not ok 4 - test_missing_fixture",
            "not ok 5 - test_broken_fixture",
            "not ok 6 - test_teardown",
            "ok 7 - test_skip # SKIP not on this server",
            "not ok 8 - test_raise_table",
        ])
        self.assertIn("1..8", lines)
        self.assertIn("# 1 passed, 3 failed, 3 errors, 1 skipped", lines)

        def block(n):
            """The YAML block under test |n|, as {key: raw value}."""
            start = next(i for i, l in enumerate(lines) if re.match(rf"not ok {n} ", l))
            d = {}
            for l in lines[start + 2:]:
                if l == "  ...":
                    break
                m = re.match(r"  (\w+): (.*)$", l)
                if m:
                    d[m.group(1)] = m.group(2)
            return d

        b = block(2)
        self.assertEqual(b["message"], '"expected 200, got 404"')
        self.assertEqual(b["at"], f'"{path}:{line(FAILING, "expected 200, got")}"')
        self.assertEqual(b["severity"], "fail")
        self.assertIn(f"test_fail.lua:{line(FAILING, 'expected 200, got')}: in the test", out)
        b = block(3)
        self.assertEqual(b["at"], f'"{path}:{line(FAILING, "return t.field")}"')
        self.assertIn("attempt to index local 't'", b["message"])
        b = block(4)
        self.assertEqual(b["severity"], "error")
        self.assertIn("fixture 'nope' not found (available: broken, client, host, http, leaky, rest)",
                      b["message"])
        self.assertEqual(b["at"], f'"{path}:{line(FAILING, "test_missing_fixture(nope)")}"')  # the test that asked for it
        b = block(5)
        self.assertEqual(b["message"], "\"fixture 'broken': cannot set up\"")
        self.assertEqual(b["at"], f'"{path}:{line(FAILING, "cannot set up")}"')  # inside the fixture
        b = block(6)
        self.assertEqual(b["message"], "\"teardown of fixture 'leaky': teardown went wrong\"")
        self.assertEqual(b["at"], f'"{path}:{line(FAILING, "teardown went wrong")}"')
        b = block(8)
        self.assertEqual(b["message"], '"error object { code = 7 }"')
        self.assertEqual(b["at"], f'"{path}:{line(FAILING, "code = 7")}"')

        suite = ET.parse(self.path("junit.xml")).getroot()
        self.assertEqual((suite.get("tests"), suite.get("failures"), suite.get("errors"),
                          suite.get("skipped")), ("8", "3", "3", "1"))
        cases = {c.get("name"): c for c in suite.iter("testcase")}
        failure = cases["test_assert"].find("failure")
        self.assertEqual(failure.get("message"), f"{path}:{line(FAILING, 'expected 200, got')}: expected 200, got 404")
        self.assertEqual(failure.get("type"), "AssertionError")
        self.assertIn("stack traceback:", failure.text)
        self.assertEqual(cases["test_error"].find("failure").get("type"), "Error")
        self.assertEqual(cases["test_broken_fixture"].find("error").get("message"),
                         f"{path}:{line(FAILING, 'cannot set up')}: fixture 'broken': cannot set up")
        self.assertEqual(cases["test_skip"].find("skipped").get("message"), "not on this server")
        self.assertIsNone(cases["test_ok"].find("failure"))

    def test_tap_file_selection_and_exitfirst(self):
        tap = self.path("out.tap")
        r, path = self.run_test("test_fail.lua", FAILING, "-H", self.demo.url, "--tap", tap,
                                "-k", "ass")
        self.assertEqual(r.rc, 1)
        with open(tap) as f:
            lines = f.read().splitlines()
        self.assertEqual([l for l in lines if re.match(r"(not )?ok ", l)],
                         ["not ok 1 - test_assert"])
        # with the TAP in a file, stdout has the report for people
        self.assertIn("FAIL  test_assert", r.stdout)
        self.assertIn(f"{path}:{line(FAILING, 'expected 200, got')}: expected 200, got 404", r.stdout)
        self.assertIn("0 passed, 1 failed, 0 errors, 0 skipped", r.stdout)

        r, _ = self.run_test("test_fail.lua", FAILING, "-H", self.demo.url, "-x")
        self.assertEqual(r.rc, 1)
        self.assertIn("not ok 2 - test_assert", r.stdout)
        self.assertNotIn("test_error", r.stdout)
        self.assertIn("1..2", r.stdout.splitlines())

        r, _ = self.run_test("test_fail.lua", FAILING, "-H", self.demo.url, "-k", "test_ok")
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        r, _ = self.run_test("test_fail.lua", FAILING, "-k", "nothing matches")
        self.assertEqual(r.rc, 1)
        self.assertIn("no test's name contains 'nothing matches'", r.stderr)

    def test_bad_files_and_command_lines(self):
        r, _ = self.run_test("syntax.lua", "local tests = {\nfunction")
        self.assertEqual(r.rc, 1)
        self.assertIn("Bail out!", r.stdout)
        self.assertIn("syntax.lua:2", r.stderr)
        r, _ = self.run_test("none.lua", "local nothing = 1\n")
        self.assertEqual(r.rc, 1)
        self.assertIn("has no test functions", r.stderr)
        r = self.cicada("test", want_json=False)
        self.assertEqual(r.rc, 2)
        r = self.cicada("test", "--bogus", "x.lua", want_json=False)
        self.assertEqual(r.rc, 2)
        self.assertIn("unknown option --bogus", r.stderr)
        r = self.cicada("test", "--help", want_json=False)
        self.assertEqual(r.rc, 0)
        self.assertIn("--junit-xml", r.stdout)
        # without -H, a relative URL fails the test that makes it, not the run
        r, _ = self.run_test("test_pass.lua", PASSING, env={"FIXTURE_LOG": self.path("l")})
        self.assertEqual(r.rc, 1)
        self.assertIn("needs a host", r.stdout)

    def test_the_example(self):
        r = self.cicada("test", EXAMPLE, "-H", self.demo.url, "--junit-xml", self.path("j.xml"),
                        want_json=False)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertIn("ok 4 - test_checkout", r.stdout)


class Load(CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.demo = servers.demo_server()

    @classmethod
    def tearDownClass(cls):
        cls.demo.stop()

    def test_example_as_load_with_weights(self):
        r = self.cicada("-f", EXAMPLE, "--headless", "-u", "16", "-r", "100", "-t", "3", "-H",
                        self.demo.url)
        self.assertEqual(r.rc, 0, r.stderr[-3000:])
        # weights 4, 2, 1 and the default 1; test_unknown_item has weight 0
        self.assertEqual(r.data["user_count"],
                         {"test_health": 2, "test_browse": 8, "test_item_page": 4, "test_checkout": 2})
        for name, method in (("/health", "GET"), ("/items?page=[n]", "GET"), ("/items/{id}", "GET"),
                             ("/login", "POST"), ("/cart", "POST"), ("/checkout", "POST")):
            self.assertGreater(r.count(name, method), 0, name)
        self.assertEqual(r.data["failures"], [])
        self.assertEqual(r.data["exceptions"], [])
        # the module-scope login happens once per checkout user, not once per iteration
        self.assertEqual(r.count("/login", "POST"), 2)
        self.assertGreater(r.count("/checkout", "POST"), 2)

    def test_failing_file_as_load(self):
        path = self.write("test_fail.lua", FAILING)
        r = self.cicada("-f", path, "--headless", "-u", "8", "-r", "100", "-t", "2", "-H",
                        self.demo.url)
        self.assertIsNotNone(r.data, r.stderr[-3000:])
        self.assertEqual(set(r.data["user_count"]) | {"test_skip"},
                         {"test_ok", "test_assert", "test_error", "test_missing_fixture",
                          "test_broken_fixture", "test_teardown", "test_skip", "test_raise_table"})
        self.assertFalse([m for m in r.data["exceptions"] if "skip" in m["message"]])
        msgs = {e["message"]: e for e in r.data["exceptions"]}
        where = f"{path}:{line(FAILING, 'expected 200, got')}"
        self.assertIn(f"{where}: expected 200, got 404", msgs)
        self.assertIn(where, msgs[f"{where}: expected 200, got 404"]["traceback"])
        self.assertTrue(any("fixture 'nope' not found" in m and f"{path}:{line(FAILING, 'test_missing_fixture(nope)')}" in m for m in msgs), msgs)
        self.assertTrue(any("fixture 'broken': cannot set up" in m for m in msgs), msgs)
        self.assertTrue(any("teardown of fixture 'leaky'" in m for m in msgs), msgs)
        self.assertGreater(r.count("/health", "GET"), 0)
        self.assertEqual(r.rc, 1)

    def test_load_needs_a_host_for_http_tests(self):
        path = self.write("test_pass.lua", PASSING)
        r = self.cicada("-f", path, "--headless", "-u", "1", "-t", "1",
                        env={"FIXTURE_LOG": self.path("l")})
        self.assertNotEqual(r.rc, 0)
        self.assertIn("uses the http, client or rest fixture and has no host", r.stderr)


if __name__ == "__main__":
    main()
