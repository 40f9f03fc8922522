"""Seeded sim episodes driven from outside the graph: reset, let the graph act, judge, record.

Used by `demo`, `eval` and `record-demos`. The runner is an rclpy node in the calling process; it
only uses what the sim node exposes (the `seed` parameter, ~/reset, ~/task_state, the camera), so
the graph under test is the same one `ros2 launch` would start.
"""
import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from ros2_imitation.graph.client import ClientNode
from ros2_imitation.qos import SENSOR_QOS, STATE_QOS


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    duration: float                      # sim seconds from reset to success or timeout
    final_state: dict
    frames: list = field(default_factory=list)   # (H, W, 3) uint8, when recording
    history: list = field(default_factory=list)  # task states of the episode, in order


class EpisodeRunner:
    def __init__(self, sim: str = '/sim', image_topic: str = '/camera/camera/color/image_raw',
                 record_frames: bool = False, domain_id: int | None = None):
        self.sim = sim
        self._client = ClientNode('episode_runner', domain_id)
        self.node = self._client.node
        self._lock = threading.Lock()
        self._state = None
        self._history = []
        self._frames = None if not record_frames else []
        self.node.create_subscription(String, f'{sim}/task_state', self._on_state, STATE_QOS)
        if record_frames:
            self.node.create_subscription(Image, image_topic, self._on_image, SENSOR_QOS)

    def _on_state(self, msg: String):
        state = json.loads(msg.data)
        with self._lock:
            self._state = state
            self._history.append(state)

    def _on_image(self, msg: Image):
        if msg.encoding != 'rgb8':
            return
        frame = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
        with self._lock:
            if self._frames is not None:
                self._frames.append(frame)

    def call(self, srv_type, name: str, request=None, timeout: float = 30.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f'service {name} did not appear within {timeout:.0f} s')
            future = client.call_async(request or srv_type.Request())
            deadline = time.monotonic() + timeout
            while not future.done():
                if time.monotonic() > deadline:
                    raise TimeoutError(f'service {name} did not answer within {timeout:.0f} s')
                time.sleep(0.01)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def state(self) -> dict | None:
        """The newest task state, or None before the first."""
        with self._lock:
            return self._state

    def wait_for_state(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._state is not None:
                    return self._state
            time.sleep(0.05)
        raise TimeoutError(f'no {self.sim}/task_state within {timeout:.0f} s: is the sim running?')

    def reset(self, seed: int, also: tuple = (), timeout: float = 120.0) -> dict:
        """Reset the sim with `seed`, then call every Trigger service in `also` (policy, expert...).
        Those services are waited for first: a policy still loading must not let the episode's sim
        time run out before it can act."""
        for service in also:
            client = self.node.create_client(Trigger, service)
            try:
                if not client.wait_for_service(timeout_sec=timeout):
                    raise TimeoutError(f'service {service} did not appear within {timeout:.0f} s')
            finally:
                self.node.destroy_client(client)
        param = Parameter(name='seed', value=ParameterValue(
            type=ParameterType.PARAMETER_INTEGER, integer_value=int(seed)))
        result = self.call(SetParameters, f'{self.sim}/set_parameters',
                           SetParameters.Request(parameters=[param]))
        if not result.results[0].successful:
            raise RuntimeError(f'sim refused seed {seed}: {result.results[0].reason}')
        reply = self.call(Trigger, f'{self.sim}/reset')
        if not reply.success:
            raise RuntimeError(f'sim reset failed: {reply.message}')
        for service in also:
            answer = self.call(Trigger, service)
            if not answer.success:
                raise RuntimeError(f'{service} refused the reset: {answer.message}')
        return json.loads(reply.message)

    def run(self, seed: int, timeout: float, also: tuple = (), wall_timeout: float | None = None) -> EpisodeResult:
        """One episode: reset, then wait until the task succeeds or `timeout` sim seconds pass."""
        episode = self.reset(seed, also)['episode']
        with self._lock:
            self._history = []
            if self._frames is not None:
                self._frames = []
        deadline = time.monotonic() + (wall_timeout or max(60.0, 10 * timeout))
        state = None
        while time.monotonic() < deadline:
            with self._lock:
                current = self._state
            if current and current.get('episode') == episode:
                state = current
                if state['success'] or state['time'] >= timeout:
                    break
            time.sleep(0.02)
        else:
            raise TimeoutError(f'episode {seed} did not finish within the wall-clock limit')
        with self._lock:
            frames, self._frames = (self._frames, []) if self._frames is not None else ([], None)
            history = [s for s in self._history if s.get('episode') == episode]
        return EpisodeResult(seed, bool(state['success']), float(state['time']), state, frames, history)

    def close(self):
        self._client.close()
