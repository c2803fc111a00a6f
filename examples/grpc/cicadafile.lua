-- SPDX-License-Identifier: MIT
-- Locust's gRPC example in cicada: each user has its own channel to the hello server and calls
-- SayHello. Run the server of README.md, then:
--   cicada -f examples/grpc/cicadafile.lua --headless -H 127.0.0.1:50051 -u 10 -r 10 -t 30s
local cicada = require "cicada"

-- the .proto is found next to this file, whatever the working directory
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

local Hello = cicada.GrpcUser:extend("Hello", {
    host = "127.0.0.1:50051",
    proto = here .. "hello.proto",
    service = "locust.hello.HelloService", -- self.stub calls its methods
    timeout = 10,                         -- each call's deadline, in seconds
    wait_time = cicada.between(0.5, 2),
})

-- recorded as type "grpc", name "/locust.hello.HelloService/SayHello", as in Locust's example
Hello:task(function(self)
    local reply, status = self.stub:SayHello({ name = "Test" })
    if reply and reply.message ~= "Hello from Locust, Test!" then
        cicada.log.warning("unexpected reply: " .. reply.message)
    elseif not reply then
        cicada.log.debug("SayHello failed: " .. tostring(status))
    end
end)

-- the same call with metadata, and by its full name
Hello:task(function(self)
    self.client:call("locust.hello.HelloService/SayHello", { name = "metadata" },
                     { metadata = { ["x-scenario"] = "example" } })
end)

return { Hello }
