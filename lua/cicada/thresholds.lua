-- SPDX-License-Identifier: MIT
-- cicada.thresholds: pass/fail criteria for CI, as k6's thresholds and locust-plugins' checks.
--
--   cicada.thresholds {
--       total = { "p95 < 200", "fail_ratio < 0.01" },          -- the Aggregated entry
--       ["GET /items"] = { "p99 < 300", "rps > 10" },          -- "TYPE name"
--       ["/checkout"] = { { "fail_ratio < 0.05", abort = true, after = 10 } },  -- any type
--   }
--
-- An expression is `metric operator number`. Metrics: p50, p90, p95, p99, p99.9 (any
-- percentile), median, avg, min, max (milliseconds), rps, fail_per_s, fail_ratio, requests,
-- failures. Operators: < <= > >= == !=. Every threshold is checked when the run ends: one that
-- does not hold makes the exit code 3. With abort = true it is also checked every second (from
-- `after` seconds into the test) and ends the run as soon as it does not hold.

local M = { list = {} }

local OPS = {
    ["<"] = function(a, b) return a < b end,
    ["<="] = function(a, b) return a <= b end,
    [">"] = function(a, b) return a > b end,
    [">="] = function(a, b) return a >= b end,
    ["=="] = function(a, b) return a == b end,
    ["!="] = function(a, b) return a ~= b end,
}

local METRICS = {
    avg = "avg_response_time", min = "min_response_time", max = "max_response_time",
    median = "median_response_time", rps = "total_rps", fail_per_s = "total_fail_per_sec",
    fail_ratio = "fail_ratio", requests = "num_requests", failures = "num_failures",
}

-- Parses "p95 < 200" into { metric, percentile, op, value }, or raises naming the problem.
function M.parse(expr)
    if type(expr) ~= "string" then error("a threshold is a string such as \"p95 < 200\"", 0) end
    local metric, op, value = expr:match("^%s*([%w_.]+)%s*([<>=!]=?)%s*(%-?[%d.]+)%s*$")
    if not metric or not OPS[op] or not tonumber(value) then
        error("cannot read the threshold '" .. expr .. "': write it as `metric operator number`, "
            .. "e.g. \"p95 < 200\"", 0)
    end
    local t = { text = expr, op = op, value = tonumber(value) }
    local p = metric:match("^p(%d+%.?%d*)$")
    if p then
        t.percentile = tonumber(p) / 100
        if not t.percentile or t.percentile > 1 then error("bad percentile in '" .. expr .. "'", 0) end
    elseif METRICS[metric] then
        t.field = METRICS[metric]
    else
        error("unknown metric '" .. metric .. "' in '" .. expr .. "' (p95, avg, max, rps, "
            .. "fail_ratio...)", 0)
    end
    return t
end

-- Declares thresholds (see above); called by scripts as cicada.thresholds{...}.
function M.declare(spec)
    if type(spec) ~= "table" then error("thresholds: give a table of target = { expressions }", 2) end
    local info = debug.getinfo(2, "Sl")
    local where = info and (info.short_src .. ":" .. info.currentline) or "?"
    for target, exprs in pairs(spec) do
        if type(target) ~= "string" or type(exprs) ~= "table" then
            error(where .. ": thresholds: each target (\"total\", \"GET /x\" or \"/x\") takes a list", 0)
        end
        local method, name = target:match("^(%u+) (.+)$")
        for _, e in ipairs(exprs) do
            local opts = type(e) == "table" and e or { e }
            local ok, t = pcall(M.parse, opts[1])
            if not ok then error(where .. ": " .. t, 0) end
            t.target = target
            t.total = target == "total"
            t.method, t.name = method, method and name or target
            t.abort = opts.abort == true
            t.after = tonumber(opts.after) or 0
            M.list[#M.list + 1] = t
        end
    end
    table.sort(M.list, function(a, b)
        return a.target .. a.text < b.target .. b.text
    end)
end

-- The measured value of a threshold from |stats| (a function (name, method) -> entry, nil for
-- the total), or nil when its entry has no requests.
local function measure(t, stats)
    local e
    if t.total then
        e = stats()
    elseif t.method then
        e = stats(t.name, t.method)
    else
        e = stats(t.name, nil)
    end
    if not e or e.num_requests == 0 then return nil end
    if t.percentile then return e:get_response_time_percentile(t.percentile) end
    return e[t.field]
end

-- Checks every threshold (only the aborting ones, and only after their delay, unless |final|).
-- Returns the results { threshold, value, ok } and whether all held.
function M.check(stats, final, elapsed)
    local results, all = {}, true
    for _, t in ipairs(M.list) do
        if final or (t.abort and elapsed >= t.after) then
            local v = measure(t, stats)
            -- a target without requests cannot hold a bound on its requests
            local ok = v ~= nil and OPS[t.op](v, t.value)
            if v == nil and (t.field == "num_requests" or t.field == "num_failures") then
                ok = OPS[t.op](0, t.value)
                v = 0
            end
            results[#results + 1] = { threshold = t, value = v, ok = ok }
            all = all and ok
        end
    end
    return results, all
end

return M
