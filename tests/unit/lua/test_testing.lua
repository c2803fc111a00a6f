-- test_testing.lua: cicada.testing without the binary: collecting tests in file order,
-- fixtures (scopes, caching, dependencies, teardown order, errors), outcomes, TAP and JUnit.
local check = require "check"
local testing = require "cicada.testing"
local test, eq, raises = check.test, check.eq, check.raises

local function suite_of(t)
    return t
end

test("is_suite", function()
    eq(testing.is_suite({ test_a = function() end }), true)
    eq(testing.is_suite({ helper = function() end }), false)
    eq(testing.is_suite({ test_a = 1 }), false)
    eq(testing.is_suite(nil), false)
    eq(testing.is_suite({ __kind = "user", test_a = function() end }), false)
end)

test("collect: file order, parameters, selection", function()
    local s = suite_of({})
    function s.test_zeta(a, b) end
    function s.test_alpha() end
    function s.testing_too(c) end
    s.not_a_test = function() end
    s.test_value = 3
    local list = testing.collect(s)
    eq(#list, 3)
    eq(list[1].name, "test_zeta")
    eq(list[2].name, "test_alpha")
    eq(list[3].name, "testing_too")
    eq(table.concat(list[1].params, ","), "a,b")
    eq(#list[2].params, 0)
    eq(list[1].line < list[2].line, true)
    eq(list[1].file:find("test_testing.lua", 1, true) ~= nil, true)
    local some = testing.collect(s, "alpha")
    eq(#some, 1)
    eq(some[1].name, "test_alpha")
    eq(#testing.collect(s, "a.p"), 0) -- plain text, not a pattern
end)

-- A run of |s|'s tests with fixtures |builtins|; returns the results and the module scope.
local function run(s, builtins)
    local defs = testing.fixture_table(s, builtins)
    local module = testing.scope("module")
    local results = {}
    for i, t in ipairs(testing.collect(s)) do
        results[i] = testing.run_test(defs, t, module)
        results[t.name] = results[i]
    end
    return results, module
end

test("fixtures: scopes, caching, dependencies, teardown order", function()
    local log = {}
    local function note(s) log[#log + 1] = s end
    local s = { fixtures = {} }
    s.fixtures.base = { scope = "module", function()
        note("+base")
        return "B", function() note("-base") end
    end }
    s.fixtures.a = function(base)
        note("+a")
        return base .. "a", function() note("-a") end
    end
    s.fixtures.b = function(a, base)
        note("+b")
        return a .. "b", function() note("-b") end
    end
    s.fixtures.none = function() return nil end
    local seen = {}
    function s.test_one(b, a)
        seen[#seen + 1] = b .. "/" .. a
    end
    function s.test_two(a, none)
        seen[#seen + 1] = a .. "/" .. tostring(none)
    end
    local results, module = run(s)
    eq(results.test_one.status, "pass", results.test_one.message)
    eq(results.test_two.status, "pass", results.test_two.message)
    eq(table.concat(seen, " "), "Bab/Ba Ba/nil")
    -- the module fixture is set up once; function fixtures around each test, last first
    eq(table.concat(log, " "), "+base +a +b -b -a +a -a")
    eq(module:teardown(), nil)
    eq(log[#log], "-base")
end)

test("fixtures: errors", function()
    local s = { fixtures = {} }
    s.fixtures.loop1 = function(loop2) end
    s.fixtures.loop2 = function(loop1) end
    s.fixtures.broken = function() error("no database") end
    s.fixtures.once = { scope = "module", function() error("once only") end }
    s.fixtures.fn = function() return 1 end
    s.fixtures.wide = { scope = "module", function(fn) return fn end }
    s.fixtures.bad_teardown = function() return 1, function() error("could not clean") end end
    s.fixtures.not_fn = function() return 1, 2 end
    function s.test_missing(nope) end
    function s.test_cycle(loop1) end
    function s.test_broken(broken) end
    function s.test_once_a(once) end
    function s.test_once_b(once) end
    function s.test_scope(wide) end
    function s.test_teardown(bad_teardown) end
    function s.test_teardown_after_failure(bad_teardown) error("first") end
    function s.test_not_fn(not_fn) end
    local r = run(s)
    eq(r.test_missing.status, "error")
    eq(r.test_missing.message:find("fixture 'nope' not found (available: ", 1, true) ~= nil, true)
    eq(r.test_cycle.message:find("depends on itself", 1, true) ~= nil, true, r.test_cycle.message)
    eq(r.test_broken.status, "error")
    eq(r.test_broken.message:find("fixture 'broken': ", 1, true) ~= nil, true)
    eq(r.test_broken.message:find("no database", 1, true) ~= nil, true)
    eq(r.test_broken.where:find("test_testing.lua:", 1, true) ~= nil, true)
    -- a module fixture that failed fails each test that asks for it, set up only once
    eq(r.test_once_a.status, "error")
    eq(r.test_once_b.message, r.test_once_a.message)
    eq(r.test_scope.message:find("(scope module) cannot use fixture 'fn'", 1, true) ~= nil, true)
    eq(r.test_teardown.status, "error")
    eq(r.test_teardown.message:find("teardown of fixture 'bad_teardown'", 1, true) ~= nil, true)
    -- the test's own failure is what counts when its teardown fails too
    eq(r.test_teardown_after_failure.status, "fail")
    eq(r.test_teardown_after_failure.message, "first")
    eq(r.test_not_fn.message:find("teardown that is not a function", 1, true) ~= nil, true)
    raises(function() testing.fixture_table({ fixtures = { x = 3 } }) end, "not a function")
    raises(function() testing.fixture_table({ fixtures = { x = { scope = "class", print } } }) end,
           "scope is")
end)

test("outcomes and where they happened", function()
    local s = {}
    function s.test_pass() end
    function s.test_assert()
        assert(1 == 2, "one is not two")
    end
    function s.test_error()
        local t
        return t.x
    end
    function s.test_skip()
        testing.skip("later")
    end
    function s.test_table()
        error({ code = 7, why = "x" })
    end
    local r = run(s)
    eq(r.test_pass.status, "pass")
    eq(r.test_assert.status, "fail")
    eq(r.test_assert.message, "one is not two")
    local info = debug.getinfo(s.test_assert, "S")
    eq(r.test_assert.where, info.source:sub(2) .. ":" .. (info.linedefined + 1))
    eq(r.test_assert.traceback:find("in the test", 1, true) ~= nil, true, r.test_assert.traceback)
    eq(r.test_error.message:find("attempt to index", 1, true) ~= nil, true)
    eq(r.test_skip.status, "skip")
    eq(r.test_skip.message, "later")
    eq(r.test_table.message, 'error object { code = 7, why = "x" }')
    eq(r.test_pass.seconds >= 0, true)
end)

test("TAP", function()
    eq(testing.tap_result(1, { name = "test_a", status = "pass" }), "ok 1 - test_a\n")
    eq(testing.tap_result(2, { name = "test_#b", status = "skip", message = "why\nnot" }),
       "ok 2 - test_\\#b # SKIP why not\n")
    local t = testing.tap_result(3, { name = "test_c", status = "fail", message = 'a "quote"\n\tand\1',
                                      where = "f.lua:3", seconds = 0.5,
                                      traceback = "stack traceback:\n\tf.lua:3: in the test" })
    eq(t, 'not ok 3 - test_c\n  ---\n  message: "a \\"quote\\"\\n\\tand\\x01"\n  severity: fail\n'
        .. '  at: "f.lua:3"\n  duration_ms: 500.000\n  traceback: |-\n    stack traceback:\n'
        .. '      f.lua:3: in the test\n  ...\n')
    eq(testing.tap_result(4, { name = "e", status = "error", message = "m" }):find("severity: error", 1, true) ~= nil, true)
end)

test("JUnit XML", function()
    eq(testing.xml_escape("<a href=\"x\">&'\1</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&apos;?&lt;/a&gt;")
    local x = testing.junit("dir/test_shop.lua", {
        { name = "test_a", status = "pass", file = "dir/test_shop.lua", line = 3, seconds = 0.25 },
        { name = "test_b", status = "fail", file = "dir/test_shop.lua", line = 9, seconds = 0,
          message = "bad <thing>", where = "dir/test_shop.lua:10",
          traceback = "stack traceback:\n\t[C]: in function 'assert'" },
        { name = "test_c", status = "error", message = "fixture 'x': y" },
        { name = "test_d", status = "skip", message = "later" },
    }, 1.5, "2026-01-02T03:04:05")
    local want = '<?xml version="1.0" encoding="UTF-8"?>\n'
        .. '<testsuites tests="4" failures="1" errors="1" skipped="1" time="1.500">\n'
        .. '  <testsuite name="test_shop" tests="4" failures="1" errors="1" skipped="1" time="1.500" timestamp="2026-01-02T03:04:05">\n'
        .. '    <testcase classname="test_shop" name="test_a" file="dir/test_shop.lua" line="3" time="0.250"/>\n'
        .. '    <testcase classname="test_shop" name="test_b" file="dir/test_shop.lua" line="9" time="0.000">\n'
        .. '      <failure message="dir/test_shop.lua:10: bad &lt;thing&gt;" type="AssertionError">dir/test_shop.lua:10: bad &lt;thing&gt;\n'
        .. 'stack traceback:\n\t[C]: in function &apos;assert&apos;</failure>\n'
        .. '    </testcase>\n'
        .. '    <testcase classname="test_shop" name="test_c" file="dir/test_shop.lua" line="0" time="0.000">\n'
        .. '      <error message="fixture &apos;x&apos;: y" type="FixtureError">fixture &apos;x&apos;: y</error>\n'
        .. '    </testcase>\n'
        .. '    <testcase classname="test_shop" name="test_d" file="dir/test_shop.lua" line="0" time="0.000">\n'
        .. '      <skipped message="later"/>\n'
        .. '    </testcase>\n'
        .. '  </testsuite>\n</testsuites>\n'
    eq(x, want)
end)

check.done()
