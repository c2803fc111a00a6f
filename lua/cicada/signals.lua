-- SPDX-License-Identifier: MIT
-- cicada.signals: the control-flow errors of Locust's model. Raise them with error():
--   error(cicada.StopUser)                 this user stops (its on_stop runs)
--   error(cicada.StopTest)                 the whole test stops
--   error(cicada.RescheduleTask)           end this task now; wait as usual
--   error(cicada.RescheduleTaskImmediately) end this task now; next task without waiting
--   self:interrupt(reschedule)             leave the current TaskSet (InterruptTaskSet)
-- Calling one, as in error(cicada.StopUser()), works too, for Python's raise StopUser().

local M = {}

local Signal = {}
Signal.__index = Signal
Signal.__tostring = function(s)
    return s.__signal
end
Signal.__call = function(s)
    return s
end

local function signal(name)
    return setmetatable({ __signal = name }, Signal)
end

M.StopUser = signal("StopUser")
M.StopTest = signal("StopTest")
M.RescheduleTask = signal("RescheduleTask")
M.RescheduleTaskImmediately = signal("RescheduleTaskImmediately")
-- What a user's wait resumes with when the user is killed (Locust's GreenletExit).
M.Killed = signal("Killed")

local Interrupt = setmetatable({}, { __index = Signal })
Interrupt.__index = Interrupt
Interrupt.__tostring = Signal.__tostring

-- cicada.InterruptTaskSet(reschedule): reschedule defaults to true, as in Locust.
M.InterruptTaskSet = setmetatable({ __signal = "InterruptTaskSet" }, {
    __call = function(_, reschedule)
        return setmetatable({ __signal = "InterruptTaskSet", reschedule = reschedule ~= false }, Interrupt)
    end,
})

function M.is_signal(e)
    return type(e) == "table" and rawget(e, "__signal") ~= nil
end

function M.is_interrupt(e)
    return type(e) == "table" and rawget(e, "__signal") == "InterruptTaskSet"
end

local ok, core = pcall(require, "cicada.core")
local KILL = ok and core.KILL or {}
local Killed = M.Killed

-- Passes a wait's results through, turning the kill sentinel into the Killed error.
function M.checked(a, ...)
    if a == KILL then error(Killed, 0) end
    return a, ...
end

return M
