-- SPDX-License-Identifier: MIT
-- cicada.socket: LuaSocket's `socket.core`, cooperative. Inside cicada, `require "socket.core"`
-- loads this module (package.preload), so LuaSocket's own Lua modules (socket.lua,
-- socket/http.lua, ltn12.lua, socket/url.lua, mime.lua, from Debian's lua-socket) run on top
-- of it unchanged, and every call that waits parks only the user that made it. OpenResty's
-- cosocket methods (receiveuntil, receiveany, setkeepalive, sslhandshake, settimeouts) are
-- there too. See docs/luasocket.md.

local core = require "cicada.socket.core"
local ccore = require "cicada.core"
local signals = require "cicada.signals"

local checked = signals.checked
local type, select, error, pcall, tostring = type, select, error, pcall, tostring
local setmetatable, getmetatable = setmetatable, debug.getmetatable
local concat = table.concat

local socket = {
    _VERSION = "LuaSocket 3.1.0",
    _SETSIZE = 1024,
    _SOCKETINVALID = -1,
    _DEBUG = false,
    -- LuaSocket's socket.http names itself after _VERSION; this says which one runs underneath
    cicada = ccore.version,
}

local tcp_methods, ssl_methods = core.tcp_methods, core.ssl_methods

-- ---- objects --------------------------------------------------------------------------------

local c_tcp = core.tcp
function socket.tcp()
    return c_tcp(0)
end
function socket.tcp4()
    return c_tcp(4)
end
function socket.tcp6()
    return c_tcp(6)
end

local function no_udp()
    return nil, "udp is not supported by cicada's cooperative sockets"
end
socket.udp, socket.udp4, socket.udp6 = no_udp, no_udp, no_udp

-- socket.connect(address, port [, laddress [, lport [, family]]])
function socket.connect(address, port, laddress, lport, family)
    local make = family == "inet" and socket.tcp4 or family == "inet6" and socket.tcp6 or socket.tcp
    local sock, err = make()
    if not sock then return nil, err end
    if laddress then
        local ok, e = sock:bind(laddress, lport or 0)
        if not ok then
            sock:close()
            return nil, e
        end
    end
    local ok, e = sock:connect(address, port)
    if not ok then
        sock:close()
        return nil, e
    end
    return sock
end

-- ---- methods that wait ------------------------------------------------------------------------

local c_connect, c_send, c_receive = core.connect, core.send, core.receive
local c_receiveany, c_receiveuntil = core.receiveany, core.receiveuntil
local c_sslhandshake, c_dohandshake = core.sslhandshake, core.dohandshake

function tcp_methods:connect(host, port, opts)
    return checked(c_connect(self, host, port, opts))
end

