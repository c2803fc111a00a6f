-- SPDX-License-Identifier: MIT
-- cicada.socketio: a Socket.IO v4 client and SocketIOUser, reporting as Locust's SocketIOUser:
-- connect as WS connect, emit as WSE, send as WSS, call (an emit acknowledged by the server)
-- as WSC with its round-trip time, and every event received as WSR. The protocol runs in C
-- (cicada.socketio.core); arguments are JSON (lua-cjson). See docs/socketio.md.

local core = require "cicada.core"
local score = require "cicada.socketio.core"
local url = require "cicada.url"
local class = require "cicada.class"
local signals = require "cicada.signals"

local ok_cjson, cjson = pcall(require, "cjson")
if not ok_cjson then error("cicada.socketio needs lua-cjson (Debian package lua-cjson)", 2) end

local M = {}

local record = core.record
local checked = signals.checked
local is_signal = signals.is_signal
local encode, decode = cjson.encode, cjson.decode
local select, type, unpack, format = select, type, unpack, string.format
local EMPTY = {}

M.null = cjson.null

-- ---- binary attachments ----------------------------------------------------------------------

local BINARY = {}
BINARY.__index = BINARY

-- binary(s): marks the string s to travel as a binary attachment, not as JSON text.
function M.binary(s)
    return setmetatable({ data = s }, BINARY)
end

