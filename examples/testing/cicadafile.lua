-- Tests that double as load, on cicada's demo shop. As functional tests, each runs once:
--   cicada demo-server --port 8080 &
--   cicada test examples/testing/cicadafile.lua -H http://127.0.0.1:8080 --junit-xml results.xml
-- As a load test, each test is a user class, weighted by tests.weights:
--   cicada -f examples/testing/cicadafile.lua --headless -H http://127.0.0.1:8080 -u 20 -r 10 -t 30s
local cicada = require "cicada"

local tests = {}

-- Load mode: users per test class, relatively (Locust cannot weight its pytest users), and
-- the wait after each run of a test (none by default).
tests.weights = { test_browse = 4, test_item_page = 2, test_checkout = 1 }
tests.wait_time = cicada.between(0.1, 0.5)

-- Fixtures are asked for by parameter name, as in pytest. Built in: http (alias client), an
-- HTTP session on -H; rest, a JSON client on the same session; host, the -H address.
tests.fixtures = {}

-- A fixture of the file's own: a logged-in shopper. Scope "module" sets it up once per test
-- run (once per user under load); what it returns second is its teardown.
tests.fixtures.shopper = { scope = "module", function(rest)
    local r = rest:post("/login", { username = "tester", password = "secret" })
    assert(r.status_code == 200, "login failed with status " .. r.status_code)
    return { name = r.js.username, token = r.js.token }, function()
        -- nothing to log out of in the demo shop; a real teardown would delete what it made
    end
end }

-- Scope "function" (the default): set up before each test that asks for it, torn down after.
function tests.fixtures.item(rest)
    local r = rest:get("/items/" .. math.random(1, 20), { name = "/items/{id}" })
    assert(r.status_code == 200, "no item: " .. r.status_code)
    return r.js
end

function tests.test_health(rest)
    local r = rest:get("/health")
    assert(r.status_code == 200, "health is " .. r.status_code)
    assert(r.js.status == "ok", "status " .. tostring(r.js.status))
end

function tests.test_browse(http)
    local r = http:get("/items?page=1&per_page=10", { name = "/items?page=[n]" })
    assert(r.status_code == 200, "status " .. r.status_code)
    assert(#r:json().items == 10, "a page holds 10 items")
end

function tests.test_item_page(http, item)
    local r = http:get("/items/" .. item.id, { name = "/items/{id}" })
    assert(r:json().name == item.name, "the item's name changed")
end

function tests.test_checkout(rest, shopper, item)
    local cart = rest:post("/cart", { item_id = item.id, quantity = 2 })
    assert(cart.status_code == 200, "add to cart: " .. cart.status_code)
    local order = rest:post("/checkout")
    assert(order.status_code == 200, "checkout: " .. order.status_code)
    assert(order.js.total == item.price * 2, "total " .. tostring(order.js.total))
end

function tests.test_unknown_item(rest)
    local r = rest:get("/items/999", { name = "/items/{id}" })
    -- a 404 is what this test expects; rest() records it as a failure all the same, as
    -- Locust does, so under load it shows in the failures table
    assert(r.status_code == 404, "expected 404, got " .. r.status_code)
end

-- Not every test is worth running under load: weight 0 keeps it out of load tests.
tests.weights.test_unknown_item = 0

return tests
