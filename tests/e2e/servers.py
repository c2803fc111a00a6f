"""servers.py: real servers for the end-to-end tests, started on free loopback ports.

Each start function returns an object with .url (or .port) and .stop(); tests stop them in
tearDown / tearDownClass. Nothing listens beyond 127.0.0.1.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time

from harness import CICADA, SOURCE

SERVERS = os.path.join(SOURCE, "tests", "servers")
PYTHON = "/usr/bin/python3"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Process:
    """A server process that prints 'listening on URL' as its first line."""

    def __init__(self, argv, lines=1):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self.lines = [self.proc.stdout.readline().strip() for _ in range(lines)]
        if not self.lines[0]:
            raise RuntimeError(f"{argv[0]} did not start")
        self.url = self.lines[0].split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def httpbin():
    return Process([PYTHON, os.path.join(SERVERS, "httpbin.py")])


def faults():
    p = Process([PYTHON, os.path.join(SERVERS, "http_faults.py")], lines=2)
    p.tls_port = int(p.lines[1].rsplit(":", 1)[1])
    return p


def h2_faults():
    """The HTTP/2 fault server: .url is its well-behaved port, .modes maps each fault to its URL."""
    p = Process([PYTHON, os.path.join(SERVERS, "h2_faults.py")], lines=8)
    p.modes = dict(line.split() for line in p.lines[1:])
    return p


def tcp_faults():
    """The TCP fault server: .modes maps each fault (stall, garbage, close, half) to its port."""
    p = Process([PYTHON, os.path.join(SERVERS, "tcp_faults.py")], lines=5)
    p.modes = {m: int(u.rsplit(":", 1)[1]) for m, u in (line.split() for line in p.lines[1:])}
    return p


def memcached():
    """memcached on a free port (.port), 64 MiB, as the current user (or nobody for root)."""
    port = free_port()
    argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    p.port = port
    p.stop = lambda: (p.kill(), p.wait())
    return p


def demo_server():
    return Process([CICADA, "demo-server", "--port", "0"])


def make_certs(dir_):
    """A CA, a server certificate for localhost and 127.0.0.1, and a client certificate."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=dir_, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=cicada test CA")
    with open(os.path.join(dir_, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
        "-subj", "/CN=cicada client")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "client.pem", "-days", "2")


