"""`cicada demo-server`: every shop endpoint with the session cookie flow, and the HTTP server
under it (keep-alive, pipelining, chunked bodies, size caps, malformed input, HEAD, slow
answers that do not block, threads sharing a port, shutdown on a signal).

Assertions are on statuses, bodies and counts, never on timings.
"""
import http.client
import io
import json
import re
import select
import signal
import socket
import subprocess
import threading
import unittest

from harness import CICADA, main


class DemoServer:
    """The real binary on a free port, read from its first line of output."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([CICADA, "demo-server", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"^listening on http://127\.0\.0\.1:(\d+)\n$", line)
        if not m:
            self.proc.kill()
            raise AssertionError("unexpected first line %r, stderr %r"
                                 % (line, self.proc.stderr.read()))
        self.port = int(m.group(1))

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc.stderr.close()
        return rc


class _Unclosable(io.BytesIO):
    def close(self):  # HTTPResponse closes its file after each body
        pass


class _Bytes:
    """Lets http.client.HTTPResponse parse responses out of bytes already read."""

    def __init__(self, data):
        self.f = _Unclosable(data)

    def makefile(self, *args, **kwargs):
        return self.f


def parse_responses(data, methods):
    """The (status, headers, body) of each response in |data|, one per request method."""
    src = _Bytes(data)
    out = []
    for m in methods:
        r = http.client.HTTPResponse(src, method=m)
        r.begin()
        out.append((r.status, r.headers, r.read()))
    return out


def raw_exchange(port, payload, timeout=30):
    """Sends |payload| on a new connection and reads until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)


def request(conn, method, path, body=None, headers=None):
    """One request on |conn|; returns (status, headers, parsed JSON or raw body)."""
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=hdrs)
    r = conn.getresponse()
    data = r.read()
    ctype = r.getheader("Content-Type") or ""
    if ctype.startswith("application/json"):
        data = json.loads(data)
    return r.status, r.headers, data


