"""webdriver.py: headless Chromium driven over W3C WebDriver with Python's standard library.

Debian's chromium and chromium-driver: chromedriver runs on a free loopback port, and each
Browser is one session with a fresh profile directory. close() ends the session and stops
chromedriver; use Browser as a context manager so that this happens when a test fails too.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

CHROMIUM = os.environ.get("CICADA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CICADA_CHROMEDRIVER", "/usr/bin/chromedriver")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def available():
    """Whether Chromium and chromedriver are installed."""
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class WebDriverError(Exception):
    pass


class Element:
    def __init__(self, browser, eid):
        self.browser = browser
        self.id = eid

    def _path(self, tail):
        return f"/element/{self.id}/{tail}"

    def click(self):
        self.browser._cmd("POST", self._path("click"), {})

    def clear(self):
        self.browser._cmd("POST", self._path("clear"), {})

    def send_keys(self, text):
        self.browser._cmd("POST", self._path("value"), {"text": text})

    @property
    def text(self):
        return self.browser._cmd("GET", self._path("text"))

    def attribute(self, name):
        return self.browser._cmd("GET", self._path(f"attribute/{name}"))

    def prop(self, name):
        return self.browser._cmd("GET", self._path(f"property/{name}"))

    @property
    def displayed(self):
        return self.browser._cmd("GET", self._path("displayed"))


class Browser:
    """One headless Chromium session."""

    def __init__(self, width=1400, height=1000, timeout=60):
        self.profile = tempfile.mkdtemp(prefix="cicada-chromium-")
        self.port = _free_port()
        self.log = open(os.path.join(self.profile, "chromedriver.log"), "w")
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"],
                                       stdout=self.log, stderr=subprocess.STDOUT)
        self.session = None
        self.base = f"http://127.0.0.1:{self.port}"
        try:
            self._wait_ready(timeout)
            args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--no-default-browser-check",
                    "--disable-extensions", f"--window-size={width},{height}",
                    f"--user-data-dir={os.path.join(self.profile, 'profile')}"]
            caps = {"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
                "timeouts": {"script": 30000, "pageLoad": 60000, "implicit": 0},
                "goog:loggingPrefs": {"browser": "ALL"},
            }}}
            value = self._request("POST", "/session", caps, timeout=timeout)
            self.session = value["sessionId"]
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.driver.poll() is not None:
                raise WebDriverError("chromedriver exited with %s" % self.driver.returncode)
            try:
                if self._request("GET", "/status", timeout=2).get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            time.sleep(0.1)
        raise WebDriverError("chromedriver did not become ready")

    def _request(self, method, path, body=None, timeout=60):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                payload = json.load(res)
        except urllib.error.HTTPError as e:
            try:
                payload = json.load(e)
            except ValueError:
                raise WebDriverError(f"{method} {path}: HTTP {e.code}") from None
            v = payload.get("value") or {}
            raise WebDriverError(f"{method} {path}: {v.get('error')}: {v.get('message')}") from None
        return payload.get("value")

    def _cmd(self, method, path, body=None, timeout=60):
        return self._request(method, f"/session/{self.session}{path}", body, timeout)

    def close(self):
        """Ends the session and stops chromedriver (and with it Chromium). Idempotent."""
        if self.session:
            try:
                self._request("DELETE", f"/session/{self.session}", timeout=30)
            except (OSError, WebDriverError):
                pass
            self.session = None
        if self.driver and self.driver.poll() is None:
            self.driver.terminate()
            try:
                self.driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
                self.driver.wait()
        if self.log:
            self.log.close()
            self.log = None
        shutil.rmtree(self.profile, ignore_errors=True)

    # ---- commands -------------------------------------------------------------------------

    def get(self, url):
        self._cmd("POST", "/url", {"url": url})

    def find(self, css):
        v = self._cmd("POST", "/element", {"using": "css selector", "value": css})
        return Element(self, v[ELEMENT])

    def find_all(self, css):
        vs = self._cmd("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self, v[ELEMENT]) for v in vs]

    def js(self, script, *args):
        """Runs |script| (a function body: use return) in the page."""
        return self._cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def console(self):
        """The browser console's entries since the last call: [{level, message}] (Chromium)."""
        return self._cmd("POST", "/se/log", {"type": "browser"}) or []

    def screenshot(self, path):
        png = base64.b64decode(self._cmd("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)
        return path

    def wait(self, predicate, timeout=60, what="a condition"):
        """Polls |predicate| (a Python callable) until it returns a true value, which it returns."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            try:
                v = predicate()
                if v:
                    return v
            except WebDriverError as e:
                last_error = e
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}" +
                             (f" (last error: {last_error})" if last_error else ""))

    def wait_js(self, script, *args, timeout=60, what=None):
        return self.wait(lambda: self.js(script, *args), timeout, what or script)
