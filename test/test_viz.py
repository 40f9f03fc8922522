"""Kinematics from the URDF (pinocchio), the predicted chunk as a path and as markers, the live view."""
import socket
import time
import urllib.request

import mujoco
import numpy as np
import pytest
import yaml

from ros2_imitation.control.kinematics import ArmKinematics, KinematicsError
from ros2_imitation.control.trajectory import Trajectory
from ros2_imitation.paths import share_dir
from ros2_imitation.robot import RobotProfile
from ros2_imitation.viz.chunk_path import chunk_path, time_colors

PANDA = RobotProfile.load('panda')


def test_urdf_forward_kinematics_matches_the_mujoco_panda():
    from ros2_imitation.sim import PandaSim
    kin = ArmKinematics.for_robot(PANDA)
    sim = PandaSim(task='reach', render=False)
    sim.reset(0)
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.uniform(PANDA.limits.safe_lower, PANDA.limits.safe_upper)
        sim.data.qpos[sim._qpos[:7]] = q
        mujoco.mj_forward(sim.model, sim.data)
        assert np.linalg.norm(kin.tip_pose(q)[0] - sim.ee_position()) < 1e-5
    skeleton = kin.link_origins(PANDA.home)
    assert skeleton.shape == (8, 3) and np.allclose(skeleton[-1], kin.tip_pose(PANDA.home)[0])


def test_kinematics_errors_name_the_file_and_what_is_missing(tmp_path):
    urdf = PANDA.kinematics.urdf
    with pytest.raises(KinematicsError, match='no joints .*elbow'):
        ArmKinematics(urdf, ['panda_joint1', 'elbow'], 'panda_link0', 'panda_hand_tcp')
    with pytest.raises(KinematicsError, match="no frame 'flange'"):
        ArmKinematics(urdf, PANDA.arm_joints, 'panda_link0', 'flange')
    bad = tmp_path / 'bad.urdf'
    bad.write_text('<robot name="x"><link name="a"/><joint name="j" type="revolute"/></robot>')
    with pytest.raises(KinematicsError, match='bad.urdf'):
        ArmKinematics(bad, ['j'], 'a', 'a')
    raw = yaml.safe_load((share_dir() / 'config' / 'robots' / 'panda.yaml').read_text())
    del raw['kinematics'], raw['name']
    bare = tmp_path / 'bare.yaml'      # a profile without a kinematics section
    bare.write_text(yaml.safe_dump(raw))
    with pytest.raises(KinematicsError, match="bare' has no kinematics"):
        ArmKinematics.for_robot(RobotProfile.load(str(bare)))
    with pytest.raises(ValueError, match='7 finite'):
        ArmKinematics.for_robot(PANDA).tip_pose([np.nan] * 7)


def test_the_chunk_path_colours_the_executed_part_by_time_and_keeps_the_dropped_part():
    kin = ArmKinematics.for_robot(PANDA)
    positions = PANDA.home + np.linspace(0, 0.3, 10)[:, None] * np.eye(7)[0]
    traj = Trajectory.from_absolute(PANDA.arm_joints, 5.0 + 0.1 * np.arange(2, 10), positions[2:])
    path = chunk_path(kin, traj, (5.0 + 0.1 * np.arange(2), positions[:2]))
    assert path.executed.shape == (8, 3) and path.dropped.shape == (2, 3)
    assert np.allclose(path.times, 5.2 + 0.1 * np.arange(8))
    # rotating joint 1 swings the tip about the base's z axis: same height, same radius
    assert np.ptp(path.executed[:, 2]) < 1e-9 and np.ptp(np.linalg.norm(path.executed[:, :2], axis=1)) < 1e-9
    colors = time_colors(path.times)
    assert not np.allclose(colors[0], colors[-1]) and np.all((colors >= 0) & (colors <= 1))


def test_markers_message():
    from visualization_msgs.msg import Marker

    from ros2_imitation.nodes.markers import chunk_markers
    kin = ArmKinematics.for_robot(PANDA)
    traj = Trajectory.from_absolute(PANDA.arm_joints, [1.0, 1.1, 1.2], np.tile(PANDA.home, (3, 1)))
    from builtin_interfaces.msg import Time
    array = chunk_markers(chunk_path(kin, traj), 'panda_link0', Time(sec=1), 'latency 50 ms')
    line, spheres, dropped, text = array.markers
    assert (line.type, spheres.type, text.type) == (Marker.LINE_STRIP, Marker.SPHERE_LIST, Marker.TEXT_VIEW_FACING)
    assert len(line.points) == 3 and len(line.colors) == 3 and dropped.action == Marker.DELETE
    assert text.text == 'latency 50 ms' and line.header.frame_id == 'panda_link0'


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_the_live_view_serves_the_viewer_and_takes_the_graphs_messages(probe):
    """LiveView on a real rclpy node: messages published over DDS reach it, the bundled web viewer
    answers over HTTP and the data server accepts connections."""
    pytest.importorskip('rerun')
    from sensor_msgs.msg import Image, JointState

    from ros2_imitation.qos import SENSOR_QOS
    from ros2_imitation.viz.live_view import LiveView
    node = probe
    web, grpc = _free_port(), _free_port()
    view = LiveView(node, 'panda', web_port=web, grpc_port=grpc)
    image_pub = node.create_publisher(Image, '/camera/camera/color/image_raw', SENSOR_QOS)
    joints_pub = node.create_publisher(JointState, '/joint_states', SENSOR_QOS)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (view.counts['images'] and view.counts['joint_states']):
        img = Image(height=4, width=4, encoding='rgb8', step=12, data=bytes(48))
        image_pub.publish(img)
        joints_pub.publish(JointState(name=list(PANDA.arm_joints), position=list(PANDA.home)))
        time.sleep(0.1)
    assert view.counts['images'] and view.counts['joint_states']
    page = urllib.request.urlopen(f'http://127.0.0.1:{web}/', timeout=10).read().decode()
    assert 'Rerun' in page and f'{grpc}' in view.url
    with socket.create_connection(('127.0.0.1', grpc), timeout=5):
        pass


def test_the_rviz_and_foxglove_configs_show_the_graphs_topics():
    import json

    import yaml

    from ros2_imitation.graph.spec import load_graph
    from ros2_imitation.paths import share_dir
    config = share_dir() / 'config'
    rviz = yaml.safe_load((config / 'rviz' / 'ros2_imitation.rviz').read_text())
    displays = {d['Name']: d for d in rviz['Visualization Manager']['Displays']}
    foxglove = json.loads((config / 'foxglove' / 'ros2_imitation.json').read_text())
    policy = load_graph('robot').node('policy')
    camera = policy.parameters.get('image_topics', ['/camera/camera/color/image_raw'])[0]
    assert camera == '/camera/camera/color/image_raw'   # realsense2_camera's name, policy_node's default
    markers = f'/{policy.name}/predicted_chunk'       # policy_node's ~/predicted_chunk
    assert displays['Predicted chunk']['Topic']['Value'] == markers
    assert displays['Camera']['Topic']['Value'] == camera
    assert rviz['Visualization Manager']['Global Options']['Fixed Frame'] == PANDA.kinematics.base_frame
    panels = foxglove['configById']
    assert markers in panels['3D!policy']['topics'] and panels['3D!policy']['followTf'] == PANDA.kinematics.base_frame
    assert panels['Image!camera']['imageMode']['imageTopic'] == camera
