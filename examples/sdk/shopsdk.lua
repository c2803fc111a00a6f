-- SPDX-License-Identifier: MIT
-- shopsdk: a small client library for the demo shop's JSON API (`cicada demo-server`), written
-- the way third-party SDKs are: it knows nothing of cicada. Every HTTP call it makes goes
-- through one transport object, by default one over LuaSocket's socket.http, so it also runs
-- in a plain Lua interpreter with Debian's lua-socket and lua-cjson installed.
--
--   local shopsdk = require "shopsdk"
--   local shop = shopsdk.new { url = "http://127.0.0.1:8080" }
--   shop:login("ann", "secret")
--   shop:add_to_cart(3, 2)
--   print(shop:checkout().order_id)
--
-- A transport has one method: transport:request(method, url, headers, body) returning
-- status, body text, headers; or nil and an error message when no response came.

local cjson = require "cjson"

local M = {}

-- ---- the default transport: LuaSocket ---------------------------------------------------------

local SocketTransport = {}
SocketTransport.__index = SocketTransport

function M.socket_transport()
    return setmetatable({}, SocketTransport)
end

function SocketTransport:request(method, url, headers, body)
    local http = require "socket.http"
    local ltn12 = require "ltn12"
    local h = {}
    for k, v in pairs(headers) do
        h[k] = v
    end
    if body then h["content-length"] = tostring(#body) end
    local out = {}
    local ok, code, rheaders = http.request {
        url = url,
        method = method,
        headers = h,
        source = body and ltn12.source.string(body) or nil,
        sink = ltn12.sink.table(out),
    }
    if not ok then return nil, tostring(code) end
    return code, table.concat(out), rheaders
end

-- ---- the client -------------------------------------------------------------------------------

local Client = {}
Client.__index = Client

-- shopsdk.new { url = base URL [, transport = an object with :request] }
function M.new(opts)
    assert(type(opts) == "table" and type(opts.url) == "string", "shopsdk.new{ url = ... }")
    return setmetatable({
        url = (opts.url:gsub("/+$", "")),
        _transport = opts.transport or M.socket_transport(),
        token = nil,
    }, Client)
end

-- One API call: JSON in and out; an error status or a transport failure raises.
function Client:_call(method, path, payload)
    local headers = { accept = "application/json" }
    local body
    if payload ~= nil then
        body = cjson.encode(payload)
        headers["content-type"] = "application/json"
    end
    if self.token then headers.authorization = "Bearer " .. self.token end
    local status, text = self._transport:request(method, self.url .. path, headers, body)
    if not status then error("shopsdk: " .. method .. " " .. path .. ": " .. tostring(text), 3) end
    local ok, data = pcall(cjson.decode, text ~= "" and text or "null")
    if not ok then data = nil end
    if status >= 400 then
        local why = type(data) == "table" and data.error or text
        error(("shopsdk: %s %s: %d %s"):format(method, path, status, tostring(why)), 3)
    end
    return data
end

function Client:login(username, password)
    local d = self:_call("POST", "/login", { username = username, password = password })
    self.token = d.token
    return d
end

function Client:items(page)
    return self:_call("GET", "/items" .. (page and ("?page=" .. page) or "")).items
end

function Client:item(id)
    return self:_call("GET", "/items/" .. id)
end

function Client:add_to_cart(item_id, quantity)
    return self:_call("POST", "/cart", { item_id = item_id, quantity = quantity or 1 })
end

function Client:cart()
    return self:_call("GET", "/cart")
end

function Client:checkout()
    return self:_call("POST", "/checkout")
end

return M
