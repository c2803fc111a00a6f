"""kafka_server.py: librdkafka's mock Kafka cluster (tests/servers/kafka_mock.c) for the tests.

The helper is built with the tests, next to the cicada binary's test programs
(<build>/tests/kafka_mock); CICADA_KAFKA_MOCK names another. Its brokers listen on ephemeral
ports of 127.0.0.1.
"""
import os
import subprocess

from harness import CICADA


def mock_binary():
    path = os.environ.get("CICADA_KAFKA_MOCK") or os.path.join(
        os.path.dirname(os.path.abspath(CICADA)), "tests", "kafka_mock")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing: build the tests (cmake --build <build>)")
    return path


class KafkaMock:
    """A running mock cluster: .bootstrap ("127.0.0.1:p1,..."), .down(id), .up(id), .stop()."""

    def __init__(self, brokers=3, topics=()):
        argv = [mock_binary(), "--brokers", str(brokers)]
        for t in topics:
            argv += ["--topic", t]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError("kafka_mock did not start")
        self.bootstrap = line.split()[-1]
        self.url = "kafka://" + self.bootstrap

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"kafka_mock {line}: {answer}")

    def down(self, broker):
        self.command(f"down {broker}")

    def up(self, broker):
        self.command(f"up {broker}")

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # the helper exits at the end of its input
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
