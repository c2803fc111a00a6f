-- The XML-RPC user of Locust's guide to testing other systems, in cicada. Every call is
-- recorded with request_type "xmlrpc" and the method's name; a fault is a failure named
-- after its faultCode and faultString. Run it (see README.md):
--   /usr/bin/python3 examples/xmlrpc/server.py --port 8877 &
--   cicada -f examples/xmlrpc/cicadafile.lua --headless -H http://127.0.0.1:8877 -u 20 -r 10 -t 30s
local cicada = require "cicada"
local xmlrpc = require "cicada.xmlrpc"

local MyUser = xmlrpc.XmlRpcUser:extend("MyUser", {
    host = "http://127.0.0.1:8877/", -- -H overrides it
    wait_time = cicada.between(0.1, 0.5),
    network_timeout = 10, -- seconds without a response byte: the call fails with a timeout
    allow_none = true,    -- nil goes as <nil/> (the server was started with allow_none)
})

-- The guide's two tasks: self.client is a proxy, any method name is a remote call (the
-- results are returned; a failed call returns nil and its error).
MyUser:task(function(self)
    self.client.get_time()
end)

MyUser:task(function(self)
    local n = self.client.get_random_number(0, 100)
    -- a call that failed returns nil and the error, as it is recorded
    if n and (n < 0 or n > 100) then cicada.log.error("out of range: " .. n) end
end)

-- Every XML-RPC type, there and back. Lua cannot tell every type apart by itself: the
-- wrappers say what a value is.
MyUser:task("types", 1, function(self)
    local sent = {
        42,                                  -- <int>
        2 ^ 40,                              -- <i8>: a whole number beyond 32 bits
        1.5,                                 -- <double>
        xmlrpc.double(2),                    -- <double> even though it is whole
        true,                                -- <boolean>
        "text & <markup>",                   -- <string>
        xmlrpc.base64("\0\1\2 bytes"),       -- <base64>
        xmlrpc.datetime(os.time()),          -- <dateTime.iso8601>, in UTC
        { 1, 2, 3 },                         -- <array>
        { name = "ann", tags = { "a" } },    -- <struct>
        xmlrpc.array {},                     -- an empty <array> ({} alone is an empty struct)
        nil,                                 -- <nil/>, with allow_none
    }
    -- the server reports the Python type each argument arrived as
    local types, err = self.client.types(unpack(sent, 1, 12))
    if types then
        cicada.log.debug(table.concat(types, ", ")) -- int, int, float, float, bool, str, ...
    end
end)

-- A fault is a failure named after it: self.client.divide(1, 0) is recorded as
-- "Fault 1: <class 'ZeroDivisionError'>:division by zero", and returns nil, that text, and
-- the fault's {faultCode =, faultString =}. Errors handled this way are the script's choice:
MyUser:task("guarded", 1, function(self)
    local value, err, fault = self.client.divide(10, math.random(1, 5))
    if not value then cicada.log.warning("divide failed: " .. err) end
end)

-- Dotted method names work as in Python's ServerProxy.
MyUser:task("introspection", 1, function(self)
    self.client.system.listMethods()
end)

return { MyUser }
