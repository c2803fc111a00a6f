-- SPDX-License-Identifier: MIT
-- cicada.class: user classes and task sets in Locust's model.
--
-- A class is a table; subclasses find what they do not define in their parent through the
-- metatable, and instances find their methods in their class. Classes are made with
-- Parent:extend("Name", { attributes }) and get tasks with Class:task(...) or a `tasks`
-- attribute. compile() turns a class into the tree of weighted tasks a user runs, with tag
-- filters applied.
-- Pure Lua, so it is unit tested without the cicada binary.

local M = {}

local registry = {} -- every class extend() made, in order of definition
M.registry = registry

local function where(level)
    local info = debug.getinfo(level, "Sl")
    if not info then return "?" end
    return info.short_src .. ":" .. (info.currentline or 0)
end

-- The roots. Their fields are the defaults every class inherits.
local function root(kind, name)
    local r = { __kind = kind, __name = name, __own_tasks = {}, __root = true, abstract = true }
    r.__index = r
    return r
end

local User = root("user", "User")
local TaskSet = root("taskset", "TaskSet")
local SequentialTaskSet = root("taskset", "SequentialTaskSet")
SequentialTaskSet.__sequential = true
local LoadTestShape = root("shape", "LoadTestShape")
M.User, M.TaskSet, M.SequentialTaskSet = User, TaskSet, SequentialTaskSet
M.LoadTestShape = LoadTestShape

User.weight = 1
User.fixed_count = 0

function User.on_start() end
function User.on_stop() end
function TaskSet.on_start() end
function TaskSet.on_stop() end
SequentialTaskSet.on_start = TaskSet.on_start
SequentialTaskSet.on_stop = TaskSet.on_stop

function M.is_class(v)
    return type(v) == "table" and rawget(v, "__kind") ~= nil
end

function M.is_taskset(v)
    return M.is_class(v) and rawget(v, "__kind") == "taskset"
end

