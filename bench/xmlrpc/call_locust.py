"""The same calls from Locust, with the XmlRpcUser of Locust's guide
(examples/custom_xmlrpc_client/xmlrpc_locustfile.py): each call timed and fired as a request."""
import time
from xmlrpc.client import Fault, ServerProxy

from locust import User, task


class XmlRpcClient(ServerProxy):
    def __init__(self, host, request_event):
        super().__init__(host)
        self._request_event = request_event

    def __getattr__(self, name):
        func = ServerProxy.__getattr__(self, name)

        def wrapper(*args, **kwargs):
            meta = {"request_type": "xmlrpc", "name": name, "response_length": 0,
                    "response": None, "context": {}, "exception": None}
            start = time.perf_counter()
            try:
                meta["response"] = func(*args, **kwargs)
            except Fault as e:
                meta["exception"] = e
            meta["response_time"] = (time.perf_counter() - start) * 1000
            self._request_event.fire(**meta)
            return meta["response"]

        return wrapper


class Caller(User):
    def __init__(self, environment):
        super().__init__(environment)
        self.client = XmlRpcClient(self.host, request_event=environment.events.request)

    @task
    def echo(self):
        self.client.echo({"id": 42, "name": "cicada", "tags": ["a", "b"], "price": 9.5})
