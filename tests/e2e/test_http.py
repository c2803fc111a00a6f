"""HttpUser's client against real servers: nginx (HTTP/1.1, HTTPS), an httpbin of our own
(redirects, cookies, auth, bodies, compression) and a server that misbehaves on purpose; and
examples/http run as its README says."""

import servers
from harness import CicadaTest, main

# A script's checks become requests of type "check": a failed check is a failure whose error
# says what was wrong, which the test then shows.
CHECK = """
local cicada = require "cicada"
local function check(name, ok, msg)
    cicada.record("check", name, 0, 0, (not ok) and (msg or "failed") or nil)
end
"""


def one_shot(body, cls="cicada.HttpUser", attrs=""):
    """A user that runs |body| once in on_start, then ends the test."""
    return CHECK + f"""
local U = {cls}:extend("U", {{ {attrs} }})
function U:on_start()
{body}
    error(cicada.StopTest)
end
U:task(function() end)
return {{ U }}
"""


class HttpTest(CicadaTest):
    def run_checks(self, script, host, *args, users=1, expect_rc=None, run_time="30"):
        r = self.cicada("--headless", "-u", str(users), "-r", "100", "-t", run_time, "-H", host,
                        *args, script=script)
        checks = [e for e in r.data["stats"] if e["type"] == "check"] if r.data else []
        failed = [f for f in (r.data or {}).get("failures", []) if f["method"] == "check"]
        self.assertEqual(failed, [], r.stderr[-3000:])
        self.assertTrue(checks, "no check ran:\n" + r.stderr[-3000:])
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        if expect_rc is not None:
            self.assertEqual(r.rc, expect_rc, r.stderr[-2000:])
        return r


class Nginx(HttpTest):
    @classmethod
    def setUpClass(cls):
        cls.nginx = servers.Nginx()

    @classmethod
    def tearDownClass(cls):
        cls.nginx.stop()

    def test_http11_keep_alive_and_status_failures(self):
        n = self.nginx
        r = self.run_checks(one_shot("""
    for i = 1, 50 do
        local r = self.client:get("/index.html")
        check("200", r.status_code == 200 and r.ok, tostring(r.status_code) .. " " .. tostring(r.error))
        check("body", r.text:find("hello from nginx", 1, true) ~= nil)
        check("header", r.headers["content-type"] == "text/html" and r.headers["Content-Type"] == "text/html")
    end
    local missing = self.client:get("/nope")
    check("404 not ok", missing.status_code == 404 and not missing.ok)
    local big = self.client:get("/big.txt")
    check("gzip decoded", #big.text == 1048576 and big.length == 1048576, tostring(#big.text))
    check("gzip was used", big.headers["content-encoding"] == "gzip")
"""), f"http://127.0.0.1:{n.http}")
        self.assertEqual(r.count("/index.html", "GET"), 50)
        self.assertEqual(r.entry("/index.html", "GET")["total_content_length"],
                         50 * len("<html><body>hello from nginx</body></html>\n"))
        self.assertEqual(r.failures("/nope", "GET"), 1)
        self.assertEqual([f["error"] for f in r.data["failures"] if f["name"] == "/nope"],
                         ["404 Client Error: Not Found for url: /nope"])
        self.assertEqual(r.rc, 1)

    def test_https_verification(self):
        n = self.nginx
        host = f"https://localhost:{n.https}"
        # verification is on by default: the test CA is unknown to the system
        r = self.run_checks(one_shot("""
    local r = self.client:get("/index.html")
    check("refused", r.status_code == 0 and r.error ~= nil, tostring(r.error))
    check("names the way out", (r.error or ""):find("verify = false", 1, true) ~= nil, r.error)
"""), host)
        [fail] = [f for f in r.data["failures"] if f["method"] == "GET"]
        self.assertIn("certificate", fail["error"])
        # trusting the test CA, or not verifying, both work
        self.run_checks(one_shot(f"""
    local r = self.client:get("/index.html")
    check("trusted CA", r.status_code == 200, tostring(r.error))
""", attrs=f'ca_file = "{n.path("ca.pem")}"'), host, expect_rc=0)
        self.run_checks(one_shot("""
    for i = 1, 5 do
        local r = self.client:get("/index.html")
        check("insecure", r.status_code == 200, tostring(r.error))
    end
""", attrs="verify = false"), host, expect_rc=0)
        self.run_checks(one_shot("""
    check("--insecure", self.client:get("/index.html").status_code == 200)
"""), host, "--insecure", expect_rc=0)

    def test_client_certificate(self):
        n = self.nginx
        host = f"https://localhost:{n.mtls}"
        self.run_checks(one_shot("""
    local r = self.client:get("/index.html")
    check("no certificate: 400", r.status_code == 400, tostring(r.status_code) .. tostring(r.error))
""", attrs=f'ca_file = "{n.path("ca.pem")}"'), host)
        self.run_checks(one_shot("""
    local r = self.client:get("/index.html")
    check("certificate: 200", r.status_code == 200, tostring(r.status_code) .. tostring(r.error))
""", attrs=f'ca_file = "{n.path("ca.pem")}", cert_file = "{n.path("client.pem")}", '
           f'key_file = "{n.path("client.key")}"'), host, expect_rc=0)


