-- A Socket.IO client: it joins the admin namespace with a token, handles the server's events
-- (answering the server's own questions), makes acknowledged calls (timed to the answer),
-- emits events and waits for their echo, and sends binary data.
-- Run it against the test server (see README.md):
--   cicada -f examples/socketio/cicadafile.lua --headless -H http://127.0.0.1:3000 -u 10 -r 10 -t 30s
local cicada = require "cicada"
local sio = require "cicada.socketio"

local Member = cicada.SocketIOUser:extend("Member", {
    wait_time = cicada.between(0.5, 1),
    namespace = "/admin",
    auth = { token = "secret" },
    call_timeout = 5,
})

function Member:on_start()
    -- the server greets every client; handlers run in a fiber of their own
    self.client:on("welcome", function(info)
        cicada.log.debug("joined as", info.sid)
    end)
    -- the server asks a question and wants an acknowledgement: the handler's result is it
    self.client:on("question", function(n)
        return n + 1
    end)
    assert(self.client:connect())
end

-- An acknowledged call: WSC ack, timed from the emit to the answer.
Member:task(5, function(self)
    local a, b = self.client:call("ack", sio.args("ping", 42))
    if a ~= "ping" or b ~= 42 then error("unexpected answer " .. tostring(a)) end
end)

-- An event and the event that answers it: WSE echo, then WSR echo.
Member:task(3, function(self)
    self.client:emit("echo", { text = "hello", at = cicada.now() })
    local event, data = self.client:wait("echo", 5)
    assert(event == "echo" and data.text == "hello", "no echo")
end)

-- Binary data travels as an attachment.
Member:task(1, function(self)
    local blob = string.rep("\255\0", 512)
    local back, size = self.client:call("binary", sio.binary(blob), { name = "binary" })
    assert(back == blob and size == #blob, "binary round trip")
end)

-- The server asks a question, our handler answers it, the server reports the answer.
Member:task(1, function(self)
    self.client:emit("ask")
    local _, answer = self.client:wait("answer_was", 5)
    assert(answer == 43, "the server got " .. tostring(answer))
end)

function Member:on_stop()
    self.client:disconnect()
end

return { Member }
