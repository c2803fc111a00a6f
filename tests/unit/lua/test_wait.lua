-- test_wait.lua: the wait_time functions, with a fake clock.
local check = require "check"
local wait = require "cicada.wait"
local test, eq, near = check.test, check.eq, check.near

test("between stays within its bounds and spreads over them", function()
    math.randomseed(1)
    local f = wait.between(0.5, 2)
    local lo, hi, sum = math.huge, -math.huge, 0
    for _ = 1, 10000 do
        local v = f({})
        lo, hi, sum = math.min(lo, v), math.max(hi, v), sum + v
    end
    eq(lo >= 0.5, true, "minimum")
    eq(hi <= 2, true, "maximum")
    near(lo, 0.5, 0.01, "lowest seen")
    near(hi, 2, 0.01, "highest seen")
    near(sum / 10000, 1.25, 0.03, "mean")
end)

test("constant", function()
    eq(wait.constant(3)({}), 3)
    eq(wait.constant(0)({}), 0)
end)

test("constant_pacing waits what the task left of the period", function()
    local now = 100
    wait.clock = function() return now end
    local f = wait.constant_pacing(10)
    local user = {}
    eq(f(user), 10) -- first call: nothing ran yet
    now = now + 10 + 3 -- slept 10, then the task took 3
    eq(f(user), 7)
    now = now + 7 + 12 -- slept 7, then the task overran the period
    eq(f(user), 0)
    now = now + 0 + 4
    eq(f(user), 6)
end)

test("constant_throughput is pacing at 1/n", function()
    local now = 0
    wait.clock = function() return now end
    local f = wait.constant_throughput(4)
    local user = {}
    eq(f(user), 0.25)
    now = now + 0.25 + 0.05
    near(f(user), 0.2, 1e-12)
end)

test("bad arguments raise", function()
    check.raises(function() wait.between(2, 1) end, "max must not be less than min")
    check.raises(function() wait.constant(-1) end, "0 or more")
    check.raises(function() wait.constant_throughput(0) end, "above 0")
end)

check.done()
