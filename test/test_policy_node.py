"""policy_node in the full graph over real DDS, with a tiny policy trained here (timing, not skill)."""
import os
from pathlib import Path
import signal

import numpy as np
import pytest
import yaml
from conftest import GraphRun, call_service, wait_for
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from ros2_imitation import cli
from ros2_imitation.nodes.common import to_sec
from ros2_imitation.qos import COMMAND_QOS, SENSOR_QOS


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp('tiny')
    assert cli.main(['sim-dataset', '--episodes', '1', '--out', str(folder / 'd.zarr')]) == 0
    config = folder / 'tiny.yaml'
    config.write_text(yaml.safe_dump({'down_dims': [32, 64], 'encoder_channels': [8, 16], 'num_keypoints': 8,
                                      'num_inference_steps': 4, 'noise_sigma': 0.05,
                                      'training': {'steps': 4, 'batch_size': 8, 'checkpoint_every': 4}}))
    assert cli.main(['train', '--dataset', str(folder / 'd.zarr'), '--config', str(config),
                     '--out', str(folder / 'run')]) == 0
    return str(folder / 'run' / 'policy')


def start(tmp_path, model, *args):
    run = GraphRun(tmp_path / 'bringup.log', 'demo', '--arg', f'model={model}', *args)
    run.sim_now = [0.0]
    run.node.create_subscription(JointState, '/joint_states',
                                 lambda m: run.sim_now.__setitem__(0, to_sec(m.header.stamp)), SENSOR_QOS)
    run.chunks = []
    run.node.create_subscription(JointTrajectory, '/ros2_imitation/action_chunk',
                                 lambda m: run.chunks.append((m, run.sim_now[0])), COMMAND_QOS)
    run.diagnostics = run.record(DiagnosticArray, '/diagnostics', COMMAND_QOS)
    run.markers = run.record(MarkerArray, '/policy/predicted_chunk', COMMAND_QOS)
    try:
        wait_for(lambda: len(run.chunks) >= 3, 90, what='chunks from the policy node')
    except AssertionError:
        print(run.output()[-3000:])
        run.close()
        raise
    return run


def test_chunks_are_timestamped_ahead_and_strictly_timed(tmp_path, tiny_model):
    with start(tmp_path, tiny_model) as run:
        wait_for(lambda: len(run.chunks) >= 8, 30, what='8 chunks')
        for msg, arrived in list(run.chunks):
            times = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])
            assert len(times) >= 2 and np.all(np.diff(times) > 0)
            assert np.allclose(np.diff(times), 0.1, atol=1e-6)
            # the first point was not already past when the chunk arrived (joint states jitter: 10 ms)
            assert to_sec(msg.header.stamp) >= arrived - 0.01
            assert list(msg.joint_names) == [f'panda_joint{i}' for i in range(1, 8)]
        stamps = [to_sec(m.header.stamp) for m, _ in run.chunks]
        assert np.all(np.diff(stamps) > 0)
        policy = [dict((kv.key, kv.value) for kv in s.values) for d in run.diagnostics.messages
                  for s in d.status if 'diffusion policy' in s.name]
        assert policy and 'latency_p50_ms' in policy[-1] and policy[-1]['sigma'] == '0.05'
        assert call_service(run.node, Trigger, '/policy/reset').success


def test_each_chunk_is_drawn_as_an_end_effector_path_in_the_base_frame(tmp_path, tiny_model):
    with start(tmp_path, tiny_model) as run:
        wait_for(lambda: len(run.markers.messages) >= 3, 30, what='predicted-chunk markers')
        arrays = list(run.markers.messages)
        chunks = {to_sec(m.header.stamp): m for m, _ in run.chunks}
        for array in arrays:
            line, spheres, dropped, label = array.markers
            assert line.header.frame_id == 'panda_link0' and len(line.points) == len(line.colors) >= 2
            assert len(spheres.points) == len(line.points)
            xyz = np.array([[p.x, p.y, p.z] for p in line.points])
            # a Panda's tool centre point on the table: within reach, above the table top
            assert np.all(np.linalg.norm(xyz[:, :2], axis=1) < 0.9) and np.all(xyz[:, 2] > -0.1)
            assert 'latency' in label.text
        # one path per published chunk, as many points as the chunk has
        assert max(len(m.markers[0].points) for m in arrays) <= max(len(c.points) for c in chunks.values())