class Features(HttpTest):
    @classmethod
    def setUpClass(cls):
        cls.bin = servers.httpbin()

    @classmethod
    def tearDownClass(cls):
        cls.bin.stop()

    def test_bodies_params_and_headers(self):
        r = self.run_checks(one_shot("""
    local r = self.client:get("/anything", { params = { q = "a b", n = { 1, 2 } }, headers = { ["X-Test"] = "yes" } })
    local d = r:json()
    check("params", d.query.q[1] == "a b" and d.query.n[2] == "2")
    check("header sent", d.headers["X-Test"] == "yes")
    check("user agent", d.headers["User-Agent"]:find("^cicada/") ~= nil)
    check("name is path and query", true)
    d = self.client:post("/anything", { json = { a = 1, list = { 1, 2 } } }):json()
    check("json body", d.json.a == 1 and d.json.list[2] == 2 and d.headers["Content-Type"] == "application/json")
    d = self.client:post("/anything", { data = { user = "ann", pw = "s&cret" } }):json()
    check("form body", d.form.user[1] == "ann" and d.form.pw[1] == "s&cret")
    d = self.client:put("/anything", { body = "raw bytes", headers = { ["Content-Type"] = "text/plain" } }):json()
    check("raw body", d.body == "raw bytes" and d.method == "PUT")
    d = self.client:post("/anything", { data = { field = "v" },
        files = { upload = { "notes.txt", "file content", "text/plain" } } }):json()
    check("multipart", d.form.field == "v" and d.files.upload.filename == "notes.txt"
        and d.files.upload.content == "file content" and d.files.upload.type == "text/plain")
    check("patch", self.client:patch("/anything"):json().method == "PATCH")
    check("delete", self.client:delete("/anything"):json().method == "DELETE")
    local h = self.client:head("/anything")
    check("head", h.status_code == 200 and h.text == "")
    check("options", self.client:options("/anything").status_code == 200)
    self.client.headers["X-Session"] = "s1"
    check("session header", self.client:get("/headers"):json().headers["X-Session"] == "s1")
    local named = self.client:get("/anything?id=42", { name = "/anything?id=[id]" })
    check("gzip", self.client:get("/gzip"):json().gzip == true)
    check("deflate", self.client:get("/deflate"):json().deflate == true)
    local c = self.client:get("/chunked/5")
    check("chunked", c.text == "line 0\\nline 1\\nline 2\\nline 3\\nline 4\\n", c.text)
    self.client:rename_request("grouped", function()
        self.client:get("/anything/1")
        self.client:get("/anything/2")
    end)
"""), self.bin.url, expect_rc=0)
        self.assertEqual(r.count("/anything?n=1&n=2&q=a%20b", "GET"), 1)
        self.assertEqual(r.count("/anything?id=[id]", "GET"), 1)
        self.assertEqual(r.count("grouped", "GET"), 2)
        self.assertEqual(r.count("/anything", "POST"), 3)

    def test_cookies_redirects_and_auth(self):
        r = self.run_checks(one_shot("""
    local r = self.client:get("/cookies/set?session=abc&theme=dark")
    local d = r:json()
    check("followed to /cookies", r.url:find("/cookies$") ~= nil, r.url)
    check("cookies sent back", d.cookies.session == "abc" and d.cookies.theme == "dark")
    check("history", #r.history == 1 and r.history[1].status_code == 302)
    check("jar", self.client.cookies:get("session") == "abc")
    r = self.client:get("/redirect/3")
    check("three redirects", r.status_code == 200 and #r.history == 3, tostring(#r.history))
    r = self.client:get("/redirect/2", { allow_redirects = false })
    check("not followed", r.status_code == 302 and r.headers["location"] == "/redirect/1")
    r = self.client:post("/redirect-to?url=/anything&status=303", { data = "x" })
    check("303 becomes GET", r:json().method == "GET")
    r = self.client:post("/redirect-to?url=/anything&status=307", { data = "x" })
    check("307 keeps POST and body", r:json().method == "POST" and r:json().body == "x")
    check("per-request cookies", self.client:get("/cookies", { cookies = { extra = "1" } }):json().cookies.extra == "1")
    check("auth", self.client:get("/basic-auth/ann/pw", { auth = { "ann", "pw" } }).status_code == 200)
    check("bad auth", self.client:get("/basic-auth/ann/pw", { auth = { "ann", "no" }, name = "bad auth" }).status_code == 401)
"""), self.bin.url)
        self.assertEqual(r.count("/cookies/set?session=abc&theme=dark", "GET"), 1)  # named after the first URL
        self.assertEqual(r.count("/redirect/3", "GET"), 1)
        self.assertEqual(r.failures("bad auth", "GET"), 1)
        # credentials in the host URL become basic auth
        host = self.bin.url.replace("http://", "http://ann:pw@")
        self.run_checks(one_shot("""
    check("auth from URL", self.client:get("/basic-auth/ann/pw").status_code == 200)
"""), host, expect_rc=0)

    def test_catch_response_and_rest(self):
        r = self.run_checks(one_shot("""
    self.client:get("/status/500", { catch_response = true, name = "forgiven" }, function(resp)
        resp:success()
    end)
    self.client:get("/anything", { catch_response = true, name = "refused" }, function(resp)
        if not resp.text:find("nothing like this") then resp:failure("wanted 'nothing like this'") end
    end)
    self.client:get("/status/404", { catch_response = true, name = "default" }, function(resp) end)
    local r = self:rest("POST", "/anything", { json = { n = 1 } }, function(resp)
        assert(resp.js.json.n == 1, "n should be 1")
    end)
    check("rest js", r.js.method == "POST")
    self:rest("GET", "/anything", { name = "rest assert" }, function(resp)
        assert(resp.js.method == "DELETE", "method was " .. resp.js.method)
    end)
    self:rest("GET", "/chunked/2", { name = "rest not json" })
    local ok, err = pcall(function() self.client:get("/anything"):success() end)
    check("success needs catch_response", not ok and tostring(err):find("catch_response") ~= nil)
"""), self.bin.url)
        errors = {f["name"]: f["error"] for f in r.data["failures"]}
        self.assertNotIn("forgiven", errors)
        self.assertEqual(r.count("forgiven", "GET"), 1)
        self.assertEqual(errors["refused"], "wanted 'nothing like this'")
        self.assertEqual(errors["default"], "404 Client Error: Not Found for url: default")
        self.assertIn("method was GET", errors["rest assert"])
        self.assertIn("Could not parse response as JSON", errors["rest not json"])
        self.assertEqual(r.failures("/anything", "POST"), 0)

    def test_concurrent_requests_of_one_user(self):
        r = self.run_checks(one_shot("""
    local t0 = cicada.monotonic()
    local results = cicada.gather({
        function() return self.client:get("/delay/0.3", { name = "a" }).status_code end,
        function() return self.client:get("/delay/0.3", { name = "b" }).status_code end,
        function() return self.client:get("/delay/0.3", { name = "c" }).status_code end,
    })
    check("all three", results[1] == 200 and results[2] == 200 and results[3] == 200)
    cicada.record("gather", "together", (cicada.monotonic() - t0) * 1000, 0)
"""), self.bin.url, expect_rc=0)
        for n in "abc":
            self.assertEqual(r.count(n, "GET"), 1)
        # three 0.3 s requests side by side end well before three in a row would
        self.assertLess(r.entry("together", "gather")["max_response_time"],
                        r.entry("a", "GET")["max_response_time"] * 3)

    def test_source_address(self):
        self.run_checks(one_shot("""
    local d = self.client:get("/anything"):json()
    check("bound to 127.0.0.2", d.remote_addr == "127.0.0.2", d.remote_addr)
""", attrs='source_addresses = { "127.0.0.2" }'), self.bin.url, expect_rc=0)

    def test_example(self):
        r = self.example("http", self.bin.url, 5, 3)
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        # each user's on_start, then its tasks, under the example's names
        self.assertEqual(r.count("/cookies/set", "GET"), 5)
        self.assertGreater(r.data["total"]["num_requests"], 5)
        names = {"/cookies/set", "/anything?page=[n]", "json", "form", "raw", "upload", "/gzip",
                 "/redirect/3", "/redirect/1 (not followed)", "/basic-auth", "optional page",
                 "checked body", "/anything", "page resources", "/bytes (streamed)", "/delay"}
        self.assertLessEqual({e["name"] for e in r.data["stats"]}, names)


