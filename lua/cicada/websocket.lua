-- SPDX-License-Identifier: MIT
-- cicada.websocket: WebSocket connections (ws:// and wss://) and WebSocketUser. Every operation
-- is recorded with request type "WS": connect, send, recv and ping (names can be changed per
-- call). The wire work is in C (cicada.ws.core); see docs/websocket.md.

local core = require "cicada.core"
local wcore = require "cicada.ws.core"
local url = require "cicada.url"
local class = require "cicada.class"
local signals = require "cicada.signals"

local M = {}

local record = core.record
local checked = signals.checked
local format = string.format
local EMPTY = {}

local WS_SCHEME = { ws = "ws", wss = "wss", http = "ws", https = "wss" }

local function valid_header(name, value)
    return type(name) == "string" and name:match("^[!#$%%&'*+%-.^_`|~%w]+$") ~= nil
        and not tostring(value):find("[\r\n%z]")
end

-- The extra header lines: opts.headers (a table), plus Origin when opts.origin is set.
local function header_lines(opts)
    local lines = {}
    local names = {}
    for k in pairs(opts.headers or EMPTY) do
        names[#names + 1] = k
    end
    table.sort(names)
    for _, k in ipairs(names) do
        local v = opts.headers[k]
        if v ~= false then
            if not valid_header(k, v) then error(format("bad header %q", tostring(k)), 4) end
            lines[#lines + 1] = k .. ": " .. tostring(v) .. "\r\n"
        end
    end
    if opts.origin then lines[#lines + 1] = "Origin: " .. tostring(opts.origin) .. "\r\n" end
    return #lines > 0 and table.concat(lines) or nil
end

-- ---- connections -------------------------------------------------------------------------------

local Conn = {}
Conn.__index = Conn
M.Connection = Conn

-- A connection not yet connected, with default options for connect(): base_url (where paths
-- go), headers, origin, protocols, timeout, receive_timeout, verify, ca_file, cert_file,
-- key_file, max_message, max_queue.
function M.client(opts)
    local self = setmetatable({ opts = opts or {} }, Conn)
    if self.opts.base_url then
        local base, err = url.parse(self.opts.base_url)
        if not base then error("bad host: " .. err, 2) end
        self.base = base
    end
    return self
end

-- The URL a connect() goes to: a full ws:// / wss:// (or http:// / https://) URL, or a path
-- joined to the base URL.
local function target_url(self, where)
    local u, err
    if where == nil or where:sub(1, 1) == "/" then
        if not self.base then
            error("a WebSocket path needs a host: set host on the class or pass -H", 4)
        end
        local b = self.base
        local path = where or (b.path .. (b.query and ("?" .. b.query) or ""))
        if where and b.path ~= "/" then path = b.path:gsub("/$", "") .. where end
        u = { scheme = b.scheme, host = b.host, port = b.port, path = path:match("^[^?]*"),
              query = path:match("%?(.*)$") }
    else
        u, err = url.parse(where)
        if not u then error(err, 4) end
    end
    local scheme = WS_SCHEME[u.scheme]
    if not scheme then error("unsupported URL scheme '" .. u.scheme .. "' (ws:// or wss://)", 4) end
    return u, scheme == "wss"
end

-- connect([path_or_url], [opts]) -> self | nil, error. Opens the connection (waiting for the
-- handshake) and records it as WS connect (opts.name renames it). Options as for client().
function Conn:connect(where, opts)
    if type(where) == "table" then where, opts = nil, where end
    local o = {}
    for k, v in pairs(self.opts) do
        o[k] = v
    end
    for k, v in pairs(opts or EMPTY) do
        o[k] = v
    end
    if opts and opts.headers and self.opts.headers then
        -- headers add to the client's; false removes one of them
        local h = {}
        for k, v in pairs(self.opts.headers) do
            h[k] = v
        end
        for k, v in pairs(opts.headers) do
            h[k] = v
        end
        o.headers = h
    end
    local u, tls = target_url(self, where)
    local protocols = o.protocols
    if type(protocols) == "table" then protocols = table.concat(protocols, ", ") end
    if self.c then self.c:abort() end
    local c = wcore.new()
    self.c = c
    self.url = u
    local ok, err, ms = checked(c:connect({
        tls = tls,
        host = u.host,
        port = u.port,
        authority = url.authority({ scheme = tls and "https" or "http", host = u.host, port = u.port }),
        target = url.target(u),
        protocols = protocols,
        headers = header_lines(o),
        timeout = o.timeout,
        insecure = o.verify == false or o.insecure,
        ca_file = o.ca_file,
        cert_file = o.cert_file,
        key_file = o.key_file,
        max_message = o.max_message,
        max_queue = o.max_queue,
    }))
    local name = o.name
    if name == nil then name = "connect" end
    if name then record("WS", name, ms, 0, err) end
    if not ok then return nil, err end
    local _, proto = c:info()
    self.protocol = proto ~= "" and proto or nil
    -- this connection's timeouts: the options of this connect() over the client's
    self.timeout = o.timeout
    self.receive_timeout = o.receive_timeout or o.timeout
    return self
end

local function conn_of(self)
    local c = self.c
    if not c then error("the WebSocket is not connected: call connect() first", 3) end
    return c
end

-- send(data, [opts]) -> true | nil, error. A text message (opts.binary: binary), recorded as
-- WS send with its length and the time a server that does not read held it back (0 when it
-- did not) (opts.name renames it; false records nothing).
function Conn:send(data, opts)
    opts = opts or EMPTY
    local c = conn_of(self)
    data = tostring(data)
    local ok, err, ms = checked(c:send(data, opts.binary, self.timeout or 0))
    local name = opts.name
    if name == nil then name = "send" end
    if name then record("WS", name, ms or 0, #data, err) end
    return ok, err
end

-- send_binary(data, [opts]): send() of a binary message.
function Conn:send_binary(data, opts)
    local o = { binary = true }
    for k, v in pairs(opts or EMPTY) do
        o[k] = v
    end
    return self:send(data, o)
end

-- receive([timeout], [opts]) -> data, "text"|"binary" | nil, error. The next message, waiting
-- up to timeout seconds (default: the client's timeout option; 0 or false: forever). Recorded as
-- WS recv with the time waited and the length; a timeout or a closed connection is a failure.
function Conn:receive(timeout, opts)
    if type(timeout) == "table" then timeout, opts = nil, timeout end
    opts = opts or EMPTY
    if timeout == nil then timeout = self.receive_timeout end
    local data, kind, ms = checked(conn_of(self):receive(timeout or 0))
    local name = opts.name
    if name == nil then name = "recv" end
    if name then record("WS", name, ms, data and #data or 0, not data and kind or nil) end
    if not data then return nil, kind end
    return data, kind
end

-- ping([payload], [opts]) -> round-trip ms | nil, error. Waits for the pong (up to opts.timeout
-- seconds); recorded as WS ping.
function Conn:ping(payload, opts)
    if type(payload) == "table" then payload, opts = nil, payload end
    opts = opts or EMPTY
    local ms, err, ms2 = checked(conn_of(self):ping(payload or "", opts.timeout or self.timeout or 0))
    local name = opts.name
    if name == nil then name = "ping" end
    if name then record("WS", name, ms or ms2, 0, err) end
    return ms, err
end

-- close([code], [reason]) -> true | nil, error. The closing handshake (code 1000 by default),
-- waiting for the server's close frame up to 5 s. Not recorded.
function Conn:close(code, reason)
    local c = self.c
    if not c then return true end
    local ok, err = checked(c:close(code or 1000, reason or ""))
    return ok, err
end

-- Whether the connection is open, and what the server's close frame said once it is not.
function Conn:is_open()
    return self.c ~= nil and (self.c:info())
end

function Conn:close_status()
    if not self.c then return nil end
    local _, _, code, reason = self.c:info()
    return code, reason
end

-- Messages received and not yet taken by receive(), and those dropped because the queue was
-- full (max_queue, 1024 by default).
function Conn:queued()
    if not self.c then return 0, 0 end
    local _, _, _, _, n, dropped = self.c:info()
    return n, dropped
end

-- Closes at once, without the closing handshake.
function Conn:abort()
    if self.c then self.c:abort() end
end

-- connect(url, [opts]) -> connection | nil, error: a new connection to url.
function M.connect(where, opts)
    return M.client(opts):connect(where)
end

-- ---- WebSocketUser ---------------------------------------------------------------------------

M.WebSocketUser = class.User:extend("WebSocketUser", {
    abstract = true,
    timeout = 60,  -- seconds: connect (with the handshake), and receive() without its own
    verify = true, -- wss: verify the server's certificate
})

local WebSocketUser = M.WebSocketUser

-- Checks a user class's host, when it has one, for a WebSocket connection (the Socket.IO
-- user's too): a URL whose scheme is ws, wss, http or https.
function M.check_host(cls)
    if cls.host then
        local u, err = url.parse(cls.host)
        if not u then error((rawget(cls, "__defined_at") or "?") .. ": bad host: " .. err, 0) end
        if not WS_SCHEME[u.scheme] then
            error((rawget(cls, "__defined_at") or "?") .. ": host must be ws://, wss://, http:// "
                .. "or https://", 0)
        end
    end
end

WebSocketUser.__validate = M.check_host

-- Each user gets its own client, self.client, not yet connected: on_start calls
-- self.client:connect("/path").
function WebSocketUser.__construct(self)
    self.client = M.client({
        base_url = self.host,
        headers = self.headers,
        origin = self.origin,
        protocols = self.protocols,
        timeout = self.timeout,
        receive_timeout = self.receive_timeout,
        verify = self.verify and not (self.environment.parsed_options or EMPTY).insecure,
        ca_file = self.ca_file,
        cert_file = self.cert_file,
        key_file = self.key_file,
        max_message = self.max_message,
        max_queue = self.max_queue,
    })
end

return M