class Shop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = DemoServer()

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        assert rc == 0, "demo-server exited with %r" % rc

    def setUp(self):
        self.c = self.server.conn()

    def tearDown(self):
        self.c.close()

    def login(self, user="alice"):
        st, h, body = request(self.c, "POST", "/login",
                              {"username": user, "password": "secret"})
        self.assertEqual(st, 200)
        return body["token"], h

    def test_pages(self):
        st, h, body = request(self.c, "GET", "/")
        self.assertEqual(st, 200)
        self.assertTrue(h["Content-Type"].startswith("text/html"))
        self.assertIn(b"cicada demo shop", body)
        self.assertEqual(request(self.c, "GET", "/health")[2], {"status": "ok"})
        self.assertEqual(request(self.c, "GET", "/no/such/page")[0], 404)
        self.assertEqual(request(self.c, "PUT", "/health")[0], 405)

    def test_login(self):
        token, h = self.login()
        self.assertRegex(token, r"^[0-9a-f]{32}$")
        self.assertEqual(h["Set-Cookie"], "session=%s; Path=/; HttpOnly" % token)
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        st, _, body = request(self.c, "POST", "/login", "username=bob&password=secret", form)
        self.assertEqual(st, 200)
        self.assertEqual(body["username"], "bob")
        self.assertEqual(request(self.c, "POST", "/login",
                                 {"username": "bob", "password": "wrong"})[0], 401)
        self.assertEqual(request(self.c, "POST", "/login", {"username": "bob"})[0], 400)
        self.assertEqual(request(self.c, "POST", "/login",
                                 {"username": "", "password": "secret"})[0], 400)
        self.assertEqual(request(self.c, "POST", "/login", "{not json",
                                 {"Content-Type": "application/json"})[0], 400)
        self.assertEqual(request(self.c, "POST", "/login", "password=secret", form)[0], 400)

    def test_items(self):
        st, _, body = request(self.c, "GET", "/items")
        self.assertEqual(st, 200)
        self.assertEqual(len(body["items"]), 20)
        self.assertEqual(body["total"], 20)
        for i, it in enumerate(body["items"]):
            self.assertEqual(it["id"], i + 1)
            self.assertIsInstance(it["name"], str)
            self.assertGreater(it["price"], 0)
        st, _, body = request(self.c, "GET", "/items?page=3&per_page=4")
        self.assertEqual([it["id"] for it in body["items"]], [9, 10, 11, 12])
        self.assertEqual(request(self.c, "GET", "/items?per_page=0")[0], 400)
        st, _, body = request(self.c, "GET", "/items/5")
        self.assertEqual((st, body["id"]), (200, 5))
        for bad in ("/items/0", "/items/21", "/items/x", "/items/5/more"):
            self.assertEqual(request(self.c, "GET", bad)[0], 404, bad)

    def test_cart_session_flow(self):
        add = {"item_id": 2, "quantity": 3}
        self.assertEqual(request(self.c, "POST", "/cart", add)[0], 401)
        self.assertEqual(request(self.c, "GET", "/cart")[0], 401)
        self.assertEqual(request(self.c, "POST", "/checkout")[0], 401)
        token, h = self.login("carol")
        cookie = {"Cookie": h["Set-Cookie"].split(";")[0]}
        bearer = {"Authorization": "Bearer " + token}

        st, _, cart = request(self.c, "POST", "/cart", add, cookie)
        self.assertEqual((st, cart["count"]), (200, 3))
        st, _, cart = request(self.c, "POST", "/cart", {"item_id": 7}, bearer)
        self.assertEqual((st, cart["count"]), (200, 4))
        self.assertEqual(request(self.c, "POST", "/cart", {"item_id": 77}, cookie)[0], 404)
        self.assertEqual(request(self.c, "POST", "/cart", {"quantity": 1}, cookie)[0], 400)

        st, _, cart = request(self.c, "GET", "/cart", headers=cookie)
        self.assertEqual(st, 200)
        self.assertEqual([(i["item_id"], i["quantity"]) for i in cart["items"]], [(2, 3), (7, 1)])
        prices = {it["id"]: it["price"] for it in request(self.c, "GET", "/items")[2]["items"]}
        self.assertAlmostEqual(cart["total"], 3 * prices[2] + prices[7], places=6)

        st, _, order = request(self.c, "POST", "/checkout", headers=bearer)
        self.assertEqual(st, 200)
        self.assertIsInstance(order["order_id"], int)
        self.assertAlmostEqual(order["total"], cart["total"], places=6)
        self.assertEqual(order["items"], 4)
        self.assertEqual(request(self.c, "POST", "/checkout", headers=cookie)[0], 400)
        self.assertEqual(request(self.c, "GET", "/cart", headers=cookie)[2]["items"], [])

    def test_flaky_ratio(self):
        # Any 100 consecutive requests hold exactly 20 multiples of 5, and exactly 20 steps
        # of floor(n * 0.2), whatever other tests did to the counter before.
        for path in ("/flaky", "/flaky?fail=0.2"):
            statuses = [request(self.c, "GET", path)[0] for _ in range(100)]
            self.assertEqual(statuses.count(500), 20, path)
            self.assertEqual(statuses.count(200), 80, path)
        statuses = [request(self.c, "GET", "/flaky?every=4")[0] for _ in range(100)]
        self.assertEqual(statuses.count(500), 25)

    def test_slow_does_not_block(self):
        slow = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        try:
            slow.sendall(b"GET /slow?ms=2000 HTTP/1.1\r\nHost: x\r\n\r\n")
            # Forty requests on another connection are answered while the slow one waits:
            # the slow answer has not arrived when they are done.
            for _ in range(40):
                self.assertEqual(request(self.c, "GET", "/health")[0], 200)
            readable, _, _ = select.select([slow], [], [], 0)
            self.assertEqual(readable, [])
            data = b""
            while b"}" not in data:
                b = slow.recv(4096)
                self.assertTrue(b)
                data += b
            (st, _, body), = parse_responses(data, ["GET"])
            self.assertEqual(st, 200)
            self.assertEqual(json.loads(body), {"slept_ms": 2000})
        finally:
            slow.close()
        st, _, body = request(self.c, "GET", "/slow?ms=1")
        self.assertEqual((st, body), (200, {"slept_ms": 1}))
        self.assertEqual(request(self.c, "GET", "/slow?ms=later")[0], 400)


