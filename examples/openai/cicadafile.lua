-- Chat completions against an OpenAI-compatible API: streamed answers with their time to
-- first token, inter-token latency, time per output token, end-to-end latency, output tokens
-- and tokens per second; goodput against service levels; now and then a request that is not
-- streamed, and embeddings.
-- Run it against the fake server of the tests (see README.md), or any compatible server:
--   cicada -f examples/openai/cicadafile.lua --headless -H http://127.0.0.1:8000 -u 20 -r 5 -t 60s
local cicada = require "cicada"

local PROMPTS = {
    "Write a haiku about cicadas.",
    "Explain load testing to a five-year-old.",
    "List three uses of a coroutine.",
}

local Chat = cicada.OpenAIUser:extend("Chat", {
    model = os.getenv("OPENAI_MODEL") or "fake-model",
    wait_time = cicada.between(0.5, 2),
    slo = { ttft_ms = 500, tpot_ms = 50 }, -- --slo on the command line overrides these
})

-- A streamed chat completion: every metric, under the path's name.
Chat:task(8, function(self)
    local prompt = PROMPTS[math.random(#PROMPTS)]
    local r = self.client:chat(prompt, { max_tokens = 64 })
    if r.ok and r.tokens == 0 then error("an empty answer to: " .. prompt) end
end)

-- A conversation with a system prompt, under a name of its own.
Chat:task(2, function(self)
    self.client:chat({
        { role = "system", content = "You answer in one short sentence." },
        { role = "user", content = "Why do cicadas sing?" },
    }, { name = "conversation", max_tokens = 32, temperature = 0.2 })
end)

-- The whole answer at once: end-to-end latency and tokens only.
Chat:task(1, function(self)
    self.client:chat("Say hello.", { stream = false, name = "not streamed", max_tokens = 16 })
end)

-- Embeddings of a small batch.
Chat:task(1, function(self)
    self.client:embeddings({ "cicada", "locust", "grasshopper" }, { name = "embeddings" })
end)

return { Chat }
