"""`ros2-imitation record-demos` through the real graph (sim, controller, expert, recorder as separate
processes over DDS): the bags it writes are read by rosbags and, independently, by mcap +
mcap-ros2-support; metadata.yaml is what `ros2 bag info` needs; the label topic carries the executed chunks."""
import json
import sys
import time

import numpy as np
import pytest
import yaml
from conftest import Process, wait_for

from ros2_imitation.data.recording import read_custom_data

EPISODES = 3
ROSBAG2_KEYS = {'version', 'storage_identifier', 'relative_file_paths', 'duration', 'starting_time',
                'message_count', 'topics_with_message_count', 'compression_format', 'compression_mode',
                'files', 'custom_data', 'ros_distro'}
QOS_KEYS = {'history', 'depth', 'reliability', 'durability', 'deadline', 'lifespan', 'liveliness',
            'liveliness_lease_duration', 'avoid_ros_namespace_conventions'}


def stamp(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9

class Operator:
    """`record-demos --source SOURCE --sim --episodes 1` in a process of its own, driven from the
    keyboard as an operator would (Enter starts, `s` saves a success); stopped whatever happens."""

    def __init__(self, tmp_path, env, source, *args):
        import subprocess
        self.out, self.log_path = tmp_path / source, tmp_path / f'{source}.log'
        with open(self.log_path, 'w') as log:
            self.proc = subprocess.Popen(
                [sys.executable, '-m', 'ros2_imitation.cli', 'record-demos', '--source', source, '--sim',
                 '--episodes', '1', '--out', str(self.out), *args], env=env, stdin=subprocess.PIPE,
                stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text()

    def press(self, keys: str) -> None:
        self.proc.stdin.write(keys + '\n')
        self.proc.stdin.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        import os
        import signal
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)

    def start_episode(self, ready, what: str) -> None:
        wait_for(lambda: 'Enter to start' in self.log() and ready(), 90, what=what)
        self.press('')
        wait_for(lambda: 'recording' in self.log(), 20, what='recording to start')

    def save_and_exit(self) -> int:
        self.press('s')
        wait_for(lambda: self.proc.poll() is not None, 30, what='record-demos to exit')
        return self.proc.returncode



@pytest.fixture(scope='module')
def recorded(tmp_path_factory):
    import os

    from conftest import next_domain_id
    folder = tmp_path_factory.mktemp('record_demos')
    out = folder / 'demos'
    env = dict(os.environ, ROS_DOMAIN_ID=str(next_domain_id()), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1')
    t0 = time.monotonic()
    proc = Process([sys.executable, '-m', 'ros2_imitation.cli', 'record-demos', '--task', 'push_cube',
                    '--episodes', str(EPISODES), '--out', str(out), '--seed', '20',
                    '--expert-seed', '4', '--headless'],
                   env, str(folder / 'record_demos.log'))
    try:
        wait_for(lambda: proc.proc.poll() is not None, 170, interval=0.5, what='record-demos to finish')
    finally:
        code = proc.stop()
    wall = time.monotonic() - t0
    log = proc.output()
    print(f'record-demos: {EPISODES} push_cube episodes in {wall:.1f} s wall (graph start-up included)')
    assert code == 0, log[-3000:]
    return out, log


def test_three_bags_with_valid_rosbag2_metadata(recorded):
    out, log = recorded
    bags = sorted(p for p in out.iterdir() if p.is_dir())
    assert [b.name for b in bags] == [f'episode_{i:04d}' for i in range(EPISODES)]
    episodes = [json.loads(line) for line in (out / 'record_demos.jsonl').read_text().splitlines()]
    start = log.rindex('{\n  "out"')
    summary = json.loads(log[start:log.index('\n}', start) + 2])
    assert summary['episodes'] == EPISODES and summary['kept'] == EPISODES
    assert summary['bag_folders'] == [str(out)]          # where the recorder says the bags are
    print(f'expert through the graph: {summary["successes"]}/{EPISODES} successes, modes {summary["modes"]}, '
          f'{summary["wall_per_episode_s"]} s wall per episode')
    for bag, episode in zip(bags, episodes):
        assert sorted(p.name for p in bag.iterdir()) == sorted([f'{bag.name}.mcap', 'metadata.yaml'])
        info = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
        assert ROSBAG2_KEYS <= set(info), ROSBAG2_KEYS - set(info)
        assert info['version'] == 9 and info['storage_identifier'] == 'mcap'
        assert info['relative_file_paths'] == [f'{bag.name}.mcap']
        assert info['duration']['nanoseconds'] > 2e9 and info['starting_time']['nanoseconds_since_epoch'] > 0
        counts = {t['topic_metadata']['name']: t['message_count'] for t in info['topics_with_message_count']}
        assert info['message_count'] == sum(counts.values()) == info['files'][0]['message_count']
        for t in info['topics_with_message_count']:
            meta = t['topic_metadata']
            assert meta['serialization_format'] == 'cdr' and meta['type_description_hash'].startswith('RIHS01_')
            assert meta['offered_qos_profiles'] and QOS_KEYS <= set(meta['offered_qos_profiles'][0])
        seconds = info['duration']['nanoseconds'] * 1e-9
        assert counts['/joint_states'] > 150 * seconds          # 250 Hz published
        assert counts['/camera/camera/color/image_raw'] > 6 * seconds
        assert counts['/camera/camera/color/camera_info'] > 6 * seconds
        assert counts['/ros2_imitation/action_chunk'] == counts['/ros2_imitation/expert_label'] >= seconds / 0.8 - 1
        assert counts['/sim/task_state'] > 6 * seconds
        custom = info['custom_data']
        assert custom['outcome'] == ('success' if episode['success'] else 'failure')
        assert custom['task'] == 'push_cube' and custom['mode'] in ('left', 'right')
        assert custom['seed'] == str(episode['seed']) and custom['mode'] == episode['mode']
        assert custom['dropped_messages'] == '0'
    assert sum(e['success'] for e in episodes) >= EPISODES - 1


def test_rosbags_reads_and_labels_are_the_executed_chunks(recorded):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore
    out, _ = recorded
    bags = sorted(p for p in out.iterdir() if p.is_dir())
    with AnyReader(bags, default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        assert reader.message_count > 0
    for bag in bags:
        with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
            chunks, labels, joints = {}, {}, []
            for conn, _, raw in reader.messages():
                msg = reader.deserialize(raw, conn.msgtype)
                if conn.topic == '/ros2_imitation/action_chunk':
                    chunks[stamp(msg.header)] = np.array([p.positions for p in msg.points])
                elif conn.topic == '/ros2_imitation/expert_label':
                    labels[stamp(msg.header)] = np.array([p.positions for p in msg.points])
                elif conn.topic == '/joint_states':
                    joints.append(stamp(msg.header))
        assert chunks.keys() == labels.keys()                 # each executed chunk has its label
        first = min(chunks)
        assert joints[0] <= first <= joints[0] + 1.5            # the expert acts right after the start
        diff = max(np.abs(chunks[s] - labels[s]).max() for s in chunks)
        assert all(v.shape == (16, 7) for v in labels.values())
        assert diff == 0.0                                    # the label is what the expert executed
        assert np.all(np.diff(sorted(chunks)) > 0.5)           # one chunk per 0.8 s, stamped on sim time


def test_mcap_reads_the_bags_independently(recorded):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    out, _ = recorded
    path = out / 'episode_0000' / 'episode_0000.mcap'
    decoded = {}
    with open(path, 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert summary.statistics.message_count > 0
        for schema, channel, message, msg in reader.iter_decoded_messages(
                topics=['/ros2_imitation/action_chunk', '/camera/camera/color/image_raw']):
            decoded.setdefault(channel.topic, (schema.name, msg, message.log_time))
    name, chunk, _ = decoded['/ros2_imitation/action_chunk']
    assert name == 'trajectory_msgs/msg/JointTrajectory'
    assert list(chunk.joint_names) == [f'panda_joint{i}' for i in range(1, 8)] and len(chunk.points) == 16
    assert chunk.points[1].time_from_start.nanosec == 100_000_000
    name, image, _ = decoded['/camera/camera/color/image_raw']
    assert name == 'sensor_msgs/msg/Image' and image.encoding == 'rgb8'
    pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(image.height, image.width, 3)
    assert pixels.shape == (96, 96, 3) and pixels.std() > 5


def test_leader_arm_source_in_sim(tmp_path, ros_env, probe):
    """--source leader --sim: a leader JointState stream drives the sim arm through leader_arm_node and
    the chunk controller; the operator's keys start and end the episode; chunks and labels are recorded."""
    from sensor_msgs.msg import JointState

    from ros2_imitation.qos import SENSOR_QOS
    with Operator(tmp_path, ros_env, 'leader', '--leader-topic', '/leader/joints') as operator:
        arm = [f'panda_joint{i}' for i in range(1, 8)]
        follower = []
        probe.create_subscription(JointState, '/joint_states', follower.append, SENSOR_QOS)
        leader = probe.create_publisher(JointState, '/leader/joints', SENSOR_QOS)
        operator.start_episode(lambda: follower, 'the first prompt')
        start = np.array(follower[-1].position[:7])

        def engaged():   # the operator holds the leader at the follower's pose until the bridge engages
            leader.publish(JointState(name=arm, position=start.tolist()))
            return ']: engaged' in operator.log()
        wait_for(engaged, 20, interval=0.02, what='the leader arm bridge to engage')
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:            # the operator moves joint 1 by 0.2 rad
            q = start.copy()
            q[0] += 0.2 * min(1.0, (time.monotonic() - t0) / 2.0)
            leader.publish(JointState(name=arm, position=q.tolist()))
            time.sleep(0.02)
        assert operator.save_and_exit() == 0, operator.log()[-3000:]
    moved = np.array(follower[-1].position[:7]) - start
    assert abs(moved[0] - 0.2) < 0.03 and np.abs(moved[1:]).max() < 0.03, moved
    bag = operator.out / 'episode_0000'
    custom = read_custom_data(bag)
    assert custom['outcome'] == 'success' and custom['source'] == 'leader'
    info = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    counts = {t['topic_metadata']['name']: t['message_count'] for t in info['topics_with_message_count']}
    chunks, labels = counts['/ros2_imitation/action_chunk'], counts['/ros2_imitation/expert_label']
    # the two are published together; the recording's start or stop may fall between them
    assert abs(chunks - labels) <= 2 and min(chunks, labels) > 50
    assert counts['/joint_states'] > 300 and counts['/camera/camera/color/image_raw'] > 10


def test_attach_writes_the_bags_into_out(tmp_path, ros_env):
    """`ros2 launch ros2_imitation record.launch.py` (here: `bringup record_sim`, its graph, started from
    another folder with the default relative output_dir) + `record-demos --attach --out OUT`: the bags go
    to OUT, beside record_demos.jsonl, and the summary says so."""
    from conftest import Process, wait_for
    launched_in, out = tmp_path / 'launched_in', tmp_path / 'out'
    launched_in.mkdir()
    graph = Process([sys.executable, '-m', 'ros2_imitation.cli', 'bringup', 'record_sim'],
                    ros_env, str(tmp_path / 'bringup.log'), cwd=str(launched_in))
    try:
        attach = Process([sys.executable, '-m', 'ros2_imitation.cli', 'record-demos', '--attach', '--episodes', '1',
                          '--out', str(out), '--seed', '3', '--headless', '--quiet'],
                         ros_env, str(tmp_path / 'attach.log'))
        try:
            wait_for(lambda: attach.proc.poll() is not None, 170, interval=0.5, what='record-demos --attach')
        finally:
            code = attach.stop()
        log = attach.output()
        assert code == 0, log[-3000:] + '\n--- bringup:\n' + graph.output()[-3000:]
        assert graph.proc.poll() is None, 'the attached graph keeps running'
    finally:
        graph.stop()
    start = log.rindex('{\n  "out"')
    summary = json.loads(log[start:log.index('\n}', start) + 2])
    assert summary['out'] == str(out) and summary['bag_folders'] == [str(out)] and summary['kept'] == 1
    (episode,) = [json.loads(line) for line in (out / 'record_demos.jsonl').read_text().splitlines()]
    assert episode['bag'] == str(out / 'episode_0000')
    assert sorted(p.name for p in (out / 'episode_0000').iterdir()) == ['episode_0000.mcap', 'metadata.yaml']
    assert read_custom_data(out / 'episode_0000')['task'] == 'push_cube'
    # nothing where `ros2 launch` was started (its output_dir default, `demos`)
    assert not list(launched_in.rglob('episode_*'))
    assert f'bags now go to {out}' in graph.output()


def test_teleop_source_in_sim(tmp_path, ros_env, probe):
    """--source teleop --sim: a SpaceMouse's Twist and Joy messages drive the sim's end effector through
    teleop_node and the controller's IK; the bag holds them and the end-effector chunks, and bag2dataset
    --ee-robot turns it into end-effector actions that follow the motion."""
    import zarr
    from geometry_msgs.msg import Twist
    from sensor_msgs.msg import Joy

    from ros2_imitation import cli
    from ros2_imitation.qos import SENSOR_QOS
    with Operator(tmp_path, ros_env, 'teleop') as operator:
        from sensor_msgs.msg import JointState
        twist = probe.create_publisher(Twist, '/spacenav/twist', SENSOR_QOS)
        joy = probe.create_publisher(Joy, '/spacenav/joy', SENSOR_QOS)
        states = []
        probe.create_subscription(JointState, '/joint_states', states.append, SENSOR_QOS)
        # the operator starts once the arm is up: the sim publishing its joint states and teleop_node
        # listening to both inputs (a start before the sim was up once recorded no motion at all)
        operator.start_episode(lambda: twist.get_subscription_count() > 0 and joy.get_subscription_count() > 0
                               and len(states) > 250, 'the first prompt, the sim and teleop_node')
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:          # deadman held, the cap pushed left (+y) for 2 s
            msg = Twist()
            msg.linear.y = 1.0 if time.monotonic() - t0 < 2.0 else 0.0
            twist.publish(msg)
            joy.publish(Joy(axes=[0.0] * 6, buttons=[1, 0]))
            time.sleep(0.02)
        assert operator.save_and_exit() == 0, operator.log()[-3000:]
    bag = operator.out / 'episode_0000'
    assert read_custom_data(bag)['source'] == 'teleop'
    info = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    counts = {t['topic_metadata']['name']: t['message_count'] for t in info['topics_with_message_count']}
    assert counts['/ros2_imitation/ee_chunk'] > 50 and counts['/spacenav/twist'] > 50 and counts['/spacenav/joy'] > 50
    data = tmp_path / 'teleop.zarr'
    assert cli.main(['bag2dataset', str(operator.out), '--out', str(data), '--ee-robot', 'panda', '--action-source',
                     'next_state', '--quiet']) == 0
    action = zarr.open_group(str(data), mode='r')['data']['action_ee'][:]
    moved = action[-1, :3] - action[0, :3]
    print(f'teleop demonstration: {len(action)} steps, the tip moved {np.round(moved * 1000)} mm')
    assert 0.05 < moved[1] < 0.3 and abs(moved[0]) < 0.02 and abs(moved[2]) < 0.02