class Faults(HttpTest):
    @classmethod
    def setUpClass(cls):
        cls.srv = servers.faults()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_every_fault_is_a_counted_failure(self):
        refused = servers.free_port()
        tls = self.srv.tls_port
        r = self.cicada("--headless", "-u", "1", "-t", "30", "-H", self.srv.url, script=one_shot(f"""
    for _, path in ipairs({{ "/reset-mid", "/reset-end", "/close-mid", "/no-response", "/bad-status",
                            "/bad-header", "/bad-chunked", "/bad-gzip", "/garbage", "/huge" }}) do
        local r = self.client:get(path)
        check(path, r.status_code == 0 and r.error ~= nil, tostring(r.status_code))
    end
    local s = self.client:get("/stall", {{ timeout = 0.5 }})
    check("stall", s.error ~= nil and s.error:find("timed out") ~= nil, s.error)
    -- the read timeout holds on a reused connection, after a shorter or a longer one
    check("ok", self.client:get("/ok", {{ timeout = 0.4 }}).status_code == 200)
    self.client:get("/stall", {{ timeout = 0.5, name = "stall after a shorter timeout" }})
    check("ok", self.client:get("/ok", {{ timeout = 120 }}).status_code == 200)
    self.client:get("/stall", {{ timeout = 0.5, name = "stall after a longer timeout" }})
    local streamed = self.client:get("/huge", {{ stream = true, name = "streamed" }})
    check("streamed", streamed.status_code == 200 and streamed.length == 104857600 and streamed.text == "")
    self.client:get("http://127.0.0.1:{refused}/", {{ name = "refused" }})
    self.client:get("https://127.0.0.1:{tls}/", {{ name = "tls" }})
    self.client:get("http://no..such..host/", {{ name = "unknown host" }})
    -- a keep-alive connection the server closed is retried once, transparently
    for i = 1, 10 do
        check("retried", self.client:get("/close-after").status_code == 200)
    end
"""))
        self.assertEqual(r.rc, 1, r.stderr[-2000:])
        self.assertEqual(r.data["exceptions"], [])
        self.assertEqual([f for f in r.data["failures"] if f["method"] == "check"], [])
        errors = {f["name"]: f["error"] for f in r.data["failures"]}
        expect = {
            "/reset-mid": "reset", "/reset-end": "reset",
            "/close-mid": "before the response was complete",
            "/no-response": "without a response", "/bad-status": "malformed response",
            "/bad-header": "malformed response", "/bad-chunked": "malformed response",
            "/bad-gzip": "compressed body", "/garbage": "malformed response",
            "/huge": "larger than max_body", "/stall": "read timed out",
            "stall after a shorter timeout": "no response within 0.5 s",
            "stall after a longer timeout": "no response within 0.5 s",
            "refused": "refused", "tls": "TLS", "unknown host": "no..such..host",
        }
        for name, texts in expect.items():
            self.assertIn(name, errors, f"{name} was not a failure: {errors}")
            texts = texts if isinstance(texts, tuple) else (texts,)
            self.assertTrue(any(t.lower() in errors[name].lower() for t in texts),
                            f"{name}: {errors[name]}")
        self.assertEqual(r.count("/close-after", "GET"), 10)
        self.assertEqual(r.failures("/close-after", "GET"), 0)
        self.assertEqual(r.failures("streamed", "GET"), 0)


