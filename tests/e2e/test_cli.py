"""The command line, config files, environment, events, bad scripts and exit codes."""
import json
import os
import re

from harness import CicadaTest, main

HEAD = 'local cicada = require "cicada"\n'

SIMPLE = HEAD + """
local Shopper = cicada.User:extend("Shopper", { weight = 3, wait_time = cicada.constant(3600) })
function Shopper:browse() end
Shopper:task(3, Shopper.browse)
Shopper:task("buy", function() end)
local Admin = cicada.User:extend("Admin", { wait_time = cicada.constant(3600) })
Admin:task("report", function() cicada.record("t", "report", 0, 0) end)
return { Shopper = Shopper, Admin = Admin }
"""


class Cli(CicadaTest):
    def test_version_and_help(self):
        r = self.cicada("--version", want_json=False)
        self.assertEqual(r.rc, 0)
        self.assertRegex(r.stdout, r"^cicada \d+\.\d+\.\d+\n")
        self.assertIn("libuv", r.stdout)
        self.assertIn("LuaJIT", r.stdout)
        r = self.cicada("--help", want_json=False)
        self.assertEqual(r.rc, 0)
        for flag in ("--users", "--spawn-rate", "--run-time", "--headless", "--csv",
                     "--stop-timeout", "--exit-code-on-error", "--tags", "--json-file"):
            self.assertIn(flag, r.stdout)

    def test_list(self):
        r = self.cicada("-l", script=SIMPLE, want_json=False)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.stdout, "Available Users:\n    Admin\n    Shopper\n")

    def test_show_task_ratio(self):
        r = self.cicada("--show-task-ratio", "-u", "4", script=SIMPLE, want_json=False)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("Task ratio per User class", r.stdout)
        self.assertRegex(r.stdout, r"75\.0 +browse")
        self.assertRegex(r.stdout, r"Total task ratio")
        r = self.cicada("--show-task-ratio-json", "-u", "4", script=SIMPLE, want_json=False)
        d = json.loads(r.stdout)
        self.assertAlmostEqual(d["per_class"]["Shopper"]["ratio"], 0.75)
        self.assertAlmostEqual(d["per_class"]["Shopper"]["tasks"]["browse"]["ratio"], 0.75)
        self.assertAlmostEqual(d["total"]["Shopper"]["tasks"]["browse"]["ratio"], 0.5625)
        self.assertAlmostEqual(d["total"]["Admin"]["tasks"]["report"]["ratio"], 0.25)

    def test_unknown_flag_and_bad_values(self):
        r = self.cicada("--userz", "3", script=SIMPLE, want_json=False)
        self.assertEqual(r.rc, 2)
        self.assertIn("--userz", r.stderr)
        self.assertIn("did you mean --users?", r.stderr)
        r = self.cicada("-t", "soon", script=SIMPLE, want_json=False)
        self.assertEqual(r.rc, 2)
        self.assertIn("--run-time", r.stderr)

    def test_script_syntax_error_names_file_and_line(self):
        self.write("cicadafile.lua", HEAD + "local U = cicada.User:extend('U', {\n  weight = 1,,\n})\n")
        r = self.cicada("--headless", "-f", self.path("cicadafile.lua"), want_json=False)
        self.assertEqual(r.rc, 2)
        self.assertRegex(r.stderr, r"cicadafile\.lua:3:")
        self.assertNotIn("Starting cicada", r.stderr)  # nothing started

    def test_script_runtime_error_names_file_and_line(self):
        r = self.cicada("--headless", script=HEAD + "\n\nlocal x = nil\nprint(x.y)\n",
                        want_json=False)
        self.assertEqual(r.rc, 2)
        self.assertRegex(r.stderr, r"cicadafile\.lua:5: attempt to index")

    def test_bad_classes_name_their_line(self):
        r = self.cicada("--headless", script=HEAD + "local U = cicada.User:extend({})\n"
                        "U:task(function() end)\nreturn { U }\n", want_json=False)
        self.assertEqual(r.rc, 2)
        self.assertRegex(r.stderr, r"cicadafile\.lua:2: this user class has no name")
        r = self.cicada("--headless", script=HEAD + "\nlocal U = cicada.User:extend('U', {})\n"
                        "return { U }\n", want_json=False)
        self.assertEqual(r.rc, 2)
        self.assertRegex(r.stderr, r"cicadafile\.lua:3: no tasks are defined on U")
        r = self.cicada("--headless", script=HEAD + "local U = cicada.User:extend('U', "
                        "{ wait_time = 5 })\nU:task(function() end)\nreturn { U }\n",
                        want_json=False)
        self.assertEqual(r.rc, 2)
        self.assertIn("wait_time must be a function", r.stderr)

    def test_no_user_class_and_missing_script(self):
        r = self.cicada("--headless", script=HEAD + "return {}\n", want_json=False)
        self.assertEqual(r.rc, 1)
        self.assertIn("No User class found!", r.stderr)
        r = self.cicada("--headless", "-f", self.path("nope.lua"), want_json=False)
        self.assertEqual(r.rc, 1)
        self.assertIn("nope.lua", r.stderr)

    def test_config_file_environment_and_command_line(self):
        self.write("cicada.conf", "users = 2\nspawn-rate = 100\nrun-time = 1s\nheadless = true\n")
        script = self.write("s.lua", SIMPLE)
        # ./cicada.conf alone
        r = self.cicada("-f", script)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(sum(r.data["user_count"].values()), 2)
        # the environment overrides the file
        r = self.cicada("-f", script, env={"CICADA_USERS": "4"})
        self.assertEqual(sum(r.data["user_count"].values()), 4)
        # the command line overrides both, and --config comes between file and environment
        self.write("more.conf", "users = 5\ntags = [nothing]\n")
        r = self.cicada("-f", script, "--config", self.path("more.conf"), "-T", "",
                        env={"CICADA_USERS": "4"})
        self.assertEqual(sum(r.data["user_count"].values()), 4)
        r = self.cicada("-f", script, "-u", "3", env={"CICADA_USERS": "4"})
        self.assertEqual(sum(r.data["user_count"].values()), 3)

    def test_events_fire_in_order(self):
        log = self.path("events.log")
        r = self.cicada("--headless", "-u", "3", "-r", "100", "-t", "1", "--threads", "2",
                        script=HEAD + f"""
            local function note(line)
                local f = assert(io.open({json.dumps(log)}, "a"))
                f:write(line, "\\n")
                f:close()
            end
            local ev = cicada.events
            ev.init:add_listener(function(e) note("init " .. e.environment.role) end)
            ev.test_start:add_listener(function(e) note("test_start") end)
            ev.spawning_complete:add_listener(function(e) note("spawning_complete " .. e.user_count) end)
            ev.test_stop:add_listener(function(e) note("test_stop") end)
            ev.quitting:add_listener(function(e)
                note("quitting " .. e.environment.stats.total.num_requests)
            end)
            local U = cicada.User:extend("U", {{ wait_time = cicada.constant(3600) }})
            U:task(function() cicada.record("t", "x", 0, 0) end)
            return {{ U }}
        """)
        self.assertEqual(r.rc, 0, r.stderr)
        lines = self.read("events.log").split("\n")[:-1]
        self.assertEqual(sorted(l for l in lines if l.startswith("init")),
                         ["init control", "init worker", "init worker"])
        rest = [l for l in lines if not l.startswith("init")]
        self.assertEqual(rest, ["test_start", "spawning_complete 3", "test_stop", "quitting 3"])

    def test_logfile_and_loglevel(self):
        log = self.path("run.log")
        r = self.cicada("--headless", "-u", "1", "-t", "1", "--logfile", log, "-L", "DEBUG",
                        script=HEAD + """
            cicada.log.debug("a debug line")
            local U = cicada.User:extend("U", { wait_time = cicada.constant(3600) })
            U:task(function() end)
            return { U }
        """)
        self.assertEqual(r.rc, 0, r.stderr)
        text = self.read("run.log")
        self.assertRegex(text, r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] [^/]+/INFO/cicada\.main: "
                               r"Starting cicada")
        self.assertIn("/DEBUG/cicada.script: a debug line", text)
        self.assertNotIn("Starting cicada", r.stderr)  # the log went to the file
        self.assertIn("Response time percentiles", r.stderr)  # the tables stay on stderr
        r = self.cicada("--headless", "-u", "1", "-t", "1", "-L", "WARNING", script=HEAD + """
            local U = cicada.User:extend("U", { wait_time = cicada.constant(3600) })
            U:task(function() end)
            return { U }
        """)
        self.assertNotIn("Starting cicada", r.stderr)

    def test_listener_error_gives_exit_code_2(self):
        r = self.cicada("--headless", "-u", "1", "-t", "1", script=HEAD + """
            cicada.events.test_start:add_listener(function() error("listener broke") end)
            local U = cicada.User:extend("U", { wait_time = cicada.constant(3600) })
            U:task(function() end)
            return { U }
        """)
        self.assertEqual(r.rc, 2)
        self.assertIn("listener broke", r.stderr)

    def test_exit_codes(self):
        failing = HEAD + """
            local U = cicada.User:extend("U", { wait_time = cicada.constant(3600) })
            U:task(function() cicada.record("t", "x", 1, 0, "boom") end)
            return { U }
        """
        r = self.cicada("--headless", "-u", "1", "-t", "1", script=failing)
        self.assertEqual(r.rc, 1)
        r = self.cicada("--headless", "-u", "1", "-t", "1", "--exit-code-on-error", "0",
                        script=failing)
        self.assertEqual(r.rc, 0)
        r = self.cicada("--headless", "-u", "2", "-r", "100", "-t", "1", script=HEAD + """
            cicada.events.quitting:add_listener(function(e)
                local total = e.environment.stats.total
                if total.fail_ratio > 0.01 then e.environment.process_exit_code = 7 end
            end)
            local U = cicada.User:extend("U", { wait_time = cicada.constant(3600) })
            U:task(function() cicada.record("t", "x", 1, 0, "boom") end)
            return { U }
        """)
        self.assertEqual(r.rc, 7)

    def test_shared_data_reaches_every_worker(self):
        r = self.cicada("--headless", "-u", "4", "-r", "100", "-t", "1", "--threads", "2",
                        script=HEAD + """
            cicada.events.test_start:add_listener(function()
                cicada.sleep(0.01) -- environment-level listeners may wait
                cicada.shared.token = "tok-" .. 42
                cicada.shared.items = { 1, 2, 3, nested = { ok = true } }
            end)
            local U = cicada.User:extend("U", { wait_time = cicada.constant(3600) })
            U:task(function()
                local s = cicada.shared
                cicada.record("t", s.token .. " " .. #s.items .. " " .. tostring(s.items.nested.ok), 0, 0)
            end)
            return { U }
        """)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.count("tok-42 3 true"), 4)

    def test_scripts_require_their_own_modules_and_debian_lua_modules(self):
        self.write("lib/helpers.lua", "return { name = function() return 'from helper' end }\n")
        r = self.cicada("--headless", "-u", "1", "-t", "1", script=HEAD + """
            local helpers = require "lib.helpers"
            local cjson = require "cjson"
            local U = cicada.User:extend("U", { wait_time = cicada.constant(3600) })
            U:task(function()
                cicada.record("t", helpers.name() .. " " .. cjson.encode({ a = 1 }), 0, 0)
            end)
            return { U }
        """)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.count('from helper {"a":1}'), 1)


if __name__ == "__main__":
    main()
