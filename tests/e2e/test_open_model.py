"""Open-model load and coordinated omission, wrk2's demonstration: a server stalls for one
second during a 1,000 requests/s run. Users arriving at a constant rate keep arriving during
the stall, so the stall shows in their percentiles; a closed-model run's service times hide it
(its few users simply wait), and only the latency from the intended start reveals it there."""
import os

import servers
from harness import CicadaTest, main

OPEN = """
local cicada = require "cicada"
local Arrivals = cicada.HttpUser:extend("Arrivals", { arrival_rate = 1000, max_users = 1500 })
Arrivals:task(function(self) self.client:get("/x") end)
return { Arrivals }
"""

CLOSED = """
local cicada = require "cicada"
local Closed = cicada.HttpUser:extend("Closed", { wait_time = cicada.constant_throughput(100) })
Closed:task(function(self) self.client:get("/x") end)
return { Closed }
"""


def stall_server():
    return servers.Process([servers.PYTHON, os.path.join(servers.SERVERS, "stall_server.py"),
                            "2", "1"])


class OpenModel(CicadaTest):
    def test_the_open_model_sees_a_stall_the_closed_model_hides(self):
        srv = stall_server()
        try:
            r = self.cicada("--headless", "-u", "1500", "-r", "100000", "-t", "6", "-H", srv.url,
                            script=OPEN)
        finally:
            srv.stop()
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        e = r.entry("/x", "GET")
        # about 1,000 iterations a second for about six seconds, each one request (fewer on a
        # busy machine, where 1,500 users take a while to start: arrivals wait for them)
        self.assertGreater(e["num_requests"], 1500)
        self.assertEqual(e["num_failures"], 0)
        # a tenth of the requests arrived during the stall and waited for its end
        self.assertGreater(e["percentiles"]["99"], 500)
        self.assertGreater(e["intended_percentiles"]["99"], 500)
        self.assertEqual(r.data["dropped_iterations"], {})

        srv = stall_server()
        try:
            r = self.cicada("--headless", "-u", "10", "-r", "100", "-t", "6", "-H", srv.url,
                            script=CLOSED)
        finally:
            srv.stop()
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        e = r.entry("/x", "GET")
        self.assertGreater(e["num_requests"], 1500)
        # the stall happened: a few requests took about a second...
        self.assertGreater(e["max_response_time"], 500)
        # ...but the ten users just waited, so the service times hide it
        self.assertLess(e["percentiles"]["99"], 500)
        # measured from when each request was meant to start, the stall is back
        self.assertGreater(e["intended_percentiles"]["99"], 500)

    def test_iterations_that_find_no_free_user_are_counted(self):
        srv = stall_server()
        try:
            r = self.cicada("--headless", "-u", "20", "-r", "10000", "-t", "5", "-H", srv.url,
                            script=OPEN.replace("max_users = 1500", "max_users = 20"))
        finally:
            srv.stop()
        self.assertEqual(r.rc, 0, r.stderr[-2000:])
        # during the stall the 20 users are all held: the iterations due meanwhile are dropped
        self.assertGreater(r.data["dropped_iterations"]["Arrivals"], 500)
        self.assertIn("Dropped iterations of Arrivals", r.stderr)


if __name__ == "__main__":
    main()
