-- SPDX-License-Identifier: MIT
-- cicada.redis: RedisUser and its client: every Redis command as a method
-- (client:get(k), client:set(k, v), client:hincrby(k, f, 1), or client:call("SET", k, v)),
-- pipelines (several commands in one round trip), errors as failures. Each command is recorded
-- as request type "redis", named after the command. The wire work is in C (cicada.redis.core,
-- src/proto/redis/).

local rcore = require "cicada.redis.core"
local class = require "cicada.class"
local signals = require "cicada.signals"

local M = {}

local checked = signals.checked
local EMPTY = {}
local upper = string.upper

-- A nil inside an array reply (MGET of a missing key, say): equal to cjson.null.
M.null = rcore.null

-- "redis://[user:password@]host[:port][/db]", "rediss://..." (TLS), "host:port", "host"
-- -> { host =, port =, tls =, username =, password =, db = }, or nil and the error.
function M.parse_url(u)
    if type(u) ~= "string" or u == "" then return nil, "no host" end
    local scheme, rest = u:match("^(%a[%w+.-]*)://(.*)$")
    local r = {}
    if scheme then
        scheme = scheme:lower()
        if scheme == "rediss" then
            r.tls = true
        elseif scheme ~= "redis" and scheme ~= "tcp" then
            return nil, "unsupported scheme '" .. scheme .. "' (redis:// or rediss://)"
        end
    else
        rest = u
    end
    local auth, hostpart = rest:match("^(.*)@([^@]*)$")
    if auth then
        local user, pass = auth:match("^([^:]*):(.*)$")
        if user then
            r.username = user ~= "" and user or nil
            r.password = pass
        else
            r.password = auth
        end
        rest = hostpart
    end
    local path
    rest, path = rest:match("^([^/]*)(.*)$")
    local db = path and path:match("^/(%d+)")
    if db then r.db = tonumber(db) end
    local host, port = rest:match("^%[(.+)%]:?(%d*)$")
    if not host then host, port = rest:match("^([^:]+):?(%d*)$") end
    if not host or host == "" then return nil, "bad host '" .. u .. "'" end
    r.host, r.port = host, tonumber(port)
    return r
end

-- ---- the client --------------------------------------------------------------------------------

local Client = {}
M.Client = Client

-- Any other method is the Redis command of that name: client:hset(k, f, v) is
-- client:call("HSET", k, f, v). The functions are made once per name.
local Client_mt = {}
Client_mt.__index = function(_, k)
    local v = Client[k]
    if v ~= nil or type(k) ~= "string" then return v end
    local cmd = upper(k)
    v = function(self, ...)
        return checked(self.core:call(cmd, ...))
    end
    Client[k] = v
    return v
end

-- A client: opts has host (a host, host:port, or a redis:// or rediss:// URL), port, username,
-- password, db, tls, verify, ca_file, cert_file, key_file, connect_timeout, timeout (seconds),
-- max_reply (bytes). It connects on its first command.
function M.client(opts)
    opts = opts or EMPTY
    local u, err = M.parse_url(opts.host or "127.0.0.1")
    if not u then error(err, 2) end
    local tls = opts.tls
    if tls == nil then tls = u.tls end
    local tls_opts = type(tls) == "table" and tls or EMPTY
    local verify = opts.verify
    if tls_opts.verify ~= nil then verify = tls_opts.verify end
    local self = setmetatable({ host = u.host }, Client_mt)
    self.core = rcore.client({
        host = u.host,
        port = opts.port or u.port,
        username = opts.username or u.username,
        password = opts.password or u.password,
        db = opts.db or u.db,
        tls = tls and true or false,
        verify = verify,
        ca_file = tls_opts.ca_file or opts.ca_file,
        cert_file = tls_opts.cert_file or opts.cert_file,
        key_file = tls_opts.key_file or opts.key_file,
        connect_timeout = opts.connect_timeout,
        timeout = opts.timeout,
        max_reply = opts.max_reply,
    })
    return self
end

-- call(cmd, arg...): runs one command and returns its reply, or nil and the error (a Redis
-- error reply, such as "WRONGTYPE ...", or a connection's failure). A nil reply is nil.
function Client:call(...)
    return checked(self.core:call(...))
end

-- The commands whose names are also Lua-side methods here, spelled out for readers.
function Client:get(key)
    return checked(self.core:call("GET", key))
end

function Client:set(key, value, ...)
    return checked(self.core:call("SET", key, value, ...))
end

-- pipeline({ {"SET", "a", 1}, {"GET", "a"} }) sends them in one write and returns the list of
-- replies (an error reply is { false, message }, a nil is redis.null), or nil and the error
-- when the connection failed. pipeline() with no list returns a builder:
--   local p = client:pipeline(); p:set("a", 1); p:incr("n"); local res = p:execute()
local Pipeline = {}
local Pipeline_mt = {}
Pipeline_mt.__index = function(_, k)
    local v = Pipeline[k]
    if v ~= nil or type(k) ~= "string" then return v end
    local cmd = upper(k)
    v = function(self, ...)
        local c = { cmd, ... }
        self.cmds[#self.cmds + 1] = c
        return self
    end
    Pipeline[k] = v
    return v
end

function Pipeline:call(...)
    self.cmds[#self.cmds + 1] = { ... }
    return self
end

function Pipeline:execute()
    local cmds = self.cmds
    self.cmds = {}
    return checked(self.client.core:pipeline(cmds))
end

function Client:pipeline(cmds)
    if cmds == nil then return setmetatable({ client = self, cmds = {} }, Pipeline_mt) end
    return checked(self.core:pipeline(cmds))
end

-- Closes the connection now; the next command connects again.
function Client:close()
    self.core:close()
end

function Client:is_connected()
    return self.core:is_connected()
end

-- Why the last connection failed or ended, or nil.
function Client:last_error()
    return self.core:last_error()
end

-- ---- RedisUser ----------------------------------------------------------------------------------

M.RedisUser = class.User:extend("RedisUser", {
    abstract = true,
    username = nil,
    password = nil,
    db = nil,             -- SELECT on connect
    tls = nil,            -- true (or rediss://), or { ca_file =, cert_file =, key_file =, verify = }
    connect_timeout = 60, -- seconds
    timeout = 60,         -- seconds to wait for a reply
    max_reply = nil,      -- bytes (default 64 MiB)
})

local RedisUser = M.RedisUser

function RedisUser.__validate(cls)
    local ok, err = M.parse_url(cls.host or "127.0.0.1")
    if not ok then error((rawget(cls, "__defined_at") or "?") .. ": " .. err, 0) end
end

local rt_ok, rt = pcall(require, "cicada.runtime")
local handler = rt_ok and rt.handler or debug.traceback

-- Each user gets its own client (one connection); it closes when the user stops.
function RedisUser.__construct(self)
    local env = self.environment or EMPTY
    local insecure = (env.parsed_options or EMPTY).insecure
    self.client = M.client({
        host = self.host or "127.0.0.1",
        port = self.port,
        username = self.username,
        password = self.password,
        db = self.db,
        tls = self.tls,
        verify = insecure and false or nil,
        connect_timeout = self.connect_timeout,
        timeout = self.timeout,
        max_reply = self.max_reply,
    })
    local stop = self.on_stop
    rawset(self, "on_stop", function(s)
        local ok, e = xpcall(stop, handler, s)
        s.client:close()
        if not ok then error(e, 0) end
    end)
end

return M
