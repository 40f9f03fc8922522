"""The sim graph through real DDS: `ros2-imitation bringup sim` in its own process, probed from here."""
import json
import os
import signal
import time

import numpy as np
import pytest
from conftest import GraphRun, Recorder, alive, call_service, started_pids, wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ros2_imitation.qos import COMMAND_QOS
from ros2_imitation.robot import RobotProfile

ARM = RobotProfile.load('panda').arm_joints
CAMERA_RATE = 10.0


@pytest.fixture(scope='module')
def graph(tmp_path_factory):
    run = GraphRun(tmp_path_factory.mktemp('sim') / 'bringup.log', 'sim',
                   '--set', f'sim.camera_rate={CAMERA_RATE}')
    joints = run.record(JointState, '/joint_states')
    images = run.record(Image, '/camera/camera/color/image_raw')
    wait_for(lambda: len(images.messages) > 3, 60, what='first camera images from the sim')
    yield dict(proc=run.proc, node=run.node, joints=joints, images=images)
    run.close()


def latest_arm(joints) -> np.ndarray:
    msg = joints.messages[-1]
    index = {n: i for i, n in enumerate(msg.name)}
    return np.array([msg.position[index[j]] for j in ARM])


def test_streams_joint_states_and_images(graph):
    time.sleep(3.0)
    joints, images = graph['joints'], graph['images']
    assert joints.rate(2.0) >= 100.0, f'joint_states at {joints.rate(2.0):.1f} Hz'
    assert abs(images.rate(2.0) - CAMERA_RATE) <= 0.25 * CAMERA_RATE, f'images at {images.rate(2.0):.1f} Hz'
    msg = joints.messages[-1]
    assert set(ARM) <= set(msg.name) and len(msg.name) == len(msg.position) == len(msg.velocity)
    img = images.messages[-1]
    assert img.encoding == 'rgb8' and img.step == img.width * 3 and len(img.data) == img.height * img.step
    assert np.asarray(img.data).std() > 5, 'camera image is flat'
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in joints.messages[-50:]]
    assert np.all(np.diff(stamps) > 0), 'joint_states stamps must increase (sim time)'


def send_position(node, target):
    pub = node.create_publisher(Float64MultiArray, '/position_controller/commands', COMMAND_QOS)
    wait_for(lambda: pub.get_subscription_count() > 0, 10, what='position command subscriber')
    pub.publish(Float64MultiArray(data=list(map(float, target))))
    return pub


def test_position_command_reaches_target(graph):
    home = RobotProfile.load('panda').home
    target = home + np.array([0.2, 0.1, -0.1, 0.15, 0.1, -0.1, 0.2])
    send_position(graph['node'], target)
    wait_for(lambda: np.max(np.abs(latest_arm(graph['joints']) - target)) < 0.02, 10,
             what='joints within 0.02 rad of the position command')


def test_bad_commands_are_rejected_and_arm_holds(graph):
    node, joints = graph['node'], graph['joints']
    before = latest_arm(joints)
    pub = send_position(node, before)
    time.sleep(0.5)
    held = latest_arm(joints)
    for bad in ([0.0] * 3, [float('nan')] * 7, [0.0, float('inf'), 0, 0, 0, 0, 0]):
        pub.publish(Float64MultiArray(data=bad))
        time.sleep(0.4)
        assert np.max(np.abs(latest_arm(joints) - held)) < 0.02
    out = graph['proc'].output()
    assert 'rejected position command: expected 7 values, got 3' in out
    assert 'non-finite' in out


def test_effort_stream_moves_the_arm_and_a_silent_stream_holds(graph):
    node, joints = graph['node'], graph['joints']
    start = latest_arm(joints)
    pub = node.create_publisher(Float64MultiArray, '/effort_controller/commands', COMMAND_QOS)
    wait_for(lambda: pub.get_subscription_count() > 0, 10, what='effort command subscriber')
    deadline = time.monotonic() + 5.0
    while latest_arm(joints)[0] - start[0] <= 0.1:   # a torque stream, as a controller sends
        assert time.monotonic() < deadline, 'joint 1 did not turn under effort'
        pub.publish(Float64MultiArray(data=[6.0, 0, 0, 0, 0, 0, 0]))
        time.sleep(0.01)
    time.sleep(0.5)   # the stream stopped: the sim holds instead of replaying the last torque
    held = latest_arm(joints)
    time.sleep(0.5)
    assert np.max(np.abs(latest_arm(joints) - held)) < 0.02
    assert 'none for 50 ms: holding the arm' in graph['proc'].output()
    send_position(node, latest_arm(joints))  # back to a position hold for the next tests


def trajectory(names, times, positions, stamp=(0, 0)):
    msg = JointTrajectory()
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.joint_names = list(names)
    for t, q in zip(times, positions):
        p = JointTrajectoryPoint(positions=list(map(float, q)))
        p.time_from_start.sec, p.time_from_start.nanosec = int(t), int((t % 1) * 1e9)
        msg.points.append(p)
    return msg


