-- SPDX-License-Identifier: MIT
-- cicada.url: URLs as RFC 3986 has them: parsing, resolving a reference against a base,
-- percent-encoding and query strings. Pure Lua.

local M = {}

local byte, char, format, gsub = string.byte, string.char, string.format, string.gsub
local concat, sort = table.concat, table.sort

local DEFAULT_PORT = { http = 80, https = 443, ws = 80, wss = 443 }
M.default_port = DEFAULT_PORT

-- Splits |s| into scheme, authority, path, query and fragment (RFC 3986, appendix B). Absent
-- parts are nil; the path is always a string.
local function split(s)
    local scheme, rest = s:match("^([%a][%w+.-]*):(.*)$")
    if not scheme then rest = s end
    local fragment
    rest, fragment = rest:match("^([^#]*)#?(.*)$")
    if not s:find("#", 1, true) then fragment = nil end
    local query
    local qpos = rest:find("?", 1, true)
    if qpos then
        query = rest:sub(qpos + 1)
        rest = rest:sub(1, qpos - 1)
    end
    local authority, path
    if rest:sub(1, 2) == "//" then
        authority, path = rest:match("^//([^/]*)(.*)$")
    else
        path = rest
    end
    return scheme and scheme:lower(), authority, path, query, fragment
end

