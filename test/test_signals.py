"""Every node, and `bringup`, stops in order however many SIGINTs come, also during start-up.

A terminal's Ctrl-C reaches every node of `ros2 launch` and launch forwards another SIGINT, so a
node sees two; Ctrl-C pressed twice or `timeout -s INT` give more. Real node processes over DDS, in
a domain of their own: each gets two SIGINTs 50-100 ms apart and must exit 0 (or 130) without a
traceback; the controller sends its last command (a zero torque in impedance mode) and nothing
after it; a policy_node signalled while it imports or loads its model exits the same way instead of
"cannot start"; `bringup` given two SIGINTs stops its graph and leaves no process behind.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import Process, alive, started_pids, wait_for
from std_msgs.msg import Float64MultiArray

from ros2_imitation.qos import OUTPUT_QOS

ORDERLY = (0, 130)
GAP_S = 0.07          # between the two signals: 50-100 ms, as a terminal's and launch's SIGINT


def start_node(executable: str, env: dict, folder, *params, name=None) -> Process:
    args = [a for p in params for a in ('-p', p)]
    return Process([sys.executable, '-m', f'ros2_imitation.nodes.{executable}', '--ros-args', *args],
                   env, str(folder / f'{name or executable}.log'))


def signal_twice(procs, first=signal.SIGINT, then=(signal.SIGINT,)):
    """The signals to every process' group (a node is its own group here), GAP_S apart."""
    for sig in (first, *then):
        for proc in procs:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(GAP_S)


def assert_orderly(proc: Process, name: str, timeout: float = 20.0):
    code = proc.proc.wait(timeout)
    out = proc.output()
    # a signal that lands while the interpreter itself starts (before any Python runs, so nothing was
    # printed or opened) ends the process the default way; on a loaded machine that window is long
    before_python = code == -signal.SIGINT and not out.strip()
    assert code in ORDERLY or before_python, f'{name} exited with {code}:\n{out[-3000:]}'
    assert 'Traceback' not in out, f'{name}:\n{out[-3000:]}'
    assert 'cannot start' not in out and '] stopped: ' not in out, f'{name}:\n{out[-3000:]}'
    assert 'while closing' not in out, f'{name}:\n{out[-3000:]}'
    proc.stop()


def group_members(pgid: int) -> list:
    """Live processes in process group `pgid` (from /proc)."""
    members = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != 'Z':
                members.append(int(entry))
    return members


# What each node logs once it is up (the last line of its start-up).
READY = {
    'sim_node': '[sim]: task ',
    'controller_node': '[controller]: impedance mode at ',
    'proprioception_node': '[proprioception]: /joint_states -> ',
    'policy_node': '[policy]: policy ',
    'expert_node': '[expert]: push_cube expert',
    'recorder_node': '[recorder]: recording ',
    'camera_node': '[camera]: streaming from ',
    'leader_arm_node': '[leader_arm]: leader ',
}


def test_every_node_stops_in_order_on_two_sigints(ros_env, tmp_path, probe):
    from test_camera import make_video
    video = make_video(tmp_path / 'replay.mp4')
    sim_time = 'use_sim_time:=true'
    params = {
        'sim_node': [sim_time],
        'controller_node': [sim_time, 'mode:=impedance', 'control_rate:=250.0'],
        'proprioception_node': [sim_time],
        'policy_node': [sim_time, 'warmup:=false'],
        'expert_node': [sim_time],
        'recorder_node': [sim_time, f'output_dir:={tmp_path / "bags"}'],
        # its own topic: the sim publishes the camera topic here
        'camera_node': ['backend:=file', f'video_file:={video}', 'image_topic:=/replay/image_raw',
                        'camera_info_topic:=/replay/camera_info'],
        'leader_arm_node': [sim_time],
    }
    efforts = []
    probe.create_subscription(Float64MultiArray, '/effort_controller/commands',
                              lambda m: efforts.append(np.array(m.data)), OUTPUT_QOS)
    procs = {exe: start_node(exe, ros_env, tmp_path, *p) for exe, p in params.items()}
    wait_for(lambda: all(READY[exe] in proc.output() for exe, proc in procs.items()), 90,
             what='every node to start: ' + ', '.join(exe for exe, proc in procs.items()
                                                       if READY[exe] not in proc.output()))
    # the controller commands the sim's arm, then stops: its last command is a zero torque
    wait_for(lambda: len(efforts) > 50, 20, what='torque commands from the controller')
    controller = procs.pop('controller_node')
    signal_twice([controller])
    assert_orderly(controller, 'controller_node')
    assert 'stopped: sent a last effort command (zero torque)' in controller.output()
    time.sleep(0.3)                       # anything still on its way arrives
    assert np.all(efforts[-1] == 0.0), f'last torque sent: {efforts[-1]}'
    # every other node at once, as a Ctrl-C in the terminal of `ros2 launch` does
    signal_twice(procs.values())
    for exe, proc in procs.items():
        assert_orderly(proc, exe)


def test_a_signal_during_start_up_is_an_orderly_exit(ros_env, tmp_path):
    # policy_node: while it imports (torch...) and while it loads its model; sim_node: as it starts,
    # with a SIGTERM between the two SIGINTs (`docker stop`, bringup)
    importing = start_node('policy_node', ros_env, tmp_path, 'warmup:=false', name='policy_importing')
    sim = start_node('sim_node', ros_env, tmp_path)
    time.sleep(0.3)
    signal_twice([importing, sim], then=(signal.SIGTERM, signal.SIGINT))
    loading = start_node('policy_node', ros_env, tmp_path, name='policy_loading')
    wait_for(lambda: 'loading the policy' in loading.output(), 60, what='policy_node to load its model')
    signal_twice([loading])
    for name, proc in (('policy_node (importing)', importing), ('sim_node (starting)', sim),
                       ('policy_node (loading)', loading)):
        assert_orderly(proc, name)
    assert READY['policy_node'] not in loading.output(), 'the load was not abandoned'


@pytest.mark.parametrize('when', ['running', 'starting'])
def test_bringup_stops_its_graph_on_two_sigints(spawn, when):
    bringup = spawn('bringup', 'sim_control')
    if when == 'running':
        wait_for(lambda: READY['sim_node'] in bringup.output() and
                 '[controller]: position mode at' in bringup.output(), 90, what='the graph to start')
    else:
        wait_for(lambda: '[bringup] started sim' in bringup.output(), 30, what='bringup to start a node')
    signal_twice([bringup])
    try:
        code = bringup.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f'timed out after 30 s waiting for bringup to exit:\n{bringup.output()[-3000:]}') from None
    out = bringup.output()
    assert code in ORDERLY, f'bringup exited with {code}:\n{out[-3000:]}'
    assert 'Traceback' not in out, out[-3000:]
    assert 'while stopping' not in out and 'killing it' not in out, out[-3000:]
    nodes = started_pids(out)
    assert nodes, out
    for pid in [bringup.pid, *nodes]:      # bringup's group, and each node's own
        assert not group_members(pid), f'left running in group {pid}: {group_members(pid)}'
        assert not alive(pid)
