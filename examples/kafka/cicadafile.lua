-- Orders flowing through Kafka: writers produce with keys and headers and wait for each
-- delivery report; one reader in a consumer group reads them back, and every message's
-- end-to-end latency (producer to consumer) is an entry of its own, "e2e:orders".
-- Run it (see README.md):
--   build/tests/kafka_mock --topic orders:3      # prints: listening on <bootstrap servers>
--   cicada -f examples/kafka/cicadafile.lua --headless -H <bootstrap servers> -u 11 -r 11 -t 30s
local cicada = require "cicada"

local SETTINGS = {
    -- the mock cluster answers a fetch only when this runs out (a real broker answers as soon
    -- as data is there): keep it short so that the end-to-end latency means something
    ["fetch.wait.max.ms"] = 10,
}

local Writer = cicada.KafkaUser:extend("Writer", {
    host = "127.0.0.1:9092", -- the bootstrap servers; -H overrides them
    wait_time = cicada.constant_throughput(20), -- 20 orders a second per user at most
    -- librdkafka's producer settings; every Writer of a thread shares one producer
    producer_settings = { acks = "all", ["linger.ms"] = 1 },
})

Writer:task("order", 5, function(self)
    local customer = math.random(1, 1000)
    local ok, err = self.kafka:produce("orders", '{"item": ' .. math.random(1, 500) .. '}', {
        key = "customer-" .. customer, -- one customer's orders stay in order, on one partition
        headers = { source = "cicada", { "trace", string.format("%08x", math.random(0, 2^31)) } },
    })
    if not ok then cicada.log.warning("order not delivered: " .. err) end
end)

-- a large message on a partition of our choosing, under a name of its own
Writer:task("bulk", 1, function(self)
    self.kafka:produce("orders", string.rep("x", 64 * 1024), { partition = 0, name = "orders (64 KiB)" })
end)

local Reader = cicada.KafkaUser:extend("Reader", {
    host = "127.0.0.1:9092",
    fixed_count = 1,
})

function Reader:on_start()
    -- a member of group "order-readers"; { assign = { { "orders", 0, "beginning" } } } would
    -- read chosen partitions instead
    self.consumer = self.kafka:consumer({
        group_id = "order-readers",
        topics = { "orders" },
        settings = SETTINGS,
    })
end

Reader:task(function(self)
    local m, err = self.consumer:poll(1) -- nil and "timeout" when nothing came in a second
    if m and m.headers and m.headers.source ~= "cicada" then
        cicada.log.info("a foreign order on partition " .. m.partition)
    end
end)

function Reader:on_stop()
    self.consumer:close() -- leaves the group now rather than when the session times out
end

return { Writer, Reader }
