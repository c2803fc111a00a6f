-- The quick start: shoppers log in, browse, fill a cart and check out on cicada's demo shop,
-- and an admin watches its health. `make demo` starts the shop and runs this for 20 seconds;
-- by hand:
--   cicada demo-server --port 8080 &
--   cicada -f examples/quickstart/cicadafile.lua -H http://127.0.0.1:8080 --headless -u 50 -r 25 -t 20s
local cicada = require "cicada"

local Shopper = cicada.HttpUser:extend("Shopper", {
    weight = 4,
    wait_time = cicada.between(0.5, 2),
})

function Shopper:on_start()
    -- the session cookie the shop sets is kept by this user's client, as a browser would
    self.client:post("/login", { json = { username = "shopper", password = "secret" } })
end

function Shopper:browse()
    local items = self.client:get("/items"):json().items
    self.item = items[math.random(#items)].id
    -- one entry for every item page, not twenty
    self.client:get("/items/" .. self.item, { name = "/items/{id}" })
end
Shopper:task(6, Shopper.browse)

Shopper:task("buy", 2, function(self)
    self.client:post("/cart", { json = { item_id = self.item or 1, quantity = math.random(3) } })
    if math.random() < 0.5 then
        -- a checkout counts as a success only if the shop really placed an order
        self.client:post("/checkout", { catch_response = true }, function(r)
            if r.status_code ~= 200 then
                r:failure("checkout failed: " .. (r.error or r.status_code))
            elseif not r:json().order_id then
                r:failure("checkout answered without an order id")
            end
        end)
    end
end)

-- now and then a slow page, and a flaky one that fails one request in five
Shopper:task("recommendations", 1, function(self)
    self.client:get("/slow?ms=300", { name = "/slow" })
end)
Shopper:task("flaky", 1, function(self)
    self.client:get("/flaky")
end)

local Admin = cicada.HttpUser:extend("Admin", {
    fixed_count = 1,
    wait_time = cicada.constant(1),
})
Admin:task("health", function(self)
    self.client:get("/health")
end)

return { Shopper, Admin }
