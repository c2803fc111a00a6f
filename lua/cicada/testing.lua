-- SPDX-License-Identifier: MIT
-- cicada.testing: files of test functions that run as functional tests (`cicada test FILE`)
-- and as load tests (`cicada -f FILE`), pytest's way: a test asks for fixtures by naming them
-- as parameters.
--
--   local tests = {}
--   tests.weights = { test_home = 3 }              -- load mode: users per test, relatively
--   tests.fixtures = {}
--   function tests.fixtures.item(rest)             -- a fixture of the file's own
--       local r = rest:get("/items/1")
--       return r.js, function() --[[ teardown ]] end
--   end
--   function tests.test_home(http)
--       local r = http:get("/")
--       assert(r.status_code == 200, "status " .. r.status_code)
--   end
--   return tests
--
-- In test mode each test runs once, in the order of the file, and the results go out as TAP
-- and JUnit XML. In load mode each test is a user class named after it whose one task runs
-- the test; fixtures of scope "function" are set up and torn down around every run of it,
-- those of scope "module" once per user. See docs/testing.md.

local M = {}

local format, concat, sort = string.format, table.concat, table.sort
local unpack = unpack or table.unpack

-- The monotonic clock of cicada.core (os.clock where the module runs without cicada, as in
-- its unit tests).
local clock
local function monotonic()
    if not clock then
        local ok, core = pcall(require, "cicada.core")
        clock = ok and core.monotonic or os.clock
    end
    return clock()
end

-- ---- skipping ---------------------------------------------------------------------------

-- Not a cicada signal (those stop users): a skip only ends the test that raised it.
local Skip = {}
Skip.__index = Skip
Skip.__tostring = function(s) return "skipped: " .. s.reason end

-- Ends the running test as skipped, as pytest.skip.
function M.skip(reason)
    error(setmetatable({ reason = reason and tostring(reason) or "" }, Skip), 2)
end

local function is_skip(e)
    return type(e) == "table" and getmetatable(e) == Skip
end

-- ---- collecting ---------------------------------------------------------------------------

local RESERVED = { fixtures = true, weights = true, wait_time = true, host = true }

-- Whether |t| is a table of tests: a table (not a class) with a test* function.
function M.is_suite(t)
    if type(t) ~= "table" or rawget(t, "__kind") ~= nil then return false end
    for k, v in pairs(t) do
        if type(k) == "string" and k:sub(1, 4) == "test" and type(v) == "function" then
            return true
        end
    end
    return false
end

-- The parameter names of |fn|.
local function params_of(fn)
    local names = {}
    local info = debug.getinfo(fn, "u")
    for i = 1, info.nparams or 0 do
        names[i] = debug.getlocal(fn, i)
    end
    return names
end
M.params_of = params_of

local function file_of(info)
    local s = info.source
    if s:sub(1, 1) == "@" then return s:sub(2) end
    return info.short_src
end

-- The tests of |suite|, in the order they are written in (by line), optionally only those
-- whose name contains |select|: a list of {name, fn, params, file, line}.
function M.collect(suite, select)
    local list = {}
    for k, v in pairs(suite) do
        if type(k) == "string" and k:sub(1, 4) == "test" and type(v) == "function" and not RESERVED[k] then
            if not select or k:find(select, 1, true) then
                local info = debug.getinfo(v, "S")
                list[#list + 1] = { name = k, fn = v, params = params_of(v), file = file_of(info),
                                    line = info.linedefined }
            end
        end
    end
    sort(list, function(a, b)
        if a.file ~= b.file then return a.file < b.file end
        if a.line ~= b.line then return a.line < b.line end
        return a.name < b.name
    end)
    return list
end

-- ---- fixtures -----------------------------------------------------------------------------

local SCOPES = { ["function"] = "function", module = "module", session = "module" }

-- A fixture definition: a function, or {fn or [1], scope = "function" | "module"}.
local function fixture_def(name, v)
    local fn, scope = v, "function"
    if type(v) == "table" then
        fn = v.fn or v.setup or v[1]
        scope = v.scope or "function"
    end
    if type(fn) ~= "function" then
        error(format("fixture '%s' is not a function (or {function, scope = ...})", name), 0)
    end
    if not SCOPES[scope] then
        error(format("fixture '%s': scope is \"function\" or \"module\", not %q", name, tostring(scope)), 0)
    end
    return { name = name, fn = fn, scope = SCOPES[scope], params = params_of(fn) }
