-- SPDX-License-Identifier: MIT
-- cicada.wait: wait_time functions, as Locust's between, constant, constant_pacing and
-- constant_throughput. Each returns a function of the user (or task set) giving seconds.
-- Pure Lua: the clock is replaceable, so they are unit tested without the cicada binary.

local M = {}

local random = math.random

local ok, core = pcall(require, "cicada.core")
M.clock = ok and core.monotonic or os.clock

local function check_number(v, what, level)
    if type(v) ~= "number" or v ~= v or v < 0 then
        error(what .. " must be a number of 0 or more", level + 1)
    end
end

-- A uniformly random wait between |min| and |max| seconds.
function M.between(min, max)
    check_number(min, "between: min", 2)
    check_number(max, "between: max", 2)
    if max < min then error("between: max must not be less than min", 2) end
    local span = max - min
    return function()
        return min + random() * span
    end
end

-- Always |s| seconds.
function M.constant(s)
    check_number(s, "constant: the wait", 2)
    return function()
        return s
    end
end

-- The pacing period of a wait_time function made by constant_pacing or constant_throughput,
-- by which cicada also measures responses from their intended start.
M.pacing = setmetatable({}, { __mode = "k" })

-- Starts a task every |s| seconds per user: waits what is left of |s| after the task ran,
-- nothing if the task took longer. The state is kept on the user (or task set).
function M.constant_pacing(s)
    check_number(s, "constant_pacing: the pacing", 2)
    local fn = function(self)
        local now = M.clock()
        local last_run = rawget(self, "_cp_last_run") or now
        local last_wait = rawget(self, "_cp_last_wait_time") or 0
        local run_time = now - last_run - last_wait
        local w = s - run_time
        if w < 0 then w = 0 end
        rawset(self, "_cp_last_wait_time", w)
        rawset(self, "_cp_last_run", now)
        return w
    end
    M.pacing[fn] = s
    return fn
end

-- Runs tasks at most |n| times a second per user: constant_pacing(1 / n).
function M.constant_throughput(n)
    if type(n) ~= "number" or not (n > 0) then
        error("constant_throughput: the rate must be a number above 0", 2)
    end
    return M.constant_pacing(1 / n)
end

-- The open model: iterations start at |rate| per second, whatever the responses do.
-- cicada.ramping_arrival_rate{ start_rate = 0, stages = { { duration = 30, rate = 100 }, ... } }
-- moves the rate linearly to each stage's rate over its duration (seconds), then holds the last.
function M.ramping_arrival_rate(spec)
    if type(spec) ~= "table" or type(spec.stages) ~= "table" or #spec.stages == 0 then
        error("ramping_arrival_rate: give { start_rate =, stages = { { duration =, rate = }, ... } }", 2)
    end
    local start = spec.start_rate or 0
    check_number(start, "ramping_arrival_rate: start_rate", 2)
    for i, st in ipairs(spec.stages) do
        if type(st.duration) ~= "number" or st.duration <= 0 then
            error("ramping_arrival_rate: stage " .. i .. " needs a duration above 0", 2)
        end
        check_number(st.rate, "ramping_arrival_rate: stage " .. i .. "'s rate", 2)
    end
    return { __arrival = "ramping", start_rate = start, stages = spec.stages }
end

return M
