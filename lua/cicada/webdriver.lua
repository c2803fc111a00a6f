-- SPDX-License-Identifier: MIT
-- cicada.webdriver: WebdriverUser, a real headless Chromium per user, driven over W3C WebDriver
-- (JSON over HTTP, on cicada's own HTTP client) by chromedriver. Each thread keeps a few
-- chromedriver processes, each serving up to sessions_per_driver sessions. A user's session
-- opens before its on_start and is always deleted after its on_stop. Page loads are recorded
-- from the Navigation Timing API; see docs/browsers.md.

local core = require "cicada.core"
local http = require "cicada.http"
local class = require "cicada.class"
local url = require "cicada.url"
local chromium = require "cicada.chromium"
local cjson = require "cjson"

local M = {}

local bcore = chromium.core
local scratch_env = chromium.scratch_env
local record, monotonic = core.record, core.monotonic
local format, concat = string.format, table.concat
local EMPTY = {}
local NULL = cjson.null

-- The W3C element reference key (WebDriver §12.1).
local ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
M.ELEMENT = ELEMENT

-- Request type of recorded WebDriver commands (and of failed ones, always recorded).
M.COMMAND = "webdriver"

-- ---- chromedriver processes, shared by this thread's users -------------------------------------

local drivers = {}
M._drivers = drivers

local function start_driver(d, timeout)
    local dir, err = bcore.mkdtemp("cicada-chromedriver-")
    if not dir then return nil, err end
    d.dir = dir
    local log = dir .. "/chromedriver.log"
    local proc, perr = bcore.spawn({ path = d.path, args = { "--port=0" }, log = log, scratch = dir,
                                     env = scratch_env(dir) })
    if not proc then
        bcore.rmtree(dir)
        return nil, perr
    end
    d.proc = proc
    local port, werr = chromium.wait_output(proc, timeout, "chromedriver", function()
        local s = chromium.read_file(log)
        return s and tonumber(s:match("started successfully on port (%d+)"))
    end, log)
    if not port then return nil, werr end
    d.url = "http://127.0.0.1:" .. port
    return true
end

local function drop_driver(d)
    d.dead = true
    if d.proc then d.proc:stop() end
    for i, x in ipairs(drivers) do
        if x == d then
            table.remove(drivers, i)
            break
        end
    end
end

-- A chromedriver with a free session slot (the slot is taken), started if none has one.
local function acquire_driver(path, per_driver, timeout)
    for _, d in ipairs(drivers) do
        if d.path == path and not d.dead and d.sessions < per_driver then
            d.sessions = d.sessions + 1
            while d.starting do
                local ok, e = pcall(chromium.sleep, 0.02)
                if not ok then
                    d.sessions = d.sessions - 1
                    error(e, 0)
                end
            end
            if not d.dead and d.proc:alive() then return d end
            d.sessions = d.sessions - 1
            if not d.dead then drop_driver(d) end
            break
        end
    end
    local d = { path = path, sessions = 1, starting = true, n = 0 }
    drivers[#drivers + 1] = d
    local ok, res, err = pcall(start_driver, d, timeout)
    d.starting = false
    if not ok or not res then
        drop_driver(d)
        if not ok then error(res, 0) end -- killed while starting
        return nil, err
    end
    return d
end

local function release_driver(d)
    d.sessions = d.sessions - 1
end

-- ---- the browser ----------------------------------------------------------------------------

local Browser = {}
Browser.__index = Browser
M.Browser = Browser

local Element = {}
Element.__index = Element
M.Element = Element

-- A browser for |user| (a WebdriverUser, whose attributes configure it); not yet open.
function M.new(user)
    return setmetatable({ user = user, record_commands = user.record_commands }, Browser)
end

local function first_line(s)
    s = tostring(s or "")
    s = s:match("^[^\n]*")
    return (s:gsub("%s*%(Session info:.*%)%s*$", ""))
end

-- Elements travel as WebDriver element references, wherever they are in a value: an argument
-- can be a list of elements (find_all's), or a table holding some. Tables are copied, never
-- changed; nesting deeper than MAX_DEPTH (or a cycle) is an error.
local MAX_DEPTH = 32

local function to_wire(v, depth)
    if type(v) ~= "table" then return v end
    if getmetatable(v) == Element then return { [ELEMENT] = v.id } end
    if depth >= MAX_DEPTH then error("execute: an argument nested too deep (or a cycle)", 0) end
    local out = {}
    for k, x in pairs(v) do
        out[k] = to_wire(x, depth + 1)
    end
    return out
end

-- The arguments list of a script: n values, a nil one as null.
local function encode_args(n, ...)
    local parts = {}
    for i = 1, n do
        local v = select(i, ...)
        parts[i] = v == nil and "null" or cjson.encode(to_wire(v, 0))
    end
    return "[" .. concat(parts, ",") .. "]"
end

local JSON_HEADERS = { ["Content-Type"] = "application/json" }

-- One WebDriver exchange: value | nil, error, ms. |body| is a table or a JSON text.
function Browser:_http(method, path, body)
    local h = self.http
    if not h then return nil, "the browser is closed", 0 end
    if type(body) == "table" then body = cjson.encode(body) end
    local t0 = monotonic()
    local resp = h:send(method, path, body and { data = body, headers = JSON_HEADERS } or nil)
    local ms = (monotonic() - t0) * 1000
    if resp.error then
        local d = self.driver
        if d and not d.proc:alive() then -- the driver died: the next command starts over
            drop_driver(d)
            self.session = nil
        end
        return nil, "chromedriver: " .. tostring(resp.error), ms
    end
    local ok, doc = pcall(cjson.decode, resp.text or "")
    if not ok or type(doc) ~= "table" then
        return nil, format("chromedriver: HTTP %d with a body that is not JSON", resp.status_code), ms
    end
    local v = doc.value
    if resp.status_code >= 400 or (type(v) == "table" and v.error) then
        local e = type(v) == "table" and v or EMPTY
        local code = tostring(e.error)
        local msg = tostring(e.error or ("HTTP " .. resp.status_code))
        if e.message then
            local m = first_line(e.message)
            if m == msg then
                -- only the code: the reason is on the next line ("session not created\nfrom
                -- unknown error: no chrome binary at /x")
                local why = tostring(e.message):match("^[^\n]*\n([^\n]+)")
                if why then m = m .. ": " .. first_line(why:gsub("^from [%w ]+: ", "")) end
            end
            -- chromedriver's messages mostly start with the error code already
            msg = m:sub(1, #msg) == msg and m or (msg .. ": " .. m)
        end
        if code == "invalid session id" or code:find("^disconnected")
            or code:find("^chrome not reachable") or msg:find("tab crashed", 1, true) then
            -- the browser or its page is gone: the next command opens a new session
            self.lost = self.session
            self.session = nil
        end
        return nil, msg, ms
    end
    if v == NULL then v = nil end
    return v, nil, ms
end

-- A command of the session, recorded as "webdriver" <name> when the browser records commands,
-- and always when it fails. opts.name renames it; false records nothing.
function Browser:_cmd(name, opts, method, path, body)
    if not self.session then
        local ok, err = self:open()
        if not ok then
            if opts.name ~= false then record(M.COMMAND, opts.name or name, 0, 0, err) end
            return nil, err
        end
    end
    local v, err, ms = self:_http(method, self.sp .. path, body)
    local rname = opts.name
    if rname == nil then rname = name end
    if rname and (err or self.record_commands) then record(M.COMMAND, rname, ms, 0, err) end
    return v, err
end

-- Opens the session (on_start does it): a chromedriver of the thread, a fresh profile.
function Browser:open()
    if self.session then return true end
    if self.driver then self:close() end -- what is left of a session whose browser went away
    local u = self.user
    local t0 = monotonic()
    local d, err = acquire_driver(u.chromedriver or chromium.CHROMEDRIVER,
        u.sessions_per_driver or 8, u.start_timeout or 60)
    if not d then
        record(M.COMMAND, "new session", (monotonic() - t0) * 1000, 0, err)
        return nil, err
    end
    self.driver = d
    d.n = d.n + 1
    self.profile = format("%s/s%d", d.dir, d.n)
    local timeout = math.max(u.timeout or 60, (u.page_load_timeout or 30) + 10)
    self.http = http.session({ base_url = d.url, timeout = timeout, connect_timeout = 10 })
    local args = chromium.flags(u)
    args[#args + 1] = "--user-data-dir=" .. self.profile
    local caps = { capabilities = { alwaysMatch = {
        browserName = "chrome",
        pageLoadStrategy = "normal",
        timeouts = { pageLoad = math.floor((u.page_load_timeout or 30) * 1000),
                     script = math.floor((u.script_timeout or 30) * 1000), implicit = 0 },
        ["goog:chromeOptions"] = { binary = u.chromium or chromium.CHROMIUM, args = args },
    } } }
    local v, serr, ms = self:_http("POST", "/session", caps)
    local sid = type(v) == "table" and v.sessionId
    if not sid then
        serr = serr or "chromedriver answered without a session id"
        record(M.COMMAND, "new session", ms, 0, serr)
        self:close()
        return nil, serr
    end
    if self.record_commands then record(M.COMMAND, "new session", ms, 0, nil) end
    self.session = sid
    self.sp = "/session/" .. sid
    self.capabilities = v.capabilities
    return true
end

-- Deletes the session (chromedriver then ends its Chromium) and frees the profile. Safe to
-- call at any time, more than once.
function Browser:close()
    -- the session is forgotten only once deleted: a user killed meanwhile closes again (finish)
    local sid = self.session or self.lost
    self.lost = nil
    if sid and self.http then
        local _, err, ms = self:_http("DELETE", "/session/" .. sid)
        if err or self.record_commands then record(M.COMMAND, "delete session", ms, 0, err) end
    end
    self.session = nil
    if self.http then
        self.http:close()
        self.http = nil
    end
    if self.driver then
        release_driver(self.driver)
        self.driver = nil
    end
    if self.profile then
        bcore.rmtree(self.profile)
        self.profile = nil
    end
end

function Browser:is_open()
    return self.session ~= nil
end

-- Runs |script| (a function body: `return document.title`) with |...| as arguments[0..] and
-- returns its value, not recorded (the timings read after a navigation).
function Browser:_eval(script, ...)
    if not self.session then return nil, "the browser is closed" end
    local body = '{"script":' .. cjson.encode(script) .. ',"args":'
        .. encode_args(select("#", ...), ...) .. "}"
    local v, err = self:_http("POST", self.sp .. "/execute/sync", body)
    return v, err
end

-- navigate(url, [opts]) -> true | nil, error. Loads url (a path joins the host) and records
-- the page load as "browser" (with "browser-dcl" and "browser-ttfb"), named opts.name or url.
function Browser:navigate(u, opts)
    opts = opts or EMPTY
    local full = chromium.full_url(self.user.host, u)
    local name = opts.name
    if name == nil then name = u end
    local t0 = monotonic()
    local _, err = self:_cmd("navigate", { name = opts.command_name }, "POST", "/url", { url = full })
    local ms = (monotonic() - t0) * 1000
    if err then
        if name then record(chromium.LOAD, name, ms, 0, err) end
        return nil, err
    end
    if name then
        local t = chromium.timings(function()
            return self:_eval("return " .. chromium.NAV_TIMING)
        end)
        local ferr = chromium.record_timings(name, t, ms)
        if ferr then return nil, ferr end
    end
    return true
end

-- record_timings(name): records the current document's page load, for a navigation a click
-- started; wait for an element of the new page first, so that it is the current document.
-- Waits up to page_load_timeout for its load to end.
function Browser:record_timings(name)
    local t = chromium.timings(function()
        return self:_eval("return " .. chromium.NAV_TIMING)
    end, self.user.page_load_timeout or 30)
    return chromium.record_timings(name, t, 0) == nil
end

-- A script's value with every element reference in it (at any depth) as an element.
local function wrap_value(self, v, depth)
    if type(v) ~= "table" then return v end
    if v[ELEMENT] then return setmetatable({ browser = self, id = v[ELEMENT] }, Element) end
    depth = depth or 0
    if depth < MAX_DEPTH then
        for k, x in pairs(v) do
            v[k] = wrap_value(self, x, depth + 1)
        end
    end
    return v
end

-- execute(script, ...) -> value | nil, error. Runs |script|, a function body, in the page
-- (Selenium's execute_script): `return document.title`. Elements pass both ways.
function Browser:execute(script, ...)
    local body = '{"script":' .. cjson.encode(script) .. ',"args":'
        .. encode_args(select("#", ...), ...) .. "}"
    local v, err = self:_cmd("execute", EMPTY, "POST", "/execute/sync", body)
    if err then return nil, err end
    return wrap_value(self, v)
end

-- How a selector finds: "xpath=..." and selectors starting with / or ( are XPath; the rest
-- CSS; opts.by picks any WebDriver strategy ("link text", "tag name"...).
local function locator(selector, opts)
    if type(selector) ~= "string" then error("a selector (a string) is needed", 3) end
    local by = opts.by
    if by then return by, selector end
    if selector:sub(1, 6) == "xpath=" then return "xpath", selector:sub(7) end
    local c = selector:sub(1, 1)
    if c == "/" or c == "(" then return "xpath", selector end
    return "css selector", selector
end

local function find_from(self, base, selector, opts)
    opts = opts or EMPTY
    local using, value = locator(selector, opts)
    local v, err = self:_cmd("find", opts, "POST", base .. "/element", { using = using, value = value })
    if err then return nil, err end
    if type(v) ~= "table" or not v[ELEMENT] then return nil, "chromedriver returned no element" end
    return setmetatable({ browser = self, id = v[ELEMENT] }, Element)
end

-- find(selector, [opts]) -> element | nil, error. A failure is recorded ("webdriver" find).
function Browser:find(selector, opts)
    return find_from(self, "", selector, opts)
end

-- find_all(selector, [opts]) -> a list of elements (maybe empty) | nil, error
function Browser:find_all(selector, opts)
    opts = opts or EMPTY
    local using, value = locator(selector, opts)
    local v, err = self:_cmd("find", opts, "POST", "/elements", { using = using, value = value })
    if err then return nil, err end
    local out = {}
    for i, e in ipairs(type(v) == "table" and v or EMPTY) do
        out[i] = setmetatable({ browser = self, id = e[ELEMENT] }, Element)
    end
    return out
end

-- wait_for(selector, [opts]) -> element | nil, error. Polls every opts.poll seconds (0.1)
-- until the element exists (and with opts.visible, is displayed), up to opts.timeout seconds
-- (the class's wait_timeout, 10). Other users run meanwhile. Recorded as "webdriver"
-- wait_for (the time waited) when commands are recorded; a timeout always.
function Browser:wait_for(selector, opts)
    opts = opts or EMPTY
    local using, value = locator(selector, opts)
    local timeout = opts.timeout or self.user.wait_timeout or 10
    local poll = opts.poll or self.user.poll_interval or 0.1
    local t0 = monotonic()
    local rname = opts.name
    if rname == nil then rname = "wait_for" end
    local body = cjson.encode({ using = using, value = value })
    local last
    while true do
        if not self.session then
            local ok, oerr = self:open()
            if not ok then last = oerr break end
        end
        local v, err = self:_http("POST", self.sp .. "/element", body)
        if v and v[ELEMENT] then
            local el = setmetatable({ browser = self, id = v[ELEMENT] }, Element)
            local shown = true
            if opts.visible then shown = self:_http("GET", self.sp .. "/element/" .. el.id .. "/displayed") end
            if shown then
                if rname and self.record_commands then
                    record(M.COMMAND, rname, (monotonic() - t0) * 1000, 0, nil)
                end
                return el
            end
        elseif err and not err:find("^no such element") and not err:find("^stale element") then
            last = err
            break
        end
        if monotonic() - t0 >= timeout then break end
        chromium.sleep(poll)
    end
    local err = last or format("timeout: %s %s within %g s", value,
        opts.visible and "not visible" or "not found", timeout)
    if rname then record(M.COMMAND, rname, (monotonic() - t0) * 1000, 0, err) end
    return nil, err
end

-- click(selector, [opts]) / type(selector, text, [opts]) / text(selector) /
-- attribute(selector, name): find, then act on the element.
function Browser:click(selector, opts)
    local el, err = self:find(selector, opts)
    if not el then return nil, err end
    return el:click(opts)
end

function Browser:type(selector, text, opts)
    local el, err = self:find(selector, opts)
    if not el then return nil, err end
    return el:type(text, opts)
end

function Browser:text(selector, opts)
    local el, err = self:find(selector, opts)
    if not el then return nil, err end
    return el:text(opts)
end

function Browser:attribute(selector, name, opts)
    local el, err = self:find(selector, opts)
    if not el then return nil, err end
    return el:attribute(name, opts)
end

-- title() / current_url() / back() / forward() / refresh()
function Browser:title()
    return self:_cmd("title", EMPTY, "GET", "/title")
end

function Browser:current_url()
    return self:_cmd("url", EMPTY, "GET", "/url")
end

function Browser:back()
    local _, err = self:_cmd("back", EMPTY, "POST", "/back", "{}")
    return err == nil or nil, err
end

function Browser:forward()
    local _, err = self:_cmd("forward", EMPTY, "POST", "/forward", "{}")
    return err == nil or nil, err
end

function Browser:refresh()
    local _, err = self:_cmd("refresh", EMPTY, "POST", "/refresh", "{}")
    return err == nil or nil, err
end

-- delete_cookies(): a clean slate for the next iteration of a user.
function Browser:delete_cookies()
    local _, err = self:_cmd("delete_cookies", EMPTY, "DELETE", "/cookie")
    return err == nil or nil, err
end

-- command(method, path, [body]) -> value | nil, error: any WebDriver command of the session
-- (path after /session/{id}), recorded as "webdriver" <path> like the others.
function Browser:command(method, path, body, opts)
    opts = opts or EMPTY
    return self:_cmd(opts.name or path, opts, method, path, body)
end

-- ---- elements ---------------------------------------------------------------------------------

local function el_cmd(el, name, opts, method, tail, body)
    return el.browser:_cmd(name, opts or EMPTY, method, "/element/" .. el.id .. tail, body)
end

function Element:click(opts)
    local _, err = el_cmd(self, "click", opts, "POST", "/click", "{}")
    return err == nil or nil, err
end

-- type(text): sends the keys to the element (WebDriver's Element Send Keys).
function Element:type(text, opts)
    local _, err = el_cmd(self, "type", opts, "POST", "/value", { text = tostring(text) })
    return err == nil or nil, err
end

function Element:clear(opts)
    local _, err = el_cmd(self, "clear", opts, "POST", "/clear", "{}")
    return err == nil or nil, err
end

function Element:text(opts)
    return el_cmd(self, "text", opts, "GET", "/text")
end

function Element:attribute(name, opts)
    return el_cmd(self, "attribute", opts, "GET", "/attribute/" .. url.quote(name))
end

function Element:property(name, opts)
    return el_cmd(self, "property", opts, "GET", "/property/" .. url.quote(name))
end

function Element:displayed(opts)
    return el_cmd(self, "displayed", opts, "GET", "/displayed")
end

function Element:find(selector, opts)
    return find_from(self.browser, "/element/" .. self.id, selector, opts)
end

-- ---- WebdriverUser ----------------------------------------------------------------------------

M.WebdriverUser = class.User:extend("WebdriverUser", {
    abstract = true,
    headless = true,
    window_size = { 1280, 800 },
    sessions_per_driver = 8, -- browser sessions one chromedriver serves (per thread)
    page_load_timeout = 30,  -- seconds a navigation may take (WebDriver's pageLoad timeout)
    script_timeout = 30,     -- seconds an execute() may take
    timeout = 60,            -- seconds any other command may take
    start_timeout = 60,      -- seconds chromedriver may take to start
    wait_timeout = 10,       -- wait_for's default
    poll_interval = 0.1,     -- wait_for's polling period
    record_commands = false, -- record every command as "webdriver" <command>
})

local WebdriverUser = M.WebdriverUser

local function open(self)
    local ok, err = self.browser:open()
    if not ok then error("the browser session did not open: " .. tostring(err), 0) end
end

local function close(self)
    chromium.finish(Browser.close, self.browser)
end

-- Checked when the script loads; also hooks the session around on_start and on_stop.
function WebdriverUser.__validate(cls)
    chromium.validate_class(cls, open, close)
end

-- Each user gets its own browser, self.browser, opened before on_start.
function WebdriverUser.__construct(self)
    self.browser = M.new(self)
end

return M
