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

    def wait_for(self, predicate, timeout=30, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)


def main():
    unittest.main(verbosity=2)
