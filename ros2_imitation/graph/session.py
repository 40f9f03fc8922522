"""A command talking to a running graph: Trigger service calls that notice a dead graph, waiting for
a state with a deadline, the recorder's readiness, the episode log. Used by record-demos (the
scripted expert and the operator-driven physical-arm paths alike)."""
import json
import time
from pathlib import Path

EPISODE_LOG = 'record_demos.jsonl'


class GraphDied(RuntimeError):
    """A required node of the graph exited; the message names it."""


def liveness(bringup):
    """A check that raises GraphDied naming the first node of `bringup` that has exited."""
    def alive():
        died = bringup.poll()
        if died:
            raise GraphDied(f'node {died[0]!r} exited with code {died[1]}')
    return alive


class GraphSession:
    """Persistent Trigger clients on `node` (created once: no discovery per call); `alive` is
    checked whenever a wait is long, so a dead graph is an error, not a time-out."""

    def __init__(self, node, alive=lambda: None):
        from std_srvs.srv import Trigger
        self.node, self.alive, self.Trigger, self.clients = node, alive, Trigger, {}

    def wait_services(self, names, timeout: float):
        deadline = time.monotonic() + timeout
        for name in names:
            client = self._client(name)
            while not client.wait_for_service(timeout_sec=0.5):
                self.alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f'service {name} did not appear within {timeout:.0f} s')

    def _client(self, name):
        if name not in self.clients:
            self.clients[name] = self.node.create_client(self.Trigger, name)
        return self.clients[name]

    def __call__(self, name: str, timeout: float = 30.0, check: bool = True):
        future = self._client(name).call_async(self.Trigger.Request())
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                self.alive()
                raise TimeoutError(f'service {name} did not answer within {timeout:.0f} s')
            time.sleep(0.002)
        reply = future.result()
        if check and not reply.success:
            raise RuntimeError(f'{name} failed: {reply.message}')
        return reply

    def wait_for(self, get, predicate, wall_timeout: float, what: str):
        """The first value of get() (not None) that satisfies predicate, within wall_timeout s."""
        deadline = time.monotonic() + wall_timeout
        while time.monotonic() < deadline:
            value = get()
            if value is not None and predicate(value):
                return value
            self.alive()
            time.sleep(0.005)
        raise TimeoutError(f'timed out after {wall_timeout:.0f} s waiting for {what}')

    def wait_recorder_ready(self, topics, timeout: float) -> list:
        """Until the recorder subscribed to every topic (its latched ~/status); returns what is missing."""
        from std_msgs.msg import String

        from ros2_imitation.qos import LATCHED_QOS
        status = {}
        sub = self.node.create_subscription(String, '/recorder/status',
                                            lambda m: status.update(json.loads(m.data)), LATCHED_QOS)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if status and not status.get('missing'):
                    return []
                self.alive()
                time.sleep(0.05)
            return status.get('missing', list(topics))
        finally:
            self.node.destroy_subscription(sub)


def log_episode(out: Path, result: dict):
    """Append one episode's result to OUT/record_demos.jsonl."""
    with open(Path(out) / EPISODE_LOG, 'a') as f:
        f.write(json.dumps(result) + '\n')
