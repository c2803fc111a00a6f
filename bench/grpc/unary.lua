-- SPDX-License-Identifier: MIT
-- The gRPC benchmark: each user calls SayHello on the hello server (examples/grpc) as fast as
-- it answers, on its own HTTP/2 connection (as h2load -c N -m 1 and Locust's users do).
local cicada = require "cicada"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local Bench = cicada.GrpcUser:extend("Bench", {
    proto = here .. "../../examples/grpc/hello.proto",
})
local REQUEST = { name = "Test" }
Bench:task(function(self)
    self.client:call("locust.hello.HelloService/SayHello", REQUEST)
end)
return { Bench }
