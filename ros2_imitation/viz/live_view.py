"""A live view of a running graph in the browser, through Rerun (its web viewer ships inside the
`rerun-sdk` wheel, so it works offline and on machines without ROS GUI tools).

What it shows: the camera image(s), the arm as a skeleton (forward kinematics of /joint_states),
the predicted chunk (policy_node's ~/predicted_chunk markers: the end-effector path coloured by
time, the dropped part grey), the task's object and goal, and, over time, the distance to the goal,
the policy's latency and the controller's state. Subscribes with the node it is given; logs on the
graph's clock (header stamps, sim time in the simulation).
"""
from __future__ import annotations

import json
from urllib.parse import quote

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from ros2_imitation.qos import COMMAND_QOS, SENSOR_QOS, STATE_QOS
from ros2_imitation.sensors.images import image_to_rgb
from ros2_imitation.sensors.proprioception import JointMapper, MappingError

CAMERAS = ('/camera/camera/color/image_raw',)
MARKERS = '/policy/predicted_chunk'


def _sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class LiveView:
    def __init__(self, node, robot='panda', cameras=CAMERAS, markers_topic: str = MARKERS,
                 task_state_topic: str = '/sim/task_state', grpc_port: int = 9876, web_port: int = 9090,
                 open_browser: bool = False):
        import rerun as rr

        from ros2_imitation.control.kinematics import ArmKinematics, KinematicsError
        from ros2_imitation.robot import RobotProfile
        self.rr = rr
        profile = robot if isinstance(robot, RobotProfile) else RobotProfile.load(robot)
        try:
            self.kinematics = ArmKinematics.for_robot(profile)
        except KinematicsError:
            self.kinematics = None          # images and plots only
        self.mapper = JointMapper(profile.arm_joints)
        rr.init('ros2_imitation', spawn=False)
        grpc = rr.serve_grpc(grpc_port=grpc_port)
        rr.serve_web_viewer(web_port=web_port, open_browser=open_browser, connect_to=grpc)
        self.url = f'http://127.0.0.1:{web_port}/?url={quote(grpc, safe="")}'
        self.counts = {'images': 0, 'joint_states': 0, 'chunks': 0, 'task_states': 0}
        for i, topic in enumerate(cameras):
            node.create_subscription(Image, topic, lambda m, i=i: self._on_image(i, m), SENSOR_QOS)
        node.create_subscription(JointState, '/joint_states', self._on_joints, SENSOR_QOS)
        node.create_subscription(MarkerArray, markers_topic, self._on_markers, COMMAND_QOS)
        node.create_subscription(String, task_state_topic, self._on_task_state, STATE_QOS)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, COMMAND_QOS)

    def _time(self, seconds: float):
        self.rr.set_time('time', duration=seconds)

    def _on_image(self, index: int, msg: Image):
        try:
            rgb = image_to_rgb(msg.data, msg.encoding, msg.height, msg.width, msg.step, None, 4096 * 4096)
        except ValueError:
            return
        self._time(_sec(msg.header.stamp))
        self.rr.log(f'camera/{index}', self.rr.Image(rgb))
        self.counts['images'] += 1

    def _on_joints(self, msg: JointState):
        if self.kinematics is None:
            return
        try:
            q = self.mapper.map(msg.name, msg.position)
            skeleton = self.kinematics.link_origins(q)
        except (MappingError, ValueError):
            return
        self._time(_sec(msg.header.stamp))
        self.rr.log('world/arm', self.rr.LineStrips3D([skeleton], radii=0.01, colors=[200, 200, 210]))
        self.rr.log('world/tip', self.rr.Points3D(skeleton[-1:], radii=0.015, colors=[255, 140, 0]))
        self.counts['joint_states'] += 1

    def _on_markers(self, msg: MarkerArray):
        for m in msg.markers:
            points = np.array([[p.x, p.y, p.z] for p in m.points]).reshape(-1, 3)
            if m.id == 1 and len(points):       # the executed points, coloured by time
                colors = np.array([[c.r, c.g, c.b, c.a] for c in m.colors]) if m.colors else None
                self._time(_sec(m.header.stamp))
                self.rr.log('world/chunk/executed', self.rr.Points3D(points, radii=0.012, colors=colors))
                self.rr.log('world/chunk/path', self.rr.LineStrips3D([points], radii=0.006, colors=[250, 220, 40]))
                self.counts['chunks'] += 1
            elif m.id == 2:                      # overtaken by latency
                self.rr.log('world/chunk/dropped', self.rr.LineStrips3D([points] if len(points) else [],
                                                                       radii=0.005, colors=[150, 150, 150]))

    def _on_task_state(self, msg: String):
        try:
            state = json.loads(msg.data)
        except json.JSONDecodeError:
            return
        self._time(float(state.get('time', 0.0)))
        for key, color in (('object_position', [220, 60, 60]), ('goal_position', [60, 200, 90])):
            if key in state:
                self.rr.log(f'world/{key[:-9]}', self.rr.Points3D([state[key]], radii=0.025, colors=[color]))
        if 'distance' in state:
            self.rr.log('plots/distance_to_goal', self.rr.Scalars(float(state['distance'])))
        self.counts['task_states'] += 1

    def _on_diagnostics(self, msg: DiagnosticArray):
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if 'latency_p50_ms' in values:
                self.rr.log('plots/policy_latency_ms', self.rr.Scalars(float(values['latency_last_ms'])))
            if 'chunk controller' in status.name:
                self.rr.log('controller/state', self.rr.TextLog(f'{status.message}'))
