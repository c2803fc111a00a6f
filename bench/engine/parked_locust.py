# The same parked users for Locust.
from locust import User, constant, task


class Parked(User):
    wait_time = constant(3600)

    @task
    def visit(self):
        self.visits = getattr(self, "visits", 0) + 1
