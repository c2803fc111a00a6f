-- Every feature of HttpUser's client, one task each, against an httpbin-style server.
-- Run it (see README.md):
--   /usr/bin/python3 tests/servers/httpbin.py 8081 &
--   cicada -f examples/http/cicadafile.lua --headless -H http://127.0.0.1:8081 -u 5 -r 5 -t 30s
local cicada = require "cicada"

local Tour = cicada.HttpUser:extend("Tour", {
    wait_time = cicada.between(0.2, 1),
    network_timeout = 10,  -- seconds without a response byte
    connect_timeout = 5,
    concurrency = 4,       -- connections per origin for this user
    default_headers = { ["X-Load-Test"] = "cicada" },
})

function Tour:on_start()
    -- cookies: the server sets one, the user's jar keeps it and sends it back
    self.client:get("/cookies/set?visitor=" .. math.random(1000), { name = "/cookies/set" })
end

-- query parameters and headers; a name groups many URLs under one entry
Tour:task("params", 3, function(self)
    self.client:get("/anything", {
        params = { page = math.random(5), tags = { "a", "b" } },
        headers = { ["X-Request-Id"] = tostring(math.random(1e9)) },
        name = "/anything?page=[n]",
    })
end)

-- bodies: JSON, a form, a raw string, a multipart upload
Tour:task("bodies", 2, function(self)
    self.client:post("/anything", { json = { item = 1, quantity = 2 }, name = "json" })
    self.client:post("/anything", { data = { user = "ann", note = "a & b" }, name = "form" })
    self.client:put("/anything", { body = "raw text", headers = { ["Content-Type"] = "text/plain" }, name = "raw" })
    self.client:post("/anything", {
        data = { title = "report" },
        files = { file = { "report.csv", "a,b\n1,2\n", "text/csv" } },
        name = "upload",
    })
end)

-- the response: status, JSON, headers that ignore case, timing
Tour:task("response", 2, function(self)
    local r = self.client:get("/gzip") -- decompressed for you
    if r.ok and r:json().gzip and r.headers["content-type"] == "application/json" then
        cicada.log.debug("gzip in " .. r.elapsed_ms .. " ms, first byte after " .. r.ttfb_ms .. " ms")
    end
end)

-- redirects are followed; the response keeps the ones before it
Tour:task("redirects", 1, function(self)
    local r = self.client:get("/redirect/3")
    assert(#r.history == 3, "expected three redirects")
    self.client:get("/redirect/1", { allow_redirects = false, name = "/redirect/1 (not followed)" })
end)

-- basic authentication
Tour:task("auth", 1, function(self)
    self.client:get("/basic-auth/ann/secret", { auth = { "ann", "secret" }, name = "/basic-auth" })
end)

-- deciding success or failure yourself (Locust's catch_response)
Tour:task("catch_response", 2, function(self)
    self.client:get("/status/404", { catch_response = true, name = "optional page" }, function(r)
        if r.status_code == 404 then r:success() end -- absent is fine here
    end)
    self.client:get("/anything", { catch_response = true, name = "checked body" }, function(r)
        if not r.text:find("X-Load-Test", 1, true) then r:failure("default header missing") end
    end)
end)

-- rest(): JSON in and out, assertions become failure messages
Tour:task("rest", 2, function(self)
    self:rest("POST", "/anything", { json = { n = 1 } }, function(r)
        assert(r.js.json.n == 1, "the server did not echo n,")
    end)
end)

-- several requests at once, as a browser loads a page's resources
Tour:task("gather", 1, function(self)
    self.client:rename_request("page resources", function()
        cicada.gather({
            function() self.client:get("/bytes/2048") end,
            function() self.client:get("/bytes/4096") end,
            function() self.client:get("/chunked/3") end,
        })
    end)
end)

-- a large download counted without keeping it in memory, and a request with its own timeout
Tour:task("big and slow", 1, function(self)
    self.client:get("/bytes/1000000", { stream = true, name = "/bytes (streamed)" })
    self.client:get("/delay/0.5", { timeout = 2, name = "/delay" })
end)

return { Tour }