class Http2(HttpTest):
    """HTTP/2 against nginx: h2c with prior knowledge, h2 by ALPN, and the fall back to
    HTTP/1.1. nginx answers with X-Connection, its connection number, so that a test can tell
    which requests shared a connection; /bin/ is proxied to an httpbin that echoes requests."""

    @classmethod
    def setUpClass(cls):
        cls.bin = servers.httpbin()
        cls.nginx = servers.Nginx(upstream=cls.bin.port)

    @classmethod
    def tearDownClass(cls):
        cls.nginx.stop()
        cls.bin.stop()

    # what every HTTP/2 test checks: sequential requests on one connection, concurrent ones
    # multiplexed on it too, bodies both ways, gzip, HEAD, a 404
    H2_CHECKS = """
    local conns = {}
    local function conn(r) conns[r.headers["x-connection"] or "none"] = true end
    local function nconns() local n = 0; for _ in pairs(conns) do n = n + 1 end; return n end
    for i = 1, 50 do
        local r = self.client:get("/index.html")
        check("200", r.status_code == 200 and r.ok and r.reason == "OK", tostring(r.status_code) .. " " .. tostring(r.error))
        check("h2", r.http_version == "HTTP/2", r.http_version)
        check("body", r.text == "<html><body>hello from nginx</body></html>\\n", r.text)
        check("header", r.headers["content-type"] == "text/html" and r.headers["Content-Type"] == "text/html")
        conn(r)
    end
    local fns = {}
    for i = 1, 20 do
        fns[i] = function() return self.client:get("/index.html", { name = "together" }) end
    end
    local results = cicada.gather(fns)
    for i = 1, 20 do
        local r = results[i]
        check("together", r.status_code == 200 and r.http_version == "HTTP/2", tostring(r.error))
        conn(r)
    end
    check("one connection", nconns() == 1, tostring(nconns()))
    local d = self.client:post("/bin/anything", { json = { a = 1 }, headers = { ["X-Test"] = "yes" } }):json()
    check("json body", d.method == "POST" and d.json.a == 1 and d.headers["content-type"] == "application/json", d.body)
    check("lower-case names", d.headers["x-test"] == "yes")
    local big = string.rep("0123456789abcdef", 61440) -- 960 KiB: nginx takes up to 1 MiB
    d = self.client:put("/bin/anything", { body = big, headers = { ["Content-Type"] = "text/plain" } }):json()
    check("960 KiB request body", d.method == "PUT" and d.body == big, tostring(#d.body))
    local g = self.client:get("/big.txt")
    check("gzip decoded", #g.text == 1048576 and g.length == 1048576, tostring(#g.text))
    check("gzip was used", g.headers["content-encoding"] == "gzip")
    local h = self.client:head("/index.html")
    check("head", h.status_code == 200 and h.text == "" and h.headers["content-length"] == "43")
    local missing = self.client:get("/nope")
    check("404 not ok", missing.status_code == 404 and not missing.ok and missing.http_version == "HTTP/2")
"""

    def check_h2_run(self, r):
        self.assertEqual(r.count("/index.html", "GET"), 50)
        self.assertEqual(r.failures("/index.html", "GET"), 0)
        self.assertEqual(r.count("together", "GET"), 20)
        self.assertEqual(r.failures("together", "GET"), 0)
        self.assertEqual(r.entry("/index.html", "GET")["total_content_length"],
                         50 * len("<html><body>hello from nginx</body></html>\n"))
        self.assertEqual(r.failures("/bin/anything", "POST"), 0)
        self.assertEqual(r.failures("/bin/anything", "PUT"), 0)
        self.assertEqual([f["error"] for f in r.data["failures"] if f["name"] == "/nope"],
                         ["404 Client Error: Not Found for url: /nope"])
        self.assertEqual(r.rc, 1)  # the 404

    def test_h2c_prior_knowledge(self):
        r = self.run_checks(one_shot(self.H2_CHECKS, attrs='http2 = "prior_knowledge"'),
                            f"http://127.0.0.1:{self.nginx.h2c}")
        self.check_h2_run(r)

    def test_h2_by_alpn(self):
        n = self.nginx
        r = self.run_checks(one_shot(self.H2_CHECKS, attrs=f'http2 = true, ca_file = "{n.path("ca.pem")}"'),
                            f"https://localhost:{n.https}")
        self.check_h2_run(r)
        # without verification, and with prior_knowledge (over TLS the same as true); requests
        # made before the connection is up wait for it, then share it
        self.run_checks(one_shot("""
    local fns = {}
    for i = 1, 10 do
        fns[i] = function() return self.client:get("/index.html") end
    end
    local results, conns = cicada.gather(fns), {}
    for i = 1, 10 do
        check("insecure h2", results[i].http_version == "HTTP/2", tostring(results[i].error))
        conns[results[i].headers["x-connection"] or "none"] = true
    end
    check("one connection", next(conns, next(conns)) == nil)
""", attrs='http2 = "prior_knowledge", verify = false'), f"https://127.0.0.1:{n.https}", expect_rc=0)
        # HTTP/1.1 unless asked: ALPN offers only http/1.1
        self.run_checks(one_shot("""
    local r = self.client:get("/index.html")
    check("h1 by default", r.status_code == 200 and r.http_version == "HTTP/1.1", r.http_version)
""", attrs="verify = false"), f"https://127.0.0.1:{n.https}", expect_rc=0)

    def test_falls_back_to_http11(self):
        n = self.nginx
        script = lambda echo: one_shot("""
    for i = 1, 5 do
        local r = self.client:get("/index.html")
        check("h1", r.status_code == 200 and r.http_version == "HTTP/1.1", tostring(r.http_version) .. " " .. tostring(r.error))
    end
    local results = cicada.gather({
        function() return self.client:get("/index.html", { name = "together" }) end,
        function() return self.client:get("/index.html", { name = "together" }) end,
        function() return self.client:get("/index.html", { name = "together" }) end,
    })
    for i = 1, 3 do
        check("together", results[i].status_code == 200 and results[i].http_version == "HTTP/1.1")
    end
    local d = self.client:post("ECHO", { body = "x=1" }):json()
    check("body", d.body == "x=1" and d.headers["Content-Length"] == "3")
""".replace("ECHO", echo), attrs="http2 = true, verify = false")
        # a TLS server without HTTP/2 picks http/1.1 by ALPN
        r = self.run_checks(script("/bin/anything"), f"https://127.0.0.1:{n.https11}", expect_rc=0)
        self.assertEqual(r.count("together", "GET"), 3)
        # http2 = true over plain HTTP stays HTTP/1.1 (h2c needs prior_knowledge)
        r = self.run_checks(script("/anything").replace("/index.html", "/get"), self.bin.url,
                            expect_rc=0)
        self.assertEqual(r.count("together", "GET"), 3)

    def test_goaway_moves_to_a_new_connection(self):
        # this server ends a connection with GOAWAY after 10 requests: later requests, and
        # concurrent streams it refused, go to new connections
        r = self.run_checks(one_shot("""
    local per = {}
    for i = 1, 25 do
        local r = self.client:get("/index.html")
        check("sequential", r.status_code == 200, tostring(r.error))
        local c = r.headers["x-connection"] or "none"
        per[c] = (per[c] or 0) + 1
    end
    local n = 0
    for _, count in pairs(per) do
        n = n + 1
        check("at most 10 per connection", count <= 10, tostring(count))
    end
    check("three connections", n == 3, tostring(n))
    local fns = {}
    for i = 1, 40 do
        fns[i] = function() return self.client:get("/index.html", { name = "together" }) end
    end
    local results = cicada.gather(fns)
    for i = 1, 40 do
        check("together", results[i].status_code == 200, tostring(results[i].error))
    end
""", attrs='http2 = "prior_knowledge"'), f"http://127.0.0.1:{self.nginx.h2c_short}", expect_rc=0)
        self.assertEqual(r.count("together", "GET"), 40)
        self.assertEqual(r.failures("together", "GET"), 0)

    def test_many_users(self):
        # users come and go while their streams are in flight (the run ends under them)
        r = self.cicada("--headless", "-u", "50", "-r", "500", "-t", "2",
                        "-H", f"http://127.0.0.1:{self.nginx.h2c}", script="""
local cicada = require "cicada"
local U = cicada.HttpUser:extend("U", { http2 = "prior_knowledge" })
U:task(function(self)
    cicada.gather({
        function() self.client:get("/index.html") end,
        function() self.client:get("/big.txt") end,
        function() self.client:get("/nope", { name = "404" }) end,
    })
end)
return { U }
""")
        self.assertEqual(r.data["exceptions"], [], r.stderr[-2000:])
        self.assertGreater(r.count("/index.html", "GET"), 50)
        self.assertEqual(r.failures("/index.html", "GET"), 0, r.data["failures"][:3])
        self.assertEqual(r.failures("/big.txt", "GET"), 0, r.data["failures"][:3])
        self.assertEqual(r.failures("404", "GET"), r.count("404", "GET"))


