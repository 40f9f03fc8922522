"""Records chosen topics into one rosbag2 per episode (rosbags library; MCAP or sqlite3).

What `ros2 bag record` does, as a node with episode services: it subscribes to every topic in
`topics` as soon as a publisher appears (type and QoS taken from the publishers, as rosbag2 does),
and while an episode is being recorded it queues each message, still serialised, with its receive
time on the node clock (sim time under use_sim_time, as `ros2 bag record --use-sim-time`); a writer
thread writes the bag (see ros2_imitation/data/recording.py for the on-disk layout and crash safety).
One executor thread: rclpy's multi-threaded executor cost ~80 % of a core just taking in the sim's
streams (/clock at 500 Hz, /joint_states at 250 Hz), against ~30 % for this one; the callbacks only
queue, and a message that arrives while ~/stop closes the bag is after the episode anyway.
Under use_sim_time nothing is recorded before the first /clock message, as with ros2 bag record.

Services (std_srvs/Trigger; the reply's message is JSON):
  ~/start          open <output_dir>/<bag_prefix>_NNNN (NNNN: the next free index)
  ~/stop           finish the bag; outcome from the last task state seen (success/failure), else unknown
  ~/stop_success   finish the bag with outcome success (an operator or a runner knows better)
  ~/stop_failure   finish the bag with outcome failure
  ~/discard        drop the bag being recorded; nothing of it stays on disk
The outcome, the latest JSON of each `info_topics` topic (the expert's episode description), the
last task state and the `metadata` parameter (a JSON object) go to the bag's custom_data.

`output_dir` is made absolute against the node's working directory (where `ros2 launch` or bringup
was started) and may be changed between episodes (`ros2 param set /recorder output_dir ...`; refused
while a bag is being recorded): `record-demos --attach` points it at its --out. The replies of
~/start and ~/stop, and ~/status, give absolute paths.
"""
import importlib
import json
import threading

from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import Trigger

from ros2_imitation.data import recording
from ros2_imitation.nodes.common import StartupError, declare, run_node
from ros2_imitation.qos import LATCHED_QOS, STATE_QOS

DEFAULT_TOPICS = [
    '/joint_states',
    '/camera/camera/color/image_raw',
    '/camera/camera/color/camera_info',
    '/ros2_imitation/action_chunk',
    '/ros2_imitation/expert_label',
    '/sim/task_state',
]


def message_class(msgtype: str):
    """'sensor_msgs/msg/JointState' -> the rclpy message class."""
    package, kind, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


def offered_qos(endpoint) -> object:
    q = endpoint.qos_profile

    def ns(duration):
        return getattr(duration, 'nanoseconds', None)
    return recording.make_qos(
        q.history.name, q.depth, q.reliability.name, q.durability.name, ns(q.deadline), ns(q.lifespan),
        q.liveliness.name, ns(q.liveliness_lease_duration), q.avoid_ros_namespace_conventions)


