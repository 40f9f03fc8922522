"""docker/: what can be checked without docker. The Dockerfiles parse, every file they copy exists, the
commands they run name this package and its launch files, their pins match what the tests run with;
compose.yaml splits robot.launch.py's graph across a GPU service and a robot-PC service on one domain.
"""
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from test_launch_files import declared_arguments, evaluate, load_launch_file, recording_modules, runs

from ros2_imitation.graph.spec import load_graph
from ros2_imitation.paths import PACKAGE, share_dir

ROOT = share_dir()
DOCKER = ROOT / 'docker'
DOCKERFILES = ['Dockerfile', 'Dockerfile.cuda']
INSTRUCTIONS = {'FROM', 'RUN', 'CMD', 'LABEL', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER',
                'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL'}
# what setup.py's install_requires are satisfied by in the images: Ubuntu packages or pip
FROM_APT = {'numpy': 'python3-numpy', 'pyyaml': 'python3-yaml', 'tqdm': 'python3-tqdm',
            'opencv-python-headless': 'python3-opencv', 'matplotlib': 'python3-matplotlib'}


def instructions(name: str) -> list:
    """[(INSTRUCTION, arguments)] of a Dockerfile: comments dropped, continuation lines joined."""
    out, pending = [], ''
    for raw in (DOCKER / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        if line.endswith('\\'):
            pending += line[:-1] + ' '
            continue
        line, pending = pending + line, ''
        keyword, _, rest = line.partition(' ')
        out.append((keyword.upper(), rest.strip()))
    assert not pending, f'{name}: a continuation line ends the file'
    return out


def args_of(name: str) -> dict:
    return dict(rest.split('=', 1) for keyword, rest in instructions(name) if keyword == 'ARG' and '=' in rest)


def exec_form(rest: str) -> list:
    return yaml.safe_load(rest) if rest.startswith('[') else shlex.split(rest)


def apt_packages(name: str) -> set:
    packages = set()
    for keyword, rest in instructions(name):
        if keyword == 'RUN' and 'apt-get install' in rest:
            for part in rest.split('&&'):
                if 'apt-get install' in part:
                    packages |= {t for t in part.split('apt-get install', 1)[1].split() if not t.startswith('-')}
    return packages


def pins(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            assert re.fullmatch(r'[A-Za-z0-9_.-]+==[A-Za-z0-9_.+-]+', line), f'{path.name}: {line!r} is not pinned'
            name, version = line.split('==')
            out[name.lower()] = version
    return out


def package_name() -> str:
    return ET.parse(ROOT / 'package.xml').getroot().findtext('name')


@pytest.mark.parametrize('name', DOCKERFILES)
def test_dockerfile_parses_and_is_pinned(name):
    steps = instructions(name)
    keywords = [k for k, _ in steps]
    assert set(keywords) <= INSTRUCTIONS, set(keywords) - INSTRUCTIONS
    first = next(k for k in keywords if k != 'ARG')
    assert first == 'FROM'
    image = next(rest for k, rest in steps if k == 'FROM')
    repository, _, tag = image.partition(':')
    assert repository == 'ros' and tag.startswith('jazzy-') and tag != 'latest', image
    arguments = args_of(name)
    assert re.fullmatch(r'\d+\.\d+\.\d+', arguments['TORCH_VERSION'])
    torch = importlib.metadata.version('torch').split('+')[0]
    assert arguments['TORCH_VERSION'] == torch, 'the images run the torch the tests run'
    assert arguments['TORCH_INDEX'].startswith('https://download.pytorch.org/whl/')
    assert ('cu' in arguments['TORCH_INDEX'].rsplit('/', 1)[1]) == name.endswith('.cuda')


@pytest.mark.parametrize('name', DOCKERFILES)
def test_every_file_a_dockerfile_copies_exists(name):
    """The build context is the repository root (compose.yaml: context ..)."""
    copies = [exec_form(rest) for k, rest in instructions(name) if k in ('COPY', 'ADD')]
    assert copies
    for parts in copies:
        sources = [p for p in parts[:-1] if not p.startswith('--')]
        for source in sources:
            assert (ROOT / source).exists(), f'{name}: COPY {source}: not in the repository'
    copied = {source for parts in copies for source in parts[:-1]}
    # everything colcon needs for the package, and the files the package installs (setup.py data_files)
    assert {'package.xml', 'setup.py', 'setup.cfg', 'resource', PACKAGE, 'launch', 'config', 'models'} <= copied
    assert (ROOT / 'resource' / PACKAGE).is_file()


@pytest.mark.parametrize('name', DOCKERFILES)
def test_dockerfile_builds_this_package_and_launches_a_real_launch_file(name):
    steps = instructions(name)
    workdir = next(rest for k, rest in steps if k == 'WORKDIR')
    build = next(rest for k, rest in steps if k == 'RUN' and 'colcon build' in rest)
    assert '/opt/ros/jazzy/setup.sh' in build
    tokens = shlex.split(build.split('colcon build', 1)[1])
    assert tokens[tokens.index('--packages-select') + 1] == package_name() == PACKAGE
    # the colcon workspace is where the sources were copied and where the entrypoint sources it
    assert any(k == 'COPY' and f'{workdir}/src/{PACKAGE}' in rest for k, rest in steps)
    entrypoint = exec_form(next(rest for k, rest in steps if k == 'ENTRYPOINT'))
    assert any(k == 'COPY' and exec_form(rest)[-1] == entrypoint[0] for k, rest in steps)
    script = (DOCKER / 'entrypoint.sh').read_text()
    assert f'source {workdir}/install/setup.bash' in script and 'source /opt/ros/jazzy/setup.bash' in script
    command = exec_form(next(rest for k, rest in steps if k == 'CMD'))
    assert command[:3] == ['ros2', 'launch', PACKAGE]
    assert (ROOT / 'launch' / command[3]).is_file()
    declared = declared_arguments(command[3])
    for argument in command[4:]:
        assert argument.split(':=')[0] in declared, f'{name}: CMD passes {argument}, not an argument of {command[3]}'
    # pip constrained to Ubuntu's numpy, requirements from the repository
    pip = [rest for k, rest in steps if k == 'RUN' and 'pip3 install' in rest]
    assert pip and all(part.count('-c /tmp/constraints.txt') for part in pip[0].split('&&') if 'pip3 install' in part)


def test_the_two_dockerfiles_differ_only_in_torch_and_gpu_settings():
    plain, cuda = (instructions(n) for n in DOCKERFILES)
    assert apt_packages('Dockerfile') == apt_packages('Dockerfile.cuda')
    same = ('COPY', 'WORKDIR', 'ENTRYPOINT', 'FROM')
    assert [s for s in plain if s[0] in same] == [s for s in cuda if s[0] in same]
    assert [s for s in plain if s[0] == 'RUN'] == [s for s in cuda if s[0] == 'RUN']


def test_entrypoint_is_an_executable_bash_script():
    path = DOCKER / 'entrypoint.sh'
    assert os.access(path, os.X_OK), 'docker COPY keeps the mode: the entrypoint must be executable'
    text = path.read_text()
    assert text.startswith('#!/usr/bin/env bash') or text.startswith('#!/bin/bash')
    assert text.rstrip().endswith('exec "$@"')
    bash = shutil.which('bash')
    if bash:
        result = subprocess.run([bash, '-n', str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_requirements_are_pinned_to_what_the_tests_run():
    required = pins(DOCKER / 'requirements.txt')
    for name, version in required.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # not in this environment (pyrealsense2 on some machines)
        assert installed == version, f'docker/requirements.txt pins {name}=={version}, the tests run {installed}'
    constraints = pins(DOCKER / 'constraints.txt')
    assert constraints == {'numpy': '1.26.4'}  # Ubuntu 24.04's python3-numpy
    assert not set(constraints) & set(required)


def test_the_images_provide_every_install_requirement():
    import ast
    tree = ast.parse((ROOT / 'setup.py').read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'setup')
    requires = next(k.value for k in call.keywords if k.arg == 'install_requires')
    names = {re.split(r'[<>=!~ \[]', ast.literal_eval(e), maxsplit=1)[0].lower() for e in requires.elts}
    required = pins(DOCKER / 'requirements.txt')
    for name in DOCKERFILES:
        apt = apt_packages(name)
        for requirement in names:
            provided = requirement == 'torch' or requirement in required or FROM_APT.get(requirement) in apt
            assert provided, f'{name}: nothing installs {requirement} (setup.py install_requires)'
        # and package.xml's rosdep keys for Python libraries
        depends = {e.text for e in ET.parse(ROOT / 'package.xml').getroot().findall('exec_depend')}
        assert {d for d in depends if d.startswith('python3-')} <= apt


# ---------------------------------------------------------------- compose

def compose() -> dict:
    return yaml.safe_load((DOCKER / 'compose.yaml').read_text())


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with nothing set: the default."""
    return re.sub(r'\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}', r'\1', value)


def test_compose_splits_policy_and_controller_across_two_hosts():
    services = compose()['services']
    assert set(services) == {'policy', 'controller'}
    domains = set()
    for name, service in services.items():
        assert service['network_mode'] == 'host', name
        environment = service['environment']
        domains.add(interpolate(str(environment['ROS_DOMAIN_ID'])))
        assert environment['ROS_AUTOMATIC_DISCOVERY_RANGE'] != 'LOCALHOST', 'two machines must discover each other'
        context = (DOCKER / service['build']['context']).resolve()
        assert context == ROOT.resolve()
        assert (context / service['build']['dockerfile']).is_file()
    assert len(domains) == 1 and domains.pop().isdigit()
    assert services['policy']['build']['dockerfile'] == 'docker/Dockerfile.cuda'
    assert services['controller']['build']['dockerfile'] == 'docker/Dockerfile'
    gpu = services['policy']['deploy']['resources']['reservations']['devices']
    assert any(d['driver'] == 'nvidia' and 'gpu' in d['capabilities'] for d in gpu)
    assert 'deploy' not in services['controller']


def service_launch(service: dict) -> tuple:
    command = [interpolate(str(part)) for part in service['command']]
    assert command[:3] == ['ros2', 'launch', PACKAGE]
    return command[3], dict(part.split(':=', 1) for part in command[4:])


def test_compose_commands_use_real_launch_arguments_and_mounted_files():
    for name, service in compose()['services'].items():
        launch_file, arguments = service_launch(service)
        assert (ROOT / 'launch' / launch_file).is_file()
        declared = declared_arguments(launch_file)
        assert set(arguments) <= set(declared), f'{name}: {set(arguments) - set(declared)} not declared'
        mounts = {}
        for volume in service.get('volumes', []):
            source, target = interpolate(volume.split('#')[0].strip()).split(':')[:2]
            mounts[target] = source
            if not source.startswith('/'):
                assert (DOCKER / source).exists(), f'{name}: volume source {source} does not exist'
        for value in arguments.values():
            for target, source in mounts.items():
                if value.startswith(target + '/') or value == target:
                    local = DOCKER / source / value[len(target):].lstrip('/')
                    assert local.exists(), f'{name}: {value} (from {source}) does not exist'
        if 'model' in arguments:
            folder = DOCKER / mounts[arguments['model']]
            assert (folder / 'config.json').is_file() and (folder / 'model.safetensors').is_file()
    controller = dict(service_launch(compose()['services']['controller'])[1])
    assert controller['dry_run'] == 'true', 'the robot PC starts in dry run'


def test_compose_runs_every_graph_node_exactly_once():
    graph_nodes = {n.name for n in load_graph('robot').nodes}
    with recording_modules():
        description = load_launch_file('robot.launch.py')
    nodes = {e.kwargs['name']: e for e in description.entities if type(e).__name__ == 'Node'}
    declared = {e.args[0]: e.kwargs['default_value'] for e in description.entities
                if type(e).__name__ == 'DeclareLaunchArgument'}
    started = []
    for name, service in compose()['services'].items():
        _, arguments = service_launch(service)
        config = dict(declared, **arguments)
        started += [node for node, action in nodes.items() if runs(action, config)]
        if name == 'policy':
            assert evaluate(nodes['policy'].kwargs['parameters'][0]['device'], config) == 'cuda'
    assert sorted(started) == sorted(graph_nodes)


def seconds(duration: str) -> float:
    """A compose duration ('20s', '1m30s', '500ms') in seconds."""
    units = {'h': 3600.0, 'm': 60.0, 's': 1.0, 'ms': 1e-3, 'us': 1e-6}
    parts = re.findall(r'(\d+(?:\.\d+)?)(ms|us|h|m|s)', str(duration))
    assert parts and ''.join(a + b for a, b in parts) == str(duration), f'not a compose duration: {duration!r}'
    return sum(float(value) * units[unit] for value, unit in parts)


def test_compose_and_images_stop_ros2_launch_with_sigint_and_time_to_stop():
    """SIGTERM makes `ros2 launch` exit at once and orphan its nodes (ros2/launch#666); on SIGINT it
    stops them in order, escalating itself (SIGINT, 5 s, SIGTERM, 5 s, SIGKILL): docker must send
    SIGINT and wait past launch's escalation before its own SIGKILL (default: 10 s after SIGTERM)."""
    for name, service in compose()['services'].items():
        assert service.get('stop_signal') == 'SIGINT', name
        assert seconds(service.get('stop_grace_period', '10s')) >= 15, name
    for name in DOCKERFILES:
        assert ('STOPSIGNAL', 'SIGINT') in instructions(name), name
    assert 'SIGINT' in (DOCKER / 'entrypoint.sh').read_text()
