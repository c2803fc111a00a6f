"""SDK session injection and patching (examples/sdk/): a pure-Lua SDK whose HTTP transport is
swapped for the user's HttpUser client records every SDK call in the statistics; left alone,
the same SDK runs cooperatively over LuaSocket. Against the demo shop (cicada demo-server)."""
import os

import servers
from harness import SOURCE, CicadaTest, main

EXAMPLE = os.path.join(SOURCE, "examples", "sdk")
SDK_NAMES = {("POST", "/login"), ("GET", "/items"), ("GET", "/items/[id]"), ("POST", "/cart"),
             ("GET", "/cart"), ("POST", "/checkout")}


class SdkTest(CicadaTest):
    @classmethod
    def setUpClass(cls):
        cls.shop = servers.demo_server()

    @classmethod
    def tearDownClass(cls):
        cls.shop.stop()

    def test_the_example_records_every_sdk_call(self):
        r = self.cicada("--headless", "-f", os.path.join(EXAMPLE, "cicadafile.lua"),
                        "-H", self.shop.url, "-u", "5", "-r", "100", "-t", "3")
        self.assertEqual(r.rc, 0, r.stderr[-3000:])
        self.assertEqual(r.data["failures"], [])
        self.assertEqual(r.data["exceptions"], [])
        names = {(e["type"], e["name"]) for e in r.data["stats"]}
        self.assertTrue(names <= SDK_NAMES, names)
        self.assertEqual(r.count("/login", "POST"), 5)
        # each user runs a task right after on_start: browse (GET /items) or buy (POST /cart)
        self.assertGreaterEqual(r.count("/items", "GET") + r.count("/cart", "POST"), 5)

    def test_sdk_errors_are_the_clients_failures(self):
        # a wrong password: the SDK raises, and the client has recorded the 401 as a failure
        script = self.write("sdk/cicadafile.lua", f"""
            local cicada = require "cicada"
            local shopsdk = require "shopsdk"
            local U = cicada.HttpUser:extend("U", {{}})
            function U:on_start()
                local client = self.client
                local shop = shopsdk.new {{ url = self.host, transport = {{
                    request = function(_, method, url, headers, body)
                        local r = client:request(method, url:match("^https?://[^/]+(/.*)$"),
                                                 {{ headers = headers, body = body }})
                        return r.status_code, r.text, r.headers
                    end }} }}
                local ok, err = pcall(shop.login, shop, "ann", "wrong")
                cicada.record("check", "raised", 0, 0,
                              (ok or not tostring(err):find("401")) and tostring(err) or nil)
                shop:login("ann", "secret")
                shop:add_to_cart(1, 2)
                local order = shop:checkout()
                cicada.record("check", "ordered", 0, 0, order.items ~= 2 and "items" or nil)
                error(cicada.StopTest)
            end
            U:task(function() end)
            return {{ U }}
        """)
        os.symlink(os.path.join(EXAMPLE, "shopsdk.lua"), self.path("sdk/shopsdk.lua"))
        r = self.cicada("--headless", "-f", script, "-H", self.shop.url, "-u", "1", "-t", "30")
        self.assertEqual(r.data["exceptions"], [], r.stderr[-3000:])
        self.assertEqual(r.failures("raised", "check"), 0, r.data["failures"])
        self.assertEqual(r.failures("ordered", "check"), 0, r.data["failures"])
        self.assertEqual(r.count("/login", "POST"), 2)
        self.assertEqual(r.failures("/login", "POST"), 1)
        fail = [f for f in r.data["failures"] if f["name"] == "/login"][0]
        self.assertIn("401", fail["error"])
        self.assertEqual(r.count("/checkout", "POST"), 1)

    def test_the_sdk_alone_runs_over_cooperative_luasocket(self):
        # its default transport is LuaSocket's socket.http, cicada's cooperative one inside
        # users: 10 users log in and order at once, each call measured by the script
        script = self.write("sdk/cicadafile.lua", f"""
            local cicada = require "cicada"
            local shopsdk = require "shopsdk"
            local U = cicada.User:extend("U", {{ wait_time = cicada.constant(0) }})
            local n = 0
            function U:on_start()
                n = n + 1
                self.shop = shopsdk.new {{ url = "{self.shop.url}" }}
                cicada.measure("sdk", "login", self.shop.login, self.shop, "user" .. n, "secret")
                self.rounds = 0
            end
            U:task(function(self)
                self.rounds = self.rounds + 1
                local shop = self.shop
                cicada.measure("sdk", "add_to_cart", shop.add_to_cart, shop, 3, 1)
                local ok, order = cicada.measure("sdk", "checkout", shop.checkout, shop)
                cicada.record("check", "order", 0, 0,
                              not (ok and order.items == 1) and tostring(order) or nil)
                if self.rounds == 5 then error(cicada.StopUser) end
            end)
            return {{ U }}
        """)
        os.symlink(os.path.join(EXAMPLE, "shopsdk.lua"), self.path("sdk/shopsdk.lua"))
        r = self.cicada("--headless", "-f", script, "-u", "10", "-r", "100", "-t", "10")
        self.assertEqual(r.rc, 0, r.stderr[-3000:])
        self.assertEqual(r.count("login", "sdk"), 10)
        self.assertEqual(r.count("add_to_cart", "sdk"), 50)
        self.assertEqual(r.count("checkout", "sdk"), 50)
        self.assertEqual(r.count("order", "check"), 50)
        self.assertEqual(r.data["failures"], [])
        self.assertEqual(r.data["exceptions"], [])


if __name__ == "__main__":
    main()
