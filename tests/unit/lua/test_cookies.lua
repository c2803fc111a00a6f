-- test_cookies.lua: the cookie jar against RFC 6265's rules.
local check = require "check"
local cookies = require "cicada.cookies"
local url = require "cicada.url"
local test, eq = check.test, check.eq

local NOW = 1800000000
local function u(s) return url.parse(s) end

test("dates", function()
    eq(cookies.parse_date("Wed, 21 Oct 2015 07:28:00 GMT"), 1445412480)
    eq(cookies.parse_date("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777)
    eq(cookies.parse_date("Sun Nov  6 08:49:37 1994"), 784111777)
    eq(cookies.parse_date("garbage"), nil)
end)

test("host-only cookies and default path", function()
    local jar = cookies.new()
    jar:set_from_header(u("http://shop.example/account/login"), "session=abc; HttpOnly", NOW)
    eq(jar:header_for(u("http://shop.example/account/cart"), NOW), "session=abc")
    eq(jar:header_for(u("http://shop.example/other"), NOW), nil) -- default path /account
    eq(jar:header_for(u("http://sub.shop.example/account/x"), NOW), nil) -- host-only
    eq(jar:get("session"), "abc")
end)

test("domain, path order, replacement and deletion", function()
    local jar = cookies.new()
    local site = u("http://www.example.com/a/b")
    jar:set_from_header(site, "wide=1; Domain=.example.com; Path=/", NOW)
    jar:set_from_header(site, "deep=2; Path=/a", NOW)
    jar:set_from_header(site, "evil=3; Domain=other.com", NOW) -- not this site's: ignored
    eq(jar:header_for(u("http://api.example.com/"), NOW), "wide=1")
    eq(jar:header_for(u("http://www.example.com/a/x"), NOW), "deep=2; wide=1")
    eq(jar:header_for(u("http://www.example.com/ab"), NOW), "wide=1") -- /a is not a prefix here
    jar:set_from_header(site, "wide=9; Domain=example.com; Path=/", NOW)
    eq(jar:header_for(u("http://x.example.com/"), NOW), "wide=9")
    eq(jar:count(), 2)
    jar:set_from_header(site, "deep=; Path=/a; Max-Age=0", NOW)
    eq(jar:count(), 1)
end)

test("expiry and Secure", function()
    local jar = cookies.new()
    local site = u("https://bank.test/")
    jar:set_from_header(site, "short=1; Max-Age=10", NOW)
    jar:set_from_header(site, "dated=2; Expires=Wed, 21 Oct 2099 07:28:00 GMT", NOW)
    jar:set_from_header(site, "safe=3; Secure", NOW)
    eq(jar:header_for(site, NOW), "short=1; dated=2; safe=3")
    eq(jar:header_for(u("http://bank.test/"), NOW), "short=1; dated=2") -- not over http
    eq(jar:header_for(site, NOW + 11), "dated=2; safe=3") -- short expired
    jar:set_from_header(site, "dated=x; Expires=Wed, 21 Oct 2015 07:28:00 GMT", NOW)
    eq(jar:get("dated"), nil) -- a date in the past deletes
end)

test("set by hand", function()
    local jar = cookies.new()
    jar:set("token", "t1") -- no domain: every host
    eq(jar:header_for(u("http://anywhere/x"), NOW), "token=t1")
    eq(jar:header_for(u("http://elsewhere/"), NOW), "token=t1")
    jar:set("token", "t2")
    eq(jar:count(), 1)
    jar:set("other", "o", { domain = ".site.test", path = "/api" })
    eq(jar:header_for(u("http://www.site.test/api/v1"), NOW), "other=o; token=t2")
    eq(jar:dict().token, "t2")
    jar:clear()
    eq(jar:count(), 0)
end)

check.done()
