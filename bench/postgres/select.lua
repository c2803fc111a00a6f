-- pgbench -S's transaction from cicada: one primary-key SELECT on pgbench_accounts per task, no
-- wait. CICADA_PG_MODE picks the protocol, as pgbench's -M does: "simple" (the value in the
-- text), "extended" (a parameter, parsed each time) or "prepared" (a prepared statement).
local cicada = require "cicada"

local mode = os.getenv("CICADA_PG_MODE") or "simple"
local random = math.random
local SQL = "SELECT abalance FROM pgbench_accounts WHERE aid = "
local ACCOUNTS = 100000 -- pgbench -i at scale 1

local Select = cicada.PostgresUser:extend("Select", { wait_time = cicada.constant(0) })

if mode == "prepared" then
    function Select:on_start()
        assert(self.client:prepare("select", SQL .. "$1"))
    end
    Select:task(function(self)
        self.client:execute("select", { random(1, ACCOUNTS) })
    end)
elseif mode == "extended" then
    local sql = SQL .. "$1"
    Select:task(function(self)
        self.client:query(sql, { random(1, ACCOUNTS) }, "select")
    end)
else
    Select:task(function(self)
        self.client:query(SQL .. random(1, ACCOUNTS), nil, "select")
    end)
end

return { Select }
