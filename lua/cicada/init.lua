-- SPDX-License-Identifier: MIT
-- cicada: the scripting API. A cicadafile requires this module, defines user classes and
-- returns them (or leaves them defined). See docs/scripting.md.

local core = require "cicada.core"
local class = require "cicada.class"
local wait = require "cicada.wait"
local events = require "cicada.events"
local signals = require "cicada.signals"

local cicada = {
    version = core.version,

    User = class.User,
    TaskSet = class.TaskSet,
    SequentialTaskSet = class.SequentialTaskSet,

    between = wait.between,
    constant = wait.constant,
    constant_pacing = wait.constant_pacing,
    constant_throughput = wait.constant_throughput,
    ramping_arrival_rate = wait.ramping_arrival_rate,

    events = events,

    StopUser = signals.StopUser,
    StopTest = signals.StopTest,
    RescheduleTask = signals.RescheduleTask,
    RescheduleTaskImmediately = signals.RescheduleTaskImmediately,
    InterruptTaskSet = signals.InterruptTaskSet,

    -- Data set by environment-level code (a test_start listener, say) and copied to every
    -- worker thread before users start. Plain values and tables only.
    shared = {},

    -- The environment, as Locust's: role ("control" or "worker"), worker_index,
    -- parsed_options, host, and on the control thread stats, runner and process_exit_code.
    -- Filled in by the runtime when the script loads.
    env = {},
}

local checked = signals.checked
local core_sleep = core.sleep

-- Waits |seconds| without blocking other users; cicada.sleep(0) lets every other ready user
-- run once first.
function cicada.sleep(seconds)
    return checked(core_sleep(seconds))
end

-- Runs each function of the list |fns| concurrently (each waits without holding up the
-- others), at most |limit| at a time (default: all), and returns their first results in a list
-- once every one has ended. If any raised, gather raises the error of the first (by position)
-- after all have ended. For a page's resources:
--   cicada.gather { function() client:get("/app.js") end, function() client:get("/app.css") end }
local core_gather = core.gather
function cicada.gather(fns, limit)
    local results, err = checked(core_gather(fns, limit))
    if err ~= nil then error(err, 0) end
    return results
end

-- Runs fn(...) on a thread of the offload pool and returns its results; only the calling
-- user waits meanwhile. For blocking calls that cannot be made cooperative (a C library
-- through the FFI, say). fn runs in a Lua state of its own: it must not use local variables
-- from outside it (pass them as arguments, require modules inside it), and its arguments and
-- results must be plain values or tables of them. Errors it raises are raised here.
local core_offload = core.offload
local loadstring = loadstring
local getupvalue = debug.getupvalue
function cicada.offload(fn, ...)
    local up = type(fn) == "function" and getupvalue(fn, 1)
    if up then
        error("offload: the function uses '" .. up .. "' from outside it; it runs in another "
              .. "Lua state, so pass such values as arguments and require modules inside it", 2)
    end
    local ok, res = checked(core_offload(fn, ...))
    if not ok then error(res, 2) end
    return loadstring(res, "=offload results")()
end

-- Seconds since the epoch, as Locust's time.time().
cicada.now = core.now
-- Seconds from a monotonic clock: for measuring durations.
cicada.monotonic = core.monotonic

-- Records one request event straight into the statistics; |exception| nil or false means
-- success. Lua listeners of events.request are not called: use events.request:fire for that.
cicada.record = core.record

-- events.request:fire{request_type=, name=, response_time= (ms), response_length=,
-- exception=, context=...} records the request and calls the listeners, as in Locust.
local hook_fire = events.EventHook.fire
local record = core.record
function events.request:fire(args)
    record(args.request_type, args.name, args.response_time, args.response_length, args.exception)
    return hook_fire(self, args)
end
events.request.on_change = function(n)
    core.set_request_listeners(n > 0)
end

local monotonic = core.monotonic
local is_signal = signals.is_signal

local function measured(rtype, name, t0, ok, ...)
    local ms = (monotonic() - t0) * 1000
    if ok then
        record(rtype, name, ms, 0, nil)
        return true, ...
    end
    local e = ...
    if is_signal(e) then error(e, 0) end
    if e == nil then e = "error" end
    record(rtype, name, ms, 0, e)
    return false, e
end

-- Runs fn(...), times it and records a request event: a success, or a failure carrying the
-- error fn raised. Returns true and fn's results, or false and the error, as pcall does.
-- This, with events.request:fire, is how any system is tested: wrap its client's calls.
function cicada.measure(request_type, name, fn, ...)
    if type(fn) ~= "function" then error("measure: the third argument must be a function", 2) end
    return measured(request_type, name, monotonic(), pcall(fn, ...))
end

-- Logging into cicada's log (Locust's logging.info and friends).
local log = core.log
cicada.log = {
    debug = function(...) log("debug", table.concat({ ... }, " ")) end,
    info = function(...) log("info", table.concat({ ... }, " ")) end,
    warning = function(...) log("warning", table.concat({ ... }, " ")) end,
    error = function(...) log("error", table.concat({ ... }, " ")) end,
}

-- Pass/fail criteria checked at the end of the run (exit code 3 when one fails); see
-- lua/cicada/thresholds.lua and docs/load.md.
function cicada.thresholds(spec)
    return require("cicada.thresholds").declare(spec)
end

-- Protocol user classes load on first use: cicada.HttpUser is cicada.http's.
local lazy = { HttpUser = "cicada.http", XmlRpcUser = "cicada.xmlrpc", LoadTestShape = "cicada.shape", stages = "cicada.shape" }
lazy.PostgresUser = "cicada.postgres"
lazy.KafkaUser = "cicada.kafka"
lazy.MqttUser = "cicada.mqtt"
lazy.RedisUser = "cicada.redis"
lazy.WebSocketUser = "cicada.websocket"
lazy.SocketIOUser = "cicada.socketio"
lazy.OpenAIUser = "cicada.openai"
lazy.GrpcUser = "cicada.grpc"
setmetatable(cicada, {
    __index = function(t, k)
        local mod = lazy[k]
        if not mod then return nil end
        local v = require(mod)[k]
        rawset(t, k, v)
        return v
    end,
})

return cicada