class Nginx:
    """nginx with one worker: plain HTTP/1.1, HTTPS (with HTTP/2 by ALPN), h2c with prior
    knowledge, and HTTPS that requires a client certificate. Also HTTPS without HTTP/2
    (https11) and h2c that ends connections with GOAWAY after 10 requests (h2c_short); these
    and the HTTP/2 servers answer with X-Connection (nginx's connection number) and, given
    |upstream| (a port on 127.0.0.1), proxy /bin/... to it (an httpbin that echoes requests)."""

    def __init__(self, upstream=None):
        self.dir = tempfile.mkdtemp(prefix="cicada-nginx-")
        os.makedirs(os.path.join(self.dir, "html"))
        with open(os.path.join(self.dir, "html", "index.html"), "w") as f:
            f.write("<html><body>hello from nginx</body></html>\n")
        with open(os.path.join(self.dir, "html", "big.txt"), "w") as f:
            f.write("0123456789abcdef" * 65536)  # 1 MiB, compressible
        make_certs(self.dir)
        self.http, self.https, self.h2c, self.mtls = (free_port() for _ in range(4))
        self.https11, self.h2c_short = free_port(), free_port()
        user = "user root;" if os.geteuid() == 0 else ""
        d = self.dir
        extra = "add_header X-Connection $connection always;"
        if upstream:
            extra += f" location /bin/ {{ proxy_pass http://127.0.0.1:{upstream}/; }}"
        conf = textwrap.dedent(f"""
            {user}
            worker_processes 1;
            daemon off;
            pid {d}/nginx.pid;
            error_log {d}/error.log;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
                client_body_temp_path {d}/body;
                proxy_temp_path {d}/proxy;
                fastcgi_temp_path {d}/fastcgi;
                uwsgi_temp_path {d}/uwsgi;
                scgi_temp_path {d}/scgi;
                keepalive_requests 1000000;
                gzip on;
                gzip_types text/plain;
                gzip_min_length 100;
                root {d}/html;
                server {{ listen 127.0.0.1:{self.http}; }}
                server {{
                    listen 127.0.0.1:{self.https} ssl http2;
                    ssl_certificate {d}/server.pem;
                    ssl_certificate_key {d}/server.key;
                    {extra}
                }}
                server {{ listen 127.0.0.1:{self.h2c} http2; {extra} }}
                server {{
                    listen 127.0.0.1:{self.https11} ssl;
                    ssl_certificate {d}/server.pem;
                    ssl_certificate_key {d}/server.key;
                    {extra}
                }}
                server {{ listen 127.0.0.1:{self.h2c_short} http2; keepalive_requests 10; {extra} }}
                server {{
                    listen 127.0.0.1:{self.mtls} ssl;
                    ssl_certificate {d}/server.pem;
                    ssl_certificate_key {d}/server.key;
                    ssl_client_certificate {d}/ca.pem;
                    ssl_verify_client on;
                }}
            }}
        """)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(["nginx", "-c", os.path.join(d, "nginx.conf"), "-p", d],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in (self.http, self.https, self.h2c, self.mtls, self.https11, self.h2c_short):
            wait_port(port)

    def path(self, name):
        return os.path.join(self.dir, name)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def socket_faults(cert_dir):
    """The line server of the LuaSocket tests (tests/servers/socket_faults.py): .port takes a
    command line first; .modes maps garbage, stall and tls-echo to their ports. |cert_dir|
    holds server.pem and server.key (make_certs) for tls-echo."""
    p = Process([PYTHON, os.path.join(SERVERS, "socket_faults.py"), cert_dir], lines=4)
    p.modes = {m: int(u.rsplit(":", 1)[1]) for m, _, u in (line.split() for line in p.lines[1:])}
    return p


class RedisServer:
    """redis-server on a free loopback port (.port), without persistence."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cicada-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--maxclients", "1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres(settings=()):
    """A private PostgreSQL server (pg_server.py): .url, .conninfo, .port, .psql(sql), .stop()."""
    from pg_server import Postgres
    return Postgres(settings)


def pg_faults():
    """The PostgreSQL fault server: .url is its well-behaved port, .modes maps each fault to its
    URL."""
    p = Process([PYTHON, os.path.join(SERVERS, "pg_faults.py")], lines=7)
    p.modes = dict(line.split() for line in p.lines[1:])
    return p


def kafka_mock(brokers=3, topics=()):
    """librdkafka's mock cluster (kafka_server.py): .bootstrap, .down(id), .up(id), .stop()."""
    from kafka_server import KafkaMock
    return KafkaMock(brokers, topics)


class Mosquitto:
    """A mosquitto broker on a free loopback port (.port; MQTT over TLS on .tls_port with
    |tls|, certificates from make_certs in .dir). With |users| ({name: password}) it has a
    password file and refuses anonymous clients. stop() and start() again keep the ports."""

    def __init__(self, users=None, tls=False):
        self.dir = tempfile.mkdtemp(prefix="cicada-mosquitto-")
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        # set_tcp_nodelay: without it the broker's small acknowledgements wait on Nagle's
        # algorithm and the client's delayed ACKs (about 40 ms for QoS 2 here)
        lines = [f"listener {self.port} 127.0.0.1", "persistence false",
                 "set_tcp_nodelay true"]
        if os.geteuid() == 0:  # as root it would drop to the mosquitto user, who cannot read here
            lines.append("user root")
        if users:
            pw = os.path.join(self.dir, "passwords")
            for i, (name, password) in enumerate(users.items()):
                subprocess.run(["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else []) +
                               [pw, name, password], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines += ["allow_anonymous true"]
        if tls:
            make_certs(self.dir)
            d = self.dir
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {d}/ca.pem",
                      f"certfile {d}/server.pem", f"keyfile {d}/server.key"]
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None
        self.start()

    def path(self, name):
        return os.path.join(self.dir, name)

    def start(self):
        self.log = open(os.path.join(self.dir, "mosquitto.log"), "a")
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        for port in (self.port, self.tls_port):
            if port:
                wait_port(port)

    def kill(self):
        """Stops the broker at once, as a crash would (the test then start()s it again)."""
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.log.close()

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def mqtt_faults():
    """The MQTT fault server: .url is its first port (garbage), .modes maps each fault to its
    URL."""
    p = Process([PYTHON, os.path.join(SERVERS, "mqtt_faults.py")], lines=7)
    p.modes = dict(line.split() for line in p.lines[1:])
    return p


def redis_faults():
    """The Redis fault server: .url is its first port (garbage), .modes maps each fault to its
    URL."""
    p = Process([PYTHON, os.path.join(SERVERS, "redis_faults.py")], lines=6)
    p.modes = dict(line.split() for line in p.lines[1:])
    return p


def grpc_server(cert=None, key=None, v1=True):
    """The gRPC test server (tests/servers/grpc_server.py, python3-grpcio): .url is its h2c
    port; with |cert| and |key|, .tls_port serves TLS too. |v1|: reflection v1 as well as
    v1alpha."""
    argv = [PYTHON, os.path.join(SERVERS, "grpc_server.py")]
    if cert:
        argv += ["--cert", cert, "--key", key]
    if not v1:
        argv.append("--no-v1")
    p = Process(argv, lines=2 if cert else 1)
    p.tls_port = int(p.lines[1].rsplit(":", 1)[1]) if cert else None
    return p


def grpc_faults():
    """The gRPC fault server: .url is its well-behaved port, .modes maps each fault to its URL."""
    p = Process([PYTHON, os.path.join(SERVERS, "grpc_faults.py")], lines=11)
    p.modes = dict(line.split() for line in p.lines[1:])
    return p


def hello_server(delay=0):
    """The hello server of the gRPC example (examples/grpc/hello_server.py) on a free port."""
    return Process([PYTHON, os.path.join(SOURCE, "examples", "grpc", "hello_server.py"),
                    "--port", "0", "--delay", str(delay)])
