-- check.lua: the few assertions the pure-Lua unit tests need; a failing test exits 1.
local M = { failures = 0, count = 0 }

function M.test(name, fn)
    M.count = M.count + 1
    local ok, err = xpcall(fn, debug.traceback)
    if ok then
        print("ok   " .. name)
    else
        M.failures = M.failures + 1
        print("FAIL " .. name .. "\n" .. tostring(err))
    end
end

function M.eq(got, want, what)
    if got ~= want then
        error((what or "value") .. ": expected " .. tostring(want) .. ", got " .. tostring(got), 2)
    end
end

function M.near(got, want, tol, what)
    if math.abs(got - want) > tol then
        error((what or "value") .. ": expected " .. want .. " +- " .. tol .. ", got " .. got, 2)
    end
end

function M.raises(fn, pattern)
    local ok, err = pcall(fn)
    if ok then error("expected an error matching '" .. pattern .. "'", 2) end
    if not tostring(err):find(pattern) then
        error("error '" .. tostring(err) .. "' does not match '" .. pattern .. "'", 2)
    end
end

function M.done()
    print(string.format("%d tests, %d failed", M.count, M.failures))
    os.exit(M.failures == 0 and 0 or 1)
end

return M
