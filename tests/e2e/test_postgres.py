"""PostgresUser's client against a PostgreSQL server the tests initialise (initdb in a temporary
directory, a free loopback port), and against a server that misbehaves on purpose; and
examples/postgres run as its README says."""
import os
import shutil
import subprocess
import tempfile

import pg_server
import servers
from harness import CicadaTest, checks_prelude, main
from harness import one_shot as harness_one_shot

HERE = os.path.dirname(os.path.abspath(__file__))

# A script's checks become requests of type "check": a failed check is a failure whose error
# says what was wrong.
CHECK = checks_prelude("cicada.postgres", "pg")


def one_shot(body, attrs=""):
    """A PostgresUser that runs |body| once in on_start, then ends the test."""
    return harness_one_shot(CHECK, "PostgresUser", body, attrs)


class PgTest(CicadaTest):
    def run_checks(self, script, host, *args, users=1, run_time="60"):
        return super().run_checks(script, host, *args, users=users, run_time=run_time)


class Postgres(PgTest):
    @classmethod
    def setUpClass(cls):
        cls.pg = servers.postgres()
        cls.pg.psql("create table items (id int primary key, name text not null, "
                    "price float8, active bool, note text)")
        cls.pg.psql("insert into items select i, 'item ' || i, i * 1.5, i % 2 = 0, null "
                    "from generate_series(1, 100) i")

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def test_queries_types_names_and_errors(self):
        r = self.run_checks(one_shot("""
    local c = self.client
    local rows, err = c:query("select id, name, price, active, note from items where id = $1", { 2 })
    check("rows", rows and #rows == 1, tostring(err))
    local row = rows[1]
    check("int", row.id == 2 and type(row.id) == "number", tostring(row.id))
    check("text", row.name == "item 2")
    check("float", row.price == 3.0, tostring(row.price))
    check("bool", row.active == true, tostring(row.active))
    check("null", row.note == pg.null, "null is not pg.null")

    rows = c:query("select id, name from items where id <= $1 order by id", { 3 }, { array = true })
    check("array rows", #rows == 3 and rows[3][1] == 3 and rows[3][2] == "item 3")
    rows = c:query("select 42::int as n, true as b", nil, { typed = false })
    check("untyped", rows[1].n == "42" and rows[1].b == "t", tostring(rows[1].n))
    rows = c:query("select 9007199254740993::int8 as big, 1.10::numeric as num, "
                   .. "'NaN'::float8 as nan, '-Infinity'::float8 as ninf")
    check("int8 beyond 2^53 stays text", rows[1].big == "9007199254740993", tostring(rows[1].big))
    check("numeric stays text", rows[1].num == "1.10")
    check("nan", rows[1].nan ~= rows[1].nan)
    check("-inf", rows[1].ninf == -math.huge)

    -- parameters: nil and pg.null are NULL, booleans, integers, floats, strings
    rows = c:query("select $1::int is null as a, $2::bool as b, $3::int8 as c, $4::float8 as d, "
                   .. "$5::text as e, $6::text is null as f",
                   { pg.null, true, 1234567890123, 0.25, "it's", n = 6 })
    local p = rows[1]
    check("params", p.a == true and p.b == true and p.c == 1234567890123 and p.d == 0.25
          and p.e == "it's" and p.f == true)

    -- names: given, or the SQL text trimmed
    c:query("select 1", nil, "one")
    c:query("select 1", nil, { name = "one" })
    c:query("  select\\n   2  ")
    rows = c:query("update items set note = 'seen' where id <= 2")
    check("affected rows", rows.affected_rows == 2, tostring(rows.affected_rows))
    rows = c:query("select count(*) as n from items where note = 'seen'")
    check("update visible", rows[1].n == 2)
    c:query("update items set note = null")

    -- errors: nil, a sentence with the SQLSTATE, the SQLSTATE
    local none, msg, state = c:query("select * from nope", nil, "missing table")
    check("error", none == nil and state == "42P01" and msg:find("SQLSTATE 42P01") ~= nil, msg)
    none, msg, state = c:query("insert into items (id, name) values (1, 'dup')", nil, "duplicate")
    check("unique violation", state == "23505", msg)
    check("still usable", c:query("select 1 as x")[1].x == 1)
"""), self.pg.url)
        self.assertEqual(r.count("one", "postgres"), 2)
        self.assertEqual(r.count("select 2", "postgres"), 1)
        self.assertEqual(r.count("connect", "postgres"), 1)
        self.assertEqual(r.failures("connect", "postgres"), 0)
        self.assertEqual(r.failures("missing table", "postgres"), 1)
        self.assertEqual(self.errors(r, "missing table"),
                         ['SQLSTATE 42P01: relation "nope" does not exist'])
        self.assertTrue(self.errors(r, "duplicate")[0].startswith("SQLSTATE 23505: duplicate key"))
        self.assertEqual(r.failures("select 1", "postgres"), 0)

    def test_prepared_statements_survive_a_reconnect(self):
        r = self.run_checks(one_shot("""
    local c = self.client
    check("prepare", c:prepare("by_id", "select name from items where id = $1"))
    check("prepare again is free", c:prepare("by_id", "select name from items where id = $1"))
    for i = 1, 10 do
        local rows = c:execute("by_id", { i })
        check("execute", rows and rows[1].name == "item " .. i)
    end
    local rows = c:execute("by_id", { 5 }, "lookup")
    check("named execute", rows[1].name == "item 5")
    -- the server ends this connection: the next call reconnects and prepares again
    local none, err = c:query("select pg_terminate_backend(pg_backend_pid())", nil, "terminate")
    check("terminated", none == nil, "the query survived its backend")
    rows = c:execute("by_id", { 7 })
    check("execute after reconnect", rows and rows[1].name == "item 7", tostring(rows))
    local _, e2, state = c:execute("no_such", {})
    check("unknown statement", state == "26000", tostring(e2))
"""), self.pg.url)
        self.assertEqual(r.count("by_id", "postgres"), 11)
        self.assertEqual(r.failures("by_id", "postgres"), 0)
        self.assertEqual(r.count("lookup", "postgres"), 1)
        self.assertEqual(r.count("PREPARE by_id", "postgres"), 1)
        self.assertEqual(r.count("connect", "postgres"), 2)
        self.assertEqual(r.failures("terminate", "postgres"), 1)

    def test_transactions(self):
        self.pg.psql("create table if not exists ledger (id serial primary key, amount int)")
        self.pg.psql("truncate ledger")
        r = self.run_checks(one_shot("""
    local c = self.client
    local v, err = c:transaction(function(tx)
        tx:query("insert into ledger (amount) values ($1)", { 10 })
        tx:query("insert into ledger (amount) values ($1)", { 20 })
        check("in transaction", tx:status() == "intrans", tx:status())
        return "done", 2
    end, { name = "transfer" })
    check("commit returns fn's results", v == "done", tostring(err))
    check("idle after", c:status() == "idle", c:status())

    -- an error raised inside rolls back and is raised again
    local ok, e = pcall(c.transaction, c, function(tx)
        tx:query("insert into ledger (amount) values (999)")
        error("changed my mind")
    end)
    check("raised", not ok and tostring(e):find("changed my mind") ~= nil, tostring(e))
    check("idle after rollback", c:status() == "idle", c:status())

    -- a statement that fails inside: rolled back, nil and its error
    v, err = c:transaction(function(tx)
        tx:query("insert into ledger (amount) values (500)")
        tx:query("insert into nope values (1)")
        tx:query("insert into ledger (amount) values (501)") -- refused: aborted transaction
    end, { name = "broken", isolation = "serializable" })
    check("failed statement rolls back", v == nil and err:find("42P01") ~= nil, tostring(err))
    local rows = c:query("select sum(amount) as s, count(*) as n from ledger")
    check("only the committed rows", rows[1].s == 30 and rows[1].n == 2,
          tostring(rows[1].s) .. " " .. tostring(rows[1].n))
    local ok2, e2 = pcall(c.transaction, c, function(tx) tx:transaction(function() end) end)
    check("no nesting", not ok2 and tostring(e2):find("nesting") ~= nil, tostring(e2))
"""), self.pg.url)
        self.assertEqual(r.count("BEGIN", "postgres"), 4)
        self.assertEqual(r.count("COMMIT", "postgres"), 1)
        self.assertEqual(r.count("ROLLBACK", "postgres"), 3)
        self.assertEqual(r.count("transfer", "postgres"), 1)
        self.assertEqual(r.failures("transfer", "postgres"), 0)
        self.assertEqual(r.failures("broken", "postgres"), 1)

    def test_pipeline(self):
        r = self.run_checks(one_shot("""
    local c = self.client
    c:prepare("price", "select price from items where id = $1")
    local res, err = c:pipeline({
        { "select name from items where id = $1", { 1 }, name = "p1" },
        { statement = "price", params = { 4 } },
        { "select count(*) as n from items" },
    })
    check("pipeline", err == nil and res[1][1].name == "item 1" and res[2][1].price == 6
          and res[3][1].n == 100, tostring(err))
    res, err = c:pipeline(function(p)
        p:query("select 1 as a", nil, "first")
        p:query("select * from nope", nil, "second")
        p:query("select 3 as c", nil, "third")
    end)
    check("first ran", res[1][1].a == 1)
    check("second failed", res[2].sqlstate == "42P01" and err == res[2].error, tostring(err))
    check("third not run", res[3].error ~= nil and res[3].sqlstate == nil, tostring(res[3].error))
    check("usable after", c:query("select 5 as x")[1].x == 5)
    for i = 1, 20 do
        local list = {}
        for j = 1, 50 do list[j] = { "select $1::int as v", { j }, name = "batch" } end
        local out = c:pipeline(list)
        check("batch", #out == 50 and out[50][1].v == 50)
    end
"""), self.pg.url)
        self.assertEqual(r.count("p1", "postgres"), 1)
        self.assertEqual(r.count("price", "postgres"), 1)
        self.assertEqual(r.failures("second", "postgres"), 1)
        self.assertEqual(r.failures("third", "postgres"), 1)
        self.assertEqual(r.count("batch", "postgres"), 1000)
        self.assertEqual(r.failures("batch", "postgres"), 0)

    def test_many_users_and_concurrent_calls_on_one_client(self):
        script = CHECK + """
local U = cicada.PostgresUser:extend("U", { wait_time = cicada.constant(0) })
U:task(3, function(self)
    self.client:query("select name from items where id = $1", { math.random(1, 100) }, "lookup")
end)
U:task(1, function(self)
    -- several calls of one user at once: they queue on its connection
    local res = cicada.gather({
        function() return self.client:query("select 1 as v", nil, "gathered")[1].v end,
        function() return self.client:query("select 2 as v", nil, "gathered")[1].v end,
        function() return self.client:query("select 3 as v", nil, "gathered")[1].v end,
    })
    check("gather", res[1] == 1 and res[2] == 2 and res[3] == 3)
end)
return { U }
"""
        r = self.run_checks(script, self.pg.url, "--threads", "2", users=20, run_time="3")
        self.assertGreater(r.count("lookup", "postgres"), 0)
        self.assertEqual(r.failures("lookup", "postgres"), 0)
        self.assertEqual(r.failures("gathered", "postgres"), 0)
        self.assertEqual(r.count("connect", "postgres"), 20)

    def test_stop_while_queries_run(self):
        # users in a long query when the run ends are killed; the process ends promptly
        script = CHECK + """
local U = cicada.PostgresUser:extend("U", {})
U:task(function(self) self.client:query("select pg_sleep(30)", nil, "sleep") end)
return { U }
"""
        r = self.cicada("--headless", "-u", "5", "-r", "100", "-t", "1", "-H", self.pg.url,
                        script=script, timeout=60)
        self.assertIn(r.rc, (0, 1), r.stderr[-2000:])
        self.assertEqual(r.count("connect", "postgres"), 5)
        self.assertEqual(r.data["exceptions"], [])

    def test_host_name_and_conninfo_string(self):
        # a host name is resolved on the loop (libpq would block on it); a key=value string
        conninfo = f"host=localhost port={self.pg.port} user=postgres dbname=postgres"
        r = self.run_checks(one_shot("""
    local rows, err = self.client:query("select current_user as u")
    check("by name", rows and rows[1].u == "postgres", tostring(err))
"""), conninfo)
        self.assertEqual(r.failures("connect", "postgres"), 0)

    def test_connect_refused_and_bad_database(self):
        port = servers.free_port()
        r = self.cicada("--headless", "-u", "1", "-r", "10", "-t", "30",
                        "-H", f"postgresql://postgres@127.0.0.1:{port}/postgres",
                        script=one_shot("""
    local rows, err = self.client:query("select 1")
    check("refused", rows == nil and err:find("^connect: ") ~= nil, tostring(err))
    local ok, e2 = self.client:connect()
    check("connect() refused", ok == nil and e2:find("refused") ~= nil, tostring(e2))
"""))
        self.assertEqual([f for f in r.data["failures"] if f["method"] == "check"], [])
        self.assertEqual(r.failures("connect", "postgres"), 2)
        self.assertEqual(r.failures("select 1", "postgres"), 1)
        r = self.run_checks(one_shot("""
    local rows, err = self.client:query("select 1")
    check("no such database", rows == nil and err:find("nosuchdb") ~= nil, tostring(err))
"""), f"postgresql://postgres@127.0.0.1:{self.pg.port}/nosuchdb")
        self.assertEqual(r.failures("connect", "postgres"), 1)

    def test_bad_arguments_raise(self):
        r = self.cicada("--headless", "-u", "1", "-r", "10", "-t", "30", "-H", self.pg.url,
                        script=one_shot("""
    local c = self.client
    check("table param", not pcall(c.query, c, "select $1", { {} }))
    check("nul byte", not pcall(c.query, c, "select $1", { "a\\0b" }))
    check("sql type", not pcall(c.query, c, {}))
    check("empty pipeline", not pcall(c.pipeline, c, {}))
    check("still fine", c:query("select 1 as x")[1].x == 1)
"""))
        self.assertEqual([f for f in r.data["failures"] if f["method"] == "check"], [])
        self.assertEqual(r.data["exceptions"], [])

    def test_missing_host(self):
        r = self.cicada("--headless", "-u", "1", "-t", "5", script=CHECK + """
local U = cicada.PostgresUser:extend("U", {})
U:task(function() end)
return { U }
""", want_json=False)
        self.assertNotEqual(r.rc, 0)
        self.assertIn("has no host", r.stderr)

    def test_server_runs_as_an_unprivileged_user(self):
        import pg_server
        user = pg_server.server_user()
        if os.geteuid() != 0:
            self.assertIsNone(user)
            return
        # as root: the server (started by setUpClass) runs as another user
        owner = os.stat(self.pg.data).st_uid
        self.assertNotEqual(owner, 0)
        # and the helper works for that user too, the way a non-root CI would run it
        tmp = tempfile.mkdtemp(prefix="cicada-pg-nonroot-")
        try:
            shutil.copy(os.path.join(HERE, "pg_server.py"), tmp)
            os.chown(tmp, user.pw_uid, user.pw_gid)
            code = ("import sys; sys.path.insert(0, sys.argv[1]); import pg_server; "
                    "assert pg_server.server_user() is None; p = pg_server.Postgres(); "
                    "print(p.psql('select current_user')); p.stop()")
            out = subprocess.run(["/usr/bin/python3", "-c", code, tmp], capture_output=True,
                                 text=True, user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                                 cwd=tmp, env={"PATH": os.environ.get("PATH", ""),
                                               "HOME": tmp}, timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr[-2000:])
            self.assertEqual(out.stdout.strip(), "postgres")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_example(self):
        # a database of its own (its items table is not the tests'), whose wishlist is full
        # already: every wish is the duplicate the example expects, a failure
        self.pg.psql("drop database if exists shop")
        self.pg.psql("create database shop")
        subprocess.run([pg_server.pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.pg.port),
                        "-U", "postgres", "-d", "shop", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                        "-c", "create table wishlist (customer int, item_id int, "
                        "primary key (customer, item_id)); insert into wishlist select c, i "
                        "from generate_series(1, 10000) c, generate_series(1, 20) i"],
                       check=True, capture_output=True)
        r = self.example("postgres", f"postgresql://postgres@127.0.0.1:{self.pg.port}/shop", 20,
                         3, failures=True)
        self.assertEqual(r.count("create tables", "postgres"), 1)
        self.assertEqual(r.count("PREPARE item", "postgres"), 20)
        for name in ("item", "search items", "checkout", "my orders", "my items", "wish"):
            self.assertGreater(r.count(name, "postgres"), 0, (name, r.data["stats"]))
        self.assertEqual(r.failures("wish", "postgres"), r.count("wish", "postgres"))
        self.assertEqual({(f["name"], f["error"]) for f in r.data["failures"]},
                         {("wish", 'SQLSTATE 23505: duplicate key value violates unique '
                                   'constraint "wishlist_pkey"')})
        self.assertEqual(r.rc, 1, r.stderr[-2000:])