-- Parses an absolute URL into { scheme, userinfo, host, port, path, query, fragment }.
-- |port| is a number (the scheme's default when absent); |host| has no brackets for IPv6.
-- Returns nil and a message when it is not an absolute http(s)/ws(s) URL.
function M.parse(s)
    if type(s) ~= "string" then return nil, "a URL must be a string" end
    local scheme, authority, path, query, fragment = split(s)
    if not scheme then return nil, "no scheme in URL '" .. s .. "' (http:// or https://)" end
    if not authority or authority == "" then return nil, "no host in URL '" .. s .. "'" end
    local userinfo, hostport = authority:match("^(.*)@(.*)$")
    if not hostport then hostport = authority end
    local host, port
    if hostport:sub(1, 1) == "[" then
        host, port = hostport:match("^%[([^%]]+)%]:?(%d*)$")
    else
        host, port = hostport:match("^([^:]*):?(%d*)$")
    end
    if not host or host == "" then return nil, "bad host in URL '" .. s .. "'" end
    port = tonumber(port)
    if port == nil then port = DEFAULT_PORT[scheme] end
    if not port or port < 1 or port > 65535 then return nil, "bad port in URL '" .. s .. "'" end
    return {
        scheme = scheme,
        userinfo = userinfo,
        host = host:lower(),
        port = port,
        path = path ~= "" and path or "/",
        query = query,
        fragment = fragment,
    }
end

-- The request target: path and query.
function M.target(u)
    return u.query and (u.path .. "?" .. u.query) or u.path
end

-- "host" or "host:port" as the Host header wants it (the port only when not the default).
function M.authority(u)
    local h = u.host:find(":", 1, true) and ("[" .. u.host .. "]") or u.host
    if u.port ~= DEFAULT_PORT[u.scheme] then h = h .. ":" .. u.port end
    return h
end

-- The origin, "scheme://host:port", for grouping connections.
function M.origin(u)
    return u.scheme .. "://" .. M.authority(u)
end

function M.build(u)
    local s = u.scheme .. "://"
    if u.userinfo then s = s .. u.userinfo .. "@" end
    s = s .. M.authority(u) .. u.path
    if u.query then s = s .. "?" .. u.query end
    if u.fragment then s = s .. "#" .. u.fragment end
    return s
end

-- RFC 3986 5.2.4: removes "." and ".." segments. Every step consumes input.
local function remove_dots(input)
    local out = {}
    while #input > 0 do
        if input:sub(1, 3) == "../" then
            input = input:sub(4)
        elseif input:sub(1, 2) == "./" then
            input = input:sub(3)
        elseif input:sub(1, 3) == "/./" then
            input = input:sub(3)
        elseif input == "/." then
            input = "/"
        elseif input:sub(1, 4) == "/../" then
            input = input:sub(4)
            out[#out] = nil
        elseif input == "/.." then
            input = "/"
            out[#out] = nil
        elseif input == "." or input == ".." then
            input = ""
        else
            local seg = input:match("^/?[^/]*")
            out[#out + 1] = seg
            input = input:sub(#seg + 1)
        end
    end
    return concat(out)
end

local function merge(base, ref_path)
    if base.authority and base.path == "" then return "/" .. ref_path end
    local dir = base.path:match("^(.*/)") or ""
    return dir .. ref_path
end

-- Resolves |ref| against the absolute URL |base| (both strings), RFC 3986 5.2.2.
function M.join(base, ref)
    local rs, ra, rp, rq, rf = split(ref)
    if rs then return M.normalize(ref) end
    local bs, ba, bp, bq = split(base)
    local path, query, authority
    if ra then
        authority, path, query = ra, remove_dots(rp), rq
    else
        authority = ba
        if rp == "" then
            path = bp
            query = rq or bq
        else
            if rp:sub(1, 1) == "/" then
                path = remove_dots(rp)
            else
                path = remove_dots(merge({ authority = ba, path = bp }, rp))
            end
            query = rq
        end
    end
    local s = bs .. "://" .. (authority or "") .. (path ~= "" and path or "/")
    if query then s = s .. "?" .. query end
    if rf then s = s .. "#" .. rf end
    return s
end

-- Lower-cases scheme and host and drops a default port; keeps the rest.
function M.normalize(s)
    local u = M.parse(s)
    if not u then return s end
    return M.build(u)
end

-- Percent-encodes everything but RFC 3986's unreserved characters.
function M.quote(s, keep)
    s = tostring(s)
    local pattern = keep and ("[^%w%-._~" .. keep .. "]") or "[^%w%-._~]"
    return (gsub(s, pattern, function(c)
        return format("%%%02X", byte(c))
    end))
end

function M.unquote(s, plus_is_space)
    if plus_is_space then s = gsub(s, "+", " ") end
    return (gsub(s, "%%(%x%x)", function(h)
        return char(tonumber(h, 16))
    end))
end

-- application/x-www-form-urlencoded: a table of name = value (value may be a list, giving the
-- name once per item), or a list of {name, value} pairs to keep an order. Names of a plain
-- table are sorted, so the encoding is stable.
function M.encode_query(params)
    if type(params) == "string" then return params end
    local parts = {}
    local function add(k, v)
        if type(v) == "boolean" then v = v and "true" or "false" end
        parts[#parts + 1] = M.quote(k) .. "=" .. M.quote(v)
    end
    if params[1] ~= nil and type(params[1]) == "table" then
        for _, kv in ipairs(params) do
            add(kv[1], kv[2])
        end
        return concat(parts, "&")
    end
    local keys = {}
    for k in pairs(params) do
        keys[#keys + 1] = k
    end
    sort(keys, function(a, b)
        return tostring(a) < tostring(b)
    end)
    for _, k in ipairs(keys) do
        local v = params[k]
        if type(v) == "table" then
            for _, item in ipairs(v) do
                add(k, item)
            end
        else
            add(k, v)
        end
    end
    return concat(parts, "&")
end

-- Parses a query string into a table (a repeated name gives a list).
function M.decode_query(q)
    local t = {}
    for pair in (q or ""):gmatch("[^&]+") do
        local k, v = pair:match("^([^=]*)=?(.*)$")
        k, v = M.unquote(k, true), M.unquote(v, true)
        local old = t[k]
        if old == nil then
            t[k] = v
        elseif type(old) == "table" then
            old[#old + 1] = v
        else
            t[k] = { old, v }
        end
    end
    return t
end

-- Appends encoded |params| to |url|'s query.
function M.add_query(url, params)
    local q = M.encode_query(params)
    if q == "" then return url end
    local base, frag = url:match("^([^#]*)(#?.*)$")
    local sep = base:find("?", 1, true) and (base:sub(-1) == "?" and "" or "&") or "?"
    return base .. sep .. q .. frag
end

return M
