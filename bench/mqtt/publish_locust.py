# The same workload for Locust: a user on Debian's python3-paho-mqtt, made the way Locust's
# MqttUser (locust.contrib.mqtt, newer than Debian's Locust 2.12) makes it: its own client with
# its network loop started (loop_start), a request event per message. Like cicada's, each user
# waits for its message to be published (QoS 0: written; QoS 1: PUBACK) before the next one.
import os
import random
import string
import time

import paho.mqtt.client as mqtt
from locust import User, constant, task

QOS = int(os.environ.get("MQTT_QOS", "1"))
PAYLOAD = b"x" * 64


class Bench(User):
    wait_time = constant(0)

    def __init__(self, environment):
        super().__init__(environment)
        hostport = self.host.split("://")[-1]
        host, _, port = hostport.partition(":")
        self.topic = "bench/locust/" + "".join(random.choices(string.ascii_letters, k=8))
        self.client = mqtt.Client(client_id="locust-" + "".join(
            random.choices(string.ascii_letters + string.digits, k=16)))
        self.client.connect(host, int(port or 1883))
        self.client.loop_start()

    @task
    def publish(self):
        start = time.perf_counter()
        info = self.client.publish(self.topic, PAYLOAD, QOS)
        exc = None
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            exc = Exception(mqtt.error_string(info.rc))
        else:
            info.wait_for_publish(timeout=10)
            if not info.is_published():
                exc = Exception("not published")
        self.environment.events.request.fire(
            request_type="MQTT", name=f"publish:{QOS}:bench", response_time=(
                time.perf_counter() - start) * 1000, response_length=len(PAYLOAD),
            exception=exc, context={})

    def on_stop(self):
        self.client.loop_stop()
        self.client.disconnect()
