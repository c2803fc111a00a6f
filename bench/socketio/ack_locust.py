# The same workload for Locust: a User driving python-socketio's client (Debian's
# python3-socketio, websocket transport through python3-websocket), reporting as Locust's
# SocketIOUser does: each acknowledged call is a "WSC" request timed to its answer.
import time

import socketio
from locust import User, constant, task


class Caller(User):
    wait_time = constant(0)

    def on_start(self):
        self.sio = socketio.Client(reconnection=False)
        self.sio.connect(self.host, transports=["websocket"])

    def on_stop(self):
        self.sio.disconnect()

    @task
    def ack(self):
        start = time.perf_counter()
        exc = None
        try:
            self.sio.call("ack", "ping", timeout=60)
        except Exception as e:  # a timeout or a lost connection
            exc = e
        self.environment.events.request.fire(
            request_type="WSC", name="ack", response_time=(time.perf_counter() - start) * 1000,
            response_length=0, exception=exc, context={})
