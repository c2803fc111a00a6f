-- SPDX-License-Identifier: MIT
-- cicada.events: event hooks with listeners, as Locust's EventHook. A listener receives the
-- event's arguments as one table (Locust passes them as keyword arguments).

local M = {}

local EventHook = {}
EventHook.__index = EventHook
M.EventHook = EventHook

-- Called with (hook name, error, traceback) when a listener raises; set by the runtime.
M.on_listener_error = function() end
-- Errors that are control flow (StopUser...) rather than listener failures; set by the runtime.
M.is_signal = function()
    return false
end

function EventHook.new(name)
    return setmetatable({ name = name, listeners = {} }, EventHook)
end

-- Adds |fn| and returns it.
function EventHook:add_listener(fn)
    if type(fn) ~= "function" then error("add_listener: a listener must be a function", 2) end
    local l = self.listeners
    l[#l + 1] = fn
    if self.on_change then self.on_change(#l) end
    return fn
end

function EventHook:remove_listener(fn)
    local l = self.listeners
    for i = #l, 1, -1 do
        if l[i] == fn then
            table.remove(l, i)
            if self.on_change then self.on_change(#l) end
            return true
        end
    end
    return false
end

local function traceback(e)
    if M.is_signal(e) then return e end
    return { err = e, tb = debug.traceback(tostring(e), 2) }
end

-- Calls every listener with |args| (a table), in order (reversed when |reverse|). A listener
-- that raises is logged and flags the run (exit code 2), and the others still run; control
-- flow signals (StopUser, StopTest...) propagate.
function EventHook:fire(args, reverse)
    local l = self.listeners
    local n = #l
    if n == 0 then return end
    args = args or {}
    for k = 1, n do
        local fn = l[reverse and (n - k + 1) or k]
        local ok, e = xpcall(fn, traceback, args)
        if not ok then
            if M.is_signal(e) then error(e, 0) end
            M.on_listener_error(self.name, e.err, e.tb)
        end
    end
end

M.names = {
    "request", "user_error", "init", "test_start", "test_stopping", "test_stop",
    "spawning_complete", "quitting", "quit", "reset_stats",
}

for _, name in ipairs(M.names) do
    M[name] = EventHook.new(name)
end

return M