-- OpenResty's send also takes a table of pieces (strings, numbers, booleans, nested tables).
local function flatten(t, out)
    for i = 1, #t do
        local v = t[i]
        local tv = type(v)
        if tv == "table" then
            flatten(v, out)
        elseif tv == "string" or tv == "number" or tv == "boolean" then
            out[#out + 1] = tostring(v)
        elseif v ~= nil then
            error("bad data type " .. tv .. " found in the table to send", 3)
        end
    end
    return out
end

local function send(self, data, i, j)
    if type(data) == "table" then data = concat(flatten(data, {})) end
    return checked(c_send(self, data, i, j))
end

-- LuaSocket 3's prefix: counted in a byte count, and put before the data or the partial result.
local function prefixed(prefix, data, err, partial)
    if data then return prefix .. data, err, partial end
    return nil, err, partial and prefix .. partial or prefix
end

local function receive(self, pattern, prefix)
    if prefix == nil or prefix == "" then return checked(c_receive(self, pattern)) end
    prefix = tostring(prefix)
    return prefixed(prefix, checked(c_receive(self, pattern, #prefix)))
end

local function receiveany(self, max)
    return checked(c_receiveany(self, max))
end

-- OpenResty's receiveuntil: an iterator over the data before |pattern|. Called without a
-- size it returns everything up to the pattern; with one, that many bytes at a time, then
-- nil, nil once the pattern is reached (and the reader starts over).
local function receiveuntil(self, pattern, opts)
    if type(pattern) ~= "string" or pattern == "" then
        error("bad pattern argument: a non-empty string expected", 2)
    end
    local inclusive = type(opts) == "table" and opts.inclusive and true or false
    local ended = false
    return function(size)
        if ended then
            ended = false
            return nil, nil
        end
        local data, err, partial, last = checked(c_receiveuntil(self, pattern, size, inclusive))
        if data == false then return nil, nil end
        if last then ended = true end
        return data, err, partial
    end
end

-- OpenResty's sslhandshake(reused_session, server_name, ssl_verify): true, or nil and the
-- error. cicada resumes TLS sessions by itself (per thread and server), so the session
-- argument is not needed; a truthy value is returned in its place.
function tcp_methods:sslhandshake(reused_session, server_name, ssl_verify)
    return checked(c_sslhandshake(self, reused_session, server_name, ssl_verify))
end

-- LuaSec's dohandshake: true, or false and the error.
function ssl_methods:dohandshake()
    local ok, err = checked(c_dohandshake(self))
    if ok then return true end
    return false, err
end

for _, m in ipairs { tcp_methods, ssl_methods } do
    m.send, m.receive, m.receiveany, m.receiveuntil = send, receive, receiveany, receiveuntil
end

-- ---- exceptions: LuaSocket's newtry and protect -------------------------------------------------

-- Errors raised by a try carry this metatable (hidden, as LuaSocket's are), so that protect
-- tells them from other errors.
local TryError = { __metatable = false }
local function nothing() end

function socket.newtry(finalizer)
    finalizer = finalizer or nothing
    return function(ok, ...)
        if ok then return ok, ... end
        finalizer()
        error(setmetatable({ (...) }, TryError), 0)
    end
end

local function unwrap(ok, ...)
    if ok then return ... end
    local e = ...
    if type(e) == "table" and getmetatable(e) == TryError then return nil, e[1] end
    error(e, 0) -- anything else, a user's Killed signal included, goes on up
end

-- Written in Lua rather than C, so that the protected function may wait (LuaJIT yields
-- across pcall, not across a C function that calls Lua).
function socket.protect(f)
    return function(...)
        return unwrap(pcall(f, ...))
    end
end

function socket.skip(d, ...)
    return select(d + 1, ...)
end

-- ---- time -----------------------------------------------------------------------------------

socket.gettime = core.gettime

-- Waits without holding up other users.
local core_sleep = ccore.sleep
function socket.sleep(seconds)
    seconds = tonumber(seconds) or 0
    if seconds < 0 then seconds = 0 end
    checked(core_sleep(seconds))
end

-- ---- select ---------------------------------------------------------------------------------

local c_ready, c_select_wait = core.ready, core.select_wait

-- Sockets of |set| ready for |mode|, in LuaSocket's result form (a list, and each socket
-- mapped to its position); every socket goes to |all|.
local function scan(set, mode, all)
    local out = {}
    if type(set) ~= "table" then return out end
    local i = 1
    while true do
        local s = set[i]
        if s == nil then break end
        if c_ready(s, mode) and not out[s] then
            out[#out + 1] = s
            out[s] = #out
        end
        all[#all + 1] = s
        i = i + 1
    end
    return out
end

-- socket.select(recvt, sendt [, timeout]): the sockets with data (or an end) to read, and
-- those that can be written. Only cicada's socket objects can be selected; the wait parks
-- the user alone.
local monotonic = ccore.monotonic
function socket.select(recvt, sendt, timeout)
    local all = {}
    local r, w = scan(recvt, "r", all), scan(sendt, "w", all)
    if #r > 0 or #w > 0 then return r, w end
    timeout = tonumber(timeout)
    if timeout and timeout < 0 then timeout = nil end
    local deadline = timeout and monotonic() + timeout
    while not timeout or timeout >= 1e-3 do
        checked(c_select_wait(all, timeout))
        all = {}
        r, w = scan(recvt, "r", all), scan(sendt, "w", all)
        if #r > 0 or #w > 0 then return r, w end
        -- news that was not for this select (a socket was read meanwhile): wait on
        if deadline then timeout = deadline - monotonic() end
    end
    return r, w, "timeout"
end

-- ---- names ----------------------------------------------------------------------------------

local c_toip, c_getaddrinfo, c_tohostname = core.toip, core.getaddrinfo, core.tohostname

socket.dns = {
    gethostname = core.gethostname,
    toip = function(host)
        return checked(c_toip(host))
    end,
    getaddrinfo = function(host)
        return checked(c_getaddrinfo(host))
    end,
    tohostname = function(address)
        return checked(c_tohostname(address))
    end,
    getnameinfo = function()
        return nil, "getnameinfo is not supported by cicada's cooperative sockets"
    end,
}

return socket
