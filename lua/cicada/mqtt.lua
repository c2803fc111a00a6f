-- SPDX-License-Identifier: MIT
-- cicada.mqtt: MqttUser and its client, as Locust's MqttUser (locust.contrib.mqtt): a user
-- whose self.client connects, publishes (QoS 0, 1, 2; waiting for PUBACK or PUBCOMP),
-- subscribes with per-topic message handlers, unsubscribes and disconnects, every operation
-- recorded as request type "MQTT". The wire work is libmosquitto's, on the worker's loop
-- (cicada.mqtt.core, src/proto/mqtt/).

local mcore = require "cicada.mqtt.core"
local class = require "cicada.class"
local signals = require "cicada.signals"

local M = {}

local checked = signals.checked
local EMPTY = {}

-- ---- hosts and ids ----------------------------------------------------------------------------

local ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

-- A client id as Locust makes them: "cicada-" and 16 letters or digits (23 characters, the
-- most MQTT 3.1 brokers accept).
function M.random_client_id()
    local t = {}
    for i = 1, 16 do
        local k = math.random(1, #ALNUM)
        t[i] = ALNUM:sub(k, k)
    end
    return "cicada-" .. table.concat(t)
end

-- "mqtt://host:1883", "mqtts://host:8883", "tcp://", "ssl://", "tls://", "host:port", "host",
-- "[::1]:1883" -> host, port (or nil), tls (true, false, or nil when the text does not say).
function M.parse_host(h)
    if type(h) ~= "string" or h == "" then return nil, "no host" end
    local scheme, rest = h:match("^(%a[%w+.-]*)://(.*)$")
    local tls
    if scheme then
        scheme = scheme:lower()
        if scheme == "mqtt" or scheme == "tcp" then
            tls = false
        elseif scheme == "mqtts" or scheme == "ssl" or scheme == "tls" then
            tls = true
        elseif scheme == "ws" or scheme == "wss" then
            return nil, "MQTT over WebSocket is not supported: use mqtt:// or mqtts://"
        else
            return nil, "unsupported scheme '" .. scheme .. "' (mqtt:// or mqtts://)"
        end
    else
        rest = h
    end
    rest = rest:gsub("/.*$", "")
    local host, port = rest:match("^%[(.+)%]:?(%d*)$")
    if not host then host, port = rest:match("^([^:/]+):?(%d*)$") end
    if not host or host == "" then return nil, "bad host '" .. h .. "'" end
    return host, tonumber(port), tls
end

-- ---- the client ---------------------------------------------------------------------------------

local Client = {}
Client.__index = Client
M.Client = Client

-- A subclass, for clients of your own (Locust's custom MqttClient):
--   local MyClient = mqtt.Client:extend({ event_name = function(self, kind, qos, topic) ... end })
function Client:extend(t)
    t = t or {}
    t.__index = t
    return setmetatable(t, { __index = self })
end

-- The statistics name of an operation. A subclass may return its own; this one means the
-- default, "<kind>:<qos>:<topic>" ("connect" and "disconnect" alone).
function Client:event_name(kind, qos, topic) -- luacheck: ignore
    return nil
end
local default_event_name = Client.event_name

-- A client: opts has host (required), port, tls, verify, ca_file, cert_file, key_file,
-- client_id, clean_session, username, password, keepalive, protocol, will, connect_timeout,
-- timeout, auto_connect; |cls| is the class (Client or a subclass).
function M.client(opts, cls)
    opts = opts or EMPTY
    cls = cls or Client
    local host, port, tls = M.parse_host(opts.host)
    if not host then error(port, 2) end
    if opts.tls ~= nil then tls = opts.tls and true or false end
    local tls_opts = type(opts.tls) == "table" and opts.tls or EMPTY
    local id = opts.client_id
    if id == nil then id = M.random_client_id() end
    if id == false then id = nil end -- MQTT 5: let the broker assign one
    local verify = opts.verify
    if tls_opts.verify ~= nil then verify = tls_opts.verify end
    local self = setmetatable({
        host = host,
        client_id = id,
        auto_connect = opts.auto_connect ~= false,
    }, cls)
    self.core = mcore.client({
        host = host,
        port = opts.port or port,
        tls = tls,
        verify = verify,
        ca_file = tls_opts.ca_file or opts.ca_file,
        cert_file = tls_opts.cert_file or opts.cert_file,
        key_file = tls_opts.key_file or opts.key_file,
        client_id = id,
        clean_session = opts.clean_session,
        username = opts.username,
        password = opts.password,
        keepalive = opts.keepalive,
        protocol = opts.protocol,
        will = opts.will,
        connect_timeout = opts.connect_timeout,
        timeout = opts.timeout,
    })
    return self
end

-- Connects (and records "connect", timed to the CONNACK). Returns true, or nil and the error.
-- Operations connect by themselves when needed (auto_connect), so calling it is optional; it
-- is how on_start makes a user connect before its first task.
function Client:connect()
    return checked(self.core:connect())
end

local function custom_name(self, kind, qos, topic, name)
    if self.event_name ~= default_event_name then
        local n = self:event_name(kind, qos, name or topic)
        if n ~= nil then return tostring(n), true end
    end
    return name, false
end

-- publish(topic, payload, [qos], [retain]) or publish(topic, payload, { qos =, retain =,
-- stamp =, name =, wait = }): waits until the broker has the message (QoS 1: PUBACK, QoS 2:
-- PUBCOMP; QoS 0: until it is written) and records "publish:<qos>:<topic>" (or <name> in place
-- of the topic). stamp = true puts the time in front of the payload, for subscribers to
-- measure the delivery. wait = false returns at once and records the publish when it
-- completes, as Locust's MqttUser does (up to 20 such messages in flight per client, the
-- window libmosquitto sends; past that it waits). Returns true, or nil and the error.
function Client:publish(topic, payload, qos, retain)
    local stamp, name, no_wait
    if type(qos) == "table" then
        local o = qos
        qos, retain, stamp, name, no_wait = o.qos, o.retain, o.stamp, o.name, o.wait == false
    end
    qos = qos or 0
    local full = false
    if self.event_name ~= default_event_name then
        name, full = custom_name(self, "publish", qos, topic, name)
    end
    local core = self.core
    local r, err = checked(core:publish(topic, payload, qos, retain, stamp, name, full,
                                        self.auto_connect, no_wait))
    if r == false then
        self:connect()
        r, err = checked(core:publish(topic, payload, qos, retain, stamp, name, full, false,
                                      no_wait))
    end
    return r, err
end

-- subscribe(filter, [qos], [handler], [opts]) in any order after the filter: handler is a
-- function(topic, payload, qos, retain, latency_ms) called for each message the filter
-- matches (it must not wait: it runs while the message is read); opts may hold qos, handler
-- and name. Waits for the SUBACK and records "subscribe:<qos>:<filter>". Returns the granted
-- QoS, or nil and the error.
function Client:subscribe(filter, a, b, c)
    local qos, handler, name = 0, nil, nil
    local function take(v)
        local t = type(v)
        if t == "number" then
            qos = v
        elseif t == "function" then
            handler = v
        elseif t == "table" then
            qos = v.qos or qos
            handler = v.handler or handler
            name = v.name or name
        elseif v ~= nil then
            error("subscribe: unexpected " .. t .. " argument", 3)
        end
    end
    take(a)
    take(b)
    take(c)
    local full = false
    if self.event_name ~= default_event_name then
        name, full = custom_name(self, "subscribe", qos, filter, name)
    end
    local core = self.core
    local r, err = checked(core:subscribe(filter, qos, handler, name, full, self.auto_connect))
    if r == false then
        self:connect()
        r, err = checked(core:subscribe(filter, qos, handler, name, full, false))
    end
    return r, err
end

-- Unsubscribes (its handler stops at once), waits for the UNSUBACK and records
-- "unsubscribe:<filter>". Returns true, or nil and the error.
function Client:unsubscribe(filter)
    local core = self.core
    local r, err = checked(core:unsubscribe(filter, self.auto_connect))
    if r == false then
        self:connect()
        r, err = checked(core:unsubscribe(filter, false))
    end
    return r, err
end

-- Sends DISCONNECT and records "disconnect" (timed until the connection is closed). The
-- subscriptions are forgotten; a later operation connects again.
function Client:disconnect()
    return checked(self.core:disconnect())
end

-- Drops the connection at once: no DISCONNECT (so the broker publishes the will), no record.
-- With drop = true, publishes sent with wait = false and still in flight are dropped
-- unrecorded instead of failing (what a stopping user does).
function Client:close(drop)
    self.core:close(drop)
end

function Client:is_connected()
    return self.core:is_connected()
end

-- Why the last connection failed or ended, or nil.
function Client:last_error()
    return self.core:last_error()
end

-- The handler of messages that no subscription's handler takes (nil removes it).
function Client:on_message(fn)
    self.core:on_message(fn)
end

-- The delivery stamp, for payloads built by hand: stamp(payload) puts the time in front;
-- unstamp(payload) gives the payload back and the milliseconds since it was stamped (nil when
-- there is no stamp).
M.stamp = mcore.stamp
M.unstamp = mcore.unstamp

-- ---- MqttUser ----------------------------------------------------------------------------------

M.MqttUser = class.User:extend("MqttUser", {
    abstract = true,
    port = nil,            -- default 1883, or 8883 with TLS
    transport = "tcp",     -- the only one (Locust also has "websockets")
    tls = nil,             -- true, or { ca_file =, cert_file =, key_file =, verify = }
    client_id = nil,       -- default: "cicada-" and 16 random letters or digits
    clean_session = true,
    username = nil,
    password = nil,
    protocol = "3.1.1",    -- or "5" (Locust's MQTTv311, MQTTv5)
    keepalive = 60,        -- seconds
    will = nil,            -- { topic =, payload =, qos =, retain = }
    connect_timeout = 60,  -- seconds: resolve, TCP, TLS and CONNACK
    timeout = 60,          -- seconds to wait for an acknowledgement
    auto_connect = true,   -- operations connect when not connected
    client_class = Client, -- a Client subclass, for custom clients
})

local MqttUser = M.MqttUser

function MqttUser.__validate(cls)
    local where = (rawget(cls, "__defined_at") or "?") .. ": "
    if cls.transport ~= "tcp" then
        error(where .. "MqttUser: transport \"" .. tostring(cls.transport)
              .. "\" is not supported (only \"tcp\", with tls for TLS)", 0)
    end
    local ok, err = M.parse_host(cls.host or "localhost")
    if not ok then error(where .. err, 0) end
end

local rt_ok, rt = pcall(require, "cicada.runtime")
local handler = rt_ok and rt.handler or debug.traceback

-- Each user gets its own client; it is closed when the user stops (after its on_stop).
function MqttUser.__construct(self)
    local env = self.environment or EMPTY
    local insecure = (env.parsed_options or EMPTY).insecure
    local tls = self.tls
    self.client = M.client({
        host = self.host or "localhost",
        port = self.port,
        tls = tls,
        verify = insecure and false or nil,
        client_id = self.client_id,
        clean_session = self.clean_session,
        username = self.username,
        password = self.password,
        keepalive = self.keepalive,
        protocol = self.protocol,
        will = self.will,
        connect_timeout = self.connect_timeout,
        timeout = self.timeout,
        auto_connect = self.auto_connect,
    }, self.client_class)
    local stop = self.on_stop
    rawset(self, "on_stop", function(s)
        local ok, e = xpcall(stop, handler, s)
        s.client:close(true)
        if not ok then error(e, 0) end
    end)
end

return M
