-- Real browsers on the test shop: a WebdriverUser (chromedriver, W3C WebDriver) and a
-- BrowserUser (Chrome DevTools Protocol) doing the same journey. Run it (see README.md):
--   /usr/bin/python3 tests/servers/browser_site.py --port 8000 &
--   cicada -f examples/browser/cicadafile.lua --headless -H http://127.0.0.1:8000 -u 4 -r 1 -t 60s
local cicada = require "cicada"
local webdriver = require "cicada.webdriver"
local browser = require "cicada.browser"

-- The journey, for either user: b is self.browser (WebDriver) or self.page (DevTools), whose
-- methods of the same name do the same thing.
local function shop(b)
    -- a page load: recorded as "browser" /, with "browser-dcl" and "browser-ttfb"
    b:navigate("/")

    -- typing and clicking; read back what the page did with them
    b:type("#q", "blue shoes")
    b:click("#go")
    local result = b:text("#result")
    if result ~= "searched: blue shoes" then
        error("the search did not run: " .. tostring(result))
    end

    -- the page's script adds an element late: wait for it without holding up other users
    if not b:wait_for("#late", { timeout = 5 }) then return end
    b:click("#counter")

    -- follow a link, then record the page it loaded under a name of its own
    b:click("#next")
    b:wait_for("#home")
    b:record_timings("/page2.html (from a click)")
end

-- WebDriver: each user has a Chromium of its own; chromedriver serves 8 sessions.
local WebdriverShopper = webdriver.WebdriverUser:extend("WebdriverShopper", {
    wait_time = cicada.between(1, 2),
    window_size = { 1024, 768 },
})

WebdriverShopper:task(3, function(self)
    shop(self.browser)
end)

-- execute() runs a function body with arguments; elements come back as elements
WebdriverShopper:task(1, function(self)
    local b = self.browser
    b:navigate("/", { name = "/ (items)" })
    b:wait_for("#late")
    local items = b:find_all("#items .item")
    local n = b:execute("return arguments[0].length", items)
    cicada.record("check", "items listed", 0, 0, n ~= 10 and ("items: " .. tostring(n)) or nil)
end)

-- DevTools: users share a Chromium (4 each), each in a browser context of its own; every
-- resource of the page is recorded as "browser-resource" with its URL.
local CdpShopper = browser.BrowserUser:extend("CdpShopper", {
    wait_time = cicada.between(1, 2),
    users_per_browser = 4,
})

function CdpShopper:on_start()
    -- the page is already open here; on_stop closes it whatever happens
    self.page:navigate("/", { name = "/ (first visit)" })
end

CdpShopper:task(3, function(self)
    shop(self.page)
end)

-- evaluate() returns an expression's value; promises are awaited
CdpShopper:task(1, function(self)
    local p = self.page
    p:navigate("/", { name = "/ (items)" })
    local n = p:evaluate("fetch('/api/items').then(r => r.json()).then(items => items.length)")
    cicada.record("check", "items fetched", 0, 0, n ~= 10 and ("items: " .. tostring(n)) or nil)
end)

return { WebdriverShopper, CdpShopper }