-- Parent:extend(["Name",] [attributes]) -> a new class inheriting from Parent.
local function extend(parent, name, attrs)
    if type(name) == "table" and attrs == nil then
        name, attrs = nil, name
    end
    if name ~= nil and type(name) ~= "string" then
        error("extend: the class name must be a string", 2)
    end
    if attrs ~= nil and type(attrs) ~= "table" then
        error("extend: the attributes must be a table", 2)
    end
    if not M.is_class(parent) then
        error("extend: call it on a class, as Parent:extend(...)", 2)
    end
    local cls = {}
    for k, v in pairs(attrs or {}) do
        cls[k] = v
    end
    cls.__index = cls
    cls.__name = name
    cls.__super = parent
    cls.__kind = rawget(parent, "__kind")
    cls.__own_tasks = {}
    cls.__defined_at = where(3)
    cls.__sequential = rawget(parent, "__sequential") or nil
    if rawget(cls, "abstract") == nil then cls.abstract = false end
    setmetatable(cls, parent)
    registry[#registry + 1] = cls
    return cls
end

-- Class:task([name], [weight], [options], fn_or_taskset): declares a task, the counterpart of
-- Locust's @task. Arguments are told apart by type; options may hold weight, name and tags.
-- Returns the function or TaskSet, so it can be kept in a local.
local function task(cls, ...)
    if not M.is_class(cls) then error("task: call it on a class, as Class:task(...)", 2) end
    local spec = { weight = 1, defined_at = where(3) }
    for i = 1, select("#", ...) do
        local a = select(i, ...)
        local t = type(a)
        if t == "number" then
            spec.weight = a
        elseif t == "string" then
            spec.name = a
        elseif t == "function" then
            spec.fn = a
        elseif M.is_taskset(a) then
            spec.set = a
        elseif t == "table" then
            for k, v in pairs(a) do
                spec[k] = v
            end
        else
            error("task: unexpected argument of type " .. t, 2)
        end
    end
    if not spec.fn and not spec.set then
        error("task: give the task's function, or a TaskSet", 2)
    end
    if type(spec.weight) ~= "number" or spec.weight < 0 or spec.weight ~= math.floor(spec.weight) then
        error("task: the weight must be a whole number of 0 or more", 2)
    end
    if spec.tags ~= nil and type(spec.tags) ~= "table" then
        error("task: tags must be a list of strings", 2)
    end
    local own = rawget(cls, "__own_tasks")
    own[#own + 1] = spec
    return spec.fn or spec.set
end

for _, r in ipairs({ User, TaskSet, SequentialTaskSet }) do
    r.extend = extend
    r.task = task
end
LoadTestShape.extend = extend

function M.class_name(cls)
    return rawget(cls, "__name")
end

-- ---- compiling a class into its task tree ----------------------------------------------------

local function fail(cls, msg)
    error((rawget(cls, "__defined_at") or "?") .. ": " .. msg, 0)
end

local function method_name(cls, fn)
    local c = cls
    while c do
        for k, v in pairs(c) do
            if v == fn and type(k) == "string" and k:sub(1, 2) ~= "__" then return k end
        end
        c = rawget(c, "__super")
    end
end

local function spec_name(cls, spec)
    if spec.name then return spec.name end
    if spec.set then
        return rawget(spec.set, "__name") or ("TaskSet@" .. (rawget(spec.set, "__defined_at") or "?"))
    end
    local m = method_name(cls, spec.fn)
    if m then return m end
    local info = debug.getinfo(spec.fn, "S")
    return info.short_src .. ":" .. info.linedefined
end

-- One entry of a `tasks` attribute: a function, a TaskSet, a method name, or {that, weight}.
local function normalize(cls, t, weight)
    if type(t) == "table" and not M.is_class(t) then
        if #t ~= 2 or type(t[2]) ~= "number" then
            fail(cls, "tasks: a weighted entry is written {task, weight}")
        end
        return normalize(cls, t[1], t[2])
    end
    weight = weight or 1
    if type(weight) ~= "number" or weight < 0 or weight ~= math.floor(weight) then
        fail(cls, "tasks: a weight must be a whole number of 0 or more")
    end
    if type(t) == "function" then return { fn = t, weight = weight } end
    if M.is_taskset(t) then return { set = t, weight = weight } end
    if type(t) == "string" then
        local fn = cls[t]
        if type(fn) ~= "function" then
            fail(cls, "tasks: there is no method '" .. t .. "' in this class")
        end
        return { fn = fn, weight = weight, name = t }
    end
    fail(cls, "tasks: an entry must be a function, a TaskSet, a method name or {task, weight}")
end

local function collect(cls)
    local list = {}
    local super = rawget(cls, "__super")
    if super then
        for _, s in ipairs(collect(super)) do
            list[#list + 1] = s
        end
    end
    local tasks = rawget(cls, "tasks")
    if tasks ~= nil then
        if type(tasks) ~= "table" then fail(cls, "tasks must be a table") end
        for _, t in ipairs(tasks) do
            list[#list + 1] = normalize(cls, t)
        end
        -- the map form {task = weight}; ordered by name so runs are reproducible
        local keyed = {}
        for k, v in pairs(tasks) do
            if type(k) ~= "number" then keyed[#keyed + 1] = normalize(cls, k, v) end
        end
        table.sort(keyed, function(a, b)
            return spec_name(cls, a) < spec_name(cls, b)
        end)
        for _, s in ipairs(keyed) do
            list[#list + 1] = s
        end
    end
    for _, s in ipairs(rawget(cls, "__own_tasks") or {}) do
        list[#list + 1] = s
    end
    return list
end

local function set_of(list)
    local s = {}
    for _, v in ipairs(list or {}) do
        s[v] = true
    end
    return s
end

local function union(a, b)
    if not b or next(b) == nil then return a end
    local u = {}
    for k in pairs(a) do
        u[k] = true
    end
    for _, v in ipairs(b) do
        u[v] = true
    end
    return u
end

local function intersects(tags, wanted)
    for t in pairs(tags) do
        if wanted[t] then return true end
    end
    return false
end

-- filter: { tags = set or nil, exclude = set or nil, equal_weights = bool }
local function compile(cls, filter, ctx_tags, depth)
    if depth > 32 then fail(cls, "task sets nest more than 32 deep (does a TaskSet contain itself?)") end
    local node = { class = cls, tasks = {}, cum = {}, total = 0, sequential = rawget(cls, "__sequential") or cls.__sequential }
    for _, spec in ipairs(collect(cls)) do
        local entry
        local weight = filter.equal_weights and 1 or spec.weight
        if spec.set then
            local tags = union(union(ctx_tags, spec.tags), spec.set.tags)
            local sub = compile(spec.set, filter, tags, depth + 1)
            if #sub.tasks > 0 then
                entry = { set = spec.set, node = sub, name = spec_name(cls, spec), weight = weight }
            end
        else
            local tags = union(ctx_tags, spec.tags)
            local pass = true
            if filter.tags then pass = intersects(tags, filter.tags) end
            if pass and filter.exclude then pass = not intersects(tags, filter.exclude) end
            if pass then entry = { fn = spec.fn, name = spec_name(cls, spec), weight = weight } end
        end
        if entry and entry.weight > 0 then
            node.tasks[#node.tasks + 1] = entry
            node.total = node.total + entry.weight
            node.cum[#node.tasks] = node.total
        end
    end
    if node.sequential then
        -- a weight repeats a task that many times in a row
        local seq = {}
        for _, e in ipairs(node.tasks) do
            for _ = 1, e.weight do
                seq[#seq + 1] = e
            end
        end
        node.seq = seq
    end
    return node
end

-- Compiles a user class. filter.tags / filter.exclude are lists of tag names (or nil).
function M.compile(cls, filter)
    filter = filter or {}
    local f = {
        tags = filter.tags and set_of(filter.tags),
        exclude = filter.exclude and set_of(filter.exclude),
        equal_weights = filter.equal_weights,
    }
    return compile(cls, f, set_of(cls.tags), 1)
end

-- Picks a task by weight; |r| is uniform in [0, 1).
function M.pick(node, r)
    local tasks, n = node.tasks, #node.tasks
    if n == 1 then return tasks[1] end
    local x = r * node.total
    local cum = node.cum
    if n <= 8 then
        for i = 1, n do
            if x < cum[i] then return tasks[i] end
        end
        return tasks[n]
    end
    local lo, hi = 1, n
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if x < cum[mid] then hi = mid else lo = mid + 1 end
    end
    return tasks[lo]
end

-- Task ratios as Locust's --show-task-ratio computes them: a list of {name, ratio, tasks}, a
-- task listed once however often it appears. |total_mode| scales by the parent's ratio.
function M.ratios(node, parent_ratio, total_mode)
    local out, by_name = {}, {}
    local base = total_mode and parent_ratio or 1.0
    for _, e in ipairs(node.tasks) do
        local d = by_name[e.name]
        if not d then
            d = { name = e.name, ratio = 0 }
            by_name[e.name] = d
            out[#out + 1] = d
        end
        d.ratio = d.ratio + e.weight / node.total * base
        if e.node then d.tasks = M.ratios(e.node, d.ratio, total_mode) end
    end
    return out
end

return M
