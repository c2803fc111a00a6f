"""harness.py: runs the real cicada binary on scripts and reads back what it reports.

Tests assert on the --json results and on files cicada writes, never on timings.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import unittest

SOURCE = os.environ.get("CICADA_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
CICADA = os.environ.get("CICADA") or os.path.join(SOURCE, "build", "cicada")


class Result:
    def __init__(self, proc, stdout, stderr, json_path):
        self.rc = proc.returncode
        self.stdout = stdout
        self.stderr = stderr
        self.data = None
        if json_path and os.path.exists(json_path):
            with open(json_path) as f:
                self.data = json.load(f)

    def entry(self, name, type_=None):
        """The stats entry named |name| (and of |type_|), or None."""
        for e in self.data["stats"]:
            if e["name"] == name and (type_ is None or e["type"] == type_):
                return e
        return None

    def count(self, name, type_=None):
        e = self.entry(name, type_)
        return e["num_requests"] if e else 0

    def failures(self, name, type_=None):
        e = self.entry(name, type_)
        return e["num_failures"] if e else 0


# Lua for tests that check from inside a user: check(name, ok, msg) records a request of type
# "check" named |name|, failed with |msg| when |ok| is false; CicadaTest.run_checks() then
# asserts that checks ran and none failed.
CHECK_LUA = """
local function check(name, ok, msg)
    cicada.record("check", name, 0, 0, (not ok) and (msg or "failed") or nil)
end
"""


def checks_prelude(module, var):
    """The top of a checking script: cicada, |module| required as |var|, and check()."""
    return f'local cicada = require "cicada"\nlocal {var} = require "{module}"\n' + CHECK_LUA


def one_shot(prelude, user_class, body, attrs=""):
    """A script after |prelude| whose one user of cicada.|user_class| runs |body| once in
    on_start, then ends the test."""
    return prelude + f"""
local U = cicada.{user_class}:extend("U", {{ {attrs} }})
function U:on_start()
{body}
    error(cicada.StopTest)
end
U:task(function() end)
return {{ U }}
"""


class CicadaTest(unittest.TestCase):
    """A test case with a private directory for scripts and outputs."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cicada-e2e-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        p = self.path(name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(textwrap.dedent(text))
        return p

    def read(self, name):
        with open(self.path(name)) as f:
            return f.read()

    def cicada(self, *args, script=None, timeout=120, env=None, want_json=True, cwd=None):
        """Runs cicada headless with |args|; |script| is written to cicadafile.lua first."""
        argv = [CICADA]
        if script is not None:
            argv += ["-f", self.write("cicadafile.lua", script)]
        json_path = None
        if want_json:
            json_path = self.path("result.json")
            if os.path.exists(json_path):
                os.unlink(json_path)
            argv += ["--json-file", json_path]
        argv += list(args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=full_env, cwd=cwd or self.dir)
        return Result(proc, proc.stdout, proc.stderr, json_path)

    def example(self, name, host, users, run_time, file="cicadafile.lua", env=None,
                failures=False):
        """Runs examples/|name|/|file| as its README does: headless against |host|, |users|
        users started at once, for |run_time| seconds. Asserts that the results were written
        and that nothing raised, and unless |failures| (an example that fails on purpose) that
        no request failed. Returns the Result."""
        r = self.cicada("-f", os.path.join(SOURCE, "examples", name, file), "--headless",
                        "-H", host, "-u", str(users), "-r", str(users), "-t", str(run_time),
                        env=env)
        self.assertIsNotNone(r.data, r.stderr[-3000:])
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        if not failures:
            self.assertEqual(r.data["failures"], [])
        return r

    def start(self, *args, script=None, env=None):
        """Starts cicada in the background; returns the Popen."""
        argv = [CICADA]
        if script is not None:
            argv += ["-f", self.write("cicadafile.lua", script)]
        argv += list(args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=full_env, cwd=self.dir)

    def run_checks(self, script, host, *args, users=1, run_time="30", timeout=120):
        """Runs |script| headless against |host|; asserts that its checks ran, that none failed
        and that nothing raised. Returns the Result."""
        r = self.cicada("--headless", "-u", str(users), "-r", "100", "-t", run_time, "-H", host,
                        *args, script=script, timeout=timeout)
        self.assertIsNotNone(r.data, r.stderr[-3000:])
        checks = [e for e in r.data["stats"] if e["type"] == "check"]
        failed = [f for f in r.data.get("failures", []) if f["method"] == "check"]
        self.assertEqual(failed, [], r.stderr[-3000:])
        self.assertTrue(checks, "no check ran:\n" + r.stderr[-3000:])
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        return r

    @staticmethod
    def errors(r, name):
        """The failure messages recorded for requests named |name|."""
        return [f["error"] for f in r.data["failures"] if f["name"] == name]

    def wait_for(self, predicate, timeout=30, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)


class _ReportAtOnce(unittest.TextTestResult):
    """Prints each failure and error as it happens, not at the end: a module that CTest stops
    at its time limit still shows what failed before."""

    def _report(self, flavour, test, err):
        self.stream.writeln(self.separator1)
        self.stream.writeln(f"{flavour}: {self.getDescription(test)}")
        self.stream.writeln(self.separator2)
        self.stream.writeln(self._exc_info_to_string(err, test))
        self.stream.flush()

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._report("FAIL", test, err)

    def addError(self, test, err):
        super().addError(test, err)
        self._report("ERROR", test, err)

    def printErrors(self):  # already printed
        pass


def main():
    unittest.main(verbosity=2, testRunner=unittest.TextTestRunner(
        verbosity=2, resultclass=_ReportAtOnce))
