# The MQTT benchmark for Locust as its MqttUser (locust.contrib.mqtt, newer than Debian's
# Locust 2.12) works, on Debian's python3-paho-mqtt: publish returns at once, and the request
# event is fired from paho's on_publish callback (QoS 0: written; QoS 1: PUBACK).
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
        self.client.on_publish = self._on_publish
        self.pending = {}
        self.client.connect(host, int(port or 1883))
        self.client.loop_start()

    def _on_publish(self, client, userdata, mid):
        start = self.pending.pop(mid, None)
        if start is not None:
            self.environment.events.request.fire(
                request_type="MQTT", name=f"publish:{QOS}:bench",
                response_time=(time.perf_counter() - start) * 1000,
                response_length=len(PAYLOAD), exception=None, context={})

    @task
    def publish(self):
        start = time.perf_counter()
        info = self.client.publish(self.topic, PAYLOAD, QOS)
        self.pending[info.mid] = start

    def on_stop(self):
        self.client.loop_stop()
        self.client.disconnect()
