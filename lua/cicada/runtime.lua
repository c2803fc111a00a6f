-- SPDX-License-Identifier: MIT
-- cicada.runtime: what the C side calls. Loads the cicadafile, picks and compiles its user
-- classes, creates users and runs each one's life in its coroutine (on_start, then tasks and
-- waits until it is stopped, then on_stop), and fires events. Not part of the script API.

local core = require "cicada.core"
local cicada = require "cicada"
local class = require "cicada.class"
local wait = require "cicada.wait"
local events = require "cicada.events"
local signals = require "cicada.signals"

local rt = {}

local env = cicada.env
local is_signal, is_interrupt = signals.is_signal, signals.is_interrupt
local StopUser, StopTest, Killed = signals.StopUser, signals.StopTest, signals.Killed
local RescheduleTask, RescheduleTaskImmediately = signals.RescheduleTask, signals.RescheduleTaskImmediately
local core_wait, core_stopping, STOP, KILL = core.wait, core.stopping, core.STOP, core.KILL
local core_await_arrival = core.await_arrival
local random, pick = math.random, class.pick

local classes = {} -- the user classes this run spawns: {cls, name, weight, fixed_count, node}
local nodes = {} -- class -> compiled task tree
local all_names = {} -- every user class the script defines, for --list
local filter = {}
local no_class_reason
local current_task -- the name of the task being run, for tracebacks

-- ---- errors raised by user code --------------------------------------------------------------

-- An error from user code, with the traceback taken where it was raised.
local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f)
    return tostring(f.err)
end

