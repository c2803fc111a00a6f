-- SPDX-License-Identifier: MIT
-- cicada.browser: BrowserUser, a real headless Chromium page per user driven over the Chrome
-- DevTools Protocol, the way Playwright does it: no chromedriver. Each thread launches a few
-- Chromium processes and speaks CDP to each over one WebSocket (cicada.browser.core, on the
-- WebSocket client); every user gets its own isolated browser context (cookies, storage,
-- cache) and page in one of them, users_per_browser to a browser. Page loads are recorded from
-- the Navigation Timing API and every resource the page fetches from the browser's own network
-- events; see docs/browsers.md.

local core = require "cicada.core"
local class = require "cicada.class"
local signals = require "cicada.signals"
local chromium = require "cicada.chromium"
local cjson = require "cjson"

local M = {}

local bcore = chromium.core
local scratch_env = chromium.scratch_env
local record, monotonic = core.record, core.monotonic
local checked = signals.checked
local format = string.format
local EMPTY = {}
local NULL = cjson.null

-- Request type of recorded DevTools operations (and of failed ones, always recorded).
M.COMMAND = "cdp"

-- ---- Chromium processes, shared by this thread's users -------------------------------------

local browsers = {}
M._browsers = browsers

local function launch(b, timeout)
    local dir, err = bcore.mkdtemp("cicada-chromium-")
    if not dir then return nil, err end
    b.dir = dir
    local profile = dir .. "/profile"
    local log = dir .. "/chromium.log"
    local args = chromium.flags(b.cfg)
    args[#args + 1] = "--remote-debugging-port=0"
    args[#args + 1] = "--remote-debugging-address=127.0.0.1"
    args[#args + 1] = "--user-data-dir=" .. profile
    args[#args + 1] = "about:blank"
    local proc, perr = bcore.spawn({ path = b.path, args = args, log = log, scratch = dir,
                                     env = scratch_env(dir) })
    if not proc then
        bcore.rmtree(dir)
        return nil, perr
    end
    b.proc = proc
    -- Chromium writes its DevTools port and the browser's WebSocket path once it listens:
    -- "PORT\n/devtools/browser/GUID". Only the whole of it is taken, never a file read while
    -- it is being written.
    local port_file = profile .. "/DevToolsActivePort"
    local port, target
    local text, werr = chromium.wait_output(proc, timeout, "chromium", function()
        local s = chromium.read_file(port_file)
        port, target = (s or ""):match("^(%d+)\n(/devtools/browser/[%x%-]+)%s*$")
        return port and #target == #"/devtools/browser/" + 36 and s
    end, log)
    if not text then return nil, werr end
    local conn = bcore.cdp_new()
    local ok, cerr = checked(conn:connect({ port = tonumber(port), target = target, timeout = timeout }))
    if not ok then return nil, cerr end
    b.conn = conn
    return true
end

local function drop_browser(b)
    b.dead = true
    if b.conn then b.conn:close() end
    if b.proc then b.proc:stop() end
    for i, x in ipairs(browsers) do
        if x == b then
            table.remove(browsers, i)
            break
        end
    end
end

local function usable(b)
    return not b.dead and b.proc:alive() and b.conn:is_open()
end

-- A Chromium with room for one more user (the place is taken), launched if none has room.
local function acquire_browser(cfg)
    local path = cfg.chromium or chromium.CHROMIUM
    local key = path .. "\0" .. table.concat(chromium.flags(cfg), "\0")
    local per = cfg.users_per_browser or 4
    for _, b in ipairs(browsers) do
        if b.key == key and not b.dead and b.users < per then
            b.users = b.users + 1
            while b.starting do
                local ok, e = pcall(chromium.sleep, 0.02)
                if not ok then
                    b.users = b.users - 1
                    error(e, 0)
                end
            end
            if usable(b) then return b end
            b.users = b.users - 1
            if not b.dead then drop_browser(b) end
            break
        end
    end
    local b = { key = key, path = path, cfg = cfg, users = 1, starting = true }
    browsers[#browsers + 1] = b
    local ok, res, err = pcall(launch, b, cfg.start_timeout or 60)
    b.starting = false
    if not ok or not res then
        drop_browser(b)
        if not ok then error(res, 0) end -- killed while launching
        return nil, err
    end
    return b
end

local function release_browser(b)
    b.users = b.users - 1
end

-- ---- pages --------------------------------------------------------------------------------------

local Page = {}
Page.__index = Page
M.Page = Page

-- A page for |user| (a BrowserUser, whose attributes configure it); not yet open.
function M.new(user)
    return setmetatable({ user = user, record_commands = user.record_commands }, Page)
end

local function encode(params)
    if params == nil then return nil end
    if type(params) == "string" then return params end
    return cjson.encode(params)
end

-- One DevTools command: the result table | nil, error, ms. Not recorded.
function Page:_raw(method, params, browser_level, timeout)
    local p = self.cdp
    if not p then return nil, "the page is closed", 0 end
    local text, err, ms = checked(p:call(method, encode(params), timeout or self.user.timeout or 30,
        browser_level))
    if not text then return nil, err, ms end
    local ok, msg = pcall(cjson.decode, text)
    if not ok or type(msg) ~= "table" then return nil, method .. ": an answer that is not JSON", ms end
    local r = msg.result
    if r == NULL or r == nil then r = {} end
    return r, nil, ms
end

-- Records operation |name| as "cdp" <name> (opts.name renames it, false records nothing) when
-- the page records commands, and always when it failed.
function Page:_record(name, opts, ms, err)
    local rname = opts.name
    if rname == nil then rname = name end
    if rname and (err or self.record_commands) then record(M.COMMAND, rname, ms, 0, err) end
end

-- Opens the page (on_start does it): a place in one of the thread's Chromiums, a fresh browser
-- context, a page in it, attached as a session of the browser's connection.
function Page:open()
    if self.session then return true end
    local u = self.user
    local t0 = monotonic()
    local b, err = acquire_browser(u)
    if not b then
        record(M.COMMAND, "new page", (monotonic() - t0) * 1000, 0, err)
        return nil, err
    end
    self.browser = b
    self.cdp = b.conn:page()
    local function step(method, params, browser_level)
        if err then return nil end
        local r, e = self:_raw(method, params, browser_level)
        if not r then err = e end
        return r
    end
    local ctx = step("Target.createBrowserContext", { disposeOnDetach = true }, true)
    self.context = ctx and ctx.browserContextId
    local target = step("Target.createTarget", { url = "about:blank", browserContextId = self.context }, true)
    self.target = target and target.targetId
    local att = step("Target.attachToTarget", { targetId = self.target, flatten = true }, true)
    if att then
        self.cdp:attach(att.sessionId)
        self.session = att.sessionId
    end
    step("Page.enable")
    if u.resources ~= false then
        step("Network.enable")
        self.cdp:network(true, u.resource_type or chromium.RESOURCE, u.strip_query)
    end
    local ms = (monotonic() - t0) * 1000
    if err then
        record(M.COMMAND, "new page", ms, 0, err)
        self:close()
        return nil, err
    end
    if self.record_commands then record(M.COMMAND, "new page", ms, 0, nil) end
    self.opened = true
    return true
end

-- What closing again says of a target or context the first try closed: not a failure.
local function already_gone(err)
    return err and (err:find("No target with given id", 1, true)
        or err:find("Failed to find context", 1, true)) and true or false
end

-- Closes the page and its browser context. Safe to call at any time, more than once. A page
-- whose opening was cut short (its user killed meanwhile) is closed too, but its closing is
-- recorded only if it fails: "close page" counts the pages "new page" counted.
function Page:close()
    local p = self.cdp
    if p then
        -- each step is forgotten only once done: a user killed meanwhile closes again (finish)
        local t0 = monotonic()
        local err
        if self.target then
            err = select(2, self:_raw("Target.closeTarget", { targetId = self.target }, true, 10))
            if already_gone(err) then err = nil end
            self.target = nil
        end
        if self.context then
            local _, e = self:_raw("Target.disposeBrowserContext", { browserContextId = self.context },
                true, 10)
            self.context = nil
            if not already_gone(e) then err = err or e end
        end
        if err or (self.opened and self.record_commands) then
            record(M.COMMAND, "close page", (monotonic() - t0) * 1000, 0, err)
        end
        p:close()
    end
    self.cdp, self.session, self.target, self.context = nil, nil, nil, nil
    self.opened = nil
    if self.browser then
        release_browser(self.browser)
        self.browser = nil
    end
end

function Page:is_open()
    return self.session ~= nil
end

-- Opens the page again if it was closed, crashed, or its browser went away: true | nil, error.
function Page:_ensure()
    if self.session and self.browser and usable(self.browser) and not self.cdp:ended() then
        return true
    end
    if self.session then self:close() end
    return self:open()
end

-- A command of the open page: result | nil, error, ms.
function Page:_cmd(method, params, timeout)
    local ok, err = self:_ensure()
    if not ok then return nil, err, 0 end
    return self:_raw(method, params, false, timeout)
end

-- The value of a JavaScript expression, not recorded: value | nil, error, ms.
function Page:_eval(expr, timeout)
    local r, err, ms = self:_cmd("Runtime.evaluate", { expression = expr, returnByValue = true,
        awaitPromise = true, userGesture = true }, timeout)
    if not r then return nil, err, ms end
    local ex = r.exceptionDetails
    if type(ex) == "table" then
        local e = type(ex.exception) == "table" and ex.exception.description or ex.text
        return nil, "JavaScript: " .. tostring(e or "exception"):match("^[^\n]*"), ms
    end
    local v = type(r.result) == "table" and r.result.value or nil
    if v == NULL then v = nil end
    return v, nil, ms
end

-- navigate(url, [opts]) -> true | nil, error. Loads url (a path joins the host), waits for the
-- load event and records the page load as "browser" (with "browser-dcl" and "browser-ttfb"),
-- named opts.name or url. The page's resources are recorded as they finish.
function Page:navigate(u, opts)
    opts = opts or EMPTY
    local full = chromium.full_url(self.user.host, u)
    local name = opts.name
    if name == nil then name = u end
    local t0 = monotonic()
    local timeout = opts.timeout or self.user.page_load_timeout or 30
    local r, err = self:_ensure()
    if r then
        self.cdp:watch("Page.loadEventFired")
        r, err = self:_raw("Page.navigate", { url = full }, false, timeout)
    end
    if r and type(r.errorText) == "string" and r.errorText ~= "" then err = r.errorText end
    if not err and r.loaderId then -- a new document (not a same-document jump): wait for it
        local left = timeout - (monotonic() - t0)
        local ev, e = checked(self.cdp:wait_event("Page.loadEventFired", left > 0 and left or 0.001))
        if not ev then err = e end
    end
    local ms = (monotonic() - t0) * 1000
    self:_record("navigate", { name = opts.command_name }, ms, err)
    if err then
        if name then record(chromium.LOAD, name, ms, 0, err) end
        return nil, err
    end
    if name then
        local t = chromium.timings(function() return self:_eval(chromium.NAV_TIMING) end)
        local ferr = chromium.record_timings(name, t, ms)
        if ferr then return nil, ferr end
    end
    return true
end

-- record_timings(name): records the current document's page load, for a navigation a click
-- started; wait for an element of the new page first, so that it is the current document.
-- Waits up to page_load_timeout for its load to end.
function Page:record_timings(name)
    local t = chromium.timings(function() return self:_eval(chromium.NAV_TIMING) end,
        self.user.page_load_timeout or 30)
    return chromium.record_timings(name, t, 0) == nil
end

-- evaluate(expression, [opts]) -> value | nil, error. The value of a JavaScript expression in
-- the page (Playwright's page.evaluate); a promise is awaited. Recorded as "cdp" evaluate when
-- commands are recorded; an exception always.
function Page:evaluate(expr, opts)
    opts = opts or EMPTY
    local t0 = monotonic()
    local v, err = self:_eval(expr, opts.timeout)
    self:_record("evaluate", opts, (monotonic() - t0) * 1000, err)
    if err then return nil, err end
    return v
end

local function js_string(s)
    if type(s) ~= "string" then error("a selector (a string) is needed", 3) end
    return cjson.encode(s)
end

-- Where an element's centre is, once scrolled into view: {x, y} or nil and why.
local CENTRE = [[((s) => {
  const e = document.querySelector(s);
  if (!e) return "none";
  e.scrollIntoView({ block: "center", inline: "center" });
  const r = e.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) return "hidden";
  return [r.left + r.width / 2, r.top + r.height / 2];
})(%s)]]

local function no_element(sel, why)
    return why == "hidden" and ("element is not visible: " .. sel) or ("no element matches " .. sel)
end

-- click(selector, [opts]) -> true | nil, error. A real mouse click (moved, pressed, released)
-- at the centre of the first element the CSS selector matches. A selector that matches
-- nothing is a failure, recorded as "cdp" click.
function Page:click(selector, opts)
    opts = opts or EMPTY
    local t0 = monotonic()
    local at, err = self:_eval(format(CENTRE, js_string(selector)))
    if not err and type(at) ~= "table" then err = no_element(selector, at) end
    if not err then
        local x, y = at[1], at[2]
        local p = self.cdp
        p:post("Input.dispatchMouseEvent", cjson.encode({ type = "mouseMoved", x = x, y = y }))
        p:post("Input.dispatchMouseEvent", cjson.encode({ type = "mousePressed", x = x, y = y,
            button = "left", clickCount = 1 }))
        local _, e = self:_raw("Input.dispatchMouseEvent", { type = "mouseReleased", x = x, y = y,
            button = "left", clickCount = 1 })
        err = e
    end
    self:_record("click", opts, (monotonic() - t0) * 1000, err)
    if err then return nil, err end
    return true
end

local FOCUS = [[((s) => {
  const e = document.querySelector(s);
  if (!e) return "none";
  e.focus();
  if (typeof e.value === "string" && typeof e.setSelectionRange === "function") {
    try { e.setSelectionRange(e.value.length, e.value.length); } catch (_) {}
  }
  return true;
})(%s)]]

local ENTER = { key = "Enter", code = "Enter", windowsVirtualKeyCode = 13, text = "\r" }

-- type(selector, text, [opts]) -> true | nil, error. Focuses the element and types text into
-- it, a key press per character (keydown, input, keyup); "\n" presses Enter.
function Page:type(selector, text, opts)
    opts = opts or EMPTY
    text = tostring(text)
    local t0 = monotonic()
    local ok, err = self:_eval(format(FOCUS, js_string(selector)))
    if not err and ok ~= true then err = no_element(selector, ok) end
    if not err then
        local p = self.cdp
        local keys = {}
        for ch in text:gmatch("[%z\1-\127\194-\244][\128-\191]*") do
            if ch == "\n" then
                keys[#keys + 1] = ENTER
            else
                keys[#keys + 1] = { key = ch, text = ch, unmodifiedText = ch }
            end
        end
        for i, k in ipairs(keys) do
            local down = { type = "keyDown", key = k.key, code = k.code, text = k.text,
                           unmodifiedText = k.unmodifiedText, windowsVirtualKeyCode = k.windowsVirtualKeyCode }
            local up = { type = "keyUp", key = k.key, code = k.code,
                         windowsVirtualKeyCode = k.windowsVirtualKeyCode }
            p:post("Input.dispatchKeyEvent", cjson.encode(down))
            if i < #keys then
                p:post("Input.dispatchKeyEvent", cjson.encode(up))
            else -- the last answer means every key before it was handled
                local _, e = self:_raw("Input.dispatchKeyEvent", up)
                err = e
            end
        end
    end
    self:_record("type", opts, (monotonic() - t0) * 1000, err)
    if err then return nil, err end
    return true
end

local TEXT = [[((s) => { const e = document.querySelector(s); return e ? e.innerText : "none\0"; })(%s)]]
local ATTR = [[((s, n) => { const e = document.querySelector(s);
  return e ? e.getAttribute(n) : "none\0"; })(%s, %s)]]

-- text(selector) -> the element's text (innerText) | nil, error
function Page:text(selector, opts)
    opts = opts or EMPTY
    local t0 = monotonic()
    local v, err = self:_eval(format(TEXT, js_string(selector)))
    if not err and v == "none\0" then err, v = no_element(selector), nil end
    self:_record("text", opts, (monotonic() - t0) * 1000, err)
    if err then return nil, err end
    return v
end

-- attribute(selector, name) -> the attribute's value (nil when the element has none) | nil, error
function Page:attribute(selector, name, opts)
    opts = opts or EMPTY
    local t0 = monotonic()
    local v, err = self:_eval(format(ATTR, js_string(selector), js_string(name)))
    if not err and v == "none\0" then err, v = no_element(selector), nil end
    self:_record("attribute", opts, (monotonic() - t0) * 1000, err)
    if err then return nil, err end
    return v
end

-- What Runtime.evaluate says while a navigation replaces the document: try again.
local function navigating(err)
    return err:find("context was destroyed", 1, true) or err:find("Cannot find", 1, true)
        or err:find("navigated or closed", 1, true)
end

local PRESENT = [[((s, vis) => { const e = document.querySelector(s);
  if (!e) return false;
  return !vis || e.getClientRects().length > 0; })(%s, %s)]]

-- wait_for(selector, [opts]) -> true | nil, error. Polls every opts.poll seconds (0.1) until an
-- element matches (with opts.visible, a displayed one), up to opts.timeout seconds (the class's
-- wait_timeout, 10). Other users run meanwhile. Recorded as "cdp" wait_for (the time waited)
-- when commands are recorded; a timeout always.
function Page:wait_for(selector, opts)
    opts = opts or EMPTY
    local timeout = opts.timeout or self.user.wait_timeout or 10
    local poll = opts.poll or self.user.poll_interval or 0.1
    local expr = format(PRESENT, js_string(selector), opts.visible and "true" or "false")
    local t0 = monotonic()
    local err
    while true do
        local v, e = self:_eval(expr)
        if v == true then break end
        if e and not navigating(e) then
            err = e
            break
        end
        if monotonic() - t0 >= timeout then
            err = format("timeout: %s %s within %g s", selector,
                opts.visible and "not visible" or "not found", timeout)
            break
        end
        chromium.sleep(poll)
    end
    self:_record("wait_for", opts, (monotonic() - t0) * 1000, err)
    if err then return nil, err end
    return true
end

-- title() / current_url()
function Page:title()
    return self:evaluate("document.title", { name = "title" })
end

function Page:current_url()
    return self:evaluate("location.href", { name = "url" })
end

-- send(method, [params], [opts]) -> result | nil, error: any DevTools command on the page's
-- session (Playwright's CDPSession.send), recorded as "cdp" <method> like the others.
function Page:send(method, params, opts)
    opts = opts or EMPTY
    local t0 = monotonic()
    local r, err = self:_cmd(method, params, opts.timeout)
    self:_record(method, opts, (monotonic() - t0) * 1000, err)
    if not r then return nil, err end
    return r
end

-- Network requests of the page still in flight (per-resource entries come as they finish).
function Page:inflight()
    if not self.cdp then return 0 end
    return (self.cdp:info())
end

-- ---- BrowserUser -------------------------------------------------------------------------------

M.BrowserUser = class.User:extend("BrowserUser", {
    abstract = true,
    headless = true,
    window_size = { 1280, 800 },
    users_per_browser = 4,   -- users (each its own browser context) per Chromium, per thread
    page_load_timeout = 30,  -- seconds a navigation may take, to its load event
    timeout = 30,            -- seconds any other command may take
    start_timeout = 60,      -- seconds Chromium may take to start
    wait_timeout = 10,       -- wait_for's default
    poll_interval = 0.1,     -- wait_for's polling period
    resources = true,        -- record each resource the page fetches
    resource_type = chromium.RESOURCE,
    strip_query = false,     -- name resources without their query string
    record_commands = false, -- record every operation as "cdp" <operation>
})

local BrowserUser = M.BrowserUser

local function open(self)
    local ok, err = self.page:open()
    if not ok then error("the browser page did not open: " .. tostring(err), 0) end
end

local function close(self)
    chromium.finish(Page.close, self.page)
end

-- Checked when the script loads; also hooks the page around on_start and on_stop.
function BrowserUser.__validate(cls)
    chromium.validate_class(cls, open, close)
end

-- Each user gets its own page, self.page, opened before on_start.
function BrowserUser.__construct(self)
    self.page = M.new(self)
end

return M
