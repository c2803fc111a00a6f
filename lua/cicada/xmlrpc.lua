-- SPDX-License-Identifier: MIT
-- cicada.xmlrpc: XML-RPC calls over cicada's HTTP client, and XmlRpcUser, as the XmlRpcUser
-- of Locust's guide: every call is recorded with request_type "xmlrpc" and the method's name;
-- a fault, a transport error or a response that is not XML-RPC is a failure.
-- Encoding and the expat parser are in C (cicada.xmlrpc.core). See docs/xmlrpc.md.

local core = require "cicada.core"
local xcore = require "cicada.xmlrpc.core"
local http = require "cicada.http"
local url = require "cicada.url"
local signals = require "cicada.signals"

local M = {}

local format, floor, type, select, rawequal, setmetatable, getmetatable =
    string.format, math.floor, type, select, rawequal, setmetatable, getmetatable
local record, monotonic = core.record, core.monotonic
local encode_call, decode = xcore.encode_call, xcore.decode
local checked = signals.checked
local MT = xcore.mt

-- ---- values Lua cannot tell apart ---------------------------------------------------------

-- <nil/>, where the server accepts it (Python's allow_none). Responses carry it as this value
-- too, so that a nil in a list does not end the list.
M.null = xcore.null
MT.null.__tostring = function() return "xmlrpc.null" end

local DateTime = MT.datetime
DateTime.__index = DateTime
DateTime.__tostring = function(d) return d.value end
DateTime.__eq = function(a, b) return a.value == b.value end

-- The seconds since the epoch the value stands for, read as UTC (XML-RPC has no time zone).
function DateTime:timestamp()
    local y, mo, d, h, mi, s = self.value:match("^(%d%d%d%d)%-?(%d%d)%-?(%d%d)T(%d%d):?(%d%d):?(%d%d)")
    if not y then return nil end
    -- days from the civil date (Howard Hinnant's algorithm), as os.time has no UTC form
    y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
    if mo <= 2 then y = y - 1 end
    local era = floor(y / 400)
    local yoe = y - era * 400
    local mp = (mo + 9) % 12
    local doy = floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
    local days = era * 146097 + doe - 719468
    return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
end

-- A dateTime.iso8601 value from a string ("20260102T03:04:05"), from seconds since the epoch
-- (written in UTC), or from a table of year, month, day, hour, min, sec.
function M.datetime(v)
    local s
    local t = type(v)
    if t == "string" then
        s = v
    elseif t == "number" then
        s = os.date("!%Y%m%dT%H:%M:%S", floor(v))
    elseif t == "table" and v.year then
        s = format("%04d%02d%02dT%02d:%02d:%02d", v.year, v.month or 1, v.day or 1,
                   v.hour or 0, v.min or 0, v.sec or 0)
    else
        error("xmlrpc.datetime takes a string, seconds since the epoch, or a date table", 2)
    end
    return setmetatable({ value = s }, DateTime)
end

local Binary = MT.binary
Binary.__index = Binary
Binary.__tostring = function(b) return b.data end

-- Bytes sent as <base64>. Received base64 values arrive as plain strings of their bytes.
function M.base64(data)
    if type(data) ~= "string" then error("xmlrpc.base64 takes a string", 2) end
    return setmetatable({ data = data }, Binary)
end

local Double = MT.double
Double.__index = Double
Double.__tostring = function(d) return tostring(d.value) end

-- A number sent as <double> even when it is whole (a whole number goes as <int> otherwise).
function M.double(n)
    if type(n) ~= "number" then error("xmlrpc.double takes a number", 2) end
    return setmetatable({ value = n }, Double)
end

local function mark(t, mt, what)
    t = t or {}
    if type(t) ~= "table" then error("xmlrpc." .. what .. " takes a table", 3) end
    local old = getmetatable(t)
    if old ~= nil and old ~= mt then error("xmlrpc." .. what .. ": the table has a metatable already", 3) end
    return setmetatable(t, mt)
end

-- Marks a table as an <array> (a list: an empty {} is sent as an empty struct otherwise).
function M.array(t) return mark(t, MT.array, "array") end
-- Marks a table as a <struct> (its keys must be strings).
function M.struct(t) return mark(t, MT.struct, "struct") end

-- The XML of one value, or of a whole call: for tests and for documents of one's own.
M.encode = xcore.encode
function M.dumps(method, ...)
    return encode_call(method, true, ...)
end
-- The value of a <methodResponse>: "ok", value; "fault", code, string; or nil, why not.
M.loads = decode

-- ---- calls ------------------------------------------------------------------------------------

local PRIV = {} -- the key of a proxy's own fields, so that any method name stays free
local USER_AGENT = "cicada/" .. core.version

local Proxy = {}
local Method = {}

-- The error of a call that failed, as the failures table shows it.
local function http_error(resp)
    if resp.error then return resp.error end
    if resp.status_code ~= 200 then
        return format("ProtocolError: %d %s", resp.status_code, resp.reason or "")
    end
end

-- One call: sends, decodes, records. Returns the value, or nil, the error and the fault
-- ({faultCode=, faultString=}) when the server answered with one.
local function call(P, method, ...)
    local ok, body = pcall(encode_call, method, P.allow_none, ...)
    if not ok then error(body, 2) end
    local t0 = monotonic()
    local s = P.session
    local resp
    if s.auth == nil and next(s.headers) == nil and s.cookies.list[1] == nil then
        -- the fast path: nothing of the session's to add to the request
        resp = checked(s.core:request(P.pool, "POST", P.target, P.headers, body, P.ropts))
    else
        resp = s:send("POST", P.url, P.opts_with(body))
    end
    local err = http_error(resp)
    local fault, value
    if not err then
        local kind, a, b = decode(resp.text)
        if kind == "ok" then
            value = a
        elseif kind == "fault" then
            fault = { faultCode = a, faultString = b }
            err = format("Fault %d: %s", a, b)
        else
            err = "ResponseError: " .. a
        end
    end
    local name = P.name or method
    record("xmlrpc", name, (monotonic() - t0) * 1000, resp.length, err)
    if err then return nil, err, fault end
    return value
end

-- proxy:call(method, ...): calls |method| with the arguments (a trailing nil is an argument,
-- sent as <nil/> with allow_none).
function Proxy.call(p, method, ...)
    if type(method) ~= "string" then error("call: the method name must be a string", 2) end
    return call(rawget(p, PRIV), method, ...)
end

local function method_of(P, name)
    local m = P.methods[name]
    if not m then
        m = setmetatable({ [PRIV] = P, name = name }, Method)
        P.methods[name] = m
    end
    return m
end

Proxy.__index = function(p, k)
    if k == "call" then return Proxy.call end
    if type(k) ~= "string" then return nil end
    return method_of(rawget(p, PRIV), k)
end
Proxy.__tostring = function(p)
    return "xmlrpc.ServerProxy(" .. rawget(p, PRIV).url .. ")"
end

-- proxy.get_time() and proxy:get_time() both call get_time: a proxy, or a method object of
-- it, as the first argument is the colon's self, never a value to send.
local function is_self(P, first)
    return rawequal(first, P.proxy) or (getmetatable(first) == Method and rawget(first, PRIV) == P)
end

Method.__call = function(m, ...)
    local P = rawget(m, PRIV)
    if select("#", ...) > 0 and is_self(P, (...)) then return call(P, m.name, select(2, ...)) end
    return call(P, m.name, ...)
end
-- proxy.system.listMethods(): dotted names
Method.__index = function(m, k)
    if type(k) ~= "string" then return nil end
    return method_of(rawget(m, PRIV), rawget(m, "name") .. "." .. k)
end
Method.__tostring = function(m) return "xmlrpc method " .. m.name end

-- ServerProxy(target, [opts]): a client for the XML-RPC endpoint |target|, a URL (a session
-- of its own is made) or an HTTP session (HttpUser's self.client), whose base URL is the
-- endpoint unless opts.path names another path on it. opts:
--   allow_none  send nil and xmlrpc.null as <nil/> (default false, as Python's)
--   timeout     seconds without a response byte before the call fails
--   name        record every call under this name rather than the method's
--   headers     extra request headers
-- Any other option goes to cicada.http.session when a URL is given (verify, connect_timeout...).
function M.ServerProxy(target, opts)
    opts = opts or {}
    local s
    if type(target) == "string" then
        local so = {}
        for k, v in pairs(opts) do
            so[k] = v
        end
        so.base_url = target
        so.allow_none, so.name, so.headers, so.path = nil, nil, nil, nil
        s = http.session(so)
    elseif getmetatable(target) == http.Session then
        s = target
    else
        error("ServerProxy takes a URL or an HTTP session", 2)
    end
    if not s.base then error("ServerProxy: the session has no base URL (host)", 2) end
    local target_path = opts.path and (s.prefix .. opts.path) or url.target(s.base)
    local headers = { "User-Agent", USER_AGENT, "Content-Type", "text/xml",
                      "Accept-Encoding", "gzip, deflate", "Connection", "keep-alive" }
    local extra = {}
    for k, v in pairs(opts.headers or {}) do
        headers[#headers + 1] = k
        headers[#headers + 1] = tostring(v)
        extra[k] = v
    end
    extra["Content-Type"] = extra["Content-Type"] or "text/xml"
    local base = s.base
    local endpoint = base.scheme .. "://" .. url.authority(base) .. target_path
    local ropts = opts.timeout and { timeout = opts.timeout } or nil
    local P = {
        session = s,
        pool = s.base_pool,
        target = target_path,
        url = endpoint,
        headers = headers,
        ropts = ropts,
        allow_none = opts.allow_none and true or false,
        name = opts.name,
        methods = {},
    }
    -- the general path (a session with cookies, auth or headers of its own) sends through
    -- the session, which adds them
    P.opts_with = function(body)
        return { data = body, headers = extra, timeout = opts.timeout }
    end
    local proxy = setmetatable({ [PRIV] = P }, Proxy)
    P.proxy = proxy
    return proxy
end

-- The HTTP session under a proxy (its cookies, its connections).
function M.session_of(proxy)
    return rawget(proxy, PRIV).session
end

-- ---- XmlRpcUser -------------------------------------------------------------------------------

-- A user whose self.client is a ServerProxy for its host, as in Locust's guide:
--   local MyUser = xmlrpc.XmlRpcUser:extend("MyUser", { host = "http://127.0.0.1:8877/" })
--   MyUser:task(function(self) self.client:get_time() end)
-- self.http is the HTTP session under it. Attributes, besides HttpUser's: allow_none,
-- xmlrpc_path (a path on the host, when the host is not the endpoint itself).
M.XmlRpcUser = http.HttpUser:extend("XmlRpcUser", {
    abstract = true,
    allow_none = false,
})

local HttpUser = http.HttpUser
function M.XmlRpcUser.__construct(self)
    HttpUser.__construct(self)
    self.http = self.client
    self.client = M.ServerProxy(self.http, { path = self.xmlrpc_path, allow_none = self.allow_none })
end

return M
