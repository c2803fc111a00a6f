-- A chat over WebSocket: each user connects with a subprotocol and a token, then sends
-- messages and reads the echo, pings now and then, and leaves with a closing handshake.
-- Run it against the echo server (see README.md):
--   cicada -f examples/websocket/cicadafile.lua --headless -H ws://127.0.0.1:8765 -u 10 -r 10 -t 30s
local cicada = require "cicada"

local Chatter = cicada.WebSocketUser:extend("Chatter", {
    wait_time = cicada.between(0.5, 1.5),
    protocols = { "chat.v1" },
    headers = { Authorization = "Bearer example-token" },
    timeout = 10,
})

function Chatter:on_start()
    assert(self.client:connect("/echo"))
    self.said = 0
end

-- A text message and its echo: "recv" times how long the answer took after the send.
Chatter:task(5, function(self)
    self.said = self.said + 1
    local text = "hello #" .. self.said
    self.client:send(text)
    local reply = self.client:receive(5)
    if reply ~= text then
        error("expected the echo of '" .. text .. "', got " .. tostring(reply))
    end
end)

-- A binary message, under names of its own.
Chatter:task(2, function(self)
    local payload = string.rep("\0\1\2\3", 256)
    self.client:send_binary(payload, { name = "send binary" })
    local reply, kind = self.client:receive(5, { name = "recv binary" })
    assert(kind == "binary" and #reply == #payload, "binary echo")
end)

-- The connection's round trip, without the server's application code.
Chatter:task(1, function(self)
    self.client:ping("are you there?")
end)

function Chatter:on_stop()
    self.client:close(1000, "bye")
end

return { Chatter }
