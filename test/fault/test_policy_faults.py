"""Faults around the policy, against the full demo graph (sim, proprioception, the shipped diffusion
policy, controller) as separate processes over DDS.

The policy reads its camera through a relay in this test (so the camera can stop, or be replaced by
bad frames); everything else is the demo graph as shipped. Each test injects one fault, clears it,
and checks: no node crashed without a logged reason, no command out of limits (CommandMonitor), and
the policy publishes chunks again that the controller tracks.
"""
import shutil
import time

import pytest
from conftest import wait_for
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from ros2_imitation.nodes.common import to_stamp
from ros2_imitation.paths import share_dir
from ros2_imitation.qos import CLOCK_QOS, COMMAND_QOS, SENSOR_QOS

from .faultlib import FaultGraph, ImageRelay, JointStateRelay, assert_stopped_cleanly, state, states_seen, wait_sim

POLICY = 'policy: diffusion policy'
IMAGE_TOPIC = '/fault/image'
OVERRIDES = {'policy.image_topics': [IMAGE_TOPIC], 'controller.diagnostics_rate': 10.0}


@pytest.fixture(scope='module')
def rig(tmp_path_factory):
    folder = tmp_path_factory.mktemp('policy_faults')
    sets = [a for k, v in OVERRIDES.items() for a in ('--set', f'{k}={v}')]
    run = FaultGraph(folder, 'demo', *sets, wait_nodes=4)
    try:
        run.camera = ImageRelay(run.node, IMAGE_TOPIC)
        run.images = run.node.create_publisher(Image, IMAGE_TOPIC, SENSOR_QOS)
        run.bad_joints = run.node.create_publisher(JointState, '/joint_states', COMMAND_QOS)
        run.clock_pub = run.node.create_publisher(Clock, '/clock', CLOCK_QOS)
        run.chunks = []
        run.node.create_subscription(JointTrajectory, '/ros2_imitation/action_chunk',
                                     lambda m: run.chunks.append(time.monotonic()), COMMAND_QOS)
        run.last_joints = [None]
        run.node.create_subscription(JointState, '/joint_states',
                                     lambda m: run.last_joints.__setitem__(0, m), SENSOR_QOS)
        wait_for(lambda: len(run.chunks) >= 3 and state(run) == 'tracking', 180,
                 what='the policy to drive the controller')
        yield run
    finally:
        run.close()
    assert_stopped_cleanly(run)


# ---------------------------------------------------------------- helpers

def chunks_since(run, t) -> int:
    return sum(1 for tm in list(run.chunks) if tm >= t)


def lines(text, marker, n=3) -> list:
    found = []
    for line in text.splitlines():
        if marker in line:
            reason = line.split(marker, 1)[1].split(' (', 1)[0].strip(': ')[:90]
            if reason not in found:
                found.append(reason)
    return found[:n]


class Fault:
    def __init__(self, run, reliability, key):
        self.run, self.reliability, self.key = run, reliability, key
        self.mark = run.monitor.mark()
        self.t0 = time.monotonic()
        self.log_at = {id(p): len(p.output()) for p in [run.proc] + [p for _, p in run.extra]}

    def log(self) -> str:
        procs = [self.run.proc] + [p for _, p in self.run.extra]
        return ''.join(p.output()[self.log_at.get(id(p), 0):] for p in procs)

    def done(self, injected, outcome, cleared_at, recover_timeout=60.0):
        """Recovered: chunks again after the fault cleared, tracked by the controller, and one more."""
        run, recovered, recovery_s = self.run, True, None
        try:
            wait_for(lambda: chunks_since(run, cleared_at) >= 2 and state(run, cleared_at) == 'tracking',
                     recover_timeout,
                     what='chunks again, tracked by the controller')
            recovery_s = time.monotonic() - cleared_at
            n = chunks_since(run, cleared_at)     # and it goes on: one more chunk, still tracking
            wait_for(lambda: chunks_since(run, cleared_at) > n, 10, what='the next chunk')
            recovered = state(run, time.monotonic() - 0.5) == 'tracking'
        except AssertionError:
            recovered = False
        checked, violations = run.monitor.since(self.mark)
        crashes = run.crashes()
        if crashes:
            outcome += f'; CRASH: {crashes[0]}'
        self.reliability.record(self.key, injected, outcome, checked, len(violations),
                                recovered and not crashes, recovery_s)
        assert not crashes, crashes
        assert not violations, violations[:5]
        assert recovered, f'no recovery: controller {state(run)!r}, {chunks_since(run, cleared_at)} chunks'