class Server(unittest.TestCase):
    """The HTTP server under the shop."""

    @classmethod
    def setUpClass(cls):
        cls.server = DemoServer()

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def test_keep_alive_reuse(self):
        c = self.server.conn()
        request(c, "GET", "/health")
        sock = c.sock
        for _ in range(50):
            st, h, _ = request(c, "GET", "/health")
            self.assertEqual(st, 200)
            self.assertIsNone(h["Connection"])
        self.assertIs(c.sock, sock)  # no reconnection happened
        c.close()

    def test_pipelining(self):
        data = raw_exchange(self.server.port,
                            b"GET /slow?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n"
                            b"GET /items/3 HTTP/1.1\r\nHost: x\r\n\r\n"
                            b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rs = parse_responses(data, ["GET", "GET", "HEAD", "GET"])
        self.assertEqual([r[0] for r in rs], [200, 200, 200, 200])
        self.assertEqual(json.loads(rs[0][2]), {"slept_ms": 50})
        self.assertEqual(json.loads(rs[1][2])["id"], 3)
        self.assertEqual(rs[2][2], b"")
        self.assertEqual(rs[2][1]["Content-Length"], "15")
        self.assertEqual(json.loads(rs[3][2]), {"status": "ok"})
        self.assertEqual(rs[3][1]["Connection"], "close")

    def test_chunked_request_body(self):
        body = json.dumps({"username": "chunky", "password": "secret"}).encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:5], body[5:17], body[17:]))
        data = raw_exchange(self.server.port,
                            b"POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                            + chunks + b"0\r\n\r\n")
        (st, _, resp), = parse_responses(data, ["POST"])
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(resp)["username"], "chunky")

    def test_caps(self):
        data = raw_exchange(self.server.port,
                            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
        (st, h, _), = parse_responses(data, ["POST"])
        self.assertEqual((st, h["Connection"]), (413, "close"))
        data = raw_exchange(self.server.port,
                            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000
                            + b"\r\n\r\n")
        (st, h, _), = parse_responses(data, ["GET"])
        self.assertEqual((st, h["Connection"]), (431, "close"))

    def test_malformed(self):
        for junk in (b"HELLO\r\n\r\n", b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
                     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
                     b"POST /login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nXYZ\r\n"):
            data = raw_exchange(self.server.port, junk)
            (st, h, _), = parse_responses(data, ["GET"])
            self.assertEqual((st, h["Connection"]), (400, "close"), junk[:20])
        self.assertEqual(request(self.server.conn(), "GET", "/health")[0], 200)

    def test_head(self):
        c = self.server.conn()
        c.request("HEAD", "/items")
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertGreater(int(r.getheader("Content-Length")), 100)
        self.assertEqual(r.read(), b"")
        self.assertEqual(request(c, "GET", "/health")[0], 200)  # the stream is still in step
        c.close()


class Threads(unittest.TestCase):
    """Several loops share the port; sessions made on one are seen by the others."""

    def test_sessions_across_threads(self):
        server = DemoServer("--threads", "3")
        errors = []

        def shopper(n):
            try:
                c = server.conn()
                st, h, body = request(c, "POST", "/login",
                                      {"username": "u%d" % n, "password": "secret"})
                c.close()
                cookie = {"Cookie": "session=" + body["token"]}
                for i in range(10):
                    c = server.conn()  # a new connection each time: any thread may take it
                    st, _, _ = request(c, "POST", "/cart", {"item_id": 1 + i % 20}, cookie)
                    c.close()
                    if st != 200:
                        errors.append(st)
                c = server.conn()
                st, _, order = request(c, "POST", "/checkout", headers=cookie)
                c.close()
                if st != 200 or order["items"] != 10:
                    errors.append((st, order))
            except Exception as e:  # reported below
                errors.append(repr(e))

        workers = [threading.Thread(target=shopper, args=(n,)) for n in range(6)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        self.assertEqual(server.stop(), 0)
        self.assertEqual(errors, [])


class Lifecycle(unittest.TestCase):
    def test_sigterm_with_requests_in_flight(self):
        server = DemoServer()
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        slow.sendall(b"GET /slow?ms=10000 HTTP/1.1\r\nHost: x\r\n\r\n")
        idle = server.conn()
        self.assertEqual(request(idle, "GET", "/health")[0], 200)
        self.assertEqual(server.stop(), 0)
        self.assertEqual(slow.recv(100), b"")  # closed, not answered
        slow.close()
        idle.close()

    def test_bad_arguments(self):
        def run(*args):
            return subprocess.run([CICADA, "demo-server", *args], capture_output=True,
                                  text=True, timeout=30)
        self.assertEqual(run("--port", "70000").returncode, 2)
        self.assertEqual(run("--threads", "0").returncode, 2)
        self.assertEqual(run("--bogus").returncode, 2)
        r = run("--host", "not-an-address", "--port", "0")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not an IP address", r.stderr)
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--threads", r.stdout)
        server = DemoServer()
        try:
            r = run("--port", str(server.port))
            self.assertEqual(r.returncode, 1)
            self.assertIn("address already in use", r.stderr)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