-- Replaces binary markers in v (walking tables) with placeholders; their data go to atts.
local function extract(v, atts)
    if type(v) ~= "table" then return v end
    if getmetatable(v) == BINARY then
        atts[#atts + 1] = v.data
        return { _placeholder = true, num = #atts - 1 }
    end
    local out = {}
    for k, x in pairs(v) do
        out[k] = extract(x, atts)
    end
    return out
end

local function has_binary(v, depth)
    if type(v) ~= "table" then return false end
    if getmetatable(v) == BINARY then return true end
    if depth > 32 then return false end
    for _, x in pairs(v) do
        if has_binary(x, depth + 1) then return true end
    end
    return false
end

-- Puts the attachments back where their placeholders are (as plain strings).
local function restore(v, atts)
    if type(v) ~= "table" then return v end
    if v._placeholder == true and type(v.num) == "number" then return atts[v.num + 1] end
    for k, x in pairs(v) do
        v[k] = restore(x, atts)
    end
    return v
end

-- The JSON array of an event (name first) or of an ack's arguments, and its attachments.
local function pack(first, n, ...)
    if first == nil and n == 0 then return "[]", nil end
    local arr = { first }
    local off = first == nil and 0 or 1
    local atts
    for i = 1, n do
        local v = select(i, ...)
        if v == nil then v = cjson.null end
        if type(v) == "table" and has_binary(v, 0) then
            atts = atts or {}
            v = extract(v, atts)
        end
        arr[i + off] = v
    end
    return encode(arr), atts
end

-- The values of a JSON array, from index |from|.
local function unpack_json(json, atts, from)
    local ok, arr = pcall(decode, json)
    if not ok or type(arr) ~= "table" then return nil, "the server sent JSON that does not decode" end
    if atts then restore(arr, atts) end
    return arr, #arr, from
end

-- ---- clients ---------------------------------------------------------------------------------

local Client = {}
Client.__index = Client
M.Client = Client

-- The fiber function of a handler: calls it with the event's arguments, answers the server's
-- ack request with what it returns, and records an error it raises as an exception.
local function counted(...)
    return { n = select("#", ...), ... }
end

local function run_handler(self, name, json, atts, id)
    local fn = self.handlers[name]
    local args, n = unpack_json(json, atts)
    if not args then return end
    local results
    if fn then
        results = counted(xpcall(fn, debug.traceback, unpack(args, 2, n)))
    else
        fn = self.handlers["*"]
        if not fn then return end
        results = counted(xpcall(fn, debug.traceback, unpack(args, 1, n)))
    end
    if not results[1] then
        local e = results[2]
        if is_signal(e) then return end
        local msg = tostring(e)
        core.exception(msg:match("^[^\n]*"), msg)
        core.log("error", "Socket.IO handler of '" .. name .. "' failed: " .. msg)
        return
    end
    if id and self.c then
        local json2, atts2 = pack(nil, results.n - 1, unpack(results, 2, results.n))
        self.c:ack(id, json2, atts2)
    end
end

score.set_binder(function(dispatch, name, json, atts, id)
    return function() return dispatch(name, json, atts, id) end
end)

-- A client, not yet connected: opts base_url (where connect() goes), path (default
-- "/socket.io/"), namespace ("/"), auth (a table sent when joining the namespace), query
-- (a table added to the URL), headers, timeout (connect, 60 s), call_timeout (60 s),
-- verify, ca_file, cert_file, key_file, max_message.
function M.client(opts)
    opts = opts or {}
    local self = setmetatable({ opts = opts, handlers = {} }, Client)
    if opts.base_url then
        local base, err = url.parse(opts.base_url)
        if not base then error("bad host: " .. err, 2) end
        self.base = base
    end
    return self
end

local WS_SCHEME = { ws = false, wss = true, http = false, https = true }

-- connect([url], [opts]) -> self | nil, error. Joins the namespace; recorded as WS connect,
-- timed from the TCP connect to the namespace's answer (opts.name renames it).
function Client:connect(where, opts)
    if type(where) == "table" then where, opts = nil, where end
    local o = {}
    for k, v in pairs(self.opts) do
        o[k] = v
    end
    for k, v in pairs(opts or EMPTY) do
        o[k] = v
    end
    local u = self.base
    if where then
        local err
        u, err = url.parse(where)
        if not u then error(err, 2) end
    end
    if not u then error("a Socket.IO client needs a host: set host on the class or pass -H", 2) end
    local tls = WS_SCHEME[u.scheme]
    if tls == nil then error("unsupported URL scheme '" .. u.scheme .. "'", 2) end
    local path = o.path or "/socket.io/"
    local query = "EIO=4&transport=websocket"
    if o.query then query = url.encode_query(o.query) .. "&" .. query end
    if u.query and u.query ~= "" then query = u.query .. "&" .. query end
    local headers
    if o.headers then
        local lines = {}
        for k, v in pairs(o.headers) do
            if not tostring(k):match("^[!#$%%&'*+%-.^_`|~%w]+$") or tostring(v):find("[\r\n%z]") then
                error(format("bad header %q", tostring(k)), 2)
            end
            lines[#lines + 1] = k .. ": " .. tostring(v) .. "\r\n"
        end
        headers = table.concat(lines)
    end
    local auth = o.auth
    if type(auth) == "table" then auth = encode(auth) end
    if self.c then self.c:close() end
    local weak = setmetatable({ self }, { __mode = "v" })
    local c = score.new(function(name, json, atts, id)
        local me = weak[1]
        if me then return run_handler(me, name, json, atts, id) end
    end)
    for name in pairs(self.handlers) do
        c:handle(name, true)
    end
    self.c = c
    local ok, err, ms = checked(c:connect({
        tls = tls,
        host = u.host,
        port = u.port,
        authority = url.authority({ scheme = tls and "https" or "http", host = u.host, port = u.port }),
        target = path .. "?" .. query,
        headers = headers,
        timeout = o.timeout,
        insecure = o.verify == false or o.insecure,
        ca_file = o.ca_file,
        cert_file = o.cert_file,
        key_file = o.key_file,
        max_message = o.max_message,
        namespace = o.namespace,
        auth = auth,
    }))
    local name = o.name
    if name == nil then name = "connect" end
    if name then record("WS", name, ms, 0, err) end
    if not ok then return nil, err end
    local _, sid = c:info()
    self.sid = sid
    return self
end

local function core_of(self)
    local c = self.c
    if not c then error("the Socket.IO client is not connected: call connect() first", 3) end
    return c
end

-- on(event, fn): fn(args...) runs, in a fiber of its own, for each event of that name (for
-- "*", fn(event, args...) for every event without a handler of its own). What fn returns
-- answers the server when it asked for an acknowledgement. on(event, nil) removes it.
function Client:on(event, fn)
    if type(event) ~= "string" then error("on: the event name must be a string", 2) end
    if fn ~= nil and type(fn) ~= "function" then error("on: the handler must be a function", 2) end
    self.handlers[event] = fn
    if self.c then self.c:handle(event, fn ~= nil) end
end

-- args(a, b, ...): several arguments for one event (Python-socketio's tuple).
local ARGS = {}
function M.args(...)
    return setmetatable({ n = select("#", ...), ... }, ARGS)
end

-- The JSON array and attachments of an event |event| whose data is |data|.
local function pack_data(event, data)
    if data == nil then return pack(event, 0) end
    if type(data) == "table" and getmetatable(data) == ARGS then
        return pack(event, data.n, unpack(data, 1, data.n))
    end
    return pack(event, 1, data)
end

-- emit(event, [data], [opts]) -> true | nil, error. Recorded as WSE with the payload's size
-- (opts.name renames it; false records nothing).
function Client:emit(event, data, opts)
    local c = core_of(self)
    local json, atts = pack_data(event, data)
    local ok, err = c:emit(json, atts)
    local name = (opts or EMPTY).name
    if name == nil then name = event end
    if name then record("WSE", name, 0, #json, err) end
    return ok, err
end

-- send(data, [opts]) -> true | nil, error: a "message" event, recorded as WSS under opts.name
-- ("Unnamed" by default), as Locust's SocketIOUser.send.
function Client:send(data, opts)
    local c = core_of(self)
    local json, atts = pack_data("message", data)
    local ok, err = c:emit(json, atts)
    local name = (opts or EMPTY).name
    if name == nil then name = "Unnamed" end
    if name then record("WSS", name, 0, #json, err) end
    return ok, err
end

-- call(event, [data], [opts]) -> the answer's values (true when it has none) | nil, error.
-- Waits for the server's acknowledgement, up to opts.timeout (the client's call_timeout, 60 s
-- by default); recorded as WSC with the round trip from the emit to the answer.
function Client:call(event, data, opts)
    opts = opts or EMPTY
    local c = core_of(self)
    local json, atts = pack_data(event, data)
    local name = opts.name
    if name == nil then name = event end
    local timeout = opts.timeout or self.opts.call_timeout or 60
    local answer, atts2 = checked(c:call(json, atts, timeout, name or nil))
    if not answer then return nil, atts2 end
    local args, count = unpack_json(answer, atts2)
    if not args then return nil, count end
    if count == 0 then return true end
    return unpack(args, 1, count)
end

-- wait([event], [timeout]) -> event, args... | nil, error. The next event (of that name, when
-- given) that arrives from now on; handlers still run for it. Not recorded beyond its WSR.
function Client:wait(event, timeout)
    local c = core_of(self)
    local name, json, atts = checked(c:wait(event, timeout or self.opts.timeout or 0))
    if not name then return nil, json end
    local args, n = unpack_json(json, atts)
    if not args then return nil, n end
    return unpack(args, 1, n)
end

-- disconnect() -> true | nil, error. Leaves the namespace and closes, waiting for the close.
function Client:disconnect()
    local c = self.c
    if not c then return true end
    return checked(c:disconnect())
end

function Client:connected()
    return self.c ~= nil and (self.c:info())
end

-- Closes at once.
function Client:close()
    if self.c then self.c:close() end
end

-- ---- SocketIOUser -----------------------------------------------------------------------------

M.SocketIOUser = class.User:extend("SocketIOUser", {
    abstract = true,
    timeout = 60,      -- seconds: connect
    call_timeout = 60, -- seconds: call() without its own
    verify = true,
})

local SocketIOUser = M.SocketIOUser

SocketIOUser.__validate = require("cicada.websocket").check_host

-- Each user gets its own client, self.client (Locust's self.sio is the same object), not yet
-- connected: on_start calls self.client:connect().
function SocketIOUser.__construct(self)
    self.client = M.client({
        base_url = self.host,
        path = self.path,
        namespace = self.namespace,
        auth = self.auth,
        query = self.query,
        headers = self.headers,
        timeout = self.timeout,
        call_timeout = self.call_timeout,
        verify = self.verify and not (self.environment.parsed_options or EMPTY).insecure,
        ca_file = self.ca_file,
        cert_file = self.cert_file,
        key_file = self.key_file,
        max_message = self.max_message,
    })
    self.sio = self.client
end

return M
