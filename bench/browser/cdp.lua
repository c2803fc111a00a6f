-- bench/browser/cdp.lua: BrowserUser (DevTools) browsing the test shop: a page load and a click,
-- then a second of thinking. Page loads are named "page" from BENCH_FROM to BENCH_UNTIL (epoch
-- seconds: the measured window), "warmup" before and "after" after.
local cicada = require "cicada"
local browser = require "cicada.browser"
local from = tonumber(os.getenv("BENCH_FROM")) or 0
local untl = tonumber(os.getenv("BENCH_UNTIL")) or math.huge

local function name()
    local now = cicada.now()
    return now < from and "warmup" or now < untl and "page" or "after"
end

local Browsing = browser.BrowserUser:extend("Browsing", {
    wait_time = cicada.constant(1),
    users_per_browser = tonumber(os.getenv("BENCH_PER_BROWSER")) or nil,
})
Browsing:task(function(self)
    local p = self.page
    p:navigate("/", { name = name() })
    p:click("#counter")
end)
return { Browsing }