end

-- The fixtures a run knows: the built-in ones (from |builtins|, name -> {fn, scope}) and the
-- suite's own, which may replace them.
function M.fixture_table(suite, builtins)
    local defs = {}
    for name, b in pairs(builtins or {}) do
        defs[name] = fixture_def(name, b)
    end
    local own = rawget(suite, "fixtures")
    if own ~= nil then
        if type(own) ~= "table" then error("tests.fixtures must be a table of functions", 0) end
        for name, v in pairs(own) do
            defs[name] = fixture_def(name, v)
        end
    end
    return defs
end

-- A scope: fixture values and the teardowns to run, last set up first torn down.
local Scope = {}
Scope.__index = Scope

function M.scope(kind)
    return setmetatable({ kind = kind, values = {}, failed = {}, teardowns = {} }, Scope)
end

local NIL = {} -- a fixture whose value is nil

-- Raised when a fixture cannot be set up; the test reports it as an error, not a failure.
local FixtureError = {}
FixtureError.__index = FixtureError
FixtureError.__tostring = function(e) return e.message end
M.FixtureError = FixtureError

local function fixture_error(msg, where, tb)
    return setmetatable({ message = msg, where = where, traceback = tb }, FixtureError)
end

-- The value of fixture |name| for a test: from its scope's cache, or set up now (its own
-- fixtures first). |scopes| is {["function"] = Scope, module = Scope}.
local function resolve(defs, name, scopes, resolving, wanted_by)
    local def = defs[name]
    if not def then
        local names = {}
        for n in pairs(defs) do
            names[#names + 1] = n
        end
        sort(names)
        error(fixture_error(format("fixture '%s' not found (available: %s)", name, concat(names, ", "))), 0)
    end
    local scope = scopes[def.scope]
    local v = scope.values[name]
    if v ~= nil then
        if v == NIL then return nil end
        return v
    end
    local failed = scope.failed[name]
    if failed then error(failed, 0) end -- a module fixture that failed fails every test using it
    if resolving[name] then
        error(fixture_error(format("fixture '%s' depends on itself (%s)", name, wanted_by)), 0)
    end
    resolving[name] = true
    local args = {}
    for i, p in ipairs(def.params) do
        local pd = defs[p]
        if def.scope == "module" and pd and pd.scope == "function" then
            error(fixture_error(format("fixture '%s' (scope module) cannot use fixture '%s' "
                .. "(scope function)", name, p)), 0)
        end
        args[i] = resolve(defs, p, scopes, resolving, wanted_by .. " -> " .. p)
    end
    resolving[name] = nil
    local results = { xpcall(def.fn, M.handler, unpack(args, 1, #def.params)) }
    if not results[1] then
        local e = results[2]
        if is_skip(e) or getmetatable(e) == FixtureError then error(e, 0) end
        if M.is_signal and M.is_signal(e) then error(e, 0) end
        local fe = fixture_error(format("fixture '%s': %s", name, e.message), e.where, e.traceback)
        if def.scope == "module" then scope.failed[name] = fe end
        error(fe, 0)
    end
    local value, teardown = results[2], results[3]
    if teardown ~= nil then
        if type(teardown) ~= "function" then
            error(fixture_error(format("fixture '%s' returned a teardown that is not a function", name)), 0)
        end
        local t = scope.teardowns
        t[#t + 1] = { name = name, fn = teardown }
    end
    scope.values[name] = value == nil and NIL or value
    return value
end

-- The arguments of |test|'s function.
function M.arguments(defs, test, scopes)
    local args = {}
    for i, p in ipairs(test.params) do
        args[i] = resolve(defs, p, scopes, {}, test.name .. " -> " .. p)
    end
    return args
end

-- Runs the scope's teardowns, the last set up first. Returns the first error (a Failure
-- table from M.handler with the fixture's name in its message), or nil.
function Scope:teardown()
    local first
    local t = self.teardowns
    for i = #t, 1, -1 do
        local ok, e = xpcall(t[i].fn, M.handler)
        if not ok and not first then
            first = e
            first.message = format("teardown of fixture '%s': %s", t[i].name, e.message)
        end
    end
    self.teardowns, self.values, self.failed = {}, {}, {}
    return first
end

-- ---- errors, where they happened -------------------------------------------------------

-- Whether a frame's source is one of cicada's own modules (a loaded cicada.* module).
local function cicada_source(src)
    local mod = src:match("[/\\]cicada[/\\]([%w_]+)%.lua$")
    if not mod then return false end
    if mod == "init" then return package.loaded["cicada"] ~= nil end
    return package.loaded["cicada." .. mod] ~= nil
end

-- The innermost frame of the script's own code from |level| out: "file:line", and the form
-- error() puts in front of messages (short_src:line).
local function where_from(level)
    while true do
        local info = debug.getinfo(level, "Sl")
        if not info then return nil end
        if info.what ~= "C" and (info.currentline or 0) > 0 and not cicada_source(info.source) then
            return file_of(info) .. ":" .. info.currentline, info.short_src .. ":" .. info.currentline
        end
        level = level + 1
    end
end

-- The traceback's frames without cicada's below the test (and without the message, which
-- is its first line).
local function trim(tb)
    local out = {}
    for line in tb:gmatch("[^\n]+") do
        if line:find("cicada/testing.lua", 1, true) or line:find("in function 'xpcall'", 1, true) then
            break
        end
        out[#out + 1] = line
    end
    local first = 1
    for i, line in ipairs(out) do
        if line == "stack traceback:" then
            first = i
            break
        end
    end
    -- the test's own frame is called through the runner's variable 'fn'
    local last = out[#out]
    if last and last:sub(-#"in function 'fn'") == "in function 'fn'" then
        out[#out] = last:sub(1, -#"in function 'fn'" - 1) .. "in the test"
    end
    return concat(out, "\n", first)
end

-- An xpcall handler: the error as {message, where, traceback, err}. Skips, signals and
-- fixture errors pass through as they are.
-- The text of an error value: a table without __tostring shows its fields.
local function error_text(e)
    if type(e) ~= "table" or (getmetatable(e) and getmetatable(e).__tostring) then return tostring(e) end
    local keys = {}
    for k in pairs(e) do
        keys[#keys + 1] = k
    end
    sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for i, k in ipairs(keys) do
        if i > 8 then
            parts[#parts + 1] = "..."
            break
        end
        local v = e[k]
        parts[#parts + 1] = tostring(k) .. " = " .. (type(v) == "string" and format("%q", v) or tostring(v))
    end
    return "error object { " .. concat(parts, ", ") .. " }"
end

function M.handler(e)
    if is_skip(e) or getmetatable(e) == FixtureError then return e end
    if M.is_signal and M.is_signal(e) then return e end
    local msg = error_text(e)
    local where, short = where_from(3)
    if short and msg:sub(1, #short + 2) == short .. ": " then msg = msg:sub(#short + 3) end
    return { message = msg, where = where, traceback = trim(debug.traceback(msg, 2)), err = e }
end

-- ---- running the tests once ---------------------------------------------------------------

-- Runs |test| with fresh function-scoped fixtures and the shared |module| scope. Returns a
-- result: {name, file, line, status = "pass" | "fail" | "error" | "skip", message, where,
-- traceback, seconds}.
function M.run_test(defs, test, module)
    local t0 = monotonic()
    local fscope = M.scope("function")
    local scopes = { ["function"] = fscope, module = module }
    local res = { name = test.name, file = test.file, line = test.line }
    local ok, e = xpcall(function()
        local args = M.arguments(defs, test, scopes)
        test.fn(unpack(args, 1, #test.params))
    end, M.handler)
    if ok then
        res.status = "pass"
    elseif is_skip(e) then
        res.status, res.message = "skip", e.reason
    elseif getmetatable(e) == FixtureError then
        res.status, res.message, res.traceback = "error", e.message, e.traceback
        res.where = e.where or (test.file .. ":" .. test.line)
    else
        res.status, res.message, res.where, res.traceback = "fail", e.message, e.where, e.traceback
    end
    local terr = fscope:teardown()
    if terr and (res.status == "pass" or res.status == "skip") then
        res.status, res.message, res.where, res.traceback = "error", terr.message, terr.where, terr.traceback
    end
    res.seconds = monotonic() - t0
    return res
end

-- ---- TAP and JUnit XML ----------------------------------------------------------------------

-- A YAML double-quoted scalar (JSON's escapes are YAML's).
local function yaml_str(s)
    return '"' .. tostring(s):gsub('[%c"\\]', function(c)
        if c == '"' then return '\\"' end
        if c == "\\" then return "\\\\" end
        if c == "\n" then return "\\n" end
        if c == "\t" then return "\\t" end
        return format("\\x%02x", c:byte())
    end) .. '"'
end

-- One test's TAP lines (TAP 13: a YAML block under a test that did not pass).
function M.tap_result(n, r)
    local name = r.name:gsub("#", "\\#")
    if r.status == "pass" then return format("ok %d - %s\n", n, name) end
    if r.status == "skip" then return format("ok %d - %s # SKIP %s\n", n, name, (r.message or ""):gsub("\n", " ")) end
    local out = { format("not ok %d - %s\n", n, name), "  ---\n" }
    out[#out + 1] = "  message: " .. yaml_str(r.message or "") .. "\n"
    out[#out + 1] = "  severity: " .. (r.status == "error" and "error" or "fail") .. "\n"
    if r.where then out[#out + 1] = "  at: " .. yaml_str(r.where) .. "\n" end
    out[#out + 1] = format("  duration_ms: %.3f\n", (r.seconds or 0) * 1000)
    if r.traceback and r.traceback ~= "" then
        out[#out + 1] = "  traceback: |-\n"
        for line in r.traceback:gmatch("[^\n]+") do
            out[#out + 1] = "    " .. line:gsub("^\t", "  ") .. "\n"
        end
    end
    out[#out + 1] = "  ...\n"
    return concat(out)
end

-- Text for XML: the five escapes, and characters XML 1.0 cannot hold replaced.
local function xml(s)
    return (tostring(s):gsub("[%z\1-\8\11\12\14-\31&<>\"']", function(c)
        if c == "&" then return "&amp;" end
        if c == "<" then return "&lt;" end
        if c == ">" then return "&gt;" end
        if c == '"' then return "&quot;" end
        if c == "'" then return "&apos;" end
        return "?"
    end))
end
M.xml_escape = xml

-- The JUnit XML of |results| (as Jenkins, GitLab and pytest's --junit-xml write it).
function M.junit(file, results, seconds, timestamp)
    local counts = { fail = 0, error = 0, skip = 0 }
    for _, r in ipairs(results) do
        if counts[r.status] then counts[r.status] = counts[r.status] + 1 end
    end
    local suite = file:match("([^/\\]+)$"):gsub("%.lua$", "")
    local head = format('tests="%d" failures="%d" errors="%d" skipped="%d" time="%.3f"', #results,
                        counts.fail, counts.error, counts.skip, seconds)
    local out = { '<?xml version="1.0" encoding="UTF-8"?>\n', "<testsuites " .. head .. ">\n",
                  format('  <testsuite name="%s" %s timestamp="%s">\n', xml(suite), head, timestamp) }
    for _, r in ipairs(results) do
        local attrs = format('classname="%s" name="%s" file="%s" line="%d" time="%.3f"', xml(suite),
                             xml(r.name), xml(r.file or file), r.line or 0, r.seconds or 0)
        if r.status == "pass" then
            out[#out + 1] = "    <testcase " .. attrs .. "/>\n"
        else
            out[#out + 1] = "    <testcase " .. attrs .. ">\n"
            local msg = r.where and (r.where .. ": " .. (r.message or "")) or (r.message or "")
            if r.status == "skip" then
                out[#out + 1] = format('      <skipped message="%s"/>\n', xml(r.message or ""))
            else
                local tag = r.status == "error" and "error" or "failure"
                local kind = "FixtureError"
                if r.status == "fail" then
                    kind = (r.traceback or ""):find("in function 'assert'", 1, true) and "AssertionError"
                        or "Error"
                end
                out[#out + 1] = format('      <%s message="%s" type="%s">%s</%s>\n', tag, xml(msg), kind,
                                       xml(msg .. (r.traceback and ("\n" .. r.traceback) or "")), tag)
            end
            out[#out + 1] = "    </testcase>\n"
        end
    end
    out[#out + 1] = "  </testsuite>\n</testsuites>\n"
    return concat(out)
end

-- The one-line report of a result, for people.
local function line_of(r)
    local s = r.status
    if s == "pass" then return format("PASS  %s (%.0f ms)", r.name, (r.seconds or 0) * 1000) end
    if s == "skip" then return format("SKIP  %s: %s", r.name, r.message or "") end
    return format("%-5s %s\n      %s%s", s == "error" and "ERROR" or "FAIL", r.name,
                  r.where and (r.where .. ": ") or "", r.message or "")
end

-- ---- built-in fixtures ------------------------------------------------------------------------

-- A REST client over an HTTP session: JSON in and out, as Locust FastHttpUser's rest().
-- Each method returns the response, its body parsed in response.js (nil when not JSON);
-- an error status or a body that is not JSON is recorded as a failure.
local Rest = {}
Rest.__index = Rest
M.Rest = Rest

function M.rest_client(session)
    return setmetatable({ session = session }, Rest)
end

function Rest:request(method, u, opts)
    return self.session:rest(method, u, opts)
end

function Rest:get(u, opts)
    return self.session:rest("GET", u, opts)
end

function Rest:delete(u, opts)
    return self.session:rest("DELETE", u, opts)
end

for _, m in ipairs({ "post", "put", "patch" }) do
    local method = m:upper()
    Rest[m] = function(self, u, body, opts)
        local o = {}
        for k, v in pairs(opts or {}) do
            o[k] = v
        end
        if body ~= nil then o.json = body end
        return self.session:rest(method, u, o)
    end
end

-- The built-in fixtures: |session| makes the HTTP session and |host| gives the base URL, both
-- once per module scope (a test run, or a user in a load test).
local function builtins(host, session)
    return {
        http = { function() return session() end, scope = "module" },
        client = { function(http) return http end, scope = "module" },
        rest = { function(http) return M.rest_client(http) end, scope = "module" },
        host = { function() return host() end, scope = "module" },
    }
end

-- ---- test mode: `cicada test FILE` ------------------------------------------------------------

local function env()
    return require("cicada").env
end

local function open_out(path)
    if not path or path == "-" then return io.stdout, false end
    local f, err = io.open(path, "w")
    if not f then error("cannot write " .. path .. ": " .. tostring(err), 0) end
    return f, true
end

-- Runs every test of the loaded file once; writes TAP (and JUnit XML when asked) and
-- returns the exit code: 0 when all passed or were skipped, else 1.
function M.run()
    local o = env().parsed_options or {}
    local loaded = M.loaded
    if not loaded then
        io.stderr:write(format("cicada test: %s has no test functions (a table of test_* functions "
            .. "returned by the file)\n", tostring(o.locustfile)))
        return 1
    end
    local signals = require "cicada.signals"
    M.is_signal = signals.is_signal
    local suite, file = loaded.suite, loaded.path
    local tests = M.collect(suite, o.select)
    local host = env().host or rawget(suite, "host")
    local session
    local defs = M.fixture_table(suite, builtins(function() return host end, function()
        if not session then
            session = require("cicada.http").session({ base_url = host, verify = not o.insecure })
        end
        return session
    end))
    local tap, tap_file = open_out(o.tap)
    local human = tap_file and io.stdout or nil
    tap:write("TAP version 13\n")
    tap:flush()
    local results, failed, counts = {}, false, { pass = 0, fail = 0, error = 0, skip = 0 }
    local module = M.scope("module")
    local t0 = monotonic()
    local stamp = os.date("!%Y-%m-%dT%H:%M:%S")
    for i, test in ipairs(tests) do
        local r = M.run_test(defs, test, module)
        results[i] = r
        counts[r.status] = counts[r.status] + 1
        tap:write(M.tap_result(i, r))
        tap:flush()
        if human then human:write(line_of(r), "\n") end
        if r.status == "fail" or r.status == "error" then
            failed = true
            if o.exitfirst then break end
        end
    end
    local terr = module:teardown()
    if terr then
        failed = true
        local msg = (terr.where and (terr.where .. ": ") or "") .. terr.message
        tap:write("# " .. msg:gsub("\n", " ") .. "\n")
        io.stderr:write("cicada test: " .. msg .. "\n")
    end
    if session then session:close() end
    tap:write(format("1..%d\n", #results))
    local summary = format("%d passed, %d failed, %d errors, %d skipped", counts.pass, counts.fail,
                           counts.error, counts.skip)
    tap:write("# " .. summary .. "\n")
    if tap_file then tap:close() else tap:flush() end
    if human then human:write(summary, "\n") end
    if o.junit_xml then
        local f, err = io.open(o.junit_xml, "w")
        if not f then
            io.stderr:write("cicada test: cannot write " .. o.junit_xml .. ": " .. tostring(err) .. "\n")
            return 1
        end
        f:write(M.junit(file, results, monotonic() - t0, stamp))
        f:close()
    end
    if #tests == 0 then
        io.stderr:write(o.select and format("cicada test: no test's name contains '%s'\n", o.select)
            or "cicada test: the file has no tests\n")
        return 1
    end
    return failed and 1 or 0
end

-- ---- load mode: each test a user class --------------------------------------------------

-- Whether |test| uses a fixture that needs the host.
local function needs_host(defs, names, seen)
    for _, p in ipairs(names) do
        if p == "http" or p == "client" or p == "rest" then return true end
        local d = defs[p]
        if d and not seen[p] then
            seen[p] = true
            if needs_host(defs, d.params, seen) then return true end
        end
    end
    return false
end

-- The user classes of a file of tests: one per test, named after it, weighted by
-- tests.weights, waiting tests.wait_time between runs (none by default, as Locust's
-- pytest users).
function M.user_classes(suite, file)
    local http = require "cicada.http"
    local signals = require "cicada.signals"
    M.is_signal = signals.is_signal
    local rt_handler = require("cicada.runtime").handler
    local tests = M.collect(suite)
    local weights = rawget(suite, "weights") or {}
    if type(weights) ~= "table" then error("tests.weights must be a table: { test_name = weight }", 0) end
    local by_name = {}
    for _, t in ipairs(tests) do
        by_name[t.name] = t
    end
    for k, w in pairs(weights) do
        if not by_name[k] then error(format("tests.weights names '%s', which is not a test of %s", tostring(k), file), 0) end
        if type(w) ~= "number" or w < 0 then error(format("tests.weights.%s must be a number of 0 or more", k), 0) end
    end
    -- each user's module scope starts with its own client and host (see on_start), unless
    -- the file defines fixtures of those names
    local defs = M.fixture_table(suite, builtins(function() return nil end, function()
        error("the http fixture has no user", 0)
    end))
    local own = rawget(suite, "fixtures") or {}
    local classes = {}
    for _, t in ipairs(tests) do
        local cls = http.HttpUser:extend(t.name, {
            weight = weights[t.name] or 1,
            host = rawget(suite, "host"),
            wait_time = rawget(suite, "wait_time"),
        })
        cls.__defined_at = t.file .. ":" .. t.line
        local host_needed = needs_host(defs, t.params, {})
        cls.__validate = function(c)
            if host_needed and not c.host then
                error(c.__defined_at .. ": " .. t.name .. " uses the http, client or rest fixture "
                    .. "and has no host: set tests.host = \"http://...\" or pass -H/--host", 0)
            end
            if c.host then http.HttpUser.__validate(c) end
        end
        function cls.on_start(self)
            local scope = M.scope("module")
            if own.http == nil then scope.values.http = self.client end
            if own.host == nil and self.host ~= nil then scope.values.host = self.host end
            self._module_scope = scope
        end
        function cls.on_stop(self)
            local scope = rawget(self, "_module_scope")
            local e = scope and scope:teardown()
            if e then error((e.where and (e.where .. ": ") or "") .. e.message, 0) end
        end
        cls:task(t.name, function(self)
            local fscope = M.scope("function")
            local scopes = { ["function"] = fscope, module = self._module_scope }
            local ok, e = xpcall(function()
                local args = M.arguments(defs, t, scopes)
                return t.fn(unpack(args, 1, #t.params))
            end, function(err)
                if is_skip(err) or getmetatable(err) == FixtureError then return err end
                return rt_handler(err)
            end)
            if not ok and e == signals.Killed then error(e, 0) end -- a killed user tears nothing down
            local terr = fscope:teardown()
            if not ok then
                -- a test that skips does not apply: its users stop rather than spin
                if is_skip(e) then error(signals.StopUser, 0) end
                if getmetatable(e) == FixtureError then
                    error((e.where or (t.file .. ":" .. t.line)) .. ": " .. e.message, 0)
                end
                error(e, 0)
            end
            if terr then error((terr.where and (terr.where .. ": ") or "") .. terr.message, 0) end
        end)
        classes[#classes + 1] = cls
    end
    return classes
end

-- Called by the runtime with what the script returned: a file of tests is remembered for
-- `cicada test`, and becomes its user classes for a load test; anything else passes through.
function M.adopt(result, path)
    if not M.is_suite(result) then return result end
    M.loaded = { suite = result, path = path }
    local o = env().parsed_options or {}
    if o.test_command then return {} end
    return M.user_classes(result, path)
end

return M
