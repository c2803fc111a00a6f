-- The scheduler benchmark: a user whose task only records a synthetic request, with no wait.
-- What it measures is cicada's own cost per task: pick, run, record, yield, resume.
local cicada = require "cicada"
local record = cicada.record
local Bench = cicada.User:extend("Bench", {})
Bench:task(function() record("bench", "task", 1, 0) end)
return { Bench }
