-- The OpenAI benchmark: each user streams chat completions from the fake server in a loop.
-- The server writes the time it sent the first token into it (X-Fake-Stamp), so the lag from
-- that moment to when cicada saw it is recorded too ("LAG first token"), by the monotonic
-- clock both processes share.
local cicada = require "cicada"

local monotonic, record = cicada.monotonic, cicada.record
local STAMP = { ["X-Fake-Stamp"] = 1 }

local Chat = cicada.OpenAIUser:extend("Chat", {
    model = "fake-model",
    wait_time = cicada.constant(0),
})

Chat:task(function(self)
    local t0 = monotonic()
    local r = self.client:chat("Write a haiku about cicadas.", { name = "chat", headers = STAMP })
    local sent = r.ttft_ms and tonumber(r.text:match("^t=([%d.]+)"))
    if sent then
        local lag = (t0 + r.ttft_ms / 1000 - sent) * 1000
        record("LAG", "first token", lag > 0 and lag or 0, 0, nil)
    end
end)

return { Chat }
