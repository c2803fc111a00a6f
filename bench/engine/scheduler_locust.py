# The same workload for Locust: a task that fires one request event, no wait.
from locust import User, constant, task


class Bench(User):
    wait_time = constant(0)

    @task
    def record(self):
        self.environment.events.request.fire(request_type="bench", name="task", response_time=1,
                                              response_length=0, exception=None, context={})
