-- test_class.lua: user classes, task declaration forms, names, tags, weighted and sequential
-- choice.
local check = require "check"
local class = require "cicada.class"
local test, eq = check.test, check.eq

local function names(node)
    local out = {}
    for i, e in ipairs(node.tasks) do
        out[i] = e.name .. "=" .. e.weight
    end
    return table.concat(out, " ")
end

test("task declaration forms and names", function()
    local U = class.User:extend("U", { tasks = { "browse", { "buy", 3 } } })
    function U:browse() end
    function U:buy() end
    U:task(2, function() end)
    U:task("named", 5, function() end)
    U:task({ weight = 4, name = "opts", tags = { "t" } }, function() end)
    local node = class.compile(U)
    eq(names(node):match("^browse=1 buy=3 .-test_class%.lua:%d+=2 named=5 opts=4$") ~= nil, true,
       names(node))
    eq(node.total, 15)
end)

test("map form orders by name; weights may be zero", function()
    local U = class.User:extend("M", {})
    function U:b() end
    function U:a() end
    U.tasks = { b = 2, a = 1, [U.b] = 0 }
    local node = class.compile(U)
    eq(names(node), "a=1 b=2") -- a zero weight is never picked and not listed
end)

test("inherited tasks come first; abstract defaults", function()
    local Base = class.User:extend("Base", { abstract = true })
    Base:task("base", function() end)
    local Child = Base:extend("Child", {})
    Child:task("child", 2, function() end)
    eq(Base.abstract, true)
    eq(Child.abstract, false)
    eq(names(class.compile(Child)), "base=1 child=2")
    eq(Child.weight, 1) -- inherited default
end)

test("nested task sets and tag filtering", function()
    local Inner = class.TaskSet:extend("Inner", { tags = { "inner" } })
    Inner:task("deep", function() end)
    local U = class.User:extend("T", {})
    U:task("plain", function() end)
    U:task("tagged", { tags = { "a" } }, function() end)
    U:task(3, Inner)
    eq(names(class.compile(U)), "plain=1 tagged=1 Inner=3")
    eq(names(class.compile(U, { tags = { "a" } })), "tagged=1")
    -- a TaskSet's tags reach its tasks
    local n = class.compile(U, { tags = { "inner" } })
    eq(names(n), "Inner=3")
    eq(names(n.tasks[1].node), "deep=1")
    eq(names(class.compile(U, { exclude = { "inner", "a" } })), "plain=1")
    eq(names(class.compile(U, { equal_weights = true })), "plain=1 tagged=1 Inner=1")
end)

test("weighted pick is exact over a uniform grid", function()
    local U = class.User:extend("W", {})
    local a = U:task(1, function() end)
    local b = U:task(3, function() end)
    local c = U:task(6, function() end)
    local node = class.compile(U)
    local counts = {}
    local steps = 10000
    for i = 0, steps - 1 do
        local e = class.pick(node, i / steps)
        counts[e.fn] = (counts[e.fn] or 0) + 1
    end
    eq(counts[a], 1000)
    eq(counts[b], 3000)
    eq(counts[c], 6000)
end)

test("weighted pick over many tasks uses the search path", function()
    local U = class.User:extend("Many", {})
    local fns = {}
    for i = 1, 20 do
        fns[i] = U:task(i, function() end)
    end
    local node = class.compile(U)
    local counts = {}
    for i = 0, node.total * 10 - 1 do
        local e = class.pick(node, i / (node.total * 10))
        counts[e.fn] = (counts[e.fn] or 0) + 1
    end
    for i = 1, 20 do
        eq(counts[fns[i]], i * 10, "task " .. i)
    end
end)

test("weighted pick distribution with math.random", function()
    math.randomseed(12345)
    local U = class.User:extend("R", {})
    local a = U:task(1, function() end)
    local b = U:task(4, function() end)
    local node = class.compile(U)
    local na = 0
    local n = 100000
    for _ = 1, n do
        if class.pick(node, math.random()).fn == a then na = na + 1 end
    end
    -- 20% expected; 5 standard deviations is 0.63%
    check.near(na / n, 0.2, 0.0063, "share of the weight-1 task")
    eq(b ~= nil, true)
end)

test("sequential task sets repeat by weight, in order", function()
    local S = class.SequentialTaskSet:extend("S", {})
    S:task("one", 2, function() end)
    S:task("two", function() end)
    local node = class.compile(S)
    local seq = {}
    for i, e in ipairs(node.seq) do
        seq[i] = e.name
    end
    eq(table.concat(seq, ","), "one,one,two")
end)

test("misuse is reported with a location", function()
    check.raises(function()
        class.User:extend(42)
    end, "class name must be a string")
    local U = class.User:extend("X", {})
    check.raises(function()
        U:task(1.5, function() end)
    end, "whole number")
    check.raises(function()
        U:task(3)
    end, "give the task's function")
    local V = class.User:extend("V", { tasks = { "missing" } })
    check.raises(function()
        class.compile(V)
    end, "test_class.lua:%d+: tasks: there is no method 'missing'")
end)

test("task ratios", function()
    local Inner = class.TaskSet:extend("In", {})
    Inner:task("x", 1, function() end)
    Inner:task("y", 3, function() end)
    local U = class.User:extend("Ra", {})
    U:task("a", 1, function() end)
    U:task(1, Inner)
    local r = class.ratios(class.compile(U), 0.5, true)
    eq(r[1].name, "a")
    check.near(r[1].ratio, 0.25, 1e-12)
    check.near(r[2].tasks[2].ratio, 0.1875, 1e-12)
end)

check.done()