class Http2Faults(HttpTest):
    @classmethod
    def setUpClass(cls):
        cls.srv = servers.h2_faults()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_every_fault_is_a_counted_failure(self):
        m = self.srv.modes
        r = self.cicada("--headless", "-u", "1", "-t", "30", "-H", self.srv.url, script=one_shot(f"""
    check("ok", self.client:get("/").text == "hello")
    for _, mode in ipairs({{ "rst", "refuse", "goaway", "garbage", "close_mid", "bad_status" }}) do
        local urls = {{ rst = "{m['rst']}", refuse = "{m['refuse']}", goaway = "{m['goaway']}",
                       garbage = "{m['garbage']}", close_mid = "{m['close_mid']}",
                       bad_status = "{m['bad_status']}" }}
        local r = self.client:get(urls[mode] .. "/", {{ name = mode }})
        check(mode, r.status_code == 0 and r.error ~= nil, tostring(r.status_code))
    end
    -- a stalled stream times out alone: the others on its connection are answered
    local alt = "{m['alternate']}/"
    local results = cicada.gather({{
        function() return self.client:get(alt, {{ name = "alternate", timeout = 0.5 }}) end,
        function() return self.client:get(alt, {{ name = "alternate", timeout = 0.5 }}) end,
        function() return self.client:get(alt, {{ name = "alternate", timeout = 0.5 }}) end,
        function() return self.client:get(alt, {{ name = "alternate", timeout = 0.5 }}) end,
    }})
    local ok, timed_out = 0, 0
    for i = 1, 4 do
        if results[i].status_code == 200 then ok = ok + 1 end
        if (results[i].error or ""):find("timed out") then timed_out = timed_out + 1 end
    end
    check("two answered", ok == 2, tostring(ok))
    check("two timed out", timed_out == 2, tostring(timed_out))
    check("the connection goes on", self.client:get(alt, {{ name = "after" }}).status_code == 200)
""", attrs='http2 = "prior_knowledge"'))
        self.assertEqual(r.rc, 1, r.stderr[-2000:])
        self.assertEqual(r.data["exceptions"], [])
        self.assertEqual([f for f in r.data["failures"] if f["method"] == "check"], [])
        errors = {f["name"]: f["error"] for f in r.data["failures"]}
        expect = {
            "rst": "reset the HTTP/2 stream: INTERNAL_ERROR",
            "refuse": "REFUSED_STREAM",
            "goaway": "ended the HTTP/2 connection: ENHANCE_YOUR_CALM (calm down)",
            "garbage": "malformed response",
            "close_mid": "closed the connection before the response was complete",
            "bad_status": "malformed response",
            "alternate": "read timed out",
        }
        for name, text in expect.items():
            self.assertIn(name, errors, f"{name} was not a failure: {errors}")
            self.assertIn(text, errors[name], name)
        self.assertEqual(r.count("alternate", "GET"), 4)
        self.assertEqual(r.failures("alternate", "GET"), 2)
        self.assertEqual(r.failures("after", "GET"), 0)

    def test_killed_users_cancel_their_streams(self):
        # every other stream never gets an answer: the users wait until the run ends and
        # kills them, which resets those streams
        r = self.cicada("--headless", "-u", "5", "-r", "100", "-t", "1", "-H", self.srv.modes["alternate"],
                        script="""
local cicada = require "cicada"
local U = cicada.HttpUser:extend("U", { http2 = "prior_knowledge" })
U:task(function(self)
    cicada.gather({
        function() self.client:get("/", { name = "first" }) end,
        function() self.client:get("/", { name = "second" }) end,
    })
end)
return { U }
""")
        self.assertEqual(r.data["exceptions"], [], r.stderr[-2000:])
        self.assertEqual(r.count("first", "GET"), 5)
        self.assertEqual(r.failures("first", "GET"), 0)
        self.assertEqual(r.count("second", "GET"), 0)  # cancelled: never recorded


class DemoShop(HttpTest):
    def test_journey(self):
        shop = servers.demo_server()
        try:
            r = self.run_checks(CHECK + """
local Shopper = cicada.HttpUser:extend("Shopper", {})
function Shopper:on_start()
    local r = self.client:post("/login", { json = { username = "ann", password = "secret" } })
    check("login", r.status_code == 200 and self.client.cookies:get("session") ~= nil)
end
Shopper:task(function(self)
    local items = self.client:get("/items"):json().items
    check("items", #items > 0)
    self.client:get("/items/" .. items[1].id, { name = "/items/{id}" })
    check("add", self.client:post("/cart", { json = { item_id = items[1].id, quantity = 2 } }).status_code == 200)
    check("cart", #self.client:get("/cart"):json().items == 1)
    check("checkout", self.client:post("/checkout").status_code == 200)
    error(cicada.StopUser)
end)
return { Shopper }
""", shop.url, users=3, expect_rc=0, run_time="3")
            self.assertEqual(r.count("/items/{id}", "GET"), 3)
            self.assertEqual(r.count("/checkout", "POST"), 3)
        finally:
            shop.stop()


if __name__ == "__main__":
    main()
