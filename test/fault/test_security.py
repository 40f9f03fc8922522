"""Loading nothing unsafe, and listening on nothing but DDS.

* the package never deserialises with code execution: no pickle, no torch.load without
  weights_only=True, no yaml.load, no np.load(allow_pickle=True), no eval/exec (AST scan);
* a checkpoint, a dataset or a config carrying a pickle or a YAML python tag is refused and the
  payload never runs;
* every node process of a running graph (all eight node types) has no TCP socket at all and UDP
  sockets only where Fast DDS puts them;
* bringup keeps graphs on this machine unless the user says otherwise.
"""
import ast
import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import GraphRun, wait_for

from ros2_imitation.graph.bringup import Bringup, isolate
from ros2_imitation.graph.spec import GraphError, load_graph
from ros2_imitation.paths import share_dir
from ros2_imitation.policy import CheckpointError, load_policy
from ros2_imitation.policy.config import PolicyConfig
from ros2_imitation.robot import RobotProfile

from .faultlib import node_processes

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*ROOT.glob('ros2_imitation/**/*.py'), *ROOT.glob('bench/*.py'), *ROOT.glob('launch/*.py')])


# ---------------------------------------------------------------- static: the loaders used

UNSAFE_MODULES = {'pickle', 'cPickle', '_pickle', 'dill', 'cloudpickle', 'joblib', 'marshal', 'shelve'}
SAFE_YAML = {'safe_load', 'safe_load_all', 'safe_dump', 'safe_dump_all', 'dump', 'dump_all', 'YAMLError',
             'SafeLoader', 'SafeDumper'}


def unsafe_calls(source: str, filename: str = '<source>') -> list:
    """'file:line: what' for every way of deserialising with code execution in `source`."""
    found = []
    tree = ast.parse(source, filename)

    def dotted(node) -> str:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            parts.append(node.id)
        return '.'.join(reversed(parts))

    for node in ast.walk(tree):
        where = f'{filename}:{getattr(node, "lineno", "?")}'
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                                                     else [])
            for name in names:
                if name.split('.')[0] in UNSAFE_MODULES:
                    found.append(f'{where}: imports {name}')
            if isinstance(node, ast.ImportFrom) and node.module == 'yaml':
                found += [f'{where}: from yaml import {a.name}' for a in node.names if a.name not in SAFE_YAML]
            if isinstance(node, ast.ImportFrom) and node.module == 'torch':
                found += [f'{where}: from torch import load' for a in node.names if a.name == 'load']
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        if isinstance(node.func, ast.Name) and name in ('eval', 'exec', 'compile', '__import__'):
            found.append(f'{where}: {name}()')
        elif name.endswith(('torch.load', 'jit.load', 'hub.load')):
            weights_only = keywords.get('weights_only')
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                found.append(f'{where}: {name}() without weights_only=True')
        elif name.startswith('yaml.') and name.split('.')[-1] not in SAFE_YAML:
            found.append(f'{where}: {name}()')
        elif name.split('.')[-1] == 'load' and name.split('.')[0] in ('np', 'numpy'):
            allow = keywords.get('allow_pickle')
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                found.append(f'{where}: {name}(allow_pickle=...)')
        elif name.endswith(('numcodecs.Pickle', 'Unpickler')):
            found.append(f'{where}: {name}()')
    return found


def test_the_scanner_finds_unsafe_loaders():
    bad = '\n'.join(['import pickle', 'from yaml import load', 'import torch', 'torch.load(f)',
                     'torch.load(f, weights_only=False)', 'yaml.load(s)', 'yaml.unsafe_load(s)',
                     'np.load(f, allow_pickle=True)', 'eval(text)', 'import dill'])
    assert len(unsafe_calls(bad)) == 9, unsafe_calls(bad)     # all but 'import torch'
    ok = '\n'.join(['import yaml', 'yaml.safe_load(s)', 'torch.load(f, weights_only=True)', 'np.load(f)',
                    'model.eval()', 'from yaml import safe_load'])
    assert unsafe_calls(ok) == []


