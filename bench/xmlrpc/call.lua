-- XML-RPC calls as fast as the server answers: one struct in, one struct out, per call.
-- Against examples/xmlrpc/server.py --max-sleep 0; compare with call_locust.py.
local xmlrpc = require "cicada.xmlrpc"

local Caller = xmlrpc.XmlRpcUser:extend("Caller", {})
Caller:task(function(self)
    self.client.echo({ id = 42, name = "cicada", tags = { "a", "b" }, price = 9.5 })
end)

return { Caller }
