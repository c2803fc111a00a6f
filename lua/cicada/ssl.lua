-- SPDX-License-Identifier: MIT
-- cicada.ssl: LuaSec's `ssl` module, cooperative. Inside cicada, `require "ssl"` loads this
-- module (package.preload); LuaSec's own ssl/https.lua (Debian's lua-sec) runs on top of it
-- unchanged. TLS is cicada's (OpenSSL over the user's connection), so a handshake parks only
-- its user. Client mode only. See docs/luasocket.md.

local core = require "cicada.socket.core"
require "cicada.socket" -- the methods that wait (dohandshake, send, receive)

local type, pairs = type, pairs

local ssl = {
    _VERSION = "1.2.0",
    _COPYRIGHT = "cicada's cooperative LuaSec",
}

-- What LuaSec reports it supports, for code that looks before it leaps.
ssl.config = {
    protocols = { any = true, tlsv1_2 = true, tlsv1_3 = true },
    capabilities = { alpn = true, curves_list = false, dane = false },
    options = {},
    algorithms = {},
}

local PROTOCOLS = {
    any = { 0, 0 },
    sslv23 = { 0, 0 },
    tlsv1_2 = { 12, 12 },
    tlsv1_3 = { 13, 13 },
}

local function has(v, word)
    if v == word then return true end
    if type(v) == "table" then
        for _, x in pairs(v) do
            if x == word then return true end
        end
    end
    return false
end

-- ssl.newcontext(params): LuaSec's parameters: mode ("client"), protocol, verify ("none" as
-- LuaSec's default, or "peer"), cafile, capath (the system store only), certificate, key,
-- alpn. Ciphers, curves, options and depth are accepted and left to OpenSSL's defaults.
-- Returns the context, or nil and the error.
function ssl.newcontext(cfg)
    cfg = cfg or {}
    if cfg.mode and cfg.mode ~= "client" then
        return nil, "cicada's ssl supports client mode only"
    end
    local proto = PROTOCOLS[cfg.protocol or "any"]
    if not proto then return nil, "unsupported protocol: " .. tostring(cfg.protocol) end
    if cfg.password then return nil, "encrypted keys (password) are not supported" end
    if cfg.capath and cfg.capath ~= "/etc/ssl/certs" and not cfg.cafile then
        return nil, "capath is not supported: give cafile (a PEM bundle) instead"
    end
    local alpn = cfg.alpn
    if type(alpn) == "string" then alpn = { alpn } end
    if alpn ~= nil and type(alpn) ~= "table" then return nil, "alpn must be a string or a list" end
    local verify = has(cfg.verify, "peer")
    return core.newcontext(verify, cfg.cafile, cfg.certificate, cfg.key, alpn, proto[1], proto[2])
end

-- ssl.wrap(sock, params or context): an SSL connection over the connected TCP socket, which
-- is closed (the connection moves over). Call conn:sni(name) and then conn:dohandshake().
function ssl.wrap(sock, cfg)
    local ctx, err = cfg, nil
    if type(cfg) ~= "userdata" then
        ctx, err = ssl.newcontext(cfg)
        if not ctx then return nil, err end
    end
    return core.wrap(sock, ctx)
end

function ssl.loadcertificate()
    return nil, "ssl.loadcertificate is not supported by cicada's ssl"
end

return ssl
