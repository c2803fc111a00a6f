-- SPDX-License-Identifier: MIT
-- cicada.cookies: a cookie jar after RFC 6265: Set-Cookie parsing, domain and path matching,
-- expiry (Expires and Max-Age), Secure. Each HTTP user has its own jar. Pure Lua.

local M = {}
M.__index = M

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8, sep = 9,
                 oct = 10, nov = 11, dec = 12 }

-- Days from 1970-01-01 to the civil date (proleptic Gregorian), without the local time zone.
local function days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local mp = (m + 9) % 12
    local doy = math.floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

-- An HTTP date ("Wed, 21 Oct 2015 07:28:00 GMT", and the older forms) as epoch seconds.
function M.parse_date(s)
    local d, mon, y, hh, mm, ss = s:match("(%d%d?)[ -](%a%a%a)[ -](%d%d%d?%d?) (%d%d?):(%d%d):(%d%d)")
    if not d then
        -- asctime: "Sun Nov  6 08:49:37 1994"
        mon, d, hh, mm, ss, y = s:match("%a+ (%a%a%a) +(%d%d?) (%d%d?):(%d%d):(%d%d) (%d%d%d%d)")
    end
    if not d then return nil end
    local month = MONTHS[mon:lower()]
    if not month then return nil end
    y = tonumber(y)
    if y < 70 then y = y + 2000 elseif y < 100 then y = y + 1900 end
    return days_from_civil(y, month, tonumber(d)) * 86400 + tonumber(hh) * 3600
        + tonumber(mm) * 60 + tonumber(ss)
end

function M.new()
    return setmetatable({ list = {}, seq = 0 }, M)
end

local function is_ip(host)
    return host:match("^%d+%.%d+%.%d+%.%d+$") or host:find(":", 1, true)
end

local function domain_match(host, domain)
    if host == domain then return true end
    if is_ip(host) then return false end
    return #host > #domain and host:sub(-#domain - 1) == "." .. domain
end

local function default_path(path)
    if path:sub(1, 1) ~= "/" then return "/" end
    local dir = path:match("^(.*)/[^/]*$")
    if not dir or dir == "" then return "/" end
    return dir
end

local function path_match(req_path, cookie_path)
    if req_path == cookie_path then return true end
    if req_path:sub(1, #cookie_path) ~= cookie_path then return false end
    return cookie_path:sub(-1) == "/" or req_path:sub(#cookie_path + 1, #cookie_path + 1) == "/"
end

local function trim(s)
    return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- Stores one cookie, replacing the one of the same name, domain and path.
function M:store(c)
    for i, old in ipairs(self.list) do
        if old.name == c.name and old.domain == c.domain and old.path == c.path then
            c.created = old.created
            table.remove(self.list, i)
            break
        end
    end
    if c.expires and c.expires <= c.now then return end -- expired: it only deletes
    if not c.created then
        self.seq = self.seq + 1
        c.created = self.seq
    end
    c.now = nil
    self.list[#self.list + 1] = c
end

-- Reads one Set-Cookie header received from |u| (a parsed URL, cicada.url) at time |now|.
function M:set_from_header(u, header, now)
    local pairs_part, attrs = header:match("^([^;]*);?(.*)$")
    local name, value = pairs_part:match("^([^=]*)=(.*)$")
    if not name then return end
    name, value = trim(name), trim(value)
    if name == "" then return end
    local c = { name = name, value = value, now = now }
    local max_age
    for attr in attrs:gmatch("[^;]+") do
        local k, v = attr:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
        if not k then k = trim(attr) end
        k = k:lower()
        if k == "expires" and v then
            c.expires = M.parse_date(v)
        elseif k == "max-age" and v and v:match("^%-?%d+$") then
            max_age = tonumber(v)
        elseif k == "domain" and v and v ~= "" then
            c.domain = v:gsub("^%.", ""):lower()
        elseif k == "path" and v and v:sub(1, 1) == "/" then
            c.path = v
        elseif k == "secure" then
            c.secure = true
        elseif k == "httponly" then
            c.http_only = true
        end
    end
    if max_age then c.expires = now + max_age end -- Max-Age wins over Expires
    if c.domain then
        if not domain_match(u.host, c.domain) then return end -- for another site: ignored
    else
        c.domain = u.host
        c.host_only = true
    end
    c.path = c.path or default_path(u.path)
    self:store(c)
end

-- The Cookie header for a request to |u| at |now|, or nil. Longer paths first, then older.
function M:header_for(u, now)
    local list = self.list
    if #list == 0 then return nil end
    local out
    local secure = u.scheme == "https" or u.scheme == "wss"
    for i = #list, 1, -1 do
        local c = list[i]
        if c.expires and c.expires <= now then
            table.remove(list, i)
        elseif (c.domain == "" or c.host_only and u.host == c.domain
                or not c.host_only and domain_match(u.host, c.domain))
            and path_match(u.path, c.path) and (secure or not c.secure) then
            out = out or {}
            out[#out + 1] = c
        end
    end
    if not out then return nil end
    table.sort(out, function(a, b)
        if #a.path ~= #b.path then return #a.path > #b.path end
        return a.created < b.created
    end)
    local parts = {}
    for i, c in ipairs(out) do
        parts[i] = c.name .. "=" .. c.value
    end
    return table.concat(parts, "; ")
end

-- Sets a cookie by hand, as requests' session.cookies.set(name, value, domain=, path=).
-- Without a domain it is sent to every host.
function M:set(name, value, opts)
    opts = opts or {}
    local domain = (opts.domain or ""):gsub("^%.", ""):lower()
    self:store({ name = name, value = tostring(value), domain = domain, path = opts.path or "/",
                 now = -math.huge, secure = opts.secure })
end

-- The value of cookie |name| (the first one stored), or nil.
function M:get(name)
    for _, c in ipairs(self.list) do
        if c.name == name then return c.value end
    end
end

-- A snapshot: { name = value } of every cookie (the last stored wins a shared name).
function M:dict()
    local t = {}
    for _, c in ipairs(self.list) do
        t[c.name] = c.value
    end
    return t
end

function M:clear()
    self.list = {}
end

function M:count()
    return #self.list
end

return M