def frame(stamp, encoding='rgb8', width=96, height=96, step=None, size=None) -> Image:
    msg = Image(width=width, height=height, encoding=encoding)
    msg.header.stamp = to_stamp(stamp)
    msg.step = width * 3 if step is None else step
    msg.data = bytes(msg.step * height if size is None else size)
    return msg


# ---------------------------------------------------------------- camera

def test_camera_stops(rig, reliability):
    fault = Fault(rig, reliability, 'camera_stops')
    rig.camera.on = False
    wait_sim(rig, 3.0)
    quiet = chunks_since(rig, fault.t0 + 1.0)
    seen = states_seen(rig, fault.t0)
    rig.camera.on = True
    cleared = time.monotonic()
    waiting = lines(fault.log(), 'waiting for observations')
    outcome = (f'policy stopped publishing ({quiet} chunks from 1 s after the stop; "{waiting[0] if waiting else "?"}"); '
               f'controller {seen}')
    fault.done('the policy\'s camera stream cut for 3 s', outcome, cleared)
    assert quiet == 0 and waiting and 'holding' in seen


def test_frames_with_a_wrong_encoding_or_size(rig, reliability):
    fault = Fault(rig, reliability, 'bad_frames')
    rig.camera.on = False
    bad = [dict(encoding='yuv422', step=192), dict(encoding='16UC1', step=192), dict(encoding='mono8', step=96),
           dict(size=1000), dict(step=100), dict(width=0, height=0), dict(encoding='bgr8', width=100000,
                                                                         height=100000, size=1024)]
    end = time.monotonic() + 2.5
    sent = 0
    while time.monotonic() < end:
        rig.images.publish(frame(rig.monitor.arm()[0], **bad[sent % len(bad)]))
        sent += 1
        time.sleep(0.05)
    quiet = chunks_since(rig, fault.t0 + 1.0)
    rig.camera.on = True
    cleared = time.monotonic()
    rejected = lines(fault.log(), 'rejected image on image', n=8)
    outcome = (f'{len(rejected)} kinds rejected with a reason ({"; ".join(rejected)}); no chunk from them '
               f'({quiet} chunks from 1 s after the camera was replaced)')
    fault.done(f'{sent} frames in 2.5 s instead of the camera: yuv422, 16UC1, mono8, 1000 bytes for 96x96 rgb8, '
               'step 100 < 288, 0x0, 100000x100000 with 1 kB', outcome, cleared)
    assert quiet == 0 and len(rejected) >= 5, rejected


def test_a_huge_image(rig, reliability):
    fault = Fault(rig, reliability, 'huge_image')
    huge = frame(rig.monitor.arm()[0], width=5000, height=4000)       # 60 MB rgb8
    for _ in range(3):
        huge.header.stamp = to_stamp(rig.monitor.arm()[0])
        rig.images.publish(huge)
        rig.images.publish(frame(rig.monitor.arm()[0], width=65535, height=65535, size=4096))
        time.sleep(0.5)
    time.sleep(1.0)
    cleared = time.monotonic()
    rejected = lines(fault.log(), 'rejected image on image', n=4)
    delivered = any('5000x4000' in r for r in rejected)
    outcome = ('60 MB frames ' + ('rejected by the policy (max_image_pixels)' if delivered else
                                  'never delivered (Fast DDS drops best-effort samples this large)') +
               f'; 65535x65535 header rejected ("{rejected[-1] if rejected else "?"}"); policy kept publishing '
               f'({chunks_since(rig, fault.t0)} chunks meanwhile)')
    fault.done('3 x 5000x4000 rgb8 frames (60 MB each) and 3 claiming 65535x65535, beside the camera',
               outcome, cleared)
    assert any('65535x65535' in r for r in rejected), rejected


# ---------------------------------------------------------------- joint states, whole graph

