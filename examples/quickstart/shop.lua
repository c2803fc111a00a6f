-- shop.lua: a simulated web shop, in pure Lua, for the quick start. Each call takes a random
-- while (without blocking other users) and sometimes fails, like a real service would.
local cicada = require "cicada"

local Shop = {}
Shop.__index = Shop

function Shop.new()
    return setmetatable({ cart = {} }, Shop)
end

local function work(min_ms, max_ms, fail_ratio, what)
    cicada.sleep((min_ms + math.random() * (max_ms - min_ms)) / 1000)
    if math.random() < fail_ratio then error(what .. " failed: 503 Service Unavailable", 0) end
end

function Shop:login(user)
    work(20, 60, 0.01, "login")
    self.user = user
end

function Shop:list_items()
    work(5, 25, 0.002, "list")
    return { 1, 2, 3, 4, 5, 6, 7, 8 }
end

function Shop:item(id)
    work(3, 15, 0.002, "item")
    return { id = id, price = id * 3 }
end

function Shop:add_to_cart(id)
    work(10, 40, 0.01, "cart")
    self.cart[#self.cart + 1] = id
end

function Shop:checkout()
    work(80, 250, 0.05, "checkout")
    local n = #self.cart
    self.cart = {}
    return n
end

return Shop
