# The same parked HTTP users for Locust's FastHttpUser.
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser


class Parked(FastHttpUser):
    wait_time = constant(3600)

    @task
    def index(self):
        self.client.get("/index.html")