def test_bad_joint_states_mixed_into_the_stream(rig, reliability):
    fault = Fault(rig, reliability, 'bad_joint_states_graph')
    modes = ['nan', 'inf', 'missing', 'renamed', 'lengths', 'names']
    end = time.monotonic() + 2.0
    sent = 0
    while time.monotonic() < end:
        msg = rig.last_joints[0]
        mode = modes[sent % len(modes)]
        if mode == 'lengths':
            bad = JointState(header=msg.header, name=list(msg.name), position=list(msg.position),
                             velocity=list(msg.velocity[:3]))
        elif mode == 'names':
            bad = JointState(header=msg.header, name=[f'j{i}' for i in range(5000)], position=[0.0] * 5000)
        else:
            bad = JointStateRelay.corrupt(msg, mode)
        rig.bad_joints.publish(bad)
        sent += 1
        time.sleep(0.01)
    cleared = time.monotonic()
    during = chunks_since(rig, fault.t0)
    log = fault.log()
    controller = lines(log, '[controller]: ignored joint state', n=6)
    proprio = lines(log, '[proprioception]: dropping joint state', n=6)
    outcome = (f'controller ignored them ({len(controller)} kinds of reason), proprioception dropped them '
               f'({len(proprio)} kinds), the policy kept publishing ({during} chunks); controller '
               f'{states_seen(rig, fault.t0)}')
    fault.done(f'{sent} bad /joint_states in 2 s between the sim\'s 250 Hz: NaN, +-inf, a joint missing, '
               'renamed joints, 3 velocities for 9 joints, 5000 names', outcome, cleared)
    assert controller and proprio and during >= 1


# ---------------------------------------------------------------- the clock

def test_clock_jump_with_the_policy_running(rig, reliability):
    fault = Fault(rig, reliability, 'clock_jump_policy')
    now = rig.monitor.arm()[0]
    for t in [now + 1000.0] * 5 + [1.0] * 5:
        rig.clock_pub.publish(Clock(clock=to_stamp(t)))
        time.sleep(0.02)
    cleared = time.monotonic()
    time.sleep(0.5)
    jumps = lines(fault.log(), 'clock jump', n=2)
    outcome = f'controller {states_seen(rig, fault.t0)}; policy ' + (
        f'noticed ("clock jump: {jumps[0]}")' if jumps else 'published no chunk across the jump')
    fault.done('5 /clock messages 1000 s ahead, then 5 at t = 1 s, with the policy running', outcome, cleared)
    time.sleep(1.5)        # the next diagnostics: the jump is not in the policy's latency figures
    p99 = float(rig.diagnostics.get(POLICY)[1].get('latency_p99_ms', 'nan'))
    assert p99 < 1000.0, p99


# ---------------------------------------------------------------- the policy process

def test_corrupt_checkpoint(rig, reliability, tmp_path):
    corrupt = tmp_path / 'push_cube'
    shutil.copytree(share_dir() / 'models' / 'push_cube', corrupt)
    weights = corrupt / 'model.safetensors'
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    fault = Fault(rig, reliability, 'corrupt_checkpoint')
    rig.kill('policy')
    wait_for(lambda: "node 'policy' exited" in rig.output(), 10, what='bringup to report the policy exit')
    bad = rig.start_node('policy', overrides={**OVERRIDES, 'policy.model': str(corrupt)}, expect_exit=True)
    code = wait_for(lambda: bad.proc.poll() is not None and [bad.proc.returncode], 90,
                    what='the policy to refuse the checkpoint')[0]
    reason = next((line for line in bad.output().splitlines() if 'cannot start' in line), '')
    seen = states_seen(rig, fault.t0)
    rig.start_node('policy', overrides=OVERRIDES)
    cleared = time.monotonic()
    short = reason.replace(str(corrupt), '<copy of models/push_cube>')[:170]
    outcome = f'policy_node exited with code {code}: "{short}"; controller {seen} meanwhile'
    fault.done('policy_node restarted on a copy of models/push_cube with one byte of model.safetensors '
               'flipped; then on the good one', outcome, cleared, recover_timeout=120)
    assert code == 2 and 'SHA-256' in reason and str(corrupt) in reason, reason


def test_policy_killed_and_restarted(rig, reliability):
    fault = Fault(rig, reliability, 'policy_killed')
    rig.kill('policy')
    wait_for(lambda: 'chunk stream stopped' in fault.log(), 20, what='the controller to hold')
    time.sleep(1.0)
    seen = states_seen(rig, fault.t0)
    rig.start_node('policy', overrides=OVERRIDES)
    cleared = time.monotonic()
    outcome = (f'controller {seen} ("holding: chunk stream stopped"); sim and controller kept running; '
               f'the restarted policy picked up from the current observations')
    fault.done('SIGKILL to policy_node mid-episode, a new one started 1 s after the controller held', outcome,
               cleared, recover_timeout=120)
    assert 'holding' in seen
