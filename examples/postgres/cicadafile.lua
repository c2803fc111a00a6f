-- A shop's database under load, using every feature of PostgresUser's client: prepared
-- statements, parameters and typed rows, names for the statistics, transactions, pipelines,
-- errors with their SQLSTATE. It creates its tables itself. Run it (see README.md):
--   cicada -f examples/postgres/cicadafile.lua --headless \
--       -H postgresql://postgres@127.0.0.1:5433/postgres -u 20 -r 5 -t 30s
local cicada = require "cicada"
local pg = require "cicada.postgres"

local SCHEMA = [[
create table if not exists items (
    id int primary key, name text not null, price numeric(10, 2) not null, stock int not null);
create table if not exists orders (
    id bigserial primary key, customer int not null, created timestamptz not null default now());
create table if not exists order_lines (
    order_id bigint not null references orders, item_id int not null references items,
    quantity int not null);
create table if not exists wishlist (customer int, item_id int, primary key (customer, item_id));
insert into items select i, 'item ' || i, (i % 50) + 0.99, 1000000
    from generate_series(1, 1000) i on conflict do nothing;
]]

-- once, on the control thread, before any user starts: the tables (several statements in one
-- text go by the simple protocol)
cicada.events.test_start:add_listener(function()
    local c = pg.client({ conninfo = cicada.env.host, connect_timeout = 10 })
    local _, err = c:query(SCHEMA, nil, "create tables")
    if err then error("cannot create the example's tables: " .. err) end
    c:close()
end)

local Shopper = cicada.PostgresUser:extend("Shopper", {
    host = "postgresql://postgres@127.0.0.1:5432/postgres", -- -H overrides it
    wait_time = cicada.between(0.1, 0.5),
    connect_timeout = 5,
    query_timeout = 5,
})

function Shopper:on_start()
    self.customer = math.random(1, 10000)
    -- prepared once on this user's connection, and again by itself after a reconnect
    self.client:prepare("item", "select id, name, price, stock from items where id = $1")
end

-- a prepared statement; typed rows: id and stock are numbers, price (numeric) stays text
Shopper:task("browse", 5, function(self)
    local rows = self.client:execute("item", { math.random(1, 1000) })
    local item = rows and rows[1]
    if item and item.stock < 10 then cicada.log.info(item.name .. " is nearly sold out") end
end)

-- a query with a parameter, named for the statistics (the text alone would do too), rows as
-- lists
Shopper:task("search", 3, function(self)
    self.client:query("select id, name from items where name like $1 order by id limit 20",
                      { "item " .. math.random(1, 99) .. "%" },
                      { name = "search items", array = true })
end)

-- a transaction: the order and its lines, or nothing; the whole is recorded as "checkout"
Shopper:task("checkout", 1, function(self)
    local lines, err = self.client:transaction(function(tx)
        local order = tx:query("insert into orders (customer) values ($1) returning id",
                               { self.customer }, "new order")
        local n = math.random(1, 3)
        for _ = 1, n do
            local item = math.random(1, 1000)
            tx:query("insert into order_lines values ($1, $2, 1)", { order[1].id, item },
                     "add line")
            tx:query("update items set stock = stock - 1 where id = $1", { item }, "take stock")
        end
        return n
    end, { name = "checkout" })
    if not lines then cicada.log.warning("checkout rolled back: " .. err) end
end)

-- a pipeline: three statements in one round trip, each recorded on its own
Shopper:task("dashboard", 1, function(self)
    local res, err = self.client:pipeline(function(p)
        p:query("select count(*) as n from orders where customer = $1", { self.customer },
                "my orders")
        p:query("select coalesce(sum(l.quantity), 0) as q from order_lines l "
                .. "join orders o on o.id = l.order_id where o.customer = $1",
                { self.customer }, "my items")
        p:execute("item", { 1 })
    end)
    if res and not err then
        cicada.log.debug(res[1][1].n .. " orders, " .. res[2][1].q .. " items")
    end
end)

-- a failure the script expects: SQLSTATE 23505 (unique_violation) when the item is on the
-- list already. It is still a failure in the statistics, which show how often it happens.
Shopper:task("wish", 1, function(self)
    local _, _, state = self.client:query("insert into wishlist values ($1, $2)",
                                          { self.customer, math.random(1, 20) }, "wish")
    if state and state ~= "23505" then cicada.log.warning("wishlist: SQLSTATE " .. state) end
end)

return { Shopper }
