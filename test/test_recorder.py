"""Episode bags: the ROS-free writer (recording.py) and recorder_node over real DDS."""
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ros2_imitation.data import recording
from ros2_imitation.data.recording import BagRecorder, RecorderError, TopicInfo, make_qos


def string_cdr(text: str) -> bytes:
    store = recording.typestore()
    msg = store.types['std_msgs/msg/String'](data=text)
    return bytes(store.serialize_cdr(msg, 'std_msgs/msg/String'))


def read_bag(path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore
    out = []
    with AnyReader([Path(path)], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        for conn, stamp, raw in reader.messages():
            out.append((conn.topic, stamp, reader.deserialize(raw, conn.msgtype), bytes(raw)))
    return out


QOS = make_qos(reliability='reliable')


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_written_with_outcome_in_custom_data(tmp_path, storage):
    rec = BagRecorder(tmp_path, storage=storage)
    try:
        rec.add_topic(TopicInfo('/chatter', 'std_msgs/msg/String', [QOS]))
        assert not rec.put('/chatter', 1, string_cdr('before start'))     # not recording: dropped
        path = rec.start()
        assert path == tmp_path / 'episode_0000'
        for i in range(5):
            assert rec.put('/chatter', 1_000_000_000 + i * 1000, string_cdr(f'hello {i}'))
        rec.add_topic(TopicInfo('/late', 'std_msgs/msg/String', [make_qos(reliability='best_effort')]))
        rec.put('/late', 2_000_000_000, string_cdr('late topic'))
        result = rec.stop({'outcome': 'success', 'seed': 4, 'noisy': False, 'expert': {'mode': 'left'}})
        assert result['message_count'] == 6 and result['topics'] == {'/chatter': 5, '/late': 1}
        with pytest.raises(RecorderError, match='not recording'):
            rec.stop()
        assert rec.start() == tmp_path / 'episode_0001'          # the next index
        rec.discard()
    finally:
        rec.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['episode_0000']   # discarded: gone, no .partial
    messages = read_bag(path)
    assert [m[2].data for m in messages] == [f'hello {i}' for i in range(5)] + ['late topic']
    assert [m[1] for m in messages[:2]] == [1_000_000_000, 1_000_001_000]
    meta = recording.read_metadata(path)
    assert meta['version'] == 9 and meta['storage_identifier'] == storage and meta['message_count'] == 6
    assert meta['duration']['nanoseconds'] == 1_000_000_000
    assert meta['starting_time']['nanoseconds_since_epoch'] == 1_000_000_000
    custom = meta['custom_data']
    assert custom['outcome'] == 'success' and custom['seed'] == '4' and custom['noisy'] == 'false'
    assert json.loads(custom['expert']) == {'mode': 'left'} and custom['dropped_messages'] == '0'
    topics = {t['topic_metadata']['name']: t for t in meta['topics_with_message_count']}
    assert topics['/late']['topic_metadata']['offered_qos_profiles'][0]['reliability'] == 'best_effort'
    assert topics['/chatter']['topic_metadata']['type_description_hash'].startswith('RIHS01_')


def test_unfinished_bag_never_looks_valid(tmp_path):
    """Shut down (or crash) mid-episode: only .partial/ holds it, without metadata.yaml."""
    rec = BagRecorder(tmp_path)
    rec.add_topic(TopicInfo('/chatter', 'std_msgs/msg/String', [QOS]))
    rec.start()
    rec.put('/chatter', 5, string_cdr('x'))
    rec.close()
    assert [p.name for p in tmp_path.iterdir()] == [recording.PARTIAL]
    assert [p.name for p in recording.partial_bags(tmp_path)] == ['episode_0000']
    assert not (tmp_path / recording.PARTIAL / 'episode_0000' / 'metadata.yaml').exists()
    assert recording.next_bag_name(tmp_path) == 'episode_0001'   # never reuses a partial's name
    with pytest.raises(RecorderError, match='storage'):
        BagRecorder(tmp_path, storage='rosbag1')


def test_full_queue_drops_and_counts(tmp_path):
    rec = BagRecorder(tmp_path, max_queue=1)
    try:
        rec.add_topic(TopicInfo('/chatter', 'std_msgs/msg/String', [QOS]))
        rec.start()
        data = string_cdr('y' * 100)
        accepted = sum(rec.put('/chatter', i + 1, data) for i in range(2000))
        result = rec.stop()
    finally:
        rec.close()
    dropped = int(result['custom_data']['dropped_messages'])
    assert dropped > 0 and accepted + dropped == 2000 and result['message_count'] == accepted


def test_output_dir_is_absolute_and_changes_only_between_bags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rec = BagRecorder('demos')
    try:
        assert rec.output_dir == tmp_path / 'demos'          # against the working directory, once
        monkeypatch.chdir('/')
        rec.add_topic(TopicInfo('/chatter', 'std_msgs/msg/String', [QOS]))
        first = rec.start()
        assert first == tmp_path / 'demos' / 'episode_0000'
        with pytest.raises(RecorderError, match='recording episode_0000'):
            rec.set_output_dir(tmp_path / 'elsewhere')
        rec.put('/chatter', 1, string_cdr('a'))
        assert Path(rec.stop()['path']) == first
        assert rec.set_output_dir(str(tmp_path / 'other' / '..' / 'moved')) == tmp_path / 'moved'
        assert (tmp_path / 'moved').is_dir()                 # created at once: a bad folder fails now
        second = rec.start()
        rec.put('/chatter', 2, string_cdr('b'))
        assert Path(rec.stop()['path']) == second == tmp_path / 'moved' / 'episode_0000'
        (tmp_path / 'file').write_text('')
        with pytest.raises(RecorderError, match='cannot use output_dir'):
            rec.set_output_dir(tmp_path / 'file' / 'sub')
        assert rec.output_dir == tmp_path / 'moved'
    finally:
        rec.close()
    assert [m[2].data for m in read_bag(first)] == ['a'] and [m[2].data for m in read_bag(second)] == ['b']


# ---- recorder_node through DDS ----

@pytest.fixture
def recorder_graph(tmp_path, ros_env, probe):
    from conftest import Process
    out = tmp_path / 'bags'
    proc = Process([sys.executable, '-m', 'ros2_imitation.nodes.recorder_node', '--ros-args',
                    '-p', f'output_dir:={out}', '-p', 'topics:=[/joint_states, /camera/camera/color/image_raw, '
                    '/ros2_imitation/action_chunk, /sim/task_state, /never_published]',
                    '-p', 'info_topics:=[/expert/info]', '-p', 'metadata:=\'{"operator": "test"}\''],
                   ros_env, str(tmp_path / 'recorder.log'))
    yield proc, probe, out
    proc.stop()


def test_recorder_node_records_episodes(recorder_graph):
    from conftest import call_service, wait_for
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from ros2_imitation.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS

    proc, node, out = recorder_graph
    pubs = dict(joints=node.create_publisher(JointState, '/joint_states', STATE_QOS),
                image=node.create_publisher(Image, '/camera/camera/color/image_raw', SENSOR_QOS),
                chunk=node.create_publisher(JointTrajectory, '/ros2_imitation/action_chunk', COMMAND_QOS),
                state=node.create_publisher(String, '/sim/task_state', STATE_QOS),
                info=node.create_publisher(String, '/expert/info', LATCHED_QOS))
    status = {}
    node.create_subscription(String, '/recorder/status', lambda m: status.update(json.loads(m.data)), LATCHED_QOS)
    pubs['info'].publish(String(data=json.dumps({'mode': 'right', 'noisy': True, 'action_noise': 0.01})))
    wait_for(lambda: status.get('missing') == ['/never_published'], 30, what='recorder subscriptions')

    def joint_state(i):
        msg = JointState(name=[f'panda_joint{j}' for j in range(1, 8)], position=[0.1 * i] * 7,
                         velocity=[0.0] * 7, effort=[0.0] * 7)
        msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + i, 5
        return msg

    chunk = JointTrajectory(joint_names=[f'panda_joint{j}' for j in range(1, 8)])
    chunk.header.stamp.sec = 42
    for k in range(3):
        point = JointTrajectoryPoint(positions=[0.01 * k] * 7)
        point.time_from_start.nanosec = k * 100_000_000
        chunk.points.append(point)
    image = Image(height=2, width=3, encoding='rgb8', step=9, data=bytes(range(18)))

    reply = call_service(node, Trigger, '/recorder/start')
    assert reply.success, reply.message
    started = json.loads(reply.message)
    assert started['missing_topics'] == ['/never_published']
    time.sleep(0.3)
    sent = [joint_state(i) for i in range(20)]
    for i, msg in enumerate(sent):
        pubs['joints'].publish(msg)
        if i % 5 == 0:
            pubs['image'].publish(image)
        time.sleep(0.01)
    pubs['chunk'].publish(chunk)
    pubs['state'].publish(String(data=json.dumps({'task': 'push_cube', 'success': False, 'seed': 9, 'time': 3.2})))
    time.sleep(0.5)
    assert not call_service(node, Trigger, '/recorder/start').success      # already recording
    reply = call_service(node, Trigger, '/recorder/stop_success')
    assert reply.success, reply.message
    saved = json.loads(reply.message)
    assert saved['outcome'] == 'success' and saved['topics']['/joint_states'] == 20

    bag = Path(saved['path'])
    messages = read_bag(bag)
    joints = [m for m in messages if m[0] == '/joint_states']
    assert [m[2].header.stamp.sec for m in joints] == [100 + i for i in range(20)]     # header kept
    receive = [m[1] for m in joints]
    assert np.all(np.diff(receive) > 0) and abs(receive[0] * 1e-9 - time.time()) < 60   # receive time
    for (_, _, decoded, raw), msg in zip(joints, sent):
        # the wire CDR: rclpy reads it back as the message sent; the same CDR as serialize_message
        # gives, up to the (unspecified) alignment padding bytes
        assert deserialize_message(raw, JointState) == msg
        assert len(raw) == len(serialize_message(msg)) and list(decoded.position) == list(msg.position)
    images = [m[2] for m in messages if m[0] == '/camera/camera/color/image_raw']
    assert len(images) == 4 and bytes(images[0].data) == bytes(range(18)) and images[0].encoding == 'rgb8'
    chunks = [m[2] for m in messages if m[0] == '/ros2_imitation/action_chunk']
    assert len(chunks) == 1 and chunks[0].header.stamp.sec == 42 and len(chunks[0].points) == 3
    custom = recording.read_custom_data(bag)
    assert custom['outcome'] == 'success' and custom['operator'] == 'test'
    assert custom['mode'] == 'right' and custom['noisy'] == 'true' and custom['seed'] == '9'
    meta = recording.read_metadata(bag)
    qos = {t['topic_metadata']['name']: t['topic_metadata']['offered_qos_profiles'][0]['reliability']
           for t in meta['topics_with_message_count']}
    assert qos['/camera/camera/color/image_raw'] == 'best_effort' and qos['/joint_states'] == 'reliable'

    # a second episode, auto outcome from the task state, then one discarded
    assert call_service(node, Trigger, '/recorder/start').success
    pubs['state'].publish(String(data=json.dumps({'success': True, 'time': 1.0})))
    time.sleep(0.5)
    reply = call_service(node, Trigger, '/recorder/stop')
    assert json.loads(reply.message)['outcome'] == 'success'
    assert call_service(node, Trigger, '/recorder/start').success
    pubs['joints'].publish(joint_state(0))
    time.sleep(0.2)
    assert call_service(node, Trigger, '/recorder/discard').success
    assert not call_service(node, Trigger, '/recorder/stop').success        # nothing to stop
    assert sorted(p.name for p in out.iterdir()) == ['episode_0000', 'episode_0001']


def test_recorder_killed_mid_episode_leaves_no_valid_bag(recorder_graph):
    from conftest import call_service
    from std_srvs.srv import Trigger
    proc, node, out = recorder_graph
    assert call_service(node, Trigger, '/recorder/start', timeout=30).success
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.proc.wait(10)
    assert [p.name for p in out.iterdir()] == [recording.PARTIAL]
    assert not any((p / 'metadata.yaml').exists() for p in recording.partial_bags(out))


def test_mark_bag_adds_outcome_to_a_finished_bag(tmp_path):
    """What a `ros2 bag record` bag needs afterwards: the outcome in custom_data."""
    rec = BagRecorder(tmp_path)
    try:
        rec.add_topic(TopicInfo('/chatter', 'std_msgs/msg/String', [QOS]))
        path = rec.start()
        rec.put('/chatter', 7, string_cdr('z'))
        rec.stop({'task': 'reach'})
    finally:
        rec.close()
    assert recording.mark_bag(path, outcome='failure', noisy=True)['outcome'] == 'failure'
    custom = recording.read_custom_data(path)
    assert custom['task'] == 'reach' and custom['noisy'] == 'true'
    assert [m[2].data for m in read_bag(path)] == ['z']       # still a readable bag


def test_recorder_node_output_dir_is_absolute_and_settable_between_episodes(tmp_path, ros_env, probe):
    """A relative output_dir is the node's working directory's (where `ros2 launch` ran); `ros2 param set
    /recorder output_dir` (what `record-demos --attach` does) moves the next bags, never the current one."""
    from conftest import Process, call_service, wait_for
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import GetParameters, SetParameters
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from ros2_imitation.qos import LATCHED_QOS
    launched_in = tmp_path / 'launched_in'
    launched_in.mkdir()
    proc = Process([sys.executable, '-m', 'ros2_imitation.nodes.recorder_node', '--ros-args',
                    '-p', 'output_dir:=demos', '-p', 'topics:=[/never_published]', '-p', 'task_state_topic:=\'\''],
                   ros_env, str(tmp_path / 'recorder.log'), cwd=str(launched_in))
    try:
        status = {}
        probe.create_subscription(String, '/recorder/status', lambda m: status.update(json.loads(m.data)),
                                  LATCHED_QOS)
        wait_for(lambda: status, 30, what=f'recorder status\n{proc.output()}')
        assert status['output_dir'] == str(launched_in / 'demos')
        got = call_service(probe, GetParameters, '/recorder/get_parameters',
                           GetParameters.Request(names=['output_dir']))
        assert got.values[0].string_value == str(launched_in / 'demos')

        def set_output_dir(path):
            value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(path))
            reply = call_service(probe, SetParameters, '/recorder/set_parameters',
                                 SetParameters.Request(parameters=[Parameter(name='output_dir', value=value)]))
            return reply.results[0]

        out = tmp_path / 'out'
        assert set_output_dir(out).successful
        wait_for(lambda: status['output_dir'] == str(out), 10, what='the new output_dir in the status')
        started = json.loads(call_service(probe, Trigger, '/recorder/start').message)
        assert started['path'] == str(out / 'episode_0000')
        refused = set_output_dir(tmp_path / 'elsewhere')
        assert not refused.successful and 'recording episode_0000' in refused.reason
        saved = json.loads(call_service(probe, Trigger, '/recorder/stop').message)
        assert saved['path'] == str(out / 'episode_0000') and (out / 'episode_0000' / 'metadata.yaml').is_file()
        assert not set_output_dir('').successful
        assert not (launched_in / 'demos').exists() and not (tmp_path / 'elsewhere').exists()
    finally:
        proc.stop()
    assert 'bags now go to ' + str(out) in proc.output()
