-- The quick start: shoppers browse and buy, an admin checks reports, against a simulated shop.
-- Run it with `make demo`, or: cicada -f examples/quickstart/cicadafile.lua --headless -u 50 -r 25 -t 20s
local cicada = require "cicada"
local Shop = require "shop" -- a pure-Lua stand-in for a real service

-- Every call to the shop becomes a request in the statistics: this is how cicada tests any
-- system whose client it can call.
local function call(name, fn, ...)
    return cicada.measure("shop", name, fn, ...)
end

local Shopper = cicada.User:extend("Shopper", {
    weight = 4,
    wait_time = cicada.between(0.5, 2),
})

function Shopper:on_start()
    self.shop = Shop.new()
    call("login", self.shop.login, self.shop, "shopper")
end

function Shopper:browse()
    local ok, items = call("list items", self.shop.list_items, self.shop)
    if ok then call("item", self.shop.item, self.shop, items[math.random(#items)]) end
end
Shopper:task(6, Shopper.browse)

Shopper:task("buy", 2, function(self)
    call("add to cart", self.shop.add_to_cart, self.shop, math.random(8))
    if math.random() < 0.5 then call("checkout", self.shop.checkout, self.shop) end
end)

-- An admin opens the back office now and then and looks at a few reports in order.
local Reports = cicada.SequentialTaskSet:extend("Reports", {})
Reports:task("sales", function(self) call("report: sales", cicada.sleep, 0.05) end)
Reports:task("stock", function(self) call("report: stock", cicada.sleep, 0.08) end)
Reports:task("done", function(self) self:interrupt() end)

local Admin = cicada.User:extend("Admin", {
    fixed_count = 1,
    wait_time = cicada.constant(3),
    tasks = { Reports },
})

cicada.events.test_start:add_listener(function()
    cicada.log.info("The shop opens: shoppers arriving")
end)

return { Shopper, Admin }
