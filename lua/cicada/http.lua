-- SPDX-License-Identifier: MIT
-- cicada.http: the HTTP client of HttpUser, as Locust's HttpSession: per-user cookies and
-- connections, redirects, params, json/form/multipart bodies, basic auth, catch_response,
-- rest(), and a request event for every request. The wire work is in C (cicada.http.core).

local core = require "cicada.core"
local hcore = require "cicada.http.core"
local url = require "cicada.url"
local cookies = require "cicada.cookies"
local class = require "cicada.class"
local signals = require "cicada.signals"

local M = {}

local byte, find, sub, format, lower = string.byte, string.find, string.sub, string.format, string.lower
local concat = table.concat
local record, now = core.record, core.now
local is_signal = signals.is_signal

local cjson_ok, cjson = pcall(require, "cjson")
local function json_encode(v)
    if not cjson_ok then error("json bodies need lua-cjson (Debian package lua-cjson)", 3) end
    return cjson.encode(v)
end
local function json_decode(s)
    if not cjson_ok then error("json() needs lua-cjson (Debian package lua-cjson)", 3) end
    return cjson.decode(s)
end
M.null = cjson_ok and cjson.null or nil

local USER_AGENT = "cicada/" .. core.version
local SLASH = byte("/")
local EMPTY = {}

