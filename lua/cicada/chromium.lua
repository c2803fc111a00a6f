-- SPDX-License-Identifier: MIT
-- cicada.chromium: what both browser users share (cicada.webdriver's WebdriverUser and
-- cicada.browser's BrowserUser): where Chromium and chromedriver are, the flags a headless
-- Chromium runs with, starting a program and waiting for what it writes, the Navigation Timing
-- API's page-load timings as request events, and the class hook that opens a user's browser
-- before its on_start and always closes it after its on_stop. Not part of the script API.

local core = require "cicada.core"
local bcore = require "cicada.browser.core"
local signals = require "cicada.signals"
local url = require "cicada.url"

local M = {}

local record, monotonic = core.record, core.monotonic
local is_signal, checked = signals.is_signal, signals.checked
local format = string.format

M.CHROMIUM = os.getenv("CICADA_CHROMIUM") or "/usr/bin/chromium"
M.CHROMEDRIVER = os.getenv("CICADA_CHROMEDRIVER") or "/usr/bin/chromedriver"

-- Request types of the entries the browser users record.
M.LOAD, M.DCL, M.TTFB = "browser", "browser-dcl", "browser-ttfb"
M.RESOURCE = "browser-resource"

function M.sleep(s)
    return checked(core.sleep(s))
end

-- The flags every headless Chromium gets: no sandbox (cicada often runs as root, where
-- Chromium refuses its sandbox; Playwright does the same), nothing that talks to the outside
-- world on its own, no first-run screens.
local BASE_FLAGS = {
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--disable-breakpad",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--no-first-run", "--no-default-browser-check", "--no-pings", "--mute-audio",
    "--metrics-recording-only", "--password-store=basic", "--use-mock-keychain",
    "--hide-scrollbars",
}

function M.flags(user)
    local out = {}
    if user.headless ~= false then out[1] = "--headless=new" end
    for _, v in ipairs(BASE_FLAGS) do
        out[#out + 1] = v
    end
    local w, h = 1280, 800
    if type(user.window_size) == "table" then w, h = user.window_size[1], user.window_size[2] end
    out[#out + 1] = format("--window-size=%d,%d", w, h)
    for _, v in ipairs(user.browser_args or {}) do
        out[#out + 1] = v
    end
    return out
end

-- The environment a browser (or chromedriver, and so its browsers) runs with: its temporary
-- files (shared memory under --disable-dev-shm-usage) and its crash handler's database in its
-- own scratch directory, which goes with it, not in /tmp or the user's home.
function M.scratch_env(dir)
    return { TMPDIR = dir, XDG_CONFIG_HOME = dir .. "/config" }
end

-- Reads a whole small file, or nil.
function M.read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

-- Waits until check() returns a value (polling every 50 ms) while proc lives, up to timeout
-- seconds. Returns the value, or nil and why.
function M.wait_output(proc, timeout, what, check, log)
    local deadline = monotonic() + timeout
    while true do
        local v = check()
        if v then return v end
        if not proc:alive() then
            local tail = log and M.read_file(log) or ""
            tail = tail:sub(-400):gsub("%s+$", "")
            return nil, what .. " exited at start" .. (tail ~= "" and (": " .. tail) or "")
        end
        if monotonic() > deadline then
            return nil, format("%s did not start within %g s", what, timeout)
        end
        M.sleep(0.05)
    end
end

-- Joins a path to the user's host the way HttpUser does ("http://h/app" .. "/items"); a full
-- URL (or about:, data:) is taken as it is.
function M.full_url(host, u)
    if type(u) ~= "string" or u == "" then error("a URL or a path is needed", 3) end
    if u:match("^%a[%w+.-]*:") then return u end
    if not host then
        error("a path needs a host: set host on the class or pass -H (or give a full URL)", 3)
    end
    return (host:gsub("/$", "")) .. (u:sub(1, 1) == "/" and u or ("/" .. u))
end

-- The Navigation Timing entry of the current document, as a JavaScript expression.
M.NAV_TIMING = [[(() => {
  const e = performance.getEntriesByType("navigation")[0];
  if (!e) return null;
  return { url: e.name, ttfb: e.responseStart, dcl: e.domContentLoadedEventEnd,
           load: e.loadEventEnd, duration: e.duration, size: e.encodedBodySize || 0,
           status: e.responseStatus || 0 };
})()]]

-- Records a page load from its Navigation Timing entry t (see NAV_TIMING): the load time
-- (loadEventEnd, else duration, else |fallback_ms|) as "browser", DOMContentLoaded and time to
-- first byte as "browser-dcl" and "browser-ttfb". An HTTP status of 400 or more fails the
-- "browser" entry. Returns the failure's text, or nil.
function M.record_timings(name, t, fallback_ms)
    if type(t) ~= "table" then
        record(M.LOAD, name, fallback_ms or 0, 0, nil)
        return nil
    end
    local num = function(v) return type(v) == "number" and v > 0 and v or nil end
    local load = num(t.load) or num(t.duration) or fallback_ms or 0
    local status = tonumber(t.status) or 0
    local err = status >= 400 and ("HTTP " .. status) or nil
    record(M.LOAD, name, load, tonumber(t.size) or 0, err)
    if num(t.dcl) then record(M.DCL, name, t.dcl, 0, nil) end
    if num(t.ttfb) then record(M.TTFB, name, t.ttfb, 0, nil) end
    return err
end

-- Reads the timings with |eval| (a function running NAV_TIMING in the page and returning its
-- value or nil, err), waiting up to |wait| seconds (default 1) for loadEventEnd: it is set only
-- once the load event's handlers have run, which can be just after the browser says the page
-- has loaded, or later for a load a click started. Errors while a new document replaces the
-- old one are waited out the same way.
function M.timings(eval, wait)
    local deadline = monotonic() + (wait or 1)
    local t, err
    while true do
        t, err = eval()
        if type(t) == "table" and type(t.load) == "number" and t.load > 0 then break end
        if monotonic() >= deadline then break end
        M.sleep(0.025)
    end
    if type(t) ~= "table" then return nil, err end
    return t
end

-- ---- opening and closing with the user ----------------------------------------------------

local originals = setmetatable({}, { __mode = "k" }) -- wrapper -> the function it wraps
local rt_ok, rt = pcall(require, "cicada.runtime")
local handler = rt_ok and rt.handler or function(e) return e end

-- Makes cls open the user's browser before its own on_start runs and close it after its own
-- on_stop, whatever happens: a failing on_start (after which cicada runs no on_stop), a
-- failing on_stop, a user stopped or killed at the end of the test.
function M.hook_class(cls, open, close)
    local start, stop = cls.on_start, cls.on_stop
    start = originals[start] or start
    stop = originals[stop] or stop
    local function on_start(self)
        open(self)
        local ok, e = xpcall(start, handler, self)
        if not ok then
            if not is_signal(e) then close(self) end -- no on_stop follows
            error(e, 0)
        end
    end
    local function on_stop(self)
        local ok, e = xpcall(stop, handler, self)
        close(self)
        if not ok then error(e, 0) end
    end
    originals[on_start], originals[on_stop] = start, stop
    rawset(cls, "on_start", on_start)
    rawset(cls, "on_stop", on_stop)
end

-- The __validate of a browser user class: its host must parse, and open/close wrap its
-- on_start and on_stop (hook_class).
function M.validate_class(cls, open, close)
    if cls.host then
        local ok, err = url.parse(cls.host)
        if not ok then error((rawget(cls, "__defined_at") or "?") .. ": bad host: " .. err, 0) end
    end
    M.hook_class(cls, open, close)
end

-- Runs fn, and again if a kill interrupts it: closing must finish even for a user killed at
-- the end of the test (after a kill is delivered, waits work again).
function M.finish(fn, ...)
    for _ = 1, 2 do
        local ok, e = pcall(fn, ...)
        if ok or not is_signal(e) then return end
    end
end

M.core = bcore
return M