def test_joint_trajectory_accepted_and_rejected_like_jtc(graph):
    node, joints = graph['node'], graph['joints']
    pub = node.create_publisher(JointTrajectory, '/joint_trajectory_controller/joint_trajectory', COMMAND_QOS)
    wait_for(lambda: pub.get_subscription_count() > 0, 10, what='trajectory subscriber')
    start = latest_arm(joints)
    goal = start + np.array([-0.2, 0.1, 0.0, 0.1, 0.0, 0.1, -0.2])
    # JTC rejects: a missing joint, non-increasing times, and a stamp whose end is already past
    pub.publish(trajectory(ARM[:6], [1.0], [goal[:6]]))
    pub.publish(trajectory(ARM, [1.0, 0.5], [goal, start]))
    past = joints.messages[-1].header.stamp.sec - 2  # its end is a second behind the sim clock
    pub.publish(trajectory(ARM, [0.5], [goal], stamp=(past, 0)))
    time.sleep(0.8)
    assert np.max(np.abs(latest_arm(joints) - start)) < 0.02, 'a rejected trajectory moved the arm'
    out = graph['proc'].output()
    assert out.count('rejected trajectory') >= 3, out[-2000:]
    # Joint order differs from the controller's: JTC maps by name.
    order = list(reversed(ARM))
    pub.publish(trajectory(order, [0.5, 1.5], [start[::-1], goal[::-1]]))
    wait_for(lambda: np.max(np.abs(latest_arm(joints) - goal)) < 0.02, 8, what='trajectory goal reached')


def set_seed(node, seed):
    request = SetParameters.Request(parameters=[Parameter(
        name='seed', value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=seed))])
    assert call_service(node, SetParameters, '/sim/set_parameters', request).results[0].successful


def test_reset_with_same_seed_gives_same_state(graph):
    node = graph['node']
    states = []
    for seed in (3, 3, 4):
        set_seed(node, seed)
        reply = call_service(node, Trigger, '/sim/reset')
        assert reply.success, reply.message
        states.append(json.loads(reply.message))
    episodes = [s.pop('episode') for s in states]
    assert episodes[1] == episodes[0] + 1 and episodes[2] == episodes[1] + 1
    assert states[0] == states[1]
    assert states[0] != states[2]
    assert states[0]['seed'] == 3 and 'joint_positions' in states[0]
    success = call_service(node, Trigger, '/sim/success')
    assert success.success is False and json.loads(success.message)['task'] == 'push_cube'


def descendants(pid: int) -> set:
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, set()).add(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.add(child)
            todo.append(child)
    return out


def test_stopping_bringup_leaves_no_child(spawn):
    proc = spawn('bringup', 'sim', '--arg', 'real_time_factor=2.0')
    kids = wait_for(lambda: descendants(proc.pid) or None, 20, what='bringup to start its node')
    time.sleep(4.0)
    kids = descendants(proc.pid)
    assert kids
    os.kill(proc.pid, signal.SIGTERM)  # bringup alone, as a user's Ctrl-C or a service manager would
    assert proc.proc.wait(20) == 0
    wait_for(lambda: not any(alive(k) for k in kids), 5, what='every node process to exit')
    assert 'SIGTERM received' in proc.output()


def test_unknown_task_fails_at_start_naming_node(spawn):
    proc = spawn('bringup', 'sim', '--arg', 'task=juggle')
    code = proc.proc.wait(60)
    out = proc.output()
    assert code != 0
    assert "node 'sim' exited" in out
    assert 'juggle' in out and 'push_cube' in out


def test_unknown_graph_fails_clearly(spawn):
    proc = spawn('bringup', 'no_such_graph')
    assert proc.proc.wait(30) == 2
    assert "unknown graph 'no_such_graph'" in proc.output()


def test_physics_says_on_diagnostics_when_it_falls_behind_real_time(graph):
    """The sim process stopped for 0.4 s (SIGSTOP): its next physics status says how far behind real
    time it fell, as a warning; what graph tests read to tell a starved sim from a slow controller."""
    diagnostics = Recorder(graph['node'], DiagnosticArray, '/diagnostics', COMMAND_QOS)

    def physics():
        return [dict({kv.key: kv.value for kv in s.values}, level=s.level, message=s.message)
                for d in diagnostics.messages for s in d.status if s.name == 'sim: physics']
    first = wait_for(physics, 10, what='the physics status on /diagnostics')[-1]
    assert 0.2 < float(first['real_time_factor_achieved']) < 2.0 and first['real_time_factor_target'] == '1.0'
    [pid] = started_pids(graph['proc'].output())
    os.kill(pid, signal.SIGSTOP)
    time.sleep(0.4)
    os.kill(pid, signal.SIGCONT)
    late = wait_for(lambda: [v for v in physics() if float(v['behind_max_ms']) >= 300], 10,
                    what='a physics status 300 ms or more behind real time')[0]
    assert late['level'] == DiagnosticStatus.WARN and 'behind real time' in late['message'], late


def test_push_cube_publishes_no_wrist_camera(graph):
    assert graph['node'].count_publishers('/wrist_camera/camera/color/image_raw') == 0


def test_pick_place_publishes_the_wrist_camera_under_realsense_names(tmp_path):
    """The second camera in its own realsense2_camera namespace, at the fixed camera's rate and size."""
    from sensor_msgs.msg import CameraInfo
    with GraphRun(tmp_path / 'bringup.log', 'sim', '--set', 'sim.task=pick_place') as run:
        wrist = run.record(Image, '/wrist_camera/camera/color/image_raw')
        info = run.record(CameraInfo, '/wrist_camera/camera/color/camera_info')
        fixed = run.record(Image, '/camera/camera/color/image_raw')
        wait_for(lambda: len(wrist.messages) > 3 and len(info.messages) > 3, 60, what='wrist camera images')
        image, fixed_image = wrist.messages[-1], fixed.messages[-1]
        assert image.header.frame_id == info.messages[-1].header.frame_id == 'wrist_camera_color_optical_frame'
        assert (image.width, image.height, image.encoding) == (fixed_image.width, fixed_image.height, 'rgb8')
        assert np.asarray(image.data).std() > 5 and bytes(image.data) != bytes(fixed_image.data)
        assert info.messages[-1].k[0] > 0
