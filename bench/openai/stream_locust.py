# The same workload for Locust: a User streaming chat completions with python3-requests
# (stream=True, iter_lines), timing the first token as the first chunk that carries content.
# The server writes the time it sent the first token into it (X-Fake-Stamp); the lag from then
# to when the user saw it goes, sample by sample, to $LOCUST_LAG_FILE at the end (Locust's own
# percentiles are rounded to 2 significant digits), and TTFT is a request type of its own.
import json
import os
import time

import requests
from locust import User, constant, events, task

lags = []


@events.spawning_complete.add_listener
def _reset(user_count, **kw):
    lags.clear()


@events.test_stop.add_listener
def _dump(environment, **kw):
    path = os.environ.get("LOCUST_LAG_FILE")
    if path:
        with open(path, "w") as f:
            json.dump(lags, f)


BODY = {"model": "fake-model", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Write a haiku about cicadas."}]}


class Chat(User):
    wait_time = constant(0)

    def on_start(self):
        self.session = requests.Session()
        self.session.headers["X-Fake-Stamp"] = "1"
        self.url = self.host.rstrip("/") + "/v1/chat/completions"

    @task
    def chat(self):
        fire = self.environment.events.request.fire
        start = time.perf_counter()  # CLOCK_MONOTONIC, as the server's time.monotonic()
        tokens, ttft, exc = 0, None, None
        try:
            with self.session.post(self.url, json=BODY, stream=True, timeout=60) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if not line.startswith(b"data: "):
                        continue
                    data = line[6:]
                    if data == b"[DONE]":
                        break
                    chunk = json.loads(data)
                    choices = chunk.get("choices") or []
                    content = choices and (choices[0].get("delta") or {}).get("content")
                    if content:
                        if ttft is None:
                            now = time.perf_counter()
                            ttft = (now - start) * 1000
                            if content.startswith("t="):
                                lags.append(max(0.0, (now - float(content[2:])) * 1000))
                            fire(request_type="TTFT", name="chat", response_time=ttft,
                                 response_length=0, exception=None, context={})
                        tokens += 1
        except Exception as e:
            exc = e
        fire(request_type="POST", name="chat", response_time=(time.perf_counter() - start) * 1000,
             response_length=tokens, exception=exc, context={})
