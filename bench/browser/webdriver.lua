-- bench/browser/webdriver.lua: WebdriverUser browsing the test shop: a page load and a click,
-- then a second of thinking. Page loads are named "page" from BENCH_FROM to BENCH_UNTIL (epoch
-- seconds: the measured window), "warmup" before and "after" after.
local cicada = require "cicada"
local webdriver = require "cicada.webdriver"
local from = tonumber(os.getenv("BENCH_FROM")) or 0
local untl = tonumber(os.getenv("BENCH_UNTIL")) or math.huge

local function name()
    local now = cicada.now()
    return now < from and "warmup" or now < untl and "page" or "after"
end

local Browsing = webdriver.WebdriverUser:extend("Browsing", { wait_time = cicada.constant(1) })
Browsing:task(function(self)
    local b = self.browser
    b:navigate("/", { name = name() })
    b:click("#counter")
end)
return { Browsing }
