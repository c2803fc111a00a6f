-- SPDX-License-Identifier: MIT
-- cicada.kafka: a Kafka client on librdkafka, and KafkaUser. A produce is one request event
-- (request_type "kafka", named after the topic) timed from the call to its delivery report; a
-- consumed message that carries cicada's send-time stamp is one event under "e2e:<topic>",
-- its end-to-end latency. The work is in C (cicada.kafka.core).

local kcore = require "cicada.kafka.core"
local class = require "cicada.class"
local signals = require "cicada.signals"

local M = {}

local checked = signals.checked
local type, tostring, pairs = type, tostring, pairs
local EMPTY = {}

M.version = kcore.version
M.stamp_header = kcore.stamp_header
M.stamp = kcore.stamp
M.stamp_age_ms = kcore.stamp_age_ms

-- "kafka://a:9092,b:9092/" or "a:9092,b:9092" -> "a:9092,b:9092"
function M.bootstrap(host)
    if type(host) ~= "string" or host == "" then return nil end
    host = host:gsub("^kafka://", ""):gsub("/+$", "")
    return host
end

-- A librdkafka settings table with string values, and its signature (sorted name=value).
local function settings(t)
    local out, names = {}, {}
    for k, v in pairs(t or EMPTY) do
        if type(k) ~= "string" then error("Kafka settings are name = value pairs", 3) end
        if type(v) == "boolean" then v = v and "true" or "false" end
        if type(v) ~= "string" and type(v) ~= "number" then
            error("Kafka setting " .. k .. ": give a string, number or boolean", 3)
        end
        out[k] = tostring(v)
        names[#names + 1] = k
    end
    table.sort(names)
    local sig = {}
    for i, k in ipairs(names) do
        sig[i] = k .. "=" .. out[k]
    end
    return out, table.concat(sig, "\n")
end

-- ---- producing ---------------------------------------------------------------------------------

local Client = {}
Client.__index = Client
M.Client = Client

-- A client: opts.bootstrap ("127.0.0.1:9092,..."), opts.producer (librdkafka producer
-- settings: { acks = "all", ["linger.ms"] = 5 }), opts.stamps (default true: each message
-- carries its send time in a header, for end-to-end latency). Clients with the same bootstrap
-- servers and settings share one librdkafka producer per worker thread.
function M.client(opts)
    opts = opts or EMPTY
    local bootstrap = M.bootstrap(opts.bootstrap)
    if not bootstrap then error("a Kafka client needs bootstrap servers (host)", 2) end
    local producer, sig = settings(opts.producer)
    return setmetatable({
        bootstrap = bootstrap,
        producer_settings = producer,
        sig = bootstrap .. "\n" .. sig,
        stamps = opts.stamps ~= false,
    }, Client)
end

function Client:producer()
    local p = self._producer
    if not p then
        p = kcore.producer(self.sig, self.bootstrap, self.producer_settings)
        self._producer = p
    end
    return p
end

-- client:produce(topic, value, [opts]) -> true, partition, offset | nil, error
-- opts: key, headers ({ name = "v" } or { { name, "v" }, ... }), partition, name (in the
-- statistics; default the topic), stamp (false: no send-time header). Waits for the delivery
-- report; when librdkafka's queue is full, first for room in it.
function Client:produce(topic, value, opts)
    local p = self._producer or self:producer()
    if opts == nil then
        return checked(p:produce(topic, value, nil, nil, nil, nil, self.stamps))
    end
    local stamp = self.stamps
    if opts.stamp ~= nil then stamp = opts.stamp end
    return checked(p:produce(topic, value, opts.key, opts.headers, opts.partition, opts.name, stamp))
end

-- Produce calls of this thread that waited for room in the queue (with this configuration).
function Client:queue_full_waits()
    return self:producer():queue_full_waits()
end

-- ---- consuming ---------------------------------------------------------------------------------

local Consumer = {}
Consumer.__index = Consumer
M.Consumer = Consumer

-- client:consumer(opts): a consumer of its own (librdkafka runs threads for each: make one per
-- consuming user, not one per message). opts:
--   topics = { "orders" } with group_id = "g": a consumer group subscription, or
--   assign = { { "orders", 0, "beginning" }, ... }: these partitions, from an offset (a
--            number, "beginning", "end" or "stored");
--   offset_reset = "latest" (default) or "earliest": where a group starts without a
--            committed offset;
--   settings = { ... } more librdkafka consumer settings; stamps = false: no e2e entries.
function Client:consumer(opts)
    opts = opts or EMPTY
    local s = {}
    for k, v in pairs(opts.settings or EMPTY) do
        s[k] = v
    end
    if opts.group_id then s["group.id"] = opts.group_id end
    if s["auto.offset.reset"] == nil then s["auto.offset.reset"] = opts.offset_reset or "latest" end
    if opts.topics and s["group.id"] == nil then
        error("a Kafka consumer that subscribes to topics needs a group (group_id)", 2)
    end
    if s["group.id"] == nil then
        -- librdkafka needs a group even to assign partitions; assigning never joins it, and
        -- with commits off nothing is written to it
        s["group.id"] = "cicada-assign"
        if s["enable.auto.commit"] == nil then s["enable.auto.commit"] = "false" end
    end
    local strings = settings(s)
    local assign = opts.assign
    if assign then
        local list = {}
        for i, a in ipairs(assign) do
            list[i] = { a[1] or a.topic, a[2] or a.partition or 0, a[3] or a.offset }
        end
        assign = list
    end
    local c = kcore.consumer({
        bootstrap = self.bootstrap,
        settings = strings,
        topics = opts.topics,
        assign = assign,
        stamps = opts.stamps ~= false and self.stamps ~= false,
    })
    return setmetatable({ core = c }, Consumer)
end

-- consumer:poll([timeout]) -> message | nil, "timeout" | nil, error
-- Waits up to timeout seconds (default 1) for a message: { topic, partition, offset, key,
-- value, timestamp (ms), headers, latency_ms (for stamped messages) }.
function Consumer:poll(timeout)
    return checked(self.core:poll(timeout))
end

-- Leaves the group and frees the consumer (in the background).
function Consumer:close()
    self.core:close()
end

-- ---- KafkaUser ---------------------------------------------------------------------------------

M.KafkaUser = class.User:extend("KafkaUser", {
    abstract = true,
    stamps = true, -- send-time headers on produced messages; e2e entries for consumed ones
})

local KafkaUser = M.KafkaUser

-- Checked when the script loads: a KafkaUser needs bootstrap servers.
function KafkaUser.__validate(cls)
    if not M.bootstrap(cls.host) then
        error((rawget(cls, "__defined_at") or "?") .. ": " .. (rawget(cls, "__name") or "the class")
            .. " has no host: set host = \"127.0.0.1:9092\" (the bootstrap servers) in the class, "
            .. "or pass -H/--host", 0)
    end
end

-- self.kafka: the user's client (the producer itself is shared by the thread's users).
function KafkaUser.__construct(self)
    self.kafka = M.client({
        bootstrap = self.host,
        producer = self.producer_settings,
        stamps = self.stamps,
    })
end

return M