def test_no_unsafe_loaders_in_the_package():
    assert len(SOURCES) > 40
    found = [hit for path in SOURCES for hit in unsafe_calls(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, found


# ---------------------------------------------------------------- payloads are refused

class Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_with_a_pickled_payload_is_refused(tmp_path):
    import torch
    marker = tmp_path / 'EXECUTED'
    # sanity: this payload does run when unpickled
    pickle.loads(pickle.dumps(Payload(tmp_path / 'sanity')))
    assert (tmp_path / 'sanity').exists()

    checkpoint = tmp_path / 'policy'
    shutil.copytree(share_dir() / 'models' / 'push_cube', checkpoint)
    config = json.loads((checkpoint / 'config.json').read_text())
    config['files'] = {}          # no manifest: the safetensors parser itself must refuse it
    (checkpoint / 'config.json').write_text(json.dumps(config))
    torch.save({'state_dict': {}, 'payload': Payload(marker)}, checkpoint / 'model.safetensors')
    with pytest.raises(CheckpointError, match='not a readable safetensors file'):
        load_policy(checkpoint)
    # a pickle beside the weights (pytorch_model.bin, a .pt) is never opened
    shutil.copy(share_dir() / 'models' / 'push_cube' / 'model.safetensors', checkpoint / 'model.safetensors')
    torch.save({'payload': Payload(marker)}, checkpoint / 'pytorch_model.bin')
    torch.save({'payload': Payload(marker)}, checkpoint / 'model.pt')
    assert load_policy(checkpoint).config.horizon == 16
    assert not marker.exists()


def test_a_dataset_with_a_pickle_codec_is_refused(tmp_path):
    from ros2_imitation.data.dataset_report import load as load_report
    from ros2_imitation.policy.dataset import ReplayBuffer
    marker = tmp_path / 'EXECUTED'
    root = tmp_path / 'evil.zarr'
    for group in ('', 'data', 'meta'):
        (root / group).mkdir(parents=True, exist_ok=True)
        (root / group / '.zgroup').write_text('{"zarr_format": 2}')
    for key, dtype in (('data/state', '|O'), ('data/action', '<f4'), ('meta/episode_ends', '<i8')):
        (root / key).mkdir()
        (root / key / '.zarray').write_text(json.dumps({
            'chunks': [2], 'compressor': None, 'dtype': dtype, 'fill_value': None if dtype == '|O' else 0,
            'filters': [{'id': 'pickle', 'protocol': 5}], 'order': 'C', 'shape': [2], 'zarr_format': 2}))
        (root / key / '0').write_bytes(pickle.dumps(np.array([Payload(marker), 1], dtype=object)))
    with pytest.raises(Exception):
        ReplayBuffer.open(root, ['state', 'action'])
    with pytest.raises(Exception):
        load_report(root)
    assert not marker.exists()


@pytest.mark.parametrize('kind', ['graph', 'robot', 'policy'])
def test_configs_with_a_yaml_python_tag_are_refused(tmp_path, kind):
    marker = tmp_path / 'EXECUTED'
    path = tmp_path / f'{kind}.yaml'
    path.write_text(f'nodes: !!python/object/apply:os.system ["touch {marker}"]\n')
    load = {'graph': lambda: load_graph(str(path)), 'robot': lambda: RobotProfile.load(str(path)),
            'policy': lambda: PolicyConfig.load(path)}[kind]
    with pytest.raises((GraphError, ValueError, yaml.YAMLError)):
        load()
    assert not marker.exists()


# ---------------------------------------------------------------- isolation defaults

def test_bringup_keeps_graphs_on_this_machine_unless_told_otherwise(monkeypatch):
    graph = load_graph('sim')
    clean = {k: v for k, v in os.environ.items() if k not in ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY')}
    assert Bringup(graph, env=clean).env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert Bringup(graph, env={**clean, 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'}).env[
        'ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'SUBNET'
    assert 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in Bringup(graph, env={**clean, 'ROS_LOCALHOST_ONLY': '0'}).env
    # with the process environment, in place: an EpisodeRunner created next discovers the same way
    monkeypatch.delenv('ROS_AUTOMATIC_DISCOVERY_RANGE', raising=False)
    monkeypatch.delenv('ROS_LOCALHOST_ONLY', raising=False)
    Bringup(graph)
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert isolate({'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SYSTEM_DEFAULT'})['ROS_AUTOMATIC_DISCOVERY_RANGE'] == \
        'SYSTEM_DEFAULT'


# ---------------------------------------------------------------- sockets

def sockets(pid: int) -> list:
    """(protocol, local address, port, tcp state) of every TCP/UDP socket process `pid` holds."""
    inodes = set()
    for fd in os.listdir(f'/proc/{pid}/fd'):
        try:
            target = os.readlink(f'/proc/{pid}/fd/{fd}')
        except OSError:
            continue
        if target.startswith('socket:['):
            inodes.add(target[8:-1])
    found = []
    for proto in ('tcp', 'tcp6', 'udp', 'udp6', 'raw', 'raw6'):
        with open(f'/proc/{pid}/net/{proto}') as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[9] in inodes:
                    address, port = fields[1].rsplit(':', 1)
                    found.append((proto, address, int(port, 16), fields[3]))
    return found


def dds_port(port: int, domain: int) -> bool:
    """Where Fast DDS binds: the RTPS well-known ports of the domain (7400 + 250 d + ...), one
    port per participant from 7000 up (Fast DDS 3 binds it whatever the domain; it is in a bare
    rclpy node too), and ephemeral ports the OS picks for its sending sockets."""
    low, high = (int(v) for v in Path('/proc/sys/net/ipv4/ip_local_port_range').read_text().split())
    return 7400 + 250 * domain <= port < 7400 + 250 * (domain + 1) or 7000 <= port < 7120 or low <= port <= high


def test_no_network_listener_besides_dds(tmp_path):
    import cv2
    video = tmp_path / 'replay.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 10, (32, 24))
    for i in range(20):
        writer.write(np.full((24, 32, 3), 10 * i, np.uint8))
    writer.release()
    # every node type at once: the demo graph, the expert and the recorder (idle), a camera replaying
    # a file to topics of its own, and a leader arm waiting for a leader
    graph = tmp_path / 'everything.yaml'
    graph.write_text(yaml.safe_dump({'include': ['demo'], 'nodes': {
        'expert': {'executable': 'expert_node', 'required': False, 'parameters': {
            'use_sim_time': False, 'clock': 'joint_states', 'start_active': False, 'auto_reset': False,
            'chunk_topic': '/expert/chunk'}},
        'recorder': {'executable': 'recorder_node', 'required': False, 'parameters': {
            'output_dir': str(tmp_path / 'bags'), 'topics': ['/joint_states']}},
        'camera': {'executable': 'camera_node', 'required': False, 'parameters': {
            'backend': 'file', 'video_file': str(video), 'image_topic': '/replay/image',
            'camera_info_topic': '/replay/camera_info'}},
        'leader_arm': {'executable': 'leader_arm_node', 'required': False, 'parameters': {
            'chunk_topic': '/leader/chunk', 'label_topic': '/leader/label'}},
    }}))
    with GraphRun(tmp_path / 'bringup.log', str(graph)) as run:
        domain = int(run.env['ROS_DOMAIN_ID'])
        nodes = wait_for(lambda: len(node_processes(run.proc.pid)) == 8 and node_processes(run.proc.pid), 60,
                         what='8 node processes')
        wait_for(lambda: 'policy' in run.output() and ' on cpu' in run.output(), 120, what='the policy to start')
        found = {name: sockets(pid) for name, pid in nodes.items()}
        alive = {name: os.path.exists(f'/proc/{pid}') for name, pid in nodes.items()}
    print({name: sorted({(p, port) for p, _, port, _ in s}) for name, s in found.items()})
    assert all(alive.values()), (alive, run.output()[-3000:])
    problems = {name: [s for s in socks if s[0].startswith(('tcp', 'raw')) or not dds_port(s[2], domain)]
                for name, socks in found.items()}
    assert not any(problems.values()), problems
    # and each node does have its DDS sockets (the scan sees them)
    assert all(any(7400 + 250 * domain <= s[2] < 7650 + 250 * domain for s in socks) for socks in found.values())


def test_the_dds_rule_matches_a_bare_rclpy_node(tmp_path):
    """The ports dds_port() allows are the ones a node that does nothing but exist opens."""
    import subprocess

    from conftest import next_domain_id
    domain = next_domain_id()
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    proc = subprocess.Popen([sys.executable, '-c', 'import rclpy, time; rclpy.init(); n = rclpy.create_node("bare"); '
                             'print("up", flush=True); time.sleep(30)'], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'up'
        found = sockets(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert found and all(s[0] == 'udp' and dds_port(s[2], domain) for s in found), found
