-- SPDX-License-Identifier: MIT
-- cicada.shape: load shapes, as Locust's LoadTestShape: tick() is called about once a second
-- and returns the user count and spawn rate to ramp to (and optionally which user classes may
-- run), or nil to end the test. cicada.stages builds one from a list of stages.

local core = require "cicada.core"
local class = require "cicada.class"

local M = {}

local Shape = class.LoadTestShape
M.LoadTestShape = Shape

-- Seconds since the shape started (or since reset_time()).
function Shape:get_run_time()
    return core.monotonic() - (rawget(self, "_start") or core.monotonic())
end

function Shape:reset_time()
    rawset(self, "_start", core.monotonic())
end

-- The users running now.
function Shape:get_current_user_count()
    return core.user_count()
end

-- cicada.stages{ { duration = 30, users = 10, spawn_rate = 5 }, { duration = 60, users = 50,
-- spawn_rate = 10, classes = { "Shopper" } }, ... }: each stage holds for its duration in
-- seconds (a timespan string works too: "2m"), after the previous one; the test ends after the
-- last. A stage's classes, if given, are the only user classes that run in it.
function M.stages(list)
    if type(list) ~= "table" or #list == 0 then
        error("stages: give a list of stages { duration =, users =, spawn_rate = }", 2)
    end
    local ends, t = {}, 0
    for i, st in ipairs(list) do
        local d = st.duration
        if type(d) == "string" then d = core.timespan(d) end
        if type(d) ~= "number" or d <= 0 then error("stages: stage " .. i .. " needs a duration above 0", 2) end
        if type(st.users) ~= "number" or st.users < 0 then error("stages: stage " .. i .. " needs users (0 or more)", 2) end
        if st.spawn_rate ~= nil and (type(st.spawn_rate) ~= "number" or st.spawn_rate <= 0) then
            error("stages: stage " .. i .. ": spawn_rate must be above 0", 2)
        end
        t = t + d
        ends[i] = t
    end
    local S = Shape:extend("Stages", {})
    function S:tick()
        local now = self:get_run_time()
        for i, st in ipairs(list) do
            if now < ends[i] then return st.users, st.spawn_rate or st.users, st.classes end
        end
        return nil
    end
    return S
end

return M