-- ---- small helpers ---------------------------------------------------------------------------

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function M.base64(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = byte(s, i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local c1 = math.floor(n / 262144) % 64
        local c2 = math.floor(n / 4096) % 64
        local c3 = math.floor(n / 64) % 64
        local c4 = n % 64
        out[#out + 1] = sub(B64, c1 + 1, c1 + 1) .. sub(B64, c2 + 1, c2 + 1)
            .. (b and sub(B64, c3 + 1, c3 + 1) or "=") .. (c and sub(B64, c4 + 1, c4 + 1) or "=")
    end
    return concat(out)
end

local function basic_auth(user, pass)
    return "Basic " .. M.base64(url.unquote(user) .. ":" .. url.unquote(pass or ""))
end

-- multipart/form-data: fields (name = value) and files (name = {filename, content,
-- content_type} or {filename=, content=, content_type=} or a plain string).
function M.multipart(fields, files)
    local boundary = format("cicada%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
    local parts = {}
    local function names(t)
        local ks = {}
        for k in pairs(t or EMPTY) do
            ks[#ks + 1] = k
        end
        table.sort(ks)
        return ks
    end
    for _, k in ipairs(names(fields)) do
        parts[#parts + 1] = format('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n',
                                   boundary, k, tostring(fields[k]))
    end
    for _, k in ipairs(names(files)) do
        local f = files[k]
        local filename, content, ctype
        if type(f) == "string" then
            filename, content = k, f
        else
            filename = f.filename or f[1] or k
            content = f.content or f[2] or ""
            ctype = f.content_type or f[3]
        end
        parts[#parts + 1] = format('--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n'
                                   .. "Content-Type: %s\r\n\r\n%s\r\n", boundary, k, filename,
                                   ctype or "application/octet-stream", content)
    end
    parts[#parts + 1] = "--" .. boundary .. "--\r\n"
    return concat(parts), "multipart/form-data; boundary=" .. boundary
end

-- ---- responses ---------------------------------------------------------------------------------

local R = {}

-- The body parsed as JSON.
function R.json(r)
    return json_decode(r.text)
end

local function status_error(r, name)
    local s = r.status_code
    if s >= 400 and s < 500 then
        return format("%d Client Error: %s for url: %s", s, r.reason, name)
    elseif s >= 500 and s < 600 then
        return format("%d Server Error: %s for url: %s", s, r.reason, name)
    end
end
M.status_error = status_error

-- Raises the response's error: its connection error, or an HTTP status of 400 or more.
function R.raise_for_status(r)
    local e = r.error
    if e then error(e, 2) end
    local msg = status_error(r, r.url)
    if msg then error(msg, 2) end
    return r
end

-- In a catch_response callback: mark the request a success, or a failure with |msg|.
function R.success(r)
    if not rawequal(r._catch, true) then
        error("success() needs catch_response = true (and the response callback)", 2)
    end
    r._outcome = true
end

function R.failure(r, msg)
    if not rawequal(r._catch, true) then
        error("failure() needs catch_response = true (and the response callback)", 2)
    end
    r._outcome = false
    r._failure = msg ~= nil and tostring(msg) or "failure"
end

-- The lines of the body, for streamed text such as server-sent events kept whole.
function R.iter_lines(r)
    return r.text:gmatch("([^\r\n]*)\r?\n?")
end

hcore.set_response_methods(R)
local response_meta = hcore.response_meta

-- ---- sessions ----------------------------------------------------------------------------------

local Session = {}
Session.__index = Session
M.Session = Session

local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

-- A client: opts has base_url and the settings of cicada.http.core.session, plus headers
-- (defaults for every request), auth = {user, password}, allow_redirects, max_redirects.
function M.session(opts)
    opts = opts or EMPTY
    local base
    if opts.base_url then
        local err
        base, err = url.parse(opts.base_url)
        if not base then error("bad host: " .. err, 2) end
    end
    local self = setmetatable({
        core = hcore.session({
            connect_timeout = opts.connect_timeout,
            timeout = opts.timeout,
            max_body = opts.max_body,
            verify = opts.verify,
            ca_file = opts.ca_file,
            cert_file = opts.cert_file,
            key_file = opts.key_file,
            max_conns = opts.max_conns,
            source_addresses = opts.source_addresses,
            http2 = opts.http2,
        }),
        base = base,
        headers = {},
        cookies = cookies.new(),
        auth = opts.auth,
        allow_redirects = opts.allow_redirects ~= false,
        max_redirects = opts.max_redirects or 30,
        pools = {},
    }, Session)
    if base then
        -- Locust joins a path to the host by concatenation: "http://h/api" + "/items"
        self.prefix = base.path ~= "/" and (base.path:gsub("/$", "")) or ""
        if base.userinfo and not self.auth then
            local u, p = base.userinfo:match("^([^:]*):?(.*)$")
            self.auth = { u, p }
        end
        self.base_pool = self:pool_for(base)
    end
    for k, v in pairs(opts.headers or EMPTY) do
        self.headers[k] = v
    end
    return self
end

function Session:pool_for(u)
    local key = u.scheme .. "://" .. u.host .. ":" .. u.port
    local id = self.pools[key]
    if not id then
        if u.scheme ~= "http" and u.scheme ~= "https" then
            error("unsupported URL scheme '" .. u.scheme .. "' (http or https)", 4)
        end
        id = self.core:pool(u.scheme == "https", u.host, u.port, url.authority(u))
        self.pools[key] = id
    end
    return id
end

-- Where a request goes: the pool, the request target, and the parsed URL when cookies or a
-- redirect need it. Paths starting with "/" go to the base URL, as Locust concatenates them.
function Session:resolve(u)
    if byte(u, 1) == SLASH and byte(u, 2) ~= SLASH then
        local base = self.base
        if not base then
            error("a relative URL ('" .. u .. "') needs a host: set host on the class or pass -H", 3)
        end
        return self.base_pool, self.prefix .. u, nil
    end
    local parsed, err
    if find(u, "^%a[%w+.-]*://") then
        parsed, err = url.parse(u)
    elseif self.base then
        parsed, err = url.parse(url.join(url.build(self.base), u))
    else
        err = "a relative URL ('" .. u .. "') needs a host"
    end
    if not parsed then error(err, 3) end
    return self:pool_for(parsed), url.target(parsed), parsed
end

local function has_header(list, name)
    local lname = lower(name)
    for i = 1, #list, 2 do
        if lower(list[i]) == lname then return true end
    end
    return false
end

-- The header list for one request: the request's own, the session's, then the defaults.
local function build_headers(self, opts, parsed, target)
    local list = {}
    local given = opts.headers
    if given then
        for k, v in pairs(given) do
            if v ~= false then
                list[#list + 1] = k
                list[#list + 1] = tostring(v)
            end
        end
    end
    for k, v in pairs(self.headers) do
        if v ~= false and not (given and has_header(list, k)) then
            list[#list + 1] = k
            list[#list + 1] = tostring(v)
        end
    end
    local function default(k, v)
        if not has_header(list, k) then
            list[#list + 1] = k
            list[#list + 1] = v
        end
    end
    default("User-Agent", USER_AGENT)
    default("Accept-Encoding", "gzip, deflate")
    default("Accept", "*/*")
    default("Connection", "keep-alive")
    local auth = opts.auth or self.auth
    if auth and not has_header(list, "Authorization") then
        list[#list + 1] = "Authorization"
        list[#list + 1] = basic_auth(auth[1], auth[2])
    end
    if self.cookies.list[1] or opts.cookies then
        local u = parsed or { scheme = self.base.scheme, host = self.base.host,
                              path = target:match("^[^?]*") }
        local c = self.cookies:header_for(u, now())
        if opts.cookies then
            local extra = {}
            for k, v in pairs(opts.cookies) do
                extra[#extra + 1] = k .. "=" .. tostring(v)
            end
            table.sort(extra)
            c = c and (c .. "; " .. concat(extra, "; ")) or concat(extra, "; ")
        end
        if c and not has_header(list, "Cookie") then
            list[#list + 1] = "Cookie"
            list[#list + 1] = c
        end
    end
    return list
end

local function build_body(opts, list)
    local body, ctype = opts.body, nil
    if opts.json ~= nil then
        body, ctype = json_encode(opts.json), "application/json"
    elseif opts.files then
        body, ctype = M.multipart(type(opts.data) == "table" and opts.data or nil, opts.files)
    elseif type(opts.data) == "table" then
        body, ctype = url.encode_query(opts.data), "application/x-www-form-urlencoded"
    elseif opts.data ~= nil then
        body = tostring(opts.data)
    end
    if ctype and not has_header(list, "Content-Type") then
        list[#list + 1] = "Content-Type"
        list[#list + 1] = ctype
    end
    return body
end

local function store_cookies(self, resp, parsed, target)
    local u = parsed or { scheme = self.base.scheme, host = self.base.host,
                          path = target:match("^[^?]*") }
    local t = now()
    for _, line in ipairs(resp:header_list("Set-Cookie")) do
        self.cookies:set_from_header(u, line, t)
    end
end

-- After a response: its cookies, and the redirects it asks for (the final response carries
-- the others in `history`). Returns the final response.
local function after(self, method, resp, parsed, target, opts, ropts, cookie, location)
    if cookie then store_cookies(self, resp, parsed, target) end
    local allow = opts.allow_redirects
    if allow == nil then allow = self.allow_redirects end
    if not allow or not location or not REDIRECT[resp.status_code] then return resp end
    local history = {}
    local current = resp.url
    while location and REDIRECT[resp.status_code] do
        if #history >= self.max_redirects then
            resp._too_many = format("Exceeded %d redirects.", self.max_redirects)
            break
        end
        history[#history + 1] = resp
        local s = resp.status_code
        if s == 303 or ((s == 301 or s == 302) and method == "POST") then
            -- the browsers' rule: the next request is a GET without the body
            if method ~= "HEAD" then method = "GET" end
            opts = { headers = opts.headers, auth = opts.auth, cookies = opts.cookies }
        end
        current = url.join(current, location)
        local pool, t2, parsed2 = self:resolve(current)
        local list = build_headers(self, opts, parsed2, t2)
        local body = build_body(opts, list)
        resp = signals.checked(self.core:request(pool, method, t2, list, body, ropts))
        local _, _, _, _, c2, l2 = response_meta(resp)
        if c2 then store_cookies(self, resp, parsed2, t2) end
        location = l2
    end
    resp.history = history
    return resp
end

-- One HTTP exchange plus what the session does around it; no statistics. Returns the final
-- response and the request target of the first request (the default name).
function Session:send(method, u, opts)
    opts = opts or EMPTY
    if opts.params then u = url.add_query(u, opts.params) end
    local pool, target, parsed = self:resolve(u)
    local list = build_headers(self, opts, parsed, target)
    local body = build_body(opts, list)
    local ropts = nil
    if opts.timeout or opts.max_body or opts.stream then
        ropts = { timeout = opts.timeout, max_body = opts.max_body, stream = opts.stream }
    end
    local resp = signals.checked(self.core:request(pool, method, target, list, body, ropts))
    local _, _, _, _, cookie, location = response_meta(resp)
    if cookie or location then
        resp = after(self, method, resp, parsed, target, opts, ropts, cookie, location)
    end
    return resp, target
end

local function elapsed_of(resp)
    local ms = resp.elapsed_ms
    local h = resp.history
    if h then
        for i = 1, #h do
            ms = ms + h[i].elapsed_ms
        end
    end
    return ms
end

-- The outcome a response has by itself: nil for a success, else the failure's text.
local function default_failure(resp, name)
    return resp.error or resp._too_many or status_error(resp, name)
end

-- The headers of a request that sets nothing of its own, on a session that adds nothing.
local PLAIN_HEADERS = hcore.header_block({ "User-Agent", USER_AGENT,
                                           "Accept-Encoding", "gzip, deflate",
                                           "Accept", "*/*", "Connection", "keep-alive" })
local checked = signals.checked

-- request(method, url, [opts], [fn]): sends the request and records it in the statistics,
-- named opts.name or after the path and query of the URL. With opts.catch_response and a
-- function fn(response), the outcome is what fn decides with response:success() or
-- response:failure(message), as in Locust's `with ... catch_response=True`.
function Session:request(method, u, opts, fn)
    -- the fast path: a path on the host, no options, and a session that adds no header
    if opts == nil and byte(u, 1) == SLASH and byte(u, 2) ~= SLASH and not self.auth
        and next(self.headers) == nil and self.cookies.list[1] == nil and self.base then
        local target = self.prefix == "" and u or self.prefix .. u
        local resp = checked(self.core:request(self.base_pool, method, target, PLAIN_HEADERS))
        local status, err, ms, length, cookie, location = response_meta(resp)
        if cookie or location then
            resp = after(self, method, resp, nil, target, EMPTY, nil, cookie, location)
            ms, length, err = elapsed_of(resp), resp.length, default_failure(resp, self.rename or target)
        elseif not err and status >= 400 then
            err = status_error(resp, self.rename or target)
        end
        record(method, self.rename or target, ms, length, err)
        return resp
    end
    if type(opts) == "function" then opts, fn = nil, opts end
    opts = opts or EMPTY
    local resp, target = self:send(method, u, opts)
    local name = opts.name or self.rename or target
    if not opts.catch_response then
        record(method, name, elapsed_of(resp), resp.length, default_failure(resp, name))
        return resp
    end
    resp._catch = true
    if not fn then
        error("catch_response = true needs a function to decide the outcome: "
              .. "client:get(url, { catch_response = true }, function(r) ... end)", 2)
    end
    local ok, err = pcall(fn, resp)
    local outcome = rawequal(resp._outcome, nil) and nil or resp._outcome
    if outcome == true then
        record(method, name, elapsed_of(resp), resp.length, nil)
    elseif outcome == false then
        record(method, name, elapsed_of(resp), resp.length, resp._failure)
    elseif ok then
        record(method, name, elapsed_of(resp), resp.length, default_failure(resp, name))
    end
    if not ok then error(err, 0) end
    return resp
end

for _, m in ipairs({ "get", "post", "put", "patch", "delete", "head", "options" }) do
    local method = m:upper()
    Session[m] = function(self, u, opts, fn)
        return self:request(method, u, opts, fn)
    end
end

-- rest(method, url, [opts], [fn]): Locust FastHttpUser's rest(): JSON in and out. The body is
-- parsed into response.js; a body that is not JSON, a connection error or an error status is
-- a failure; an error raised in fn (an assert, say) becomes the failure's message.
function Session:rest(method, u, opts, fn)
    if type(opts) == "function" then opts, fn = nil, opts end
    local o = {}
    for k, v in pairs(opts or EMPTY) do
        o[k] = v
    end
    local headers, names = {}, {}
    for k, v in pairs(o.headers or EMPTY) do
        headers[k] = v
        names[#names + 1] = k
        names[#names + 1] = v
    end
    if not has_header(names, "Content-Type") then headers["Content-Type"] = "application/json" end
    if not has_header(names, "Accept") then headers["Accept"] = "application/json" end
    o.headers = headers
    o.catch_response = true
    return self:request(method, u, o, function(r)
        if r.error then
            r:failure(r.error)
            return
        end
        local text = r.text
        if text ~= "" then
            local ok, js = pcall(json_decode, text)
            if not ok then
                r:failure(format("Could not parse response as JSON. %s, response code %d, error %s",
                                 sub(text, 1, 250), r.status_code, tostring(js)))
                return
            end
            r.js = js
        end
        local fail = default_failure(r, o.name or u)
        if fail then
            r:failure(fail)
            return
        end
        if fn then
            local ok, err = pcall(fn, r)
            if not ok then
                if is_signal(err) then error(err, 0) end
                local msg = tostring(err)
                if sub(msg, -1) == "," then msg = msg .. " response was " .. sub(text, 1, 200) end
                r:failure(msg)
            end
        end
    end)
end

-- Groups every request made inside fn under one name in the statistics.
function Session:rename_request(name, fn)
    local old = self.rename
    self.rename = name
    local ok, err = pcall(fn)
    self.rename = old
    if not ok then error(err, 0) end
end

function Session:close()
    self.core:close()
end

-- ---- HttpUser --------------------------------------------------------------------------------

M.HttpUser = class.User:extend("HttpUser", {
    abstract = true,
    connect_timeout = 60, -- seconds (Locust's connection_timeout)
    network_timeout = 60, -- seconds without a response byte (Locust's network_timeout)
    max_redirects = 30,
    allow_redirects = true,
    verify = true,        -- TLS certificate verification; false skips it
    concurrency = 6,      -- connections per origin (requests beyond wait)
    http2 = false,        -- true: HTTP/2 over TLS when the server agrees (ALPN); "prior_knowledge": also h2c
})

local HttpUser = M.HttpUser

-- Checked when the script loads: an HttpUser needs a host.
function HttpUser.__validate(cls)
    if not cls.host then
        -- a distributed worker gets the host from its master's spawn message
        local options = require("cicada").env.parsed_options
        if options and options.worker then return end
        error((rawget(cls, "__defined_at") or "?") .. ": " .. (rawget(cls, "__name") or "the class")
            .. " has no host: set host = \"http://...\" in the class, or pass -H/--host", 0)
    end
    local ok, err = url.parse(cls.host)
    if not ok then error((rawget(cls, "__defined_at") or "?") .. ": bad host: " .. err, 0) end
end

-- Each user gets its own client: its own cookies and connections.
function HttpUser.__construct(self)
    self.client = M.session({
        base_url = self.host,
        connect_timeout = self.connect_timeout,
        timeout = self.network_timeout,
        max_redirects = self.max_redirects,
        allow_redirects = self.allow_redirects,
        verify = self.verify and not (self.environment.parsed_options or EMPTY).insecure,
        ca_file = self.ca_file,
        cert_file = self.cert_file,
        key_file = self.key_file,
        max_body = self.max_body,
        max_conns = self.concurrency,
        source_addresses = self.source_addresses,
        http2 = self.http2,
        headers = self.default_headers,
    })
end

-- Locust FastHttpUser's self.rest(...), on the user.
function HttpUser:rest(method, u, opts, fn)
    return self.client:rest(method, u, opts, fn)
end

return M