class Faults(PgTest):
    """A server that answers garbage, closes mid-result or stalls: counted failures with a
    specific error, never a crash or a hung user."""

    @classmethod
    def setUpClass(cls):
        cls.faults = servers.pg_faults()

    @classmethod
    def tearDownClass(cls):
        cls.faults.stop()

    def fault_run(self, mode, body, attrs="", users=1):
        r = self.cicada("--headless", "-u", str(users), "-r", "100", "-t", "60",
                        "-H", self.faults.modes[mode] + "?sslmode=disable",
                        script=one_shot(body, attrs), timeout=90)
        self.assertIsNotNone(r.data, r.stderr[-2000:])
        self.assertEqual([f for f in r.data["failures"] if f["method"] == "check"], [],
                         r.stderr[-2000:])
        self.assertEqual(r.data["exceptions"], [])
        return r

    def test_well_behaved_fault_server(self):
        r = self.cicada("--headless", "-u", "1", "-r", "10", "-t", "30",
                        "-H", self.faults.url + "/postgres?sslmode=disable", script=one_shot("""
    check("simple", self.client:query("select x")[1].x == 1)
    check("extended", self.client:query("select $1", { 1 })[1].x == 1)
"""))
        self.assertEqual([f for f in r.data["failures"] if f["method"] == "check"], [],
                         r.stderr[-2000:])

    def test_garbage_at_startup(self):
        r = self.fault_run("garbage_startup", """
    for i = 1, 3 do
        local rows, err = self.client:query("select 1", nil, "q")
        check("failed", rows == nil and err:find("^connect: ") ~= nil, tostring(err))
    end
""")
        self.assertEqual(r.failures("connect", "postgres"), 3)
        self.assertEqual(r.failures("q", "postgres"), 3)

    def test_garbage_answer(self):
        r = self.fault_run("garbage_query", """
    for i = 1, 3 do
        local rows, err = self.client:query("select 1", nil, "q")
        check("failed", rows == nil and err ~= nil, tostring(err))
    end
""")
        self.assertEqual(r.failures("q", "postgres"), 3)
        self.assertEqual(r.count("connect", "postgres"), 3)  # each garbage answer costs it

    def test_close_mid_result(self):
        r = self.fault_run("close_mid", """
    for i = 1, 3 do
        local rows, err = self.client:query("select 1", { }, "q")
        check("failed", rows == nil and err:find("closed the connection") ~= nil, tostring(err))
        rows, err = self.client:pipeline({ { "select 1" }, { "select 2" } })
        check("pipeline failed", err ~= nil and rows[2].error ~= nil, tostring(err))
    end
""")
        self.assertEqual(r.failures("q", "postgres"), 3)

    def test_stalled_query_times_out(self):
        r = self.fault_run("stall_query", """
    local rows, err = self.client:query("select 1", nil, "q")
    check("timed out", rows == nil and err == "query timed out after 0.3 s", tostring(err))
    rows, err = self.client:query("select 1", nil, { name = "q2", timeout = 0.2 })
    check("per call", rows == nil and err == "query timed out after 0.2 s", tostring(err))
""", attrs="query_timeout = 0.3")
        self.assertEqual(self.errors(r, "q"), ["query timed out after 0.3 s"])
        self.assertEqual(r.count("connect", "postgres"), 2)

    def test_stalled_startup_times_out(self):
        r = self.fault_run("stall_startup", """
    local rows, err = self.client:query("select 1", nil, "q")
    check("connect timed out", rows == nil and err == "connect: timed out after 0.3 s", tostring(err))
""", attrs="connect_timeout = 0.3")
        self.assertEqual(self.errors(r, "connect"), ["connect: timed out after 0.3 s"])

    def test_server_closes_idle_connections(self):
        r = self.fault_run("one_per_conn", """
    local ok = 0
    for i = 1, 5 do
        local rows, err = self.client:query("select 1", nil, "q")
        if rows then ok = ok + 1
        else check("only a closed connection", err:find("closed the connection") ~= nil, err) end
        cicada.sleep(0.05)
    end
    check("some ran", ok > 0)
""")
        self.assertEqual(r.count("q", "postgres"), 5)
        self.assertGreaterEqual(r.count("connect", "postgres"), 2)


if __name__ == "__main__":
    main()
