-- Load-testing through an SDK: shopsdk (a pure-Lua client library of the demo shop, in this
-- folder) makes its HTTP calls through a transport; each user swaps it for its own HttpUser
-- client, so every SDK call is timed and recorded in the statistics like any other request.
-- The counterpart of Locust's session patching (`self.arch._session = self.client`).
-- Run it (see README.md):
--   cicada demo-server --port 8080 &
--   cicada -f examples/sdk/cicadafile.lua --headless -H http://127.0.0.1:8080 -u 10 -r 5 -t 30s
local cicada = require "cicada"
local shopsdk = require "shopsdk"

-- A transport over the user's client: the SDK's calls become the client's requests, named by
-- their path with ids grouped ("/items/[id]"), and get its connection reuse and timeouts.
local function client_transport(client)
    return {
        request = function(_, method, url, headers, body)
            local path = url:match("^https?://[^/]+(/.*)$") or url
            local r = client:request(method, path, {
                headers = headers,
                body = body,
                name = (path:gsub("/%d+", "/[id]")),
            })
            if r.error then return nil, r.error end
            return r.status_code, r.text, r.headers
        end,
    }
end

local Shopper = cicada.HttpUser:extend("Shopper", { wait_time = cicada.between(0.5, 2) })

function Shopper:on_start()
    -- The SDK as its authors wrote it, then patched: its transport is now the user's client.
    -- An SDK that takes a transport when it is made is simpler still (session injection):
    --   self.shop = shopsdk.new { url = self.host, transport = client_transport(self.client) }
    self.shop = shopsdk.new { url = self.host }
    self.shop._transport = client_transport(self.client)
    self.shop:login("shopper" .. math.random(1e6), "secret")
end

Shopper:task("browse", 3, function(self)
    local items = self.shop:items()
    self.shop:item(items[math.random(#items)].id)
end)

Shopper:task("buy", 1, function(self)
    self.shop:add_to_cart(math.random(20), math.random(3))
    self.shop:cart()
    self.shop:checkout()
end)

return { Shopper }