def adapted_qos(endpoints, depth: int) -> QoSProfile:
    """rosbag2's rule: reliable / transient-local only when every publisher offers it."""
    profiles = [e.qos_profile for e in endpoints]
    reliable = profiles and all(p.reliability == ReliabilityPolicy.RELIABLE for p in profiles)
    latched = profiles and all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in profiles)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class RecorderNode(Node):
    def __init__(self):
        super().__init__('recorder')
        p = {name: declare(self, name, default) for name, default in dict(
            topics=DEFAULT_TOPICS, output_dir='demos', storage='mcap', bag_prefix='episode',
            info_topics=['/expert/info'], task_state_topic='/sim/task_state', metadata='{}',
            qos_depth=100, max_queue=20000, discovery_period=0.25).items()}
        if p['storage'] not in recording.STORAGES:
            raise StartupError(f'storage must be one of {sorted(recording.STORAGES)}, got {p["storage"]!r}')
        if not p['topics'] or len(set(p['topics'])) != len(p['topics']):
            raise StartupError(f'topics must be a non-empty list without duplicates, got {p["topics"]}')
        self.p = p
        self.core = recording.BagRecorder(p['output_dir'], p['bag_prefix'], p['storage'], p['max_queue'],
                                          log=self.get_logger().warn)
        self._lock = threading.Lock()
        self._recorded = {}
        self._info = {}              # info topic -> latest decoded JSON
        self._task_state = None      # latest task state (dict) seen while recording
        self._episode_start = None
        self._warned = set()
        self._io_group = ReentrantCallbackGroup()
        service_group = MutuallyExclusiveCallbackGroup()
        for topic in p['info_topics']:
            self.create_subscription(String, topic, lambda m, t=topic: self._on_info(t, m), LATCHED_QOS,
                                     callback_group=self._io_group)
        if p['task_state_topic']:
            self.create_subscription(String, p['task_state_topic'], self._on_task_state, STATE_QOS,
                                     callback_group=self._io_group)
        for name, outcome in (('start', None), ('stop', 'auto'), ('stop_success', 'success'),
                              ('stop_failure', 'failure'), ('discard', None)):
            handler = self._start if name == 'start' else self._discard if name == 'discard' else \
                (lambda req, res, o=outcome: self._stop(res, o))
            self.create_service(Trigger, f'~/{name}', handler, callback_group=service_group)
        self.status_pub = self.create_publisher(String, '~/status', LATCHED_QOS)
        # Discovery runs on the steady clock: it must not wait for /clock.
        self.create_timer(p['discovery_period'], self._discover, callback_group=service_group,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        # `ros2 param get /recorder output_dir` says where the bags go, not where it was started from
        p['output_dir'] = str(self.core.output_dir)
        self.set_parameters([Parameter('output_dir', value=p['output_dir'])])
        self._warn_partial()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._discover()
        self._publish_status()
        self.get_logger().info(f'recording {len(p["topics"])} topics to {self.core.output_dir} '
                               f'({p["storage"]}); call ~/start and ~/stop per episode')

    def _warn_partial(self):
        partial = recording.partial_bags(self.core.output_dir)
        if partial:
            self.get_logger().warn(f'{len(partial)} unfinished bag(s) from an earlier run in '
                                   f'{partial[0].parent} (never valid; `mcap recover` can salvage them)')

    def _on_set_parameters(self, params):
        for param in params:
            if param.name != 'output_dir':
                continue
            if not isinstance(param.value, str) or not param.value.strip():
                return SetParametersResult(successful=False, reason='output_dir must be a non-empty path')
            try:
                folder = self.core.set_output_dir(param.value)
            except recording.RecorderError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            self.p['output_dir'] = str(folder)
            self.get_logger().info(f'bags now go to {folder}')
            self._warn_partial()
            self._publish_status()
        return SetParametersResult(successful=True)

    # ---- discovery ----
    def _discover(self):
        wanted = [t for t in self.p['topics'] if t not in self._recorded]
        if not wanted:
            return
        types = dict(self.get_topic_names_and_types())
        changed = False
        for topic in wanted:
            if topic not in types:
                continue
            endpoints = self.get_publishers_info_by_topic(topic)
            if not endpoints:
                continue
            msgtype = types[topic][0]
            if len(types[topic]) > 1:
                self._warn_once(topic, f'{topic} has several types {types[topic]}; recording {msgtype}')
            if msgtype not in recording.typestore().types:
                self._warn_once(topic, f'{topic}: type {msgtype} unknown to the bag typestore; not recorded')
                continue
            try:
                cls = message_class(msgtype)
            except (ImportError, AttributeError, ValueError) as exc:
                self._warn_once(topic, f'{topic}: cannot import {msgtype} ({exc}); not recorded')
                continue
            announced = str(endpoints[0].topic_type_hash)
            if announced.startswith('RIHS01_') and announced != recording.typestore().hash_rihs01(msgtype):
                self._warn_once(topic, f'{topic}: {msgtype} hash {announced} differs from the typestore '
                                       'definition; recorded with the typestore definition')
            info = recording.TopicInfo(topic, msgtype, [offered_qos(e) for e in endpoints], announced)
            self._recorded[topic] = self.create_subscription(
                cls, topic, lambda data, t=topic: self._on_message(t, data),
                adapted_qos(endpoints, self.p['qos_depth']), raw=True, callback_group=self._io_group)
            self.core.add_topic(info)
            changed = True
            self.get_logger().info(f'subscribed {topic} ({msgtype})')
        if changed:
            self._publish_status()

    def _warn_once(self, key, text):
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warn(text)

    # ---- messages ----
    def _on_message(self, topic: str, data: bytes):
        if self.core.recording is None:
            return
        stamp = self.get_clock().now().nanoseconds
        if stamp == 0:
            # use_sim_time before the first /clock: no receive time yet (ros2 bag record
            # --use-sim-time also writes nothing until then)
            return self._warn_once('no clock', 'use_sim_time and no /clock yet: messages not recorded')
        self.core.put(topic, stamp, data)

    def _on_info(self, topic: str, msg: String):
        try:
            value = json.loads(msg.data)
        except ValueError:
            value = msg.data
        with self._lock:
            self._info[topic] = value

    def _on_task_state(self, msg: String):
        if self.core.recording is None:
            return
        try:
            state = json.loads(msg.data)
        except ValueError:
            return
        with self._lock:
            self._task_state = state

    # ---- services ----
    def _start(self, _request, response):
        missing = [t for t in self.p['topics'] if t not in self._recorded]
        if self.core.recording:
            response.success, response.message = False, f'already recording {self.core.recording}'
            return response
        with self._lock:
            self._task_state = None
        try:
            path = self.core.start()
        except recording.RecorderError as exc:
            response.success, response.message = False, str(exc)
            return response
        self._episode_start = (self.get_clock().now().nanoseconds, recording.wall_time_iso())
        response.success = True
        response.message = json.dumps({'path': str(path), 'missing_topics': missing})
        self.get_logger().info(f'recording {path.name}' + (f' (no publisher yet: {missing})' if missing else ''))
        self._publish_status()
        return response

    def _stop(self, response, outcome: str):
        with self._lock:
            state, info = self._task_state, dict(self._info)
        if outcome == 'auto':
            outcome = 'unknown' if state is None or 'success' not in state else \
                ('success' if state['success'] else 'failure')
        custom = self._custom_data(outcome, state, info)
        try:
            result = self.core.stop(custom)
        except recording.RecorderError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success = True
        response.message = json.dumps({k: result[k] for k in ('path', 'message_count', 'topics')} |
                                      {'outcome': outcome})
        self.get_logger().info(f'saved {result["path"]}: {outcome}, {result["message_count"]} messages')
        self._publish_status()
        return response

    def _discard(self, _request, response):
        try:
            result = self.core.discard()
        except recording.RecorderError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success, response.message = True, json.dumps({'discarded': result.get('path')})
        self.get_logger().info(f'discarded {result.get("path")}')
        self._publish_status()
        return response

    def _custom_data(self, outcome: str, state, info: dict) -> dict:
        custom = {'outcome': outcome, 'success': outcome == 'success',
                  'recorder': 'ros2_imitation recorder_node', 'storage': self.p['storage']}
        if self._episode_start:
            start_ns, wall = self._episode_start
            custom['start_wall_time'] = wall
            custom['clock_duration_s'] = round((self.get_clock().now().nanoseconds - start_ns) * 1e-9, 3)
        for topic, value in info.items():
            custom[f'info:{topic}'] = value
            if isinstance(value, dict):      # promote the usual keys for quick filtering
                for key in ('task', 'mode', 'noisy', 'action_noise', 'seed', 'sim_episode', 'source'):
                    if key in value and key not in custom:
                        custom[key] = value[key]
        if state is not None:
            custom['final_task_state'] = state
            for key in ('task', 'seed'):
                if key in state:
                    custom.setdefault(key, state[key])
            if 'time' in state:
                custom['episode_time_s'] = state['time']
        try:
            extra = json.loads(self.get_parameter('metadata').value or '{}')
            if isinstance(extra, dict):
                custom.update(extra)
        except ValueError:
            self._warn_once('metadata', 'parameter metadata is not a JSON object; ignored')
        return custom

    def _publish_status(self):
        self.status_pub.publish(String(data=json.dumps({
            'recording': self.core.recording, 'output_dir': str(self.core.output_dir),
            'subscribed': sorted(self._recorded),
            'missing': [t for t in self.p['topics'] if t not in self._recorded]})))

    def close(self):
        self.core.close()


def main(args=None):
    return run_node(RecorderNode, args, threads=1)


if __name__ == '__main__':
    raise SystemExit(main())
