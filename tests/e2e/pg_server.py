"""pg_server.py: a private PostgreSQL server for the tests, on a free loopback port.

initdb makes a cluster in a temporary directory and postgres serves it on 127.0.0.1 only, with
trust authentication for the superuser "postgres". PostgreSQL refuses to run as root, so when
the tests run as root (CI does) the server runs as an unprivileged user: "postgres" (Debian's
postgresql package creates it), else "nobody", and the directory is handed over to it.
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time


def pg_bin(name):
    """The path of a PostgreSQL server program (newest installed version)."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True,
                    key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0):
        path = os.path.join(d, name)
        if os.path.exists(path):
            return path
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(f"{name} not found: install Debian's postgresql package")


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def server_user():
    """The user the server runs as: None (the current one) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run "
                       "PostgreSQL as")


class Postgres:
    """A running server: .port, .url (a libpq URL), .conninfo, .psql(sql), .stop(). |settings|
    are extra "name=value" server settings; |cpu| pins the server to that CPU (benchmarks)."""

    def __init__(self, settings=(), cpu=None):
        self.dir = tempfile.mkdtemp(prefix="cicada-pg-")
        self.data = os.path.join(self.dir, "data")
        self.user = server_user()
        self.proc = None
        kw = {}
        if self.user:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
            kw = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = dict(os.environ, LC_ALL="C", LANG="C")
        try:
            subprocess.run([pg_bin("initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                            "-E", "UTF8", "--no-sync"], check=True, capture_output=True,
                           cwd=self.dir, env=env, **kw)
            self.port = _free_port()
            argv = [pg_bin("postgres"), "-D", self.data, "-p", str(self.port), "-k", self.dir,
                    "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                    "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                    "-c", "max_connections=300", "-c", "logging_collector=off"]
            for s in settings:
                argv += ["-c", s]
            if cpu is not None and shutil.which("taskset"):
                argv = ["taskset", "-c", str(cpu)] + argv  # the backends inherit it
            self.log = open(os.path.join(self.dir, "server.log"), "w")
            self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                         cwd=self.dir, env=env, **kw)
            self._wait_ready()
        except Exception:
            self.stop()
            raise
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.conninfo = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited: " + self.server_log()[-2000:])
            r = subprocess.run([pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                                "-U", "postgres", "-q"], capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not become ready: " + self.server_log()[-2000:])

    def server_log(self):
        try:
            with open(os.path.join(self.dir, "server.log")) as f:
                return f.read()
        except OSError:
            return ""

    def psql(self, sql):
        """Runs |sql| with psql; returns its unaligned, tuples-only output."""
        r = subprocess.run([pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                            "postgres", "-d", "postgres", "-X", "-A", "-t", "-q",
                            "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr}")
        return r.stdout.strip()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: fast shutdown, clients disconnected
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
