# The same workload for Locust: FastHttpUser (geventhttpclient), one task, no wait.
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser


class Bench(FastHttpUser):
    wait_time = constant(0)
    insecure = True

    @task
    def index(self):
        self.client.get("/index.html")