-- Drops the frames of this file and below: they are cicada's, not the script's. The frame of
-- the task function itself is named after the task.
local function trim(tb)
    local out = {}
    for line in tb:gmatch("[^\n]+") do
        if line:find("cicada/runtime.lua", 1, true) or line:find("in function 'xpcall'", 1, true) then
            break
        end
        out[#out + 1] = line
    end
    local last = out[#out]
    local called = "in function 'task'"
    if last and current_task and last:sub(-#called) == called then
        out[#out] = last:sub(1, -#called - 1) .. "in task '" .. current_task .. "'"
    end
    return table.concat(out, "\n")
end

local function handler(e)
    if is_signal(e) or getmetatable(e) == Failure then return e end
    return setmetatable({ err = e, tb = trim(debug.traceback(tostring(e), 2)) }, Failure)
end
rt.handler = handler

local logged, nlogged = {}, 0

-- Records an exception of user code: the exceptions table, user_error listeners, and the log
-- (each distinct traceback once per thread, so a failing task cannot flood the log).
local function report(user, f)
    if getmetatable(f) ~= Failure then f = handler(f) end
    local msg = tostring(f.err)
    core.exception(msg, f.tb)
    if not logged[f.tb] and nlogged < 1000 then
        logged[f.tb] = true
        nlogged = nlogged + 1
        core.log("error", f.tb)
    end
    events.user_error:fire({ user_instance = user, exception = f.err, tb = f.tb })
end

-- ---- running a user ----------------------------------------------------------------------------

local function call_on_stop(inst, user)
    local ok, e = xpcall(inst.on_stop, handler, inst)
    if not ok and not is_signal(e) then report(user, e) end
end

-- The wait after a task: the task set's own wait_time, else the user's.
local function do_wait(inst, user)
    local s = 0
    local wt = inst.wait_time
    if wt then
        s = wt(inst)
    else
        wt = user.wait_time
        if wt then s = wt(user) end
    end
    local r = core_wait(s)
    if r == STOP then error(StopUser, 0) end
    if r == KILL then error(Killed, 0) end
end

local compiled_sets = {}
local function node_of_set(cls)
    local n = compiled_sets[cls]
    if not n then
        n = class.compile(cls, filter)
        compiled_sets[cls] = n
    end
    return n
end

local function next_task(inst, node)
    local q = rawget(inst, "_task_queue")
    if q and q[1] then return table.remove(q, 1) end
    local seq = node.seq
    if seq then
        local i = (rawget(inst, "_seq_index") or 0) % #seq + 1
        rawset(inst, "_seq_index", i)
        return seq[i]
    end
    return pick(node, random())
end

local run_set

local function step(inst, node, user)
    local entry = next_task(inst, node)
    local task = entry.fn
    current_task = entry.name
    if task then
        task(inst)
    else
        local set = entry.set
        local child = setmetatable({ user = user, parent = inst, client = user.client }, set)
        run_set(child, entry.node or node_of_set(set), user, false)
    end
    return do_wait(inst, user)
end

-- Runs a task set (the user itself at the root) until it is interrupted or the user stops.
-- Returns only by raising: a signal, or at a nested set a reschedule for its parent.
run_set = function(inst, node, user, is_root)
    if not is_root then
        local ok, e = xpcall(inst.on_start, handler, inst)
        if not ok then
            if is_interrupt(e) then
                error(e.reschedule ~= false and RescheduleTaskImmediately or RescheduleTask, 0)
            end
            error(e, 0)
        end
    end
    while true do
        local ok, e = xpcall(step, handler, inst, node, user)
        if not ok then
            local wait = e ~= RescheduleTaskImmediately
            if not wait and core_stopping() then e = StopUser end
            if e ~= RescheduleTask and e ~= RescheduleTaskImmediately then
                if is_interrupt(e) then
                    if not is_root then
                        call_on_stop(inst, user)
                        error(e.reschedule ~= false and RescheduleTaskImmediately or RescheduleTask, 0)
                    end
                    -- the user itself has no set to leave: as RescheduleTask
                elseif is_signal(e) then -- StopUser, StopTest, Killed
                    if not is_root then call_on_stop(inst, user) end
                    error(e, 0)
                else
                    report(user, e)
                end
            end
            if wait then
                local ok2, e2 = xpcall(do_wait, handler, inst, user)
                if not ok2 then
                    if is_signal(e2) then
                        if not is_root then call_on_stop(inst, user) end
                        error(e2, 0)
                    end
                    report(user, e2) -- a wait_time function that raised
                end
            end
        end
    end
end

-- The body of every user's coroutine.
local function user_main(self)
    local node = nodes[getmetatable(self)]
    local pacing = wait.pacing[self.wait_time]
    if pacing then core.set_pacing(pacing) end
    local ok, e = xpcall(self.on_start, handler, self)
    if ok then
        if core_stopping() then
            e = StopUser
        else
            ok, e = pcall(run_set, self, node, self, true)
        end
    elseif not is_signal(e) then
        report(self, e) -- as in Locust, a user whose on_start fails ends without on_stop
        return
    end
    if e == StopTest then core.stop_test() end
    if not is_signal(e) then report(self, e) end
    call_on_stop(self, self)
end

-- One task, without the wait: an open-model iteration.
local function run_once(inst, node, user)
    local entry = next_task(inst, node)
    local task = entry.fn
    current_task = entry.name
    if task then
        task(inst)
    else
        local set = entry.set
        local child = setmetatable({ user = user, parent = inst, client = user.client }, set)
        run_set(child, entry.node or node_of_set(set), user, false)
    end
end

-- The body of an open-model user: on_start, then one task per arrival until stopped.
local function open_loop(self, node)
    while true do
        local r = core_await_arrival()
        if r == STOP then error(StopUser, 0) end
        if r == KILL then error(Killed, 0) end
        local ok, e = xpcall(run_once, handler, self, node, self)
        if not ok and e ~= RescheduleTask and e ~= RescheduleTaskImmediately then
            if is_signal(e) and not is_interrupt(e) then error(e, 0) end
            if not is_signal(e) then report(self, e) end
        end
    end
end

local function open_main(self)
    local node = nodes[getmetatable(self)]
    local ok, e = xpcall(self.on_start, handler, self)
    if ok then
        ok, e = pcall(open_loop, self, node)
    elseif not is_signal(e) then
        report(self, e)
        return
    end
    if e == StopTest then core.stop_test() end
    if not is_signal(e) then report(self, e) end
    call_on_stop(self, self)
end

function rt.new_user(i)
    local c = classes[i]
    local self = setmetatable({}, c.cls)
    local construct = c.cls.__construct -- a base class's set-up of each user (HttpUser's client)
    if construct then construct(self) end
    return coroutine.create(c.arrival and open_main or user_main), self
end

-- The body of a child fiber of cicada.gather.
function rt.gather_child(g, i, fn)
    local ok, r = xpcall(fn, handler)
    core.gather_done(g, i, ok, r)
end

-- ---- TaskSet and User methods ------------------------------------------------------------------

local function interrupt(_, reschedule)
    error(signals.InterruptTaskSet(reschedule), 0)
end

-- Puts a task (a function, or a TaskSet) first or last in this set's queue, ahead of the
-- weighted choice.
local function schedule_task(self, task, first)
    local entry
    if type(task) == "function" then
        entry = { fn = task, name = "scheduled" }
    elseif class.is_taskset(task) then
        entry = { set = task, name = class.class_name(task) or "TaskSet" }
    else
        error("schedule_task: give a function or a TaskSet", 2)
    end
    local q = rawget(self, "_task_queue")
    if not q then
        q = {}
        rawset(self, "_task_queue", q)
    end
    table.insert(q, first and 1 or #q + 1, entry)
end

for _, r in ipairs({ class.TaskSet, class.SequentialTaskSet }) do
    r.interrupt = interrupt
    r.schedule_task = schedule_task
end
class.User.schedule_task = schedule_task

-- ---- loading the script --------------------------------------------------------------------------

local function words(s)
    if not s or s == "" then return nil end
    local list = {}
    for w in s:gmatch("[^%s,]+") do
        list[#list + 1] = w
    end
    return #list > 0 and list or nil
end

local function traceback(e)
    return debug.traceback(tostring(e), 2)
end

-- The user classes of the script: the table it returns (a list, or names to classes), or else
-- every non-abstract user class it defined.
local function find_classes(result)
    local found = {}
    if type(result) == "table" and not class.is_class(result) then
        for i, c in ipairs(result) do
            if not (class.is_class(c) and rawget(c, "__kind") == "shape") then -- see find_shape
                if not class.is_class(c) or rawget(c, "__kind") ~= "user" then
                    error("the script returned a table whose entry " .. i .. " is not a user class", 0)
                end
                found[#found + 1] = c
            end
        end
        local keyed = {}
        for k, c in pairs(result) do
            if type(k) == "string" and not (class.is_class(c) and rawget(c, "__kind") == "shape") then
                if not class.is_class(c) or rawget(c, "__kind") ~= "user" then
                    error("the script returned a table whose entry '" .. k .. "' is not a user class", 0)
                end
                if not rawget(c, "__name") then c.__name = k end
                keyed[#keyed + 1] = c
            end
        end
        table.sort(keyed, function(a, b)
            return a.__name < b.__name
        end)
        for _, c in ipairs(keyed) do
            found[#found + 1] = c
        end
    elseif class.is_class(result) then
        found[1] = result
    else
        for _, c in ipairs(class.registry) do
            if rawget(c, "__kind") == "user" and not rawget(c, "abstract") then found[#found + 1] = c end
        end
    end
    local seen, out = {}, {}
    for _, c in ipairs(found) do
        if not rawget(c, "abstract") and not seen[c] then
            seen[c] = true
            local name = rawget(c, "__name")
            if not name then
                error(c.__defined_at .. ": this user class has no name; give it one: "
                    .. "cicada.User:extend(\"Name\", { ... })", 0)
            end
            for _, o in ipairs(out) do
                if o.__name == name then
                    error(c.__defined_at .. ": two user classes are named '" .. name .. "'", 0)
                end
            end
            out[#out + 1] = c
        end
    end
    return out
end

local function check_class(c)
    local wt = c.wait_time
    if wt ~= nil and type(wt) ~= "function" then
        error(c.__defined_at .. ": wait_time must be a function, such as cicada.between(1, 2)", 0)
    end
    local ar = c.arrival_rate
    if ar ~= nil then
        if type(ar) == "number" then
            if not (ar > 0) then error(c.__defined_at .. ": arrival_rate must be above 0", 0) end
        elseif type(ar) ~= "table" or ar.__arrival ~= "ramping" then
            error(c.__defined_at .. ": arrival_rate is a number of iterations a second, or "
                .. "cicada.ramping_arrival_rate{...}", 0)
        end
        local mu = c.max_users
        if type(mu) ~= "number" or mu < 1 or mu ~= math.floor(mu) then
            error(c.__defined_at .. ": an arrival_rate class needs max_users, the users that run "
                .. "its iterations (a whole number of 1 or more)", 0)
        end
    end
    local w, fc = c.weight, c.fixed_count
    if type(w) ~= "number" or w < 0 then
        error(c.__defined_at .. ": weight must be a number of 0 or more", 0)
    end
    if type(fc) ~= "number" or fc < 0 or fc ~= math.floor(fc) then
        error(c.__defined_at .. ": fixed_count must be a whole number of 0 or more", 0)
    end
end

-- Parses the serialised options (a Lua table constructor made by the C side).
local function parse_options(src)
    if not src then return {} end
    local fn = assert(loadstring("return " .. src, "=options"))
    setfenv(fn, {})
    return fn()
end

-- ---- thresholds ----------------------------------------------------------------------------

local thresholds = require "cicada.thresholds"

local function stats_of(name, method)
    if name == nil then return env.stats.total end
    return env.stats:get(name, method)
end

-- The command line's checks (as locust-plugins') are thresholds on the total.
local function cli_checks(o)
    local spec = {}
    if o.check_fail_ratio and o.check_fail_ratio >= 0 then
        spec[#spec + 1] = "fail_ratio <= " .. o.check_fail_ratio
    end
    if o.check_avg_response_time and o.check_avg_response_time >= 0 then
        spec[#spec + 1] = "avg <= " .. o.check_avg_response_time
    end
    if o.check_rps and o.check_rps >= 0 then spec[#spec + 1] = "rps >= " .. o.check_rps end
    if #spec > 0 then thresholds.declare({ total = spec }) end
end

function rt.has_thresholds()
    return #thresholds.list > 0, (function()
        for _, t in ipairs(thresholds.list) do
            if t.abort then return true end
        end
        return false
    end)()
end

-- Checks the thresholds; returns whether all held and one line per threshold checked.
function rt.check_thresholds(final, elapsed)
    local results, all = thresholds.check(stats_of, final, elapsed or 0)
    local lines = {}
    for i, r in ipairs(results) do
        local t = r.threshold
        local v = r.value == nil and "no requests" or string.format("%.6g", r.value)
        lines[i] = string.format("%s  %s: %s (measured: %s)", r.ok and "PASS" or "FAIL", t.target,
                                 t.text, v)
    end
    return all, table.concat(lines, "\n")
end

-- The load shape of the script: an instance of the first shape class it returns or defines.
local shape
local function find_shape(result)
    local found
    if type(result) == "table" and not class.is_class(result) then
        for _, v in pairs(result) do
            if type(v) == "table" and rawget(v, "__kind") == "shape" and not rawget(v, "abstract") then
                found = found or v
            end
        end
    end
    if not found then
        for _, c in ipairs(class.registry) do
            if rawget(c, "__kind") == "shape" and not rawget(c, "abstract") then
                found = c
                break
            end
        end
    end
    if found then
        if type(found.tick) ~= "function" then
            error((rawget(found, "__defined_at") or "?") .. ": a load shape needs a tick() method", 0)
        end
        shape = setmetatable({}, found)
    end
end

function rt.has_shape()
    return shape ~= nil
end

function rt.shape_start()
    shape:reset_time()
end

-- The shape's next step: users, spawn rate, and the allowed class indexes (or nil), or nothing
-- when the test is to end.
function rt.shape_tick()
    local users, rate, classes_ = shape:tick()
    if users == nil then return nil end
    if type(users) ~= "number" or users < 0 then error("tick() returned a bad user count: " .. tostring(users), 0) end
    rate = rate or users
    if type(rate) ~= "number" or rate <= 0 then error("tick() returned a bad spawn rate: " .. tostring(rate), 0) end
    local allowed
    if classes_ ~= nil then
        allowed = {}
        for _, c in ipairs(classes_) do
            local name = type(c) == "table" and rawget(c, "__name") or c
            local found = false
            for i, info in ipairs(classes) do
                if info.name == name then
                    allowed[#allowed + 1] = i - 1
                    found = true
                end
            end
            if not found then error("tick() names a user class that does not run: " .. tostring(name), 0) end
        end
    end
    return math.floor(users), rate, allowed
end

function rt.load(path, cfg)
    math.randomseed(cfg.seed or os.time())
    env.role = cfg.role
    env.worker_index = cfg.role == "worker" and cfg.worker_index or nil
    env.threads = cfg.threads
    env.host = cfg.host
    env.parsed_options = parse_options(cfg.options)
    if cfg.role == "control" then cli_checks(env.parsed_options) end
    filter = { tags = words(cfg.tags), exclude = words(cfg.exclude_tags),
               equal_weights = env.parsed_options.equal_weights }

    events.is_signal = is_signal
    events.on_listener_error = function(name, err, tb)
        core.log("error", "Uncaught exception in event handler (" .. name .. "): " .. trim(tb or tostring(err)))
        core.listener_error()
    end

    local chunk, err = loadfile(path)
    if not chunk then error(err, 0) end
    local ok, result = xpcall(chunk, traceback)
    if not ok then error(result, 0) end
    -- a file of test functions (cicada.testing): a user class per test, or none for `cicada test`
    result = require("cicada.testing").adopt(result, path)

    local found = find_classes(result)
    find_shape(result)
    for _, c in ipairs(found) do
        all_names[#all_names + 1] = c.__name
    end

    local wanted = words(cfg.classes)
    if wanted then
        local by_name = {}
        for _, c in ipairs(found) do
            by_name[c.__name] = c
        end
        local missing, picked = {}, {}
        for _, n in ipairs(wanted) do
            if by_name[n] then picked[#picked + 1] = by_name[n] else missing[#missing + 1] = n end
        end
        if #missing > 0 then
            no_class_reason = "Unknown User(s): " .. table.concat(missing, ", ")
            return 0
        end
        found = picked
    end

    for _, c in ipairs(found) do
        check_class(c)
        c.environment = env
        if cfg.host then c.host = cfg.host end
        local validate = c.__validate -- a base class's checks (HttpUser needs a host)
        if validate then validate(c) end
        local node = class.compile(c, filter)
        if #node.tasks == 0 then
            if not filter.tags and not filter.exclude then
                error(c.__defined_at .. ": no tasks are defined on " .. c.__name .. ". Add one with "
                    .. c.__name .. ":task(function(self) ... end), or set its tasks attribute "
                    .. "(or mark it abstract = true if it is only meant to be extended)", 0)
            end
            core.log("warning", c.__name .. " has no tasks left after tag filtering; it will not run")
        elseif c.weight > 0 or c.fixed_count > 0 or c.arrival_rate then
            nodes[c] = node
            local arrival = c.arrival_rate
            classes[#classes + 1] = { cls = c, name = c.__name, node = node, arrival = arrival,
                                      weight = c.weight,
                                      -- an open-model class is a pool of max_users users
                                      fixed_count = arrival and c.max_users or c.fixed_count }
        end
    end
    if #classes == 0 then
        no_class_reason = #found == 0 and "No User class found!" or "No User class has tasks to run"
    end
    return #classes
end

-- `cicada test FILE` (src/runner/testcmd.c): runs the file's tests once; returns the exit code.
function rt.run_tests()
    return require("cicada.testing").run()
end

function rt.no_class_reason()
    return no_class_reason or "No User class found!"
end

-- {name, weight, fixed_count, arrival} of each class, in spawn order; arrival is the rate
-- of an open-model class ({start_rate, stages} when it ramps).
function rt.classes_info()
    local out = {}
    for i, c in ipairs(classes) do
        out[i] = { name = c.name, weight = c.weight, fixed_count = c.fixed_count, arrival = c.arrival }
    end
    return out
end

function rt.class_names()
    return all_names
end

-- ---- task ratios (--show-task-ratio) ------------------------------------------------------

-- The users per class for |num_users| (Locust's _calc_distribution).
local function distribution(num_users)
    local fixed, total_weight = 0, 0
    for _, c in ipairs(classes) do
        if c.fixed_count > 0 then fixed = fixed + c.fixed_count else total_weight = total_weight + c.weight end
    end
    if not num_users or num_users <= 0 then num_users = fixed > 0 and 1 or total_weight end
    local weighted = math.max(num_users - fixed, 0)
    local d = {}
    for _, c in ipairs(classes) do
        local n = c.fixed_count > 0 and c.fixed_count or (c.weight / total_weight) * weighted
        d[c.name] = math.floor(n + 0.5)
    end
    return d
end

local function ratio_tree(num_users, total_mode)
    local d = distribution(num_users)
    local count = 0
    for _, n in pairs(d) do
        count = count + n
    end
    if count == 0 then count = 1 end
    local out = {}
    for _, c in ipairs(classes) do
        local r = d[c.name] / count
        out[#out + 1] = { name = c.name, ratio = r, tasks = class.ratios(c.node, r, total_mode) }
    end
    return out
end

local function print_tree(lines, list, level)
    for _, v in ipairs(list) do
        local pad = string.rep("  ", level)
        lines[#lines + 1] = string.format(" %-10s %-50s", pad .. string.format("%-6.1f", v.ratio * 100), pad .. v.name)
        if v.tasks then print_tree(lines, v.tasks, level + 1) end
    end
end

local function json_tree(list)
    local parts = {}
    for _, v in ipairs(list) do
        local s = string.format("%q: {\"ratio\": %.17g", v.name, v.ratio)
        if v.tasks then s = s .. ", \"tasks\": " .. json_tree(v.tasks) end
        parts[#parts + 1] = s .. "}"
    end
    return "{" .. table.concat(parts, ", ") .. "}"
end

function rt.task_ratio(num_users, as_json)
    if as_json then
        return "{\"per_class\": " .. json_tree(ratio_tree(num_users, false)) .. ", \"total\": "
            .. json_tree(ratio_tree(num_users, true)) .. "}"
    end
    local lines = { "", " Task ratio per User class", string.rep("-", 80) }
    print_tree(lines, ratio_tree(num_users, false), 0)
    lines[#lines + 1] = ""
    lines[#lines + 1] = " Total task ratio"
    lines[#lines + 1] = string.rep("-", 80)
    print_tree(lines, ratio_tree(num_users, true), 0)
    return table.concat(lines, "\n")
end

-- ---- events, shared data, exit code ------------------------------------------------------

-- Fires |name| with the environment added to |args|. Runs in a fiber: listeners may wait.
function rt.fire(name, args)
    args = args or {}
    args.environment = env
    local hook = events[name]
    if hook then hook:fire(args, name == "quitting") end
end

-- A new host for every user class (the web UI's start form); users created from now on use it.
function rt.set_host(host)
    env.host = host
    for _, c in ipairs(classes) do
        c.cls.host = host
    end
end

function rt.exit_code()
    return env.process_exit_code
end

-- cicada.shared as Lua source, for the worker threads; plain values and tables only.
local function dump(v, seen)
    local t = type(v)
    if t == "string" then return string.format("%q", v) end
    if t == "number" then
        if v ~= v then return "0/0" end
        if v == math.huge then return "math.huge" end
        if v == -math.huge then return "-math.huge" end
        return string.format("%.17g", v)
    end
    if t == "boolean" or t == "nil" then return tostring(v) end
    if t == "table" then
        if seen[v] then error("cicada.shared holds a table twice (or inside itself)", 0) end
        seen[v] = true
        local parts = {}
        for k, x in pairs(v) do
            parts[#parts + 1] = "[" .. dump(k, seen) .. "]=" .. dump(x, seen)
        end
        return "{" .. table.concat(parts, ",") .. "}"
    end
    error("cicada.shared can only hold strings, numbers, booleans and tables, not a " .. t, 0)
end

function rt.shared_dump()
    if next(cicada.shared) == nil then return nil end
    return dump(cicada.shared, {})
end

function rt.shared_load(src)
    local fn = assert(loadstring("return " .. src, "=shared"))
    setfenv(fn, { math = { huge = math.huge } })
    local t = fn()
    for k in pairs(cicada.shared) do
        cicada.shared[k] = nil
    end
    for k, v in pairs(t) do
        cicada.shared[k] = v
    end
end

-- The environment's statistics on the control thread, as Locust's environment.stats.
local function entry_methods(e, name, method)
    if e then
        e.get_response_time_percentile = function(_, p)
            return core.percentile(p, name, method)
        end
    end
    return e
end

env.stats = setmetatable({
    get = function(_, name, method)
        return entry_methods(core.stats(name, method), name, method)
    end,
}, {
    __index = function(_, k)
        if k == "total" then return entry_methods(core.stats()) end
    end,
})

return rt