def test_killing_the_policy_mid_episode_holds_the_arm_and_bringup_names_it(tmp_path, tiny_model):
    with start(tmp_path, tiny_model, '--set', 'controller.hold_timeout=1.0') as run:
        pids = [int(p) for p in os.listdir('/proc') if p.isdigit()]
        # this graph's policy node: its command line and this run's ROS domain (not another run's)
        domain = f'ROS_DOMAIN_ID={run.env["ROS_DOMAIN_ID"]}'.encode()
        policy_pid = next(p for p in pids if 'ros2_imitation.nodes.policy_node' in _cmdline(p)
                          and domain in _environ(p))
        os.kill(policy_pid, signal.SIGKILL)
        controller = lambda: [s.message for d in run.diagnostics.messages for s in d.status  # noqa: E731
                              if 'chunk controller' in s.name]
        wait_for(lambda: any(m.startswith('holding: chunk stream stopped') for m in controller()), 10,
                 what='the controller to hold when chunks stop')
        wait_for(lambda: any(m.startswith('resting') for m in controller()), 10,
                 what='the controller to rest after hold_timeout')
        assert run.proc.proc.poll() is None, 'bringup must keep the controller running'
        assert "node 'policy' exited with code -9" in run.output()


def _environ(pid: int) -> list:
    try:
        with open(f'/proc/{pid}/environ', 'rb') as f:
            return f.read().split(b'\0')
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return f.read().replace(b'\0', b' ').decode(errors='replace').strip()
    except OSError:
        return ''


def test_waiting_reports_count_events_not_polls(tmp_path, tiny_model, ros_env, probe):
    """Images without proprioception: every image is one query that cannot be built. The throttled
    warning's '(N more since the last report)' counts those events, not the inference loop's polls."""
    import re
    import sys
    import time

    from conftest import Process
    from sensor_msgs.msg import Image
    proc = Process([sys.executable, '-m', 'ros2_imitation.nodes.policy_node', '--ros-args',
                    '-p', f'model:={tiny_model}', '-p', 'warmup:=false'], ros_env, str(tmp_path / 'policy.log'))
    try:
        wait_for(lambda: 'waiting for observations' in proc.output(), 60, what='the policy node to start')
        pub = probe.create_publisher(Image, '/camera/camera/color/image_raw', SENSOR_QOS)
        sent, t_end = 0, time.monotonic() + 6.0
        while time.monotonic() < t_end:
            msg = Image(height=96, width=96, encoding='rgb8', step=288, data=bytes(96 * 96 * 3))
            msg.header.stamp = probe.get_clock().now().to_msg()
            pub.publish(msg)
            sent += 1
            time.sleep(0.1)
        time.sleep(1.5)
    finally:
        proc.stop()
    out = proc.output()
    reports = [line for line in out.splitlines() if 'waiting for observations: no state received yet' in line]
    held_back = sum(int(n) for n in re.findall(r'no state received yet \((\d+) more since the last report\)', out))
    assert len(reports) >= 2, out[-2000:]
    # one rejected query per image at most (a 5 ms polling loop would report ~20 per image)
    assert len(reports) + held_back <= sent + 2, (len(reports), held_back, sent)


def test_the_runtime_argument_runs_the_policy_on_onnx_runtime(tmp_path, tiny_model):
    """`runtime` is a graph argument (config/graphs/demo.yaml) and a policy_node parameter: the node
    exports its model once (cached beside the checkpoint) and serves chunks from ONNX Runtime."""
    from ros2_imitation.policy.runtimes import available
    if available()['onnxruntime']:
        pytest.skip(f"onnxruntime: {available()['onnxruntime']}")
    with start(tmp_path, tiny_model, '--arg', 'runtime=onnxruntime') as run:
        assert 'on cpu (onnxruntime)' in run.output(), run.output()[-3000:]
        wait_for(lambda: any(kv.key == 'runtime' and kv.value == 'onnxruntime' for d in run.diagnostics.messages
                             for s in d.status if 'diffusion policy' in s.name for kv in s.values), 10,
                 what='the policy diagnostics to name its runtime')
        msg, _ = run.chunks[-1]
        assert len(msg.points) >= 2 and all(np.isfinite(p.positions).all() for p in msg.points)
    assert any((p / 'meta.json').exists() for p in (Path(tiny_model) / 'runtime_cache').iterdir())
