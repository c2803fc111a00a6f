"""Users, tasks and their lifecycle, in Locust's model, observed through the statistics."""
from harness import CicadaTest, main

HEAD = 'local cicada = require "cicada"\n'


class Users(CicadaTest):
    def test_exact_task_counts_and_lifecycle(self):
        # each user runs 25 tasks then stops itself: 4 users make exactly 100 requests
        r = self.cicada("--headless", "-u", "4", "-r", "100", "-t", "2", "--threads", "2",
                        script=HEAD + """
            local Counter = cicada.User:extend("Counter", {})
            function Counter:on_start()
                self.n = 0
                cicada.record("life", "on_start", 0, 0)
            end
            function Counter:on_stop() cicada.record("life", "on_stop", 0, 0) end
            Counter:task(function(self)
                self.n = self.n + 1
                cicada.record("fake", "op", 1.5, 10)
                if self.n == 25 then error(cicada.StopUser) end
            end)
            return { Counter }
        """)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.count("op"), 100)
        self.assertEqual(r.entry("op")["total_content_length"], 1000)
        self.assertEqual(r.count("on_start"), 4)
        self.assertEqual(r.count("on_stop"), 4)
        self.assertEqual(r.data["total"]["num_requests"], 108)
        self.assertEqual(r.data["user_count"], {"Counter": 4})

    def test_killed_users_run_on_stop(self):
        # at the end of the run users parked in wait_time are killed: on_stop still runs
        r = self.cicada("--headless", "-u", "6", "-r", "100", "-t", "1", script=HEAD + """
            local Parked = cicada.User:extend("Parked", { wait_time = cicada.constant(3600) })
            function Parked:on_stop() cicada.record("life", "on_stop", 0, 0) end
            Parked:task(function(self) cicada.record("t", "task", 0, 0) end)
            return { Parked }
        """)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.count("task"), 6)
        self.assertEqual(r.count("on_stop"), 6)

    def test_weights_and_fixed_count(self):
        r = self.cicada("--headless", "-u", "10", "-r", "1000", "-t", "1", script=HEAD + """
            local wait = cicada.constant(3600)
            local A = cicada.User:extend("A", { weight = 3, wait_time = wait })
            A:task(function() end)
            local B = cicada.User:extend("B", { weight = 1, wait_time = wait })
            B:task(function() end)
            local Admin = cicada.User:extend("Admin", { fixed_count = 2, wait_time = wait })
            Admin:task(function() end)
            local Base = cicada.User:extend("Base", { abstract = true })
            return { A, B, Admin, Base }
        """)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.data["user_count"], {"A": 6, "B": 2, "Admin": 2})

    def test_user_classes_chosen_on_the_command_line(self):
        script = HEAD + """
            local A = cicada.User:extend("A", { wait_time = cicada.constant(3600) })
            A:task(function() cicada.record("t", "a", 0, 0) end)
            local B = cicada.User:extend("B", { wait_time = cicada.constant(3600) })
            B:task(function() cicada.record("t", "b", 0, 0) end)
        """  # no return: every non-abstract class the script defines
        r = self.cicada("--headless", "-u", "3", "-r", "100", "-t", "1", "B", script=script)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.data["user_count"], {"B": 3})
        self.assertEqual(r.count("a"), 0)
        self.assertEqual(r.count("b"), 3)
        r = self.cicada("--headless", "-u", "1", "-t", "1", "Nope", script=script)
        self.assertEqual(r.rc, 1)
        self.assertIn("Unknown User(s): Nope", r.stderr)

    def test_task_sets_interrupt_and_sequence(self):
        # a sequential set runs a, b, b, c in order, then interrupts back to the user
        r = self.cicada("--headless", "-u", "2", "-r", "100", "-t", "2", script=HEAD + """
            local Seq = cicada.SequentialTaskSet:extend("Seq", {})
            function Seq:on_start() self.seen = {} cicada.record("set", "on_start", 0, 0) end
            function Seq:on_stop() cicada.record("set", "on_stop", 0, 0) end
            local function note(name)
                return function(self) self.seen[#self.seen + 1] = name end
            end
            Seq:task(note("a"))
            Seq:task(2, note("b"))
            Seq:task(function(self)
                local order = table.concat(self.seen, "")
                cicada.record("set", order == "abb" and "order ok" or ("order " .. order), 0, 0)
                self:interrupt()
            end)
            local U = cicada.User:extend("U", {})
            function U:on_start() self.rounds = 0 end
            U:task(function(self)
                self.rounds = self.rounds + 1
                if self.rounds > 3 then error(cicada.StopUser) end
                return self:schedule_task(Seq)
            end)
            return { U }
        """)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.count("order ok"), 6, r.data["stats"])
        self.assertEqual(r.count("on_start", "set"), 6)
        self.assertEqual(r.count("on_stop", "set"), 6)

    def test_nested_sets_get_on_stop_when_the_user_stops(self):
        r = self.cicada("--headless", "-u", "3", "-r", "100", "-t", "1", script=HEAD + """
            local Inner = cicada.TaskSet:extend("Inner", { wait_time = cicada.constant(3600) })
            function Inner:on_stop() cicada.record("set", "inner on_stop", 0, 0) end
            Inner:task(function(self) cicada.record("set", "inner task", 0, 0) end)
            local U = cicada.User:extend("U", { tasks = { Inner } })
            function U:on_stop() cicada.record("set", "user on_stop", 0, 0) end
            return { U }
        """)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.count("inner task"), 3)
        self.assertEqual(r.count("inner on_stop"), 3)
        self.assertEqual(r.count("user on_stop"), 3)

    def test_reschedule_immediately_skips_the_wait(self):
        # with an hour's wait, only tasks that skip the wait run again within the test
        r = self.cicada("--headless", "-u", "2", "-r", "100", "-t", "1", script=HEAD + """
            local U = cicada.User:extend("U", { wait_time = cicada.constant(3600) })
            function U:on_start() self.n = 0 end
            U:task(function(self)
                self.n = self.n + 1
                cicada.record("t", "run", 0, 0)
                if self.n <= 5 then error(cicada.RescheduleTaskImmediately) end
            end)
            local V = cicada.User:extend("V", { wait_time = cicada.constant(3600), fixed_count = 1 })
            V:task(function(self)
                cicada.record("t", "rescheduled", 0, 0)
                error(cicada.RescheduleTask)
            end)
            return { U, V }
        """)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.count("run"), 6)
        self.assertEqual(r.count("rescheduled"), 1)
        self.assertEqual(r.data["exceptions"], [])

    def test_stop_test_ends_the_run(self):
        r = self.cicada("--headless", "-u", "2", "-r", "100", "-t", "60", script=HEAD + """
            local U = cicada.User:extend("U", {})
            function U:on_start() self.n = 0 end
            U:task(function(self)
                self.n = self.n + 1
                cicada.record("t", "op", 0, 0)
                if self.n == 50 then error(cicada.StopTest) end
            end)
            return { U }
        """, timeout=50)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("StopTest", r.stderr)
        self.assertGreaterEqual(r.count("op"), 50)

    def test_stop_timeout_lets_tasks_finish(self):
        script = HEAD + """
            local U = cicada.User:extend("U", {})
            U:task(function(self)
                cicada.record("t", "begin", 0, 0)
                cicada.sleep(0.5)
                cicada.record("t", "end", 0, 0)
            end)
            return { U }
        """
        graceful = self.cicada("--headless", "-u", "4", "-r", "100", "-t", "1.2", "-s", "10",
                               script=script)
        self.assertEqual(graceful.rc, 0, graceful.stderr)
        self.assertEqual(graceful.count("begin"), graceful.count("end"))
        killed = self.cicada("--headless", "-u", "4", "-r", "100", "-t", "1.2", script=script)
        self.assertEqual(killed.rc, 0, killed.stderr)
        self.assertEqual(killed.count("begin") - killed.count("end"), 4)

    def test_errors_go_to_the_exceptions_table_and_users_carry_on(self):
        r = self.cicada("--headless", "-u", "3", "-r", "100", "-t", "2", script=HEAD + """
            cicada.events.user_error:add_listener(function(e)
                cicada.record("listener", "user_error", 0, 0)
                assert(e.user_instance and e.exception and e.tb)
            end)
            local U = cicada.User:extend("U", {})
            function U:on_start() self.n = 0 end
            U:task("checkout", function(self)
                self.n = self.n + 1
                cicada.record("t", "task", 0, 0)
                if self.n == 10 then error(cicada.StopUser) end
                if self.n % 2 == 0 then error("out of stock") end
            end)
            return { U }
        """)
        self.assertEqual(r.rc, 1, r.stderr)  # exceptions make the exit code 1, as in Locust
        self.assertEqual(r.count("task"), 30)
        self.assertEqual(r.count("user_error"), 12)
        [exc] = r.data["exceptions"]
        self.assertEqual(exc["count"], 12)
        self.assertRegex(exc["message"], r"cicadafile\.lua:\d+: out of stock")
        self.assertIn("in task 'checkout'", exc["traceback"])
        self.assertNotIn("runtime.lua", exc["traceback"])

    def test_on_start_failure_ends_the_user(self):
        r = self.cicada("--headless", "-u", "2", "-r", "100", "-t", "1", script=HEAD + """
            local U = cicada.User:extend("U", {})
            function U:on_start() error("cannot log in") end
            function U:on_stop() cicada.record("t", "on_stop", 0, 0) end
            U:task(function() cicada.record("t", "task", 0, 0) end)
            return { U }
        """)
        self.assertEqual(r.rc, 1)
        self.assertEqual(r.count("task"), 0)
        self.assertEqual(r.count("on_stop"), 0)
        self.assertEqual(r.data["exceptions"][0]["count"], 2)

    def test_tags(self):
        script = HEAD + """
            local U = cicada.User:extend("U", { wait_time = cicada.constant(0.01) })
            function U:on_start() self.n = 0 end
            local function run(name)
                return function(self)
                    cicada.record("t", name, 0, 0)
                    self.n = self.n + 1
                    if self.n == 30 then error(cicada.StopUser) end
                end
            end
            U:task({ tags = { "shop" } }, run("shop"))
            U:task({ tags = { "admin", "slow" } }, run("admin"))
            U:task(run("untagged"))
            return { U }
        """
        r = self.cicada("--headless", "-u", "1", "-t", "2", "-T", "shop", script=script)
        self.assertEqual((r.count("shop"), r.count("admin"), r.count("untagged")), (30, 0, 0))
        r = self.cicada("--headless", "-u", "1", "-t", "2", "-E", "slow", script=script)
        self.assertEqual(r.count("admin"), 0)
        self.assertEqual(r.count("shop") + r.count("untagged"), 30)


if __name__ == "__main__":
    main()
