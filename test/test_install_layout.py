"""Where an install puts things, and where the package looks for them.

* A colcon build (ament_python) runs `setup.py egg_info ... build ... install --prefix P --record ...
  --single-version-externally-managed` (colcon-core's python build task), and setup.cfg's
  `install_scripts` then puts every executable into P/lib/ros2_imitation/, where `ros2 run` and
  `ros2 launch` look; data files go to P/share/ros2_imitation/ and the ament index marker to
  P/share/ament_index/. The same command runs here on a copy of what docker/Dockerfile copies.
* A plain `pip install` builds a wheel and ignores setup.cfg's [install]: executables go to P/bin/
  (README, "Which install serves what").
* paths.share_dir(): a source checkout first, then the ament prefixes (a sourced colcon workspace)
  before this interpreter's own prefix.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_docs import colcon_executables

from ros2_imitation import paths
from ros2_imitation.paths import PACKAGE

ROOT = Path(__file__).resolve().parent.parent
# what docker/Dockerfile copies into the workspace before `colcon build`
PACKAGE_FILES = ['package.xml', 'setup.py', 'setup.cfg', 'README.md', 'resource', PACKAGE, 'launch', 'config',
                 'models']


@pytest.fixture(scope='module')
def package_copy(tmp_path_factory):
    """The package sources as colcon sees them in a workspace's src/ (no build leftovers)."""
    src = tmp_path_factory.mktemp('ws') / 'src' / PACKAGE
    src.mkdir(parents=True)
    for name in PACKAGE_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copy2(source, src / name)
    return src


def run(cmd, cwd, env=None):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f'{" ".join(map(str, cmd))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}'
    return done


@pytest.fixture(scope='module')
def colcon_prefix(package_copy):
    """install/ros2_imitation as `colcon build` makes it (the exact setup.py call of colcon-core)."""
    ws = package_copy.parent.parent
    build, prefix = ws / 'build' / PACKAGE, ws / 'install' / PACKAGE
    build.mkdir(parents=True)
    # colcon puts the prefix's site-packages on PYTHONPATH before `setup.py install`
    site = prefix / 'lib' / f'python{sys.version_info.major}.{sys.version_info.minor}' / 'site-packages'
    site.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get('PYTHONPATH', '')]))
    run([sys.executable, 'setup.py', 'egg_info', '--egg-base', os.path.relpath(build, package_copy),
         'build', '--build-base', str(build / 'build'),
         'install', '--prefix', str(prefix), '--record', str(build / 'install.log'),
         '--single-version-externally-managed'], package_copy, env)
    return prefix


def files_under(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob('*') if p.is_file()}


def test_colcon_build_puts_every_executable_where_ros2_run_looks(colcon_prefix):
    lib = colcon_prefix / 'lib' / PACKAGE
    installed = {p.name for p in lib.iterdir()}
    # every node and the ros2-imitation command: `ros2 run ros2_imitation <exe>`, and what launch_ros'
    # Node(package=..., executable=...) finds
    assert installed == colcon_executables()
    assert {'ros2-imitation', 'sim_node', 'controller_node', 'policy_node', 'camera_node'} <= installed
    for exe in installed:
        assert os.access(lib / exe, os.X_OK), exe
        assert (lib / exe).read_text().startswith(f'#!{sys.executable}'), exe
    assert not (colcon_prefix / 'bin').exists(), 'colcon layout: nothing in bin/'


def test_colcon_build_installs_the_share_folder_and_the_ament_index_marker(colcon_prefix):
    share = colcon_prefix / 'share' / PACKAGE
    assert (share / 'package.xml').read_bytes() == (ROOT / 'package.xml').read_bytes()
    for folder, pattern in (('launch', '*.launch.py'), ('config/graphs', '*.yaml'), ('models/push_cube', '*')):
        expected = sorted(p.name for p in (ROOT / folder).glob(pattern) if p.is_file())
        assert expected, folder
        assert sorted(p.name for p in (share / folder).glob(pattern)) == expected, folder
    assert files_under(share / 'config') == files_under(ROOT / 'config')
    assert (share / 'models' / 'push_cube' / 'model.safetensors').stat().st_size == \
        (ROOT / 'models' / 'push_cube' / 'model.safetensors').stat().st_size
    marker = colcon_prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PACKAGE
    assert marker.is_file()   # `ros2 pkg list`, FindPackageShare and ament_index_python find the package by it


def test_share_dir_of_the_colcon_install_is_its_share_folder(colcon_prefix):
    """The installed package (not this checkout) finds its share folder through AMENT_PREFIX_PATH,
    as it does under `ros2 launch` after `source install/setup.bash`."""
    site = next((colcon_prefix / 'lib').glob('python*/site-packages'))
    env = dict(os.environ, PYTHONPATH=str(site), AMENT_PREFIX_PATH=f'{colcon_prefix}{os.pathsep}/opt/ros/jazzy')
    out = run([sys.executable, '-c', 'import ros2_imitation.paths as p; print(p.__file__); print(p.share_dir())'],
              cwd=colcon_prefix, env=env).stdout.split()
    assert out == [str(site / PACKAGE / 'paths.py'), str(colcon_prefix / 'share' / PACKAGE)]


def test_plain_pip_install_puts_executables_in_bin(package_copy, tmp_path):
    """Why README says pip serves the `ros2-imitation` command and colcon serves `ros2 run`/`ros2 launch`:
    a wheel install ignores setup.cfg's install_scripts."""
    source = tmp_path / 'src'
    shutil.copytree(package_copy, source, ignore=shutil.ignore_patterns('models'))
    prefix = tmp_path / 'prefix'
    # --ignore-installed: without it pip uninstalls the package from the venv running the tests (the editable
    # install and its console scripts) before installing into --prefix
    run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation', '--no-compile',
         '--ignore-installed', '--prefix', str(prefix), str(source)], tmp_path)
    assert {p.name for p in (prefix / 'bin').iterdir()} == colcon_executables()
    assert not (prefix / 'lib' / PACKAGE).exists()
    assert (prefix / 'share' / PACKAGE / 'launch' / 'sim.launch.py').is_file()


# ---------------------------------------------------------------- paths.share_dir

def share_folder(prefix: Path) -> Path:
    folder = prefix / 'share' / PACKAGE
    (folder / 'config' / 'graphs').mkdir(parents=True)
    return folder


@pytest.fixture
def installed_module(tmp_path, monkeypatch):
    """paths.py as if installed in a venv's site-packages (no source checkout around it); sys.prefix is
    that venv; AMENT_PREFIX_PATH unset."""
    venv = tmp_path / 'venv'
    module = venv / 'lib' / 'python3' / 'site-packages' / PACKAGE / 'paths.py'
    module.parent.mkdir(parents=True)
    monkeypatch.setattr(paths, '__file__', str(module))
    monkeypatch.setattr(sys, 'prefix', str(venv))
    monkeypatch.delenv('AMENT_PREFIX_PATH', raising=False)
    return venv


def test_share_dir_prefers_the_ament_prefix_over_a_stale_venv_install(tmp_path, monkeypatch, installed_module):
    stale = share_folder(installed_module)                      # an old `pip install .` in the venv
    workspace = tmp_path / 'ws' / 'install' / PACKAGE
    fresh = share_folder(workspace)                            # the colcon install ros2 launch resolved
    other = tmp_path / 'ws' / 'install' / 'other_pkg'          # a prefix without this package: skipped
    other.mkdir(parents=True)
    monkeypatch.setenv('AMENT_PREFIX_PATH', os.pathsep.join([str(other), str(workspace), '/opt/ros/jazzy']))
    assert paths.share_dir() == fresh
    monkeypatch.setenv('AMENT_PREFIX_PATH', '')
    assert paths.share_dir() == stale
    monkeypatch.delenv('AMENT_PREFIX_PATH')
    assert paths.share_dir() == stale


def test_share_dir_names_where_it_looked(tmp_path, monkeypatch, installed_module):
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path / 'ws' / 'install' / PACKAGE))
    with pytest.raises(FileNotFoundError, match='ws/install/ros2_imitation/share/ros2_imitation'):
        paths.share_dir()


def test_share_dir_of_a_source_checkout_wins(tmp_path, monkeypatch):
    """In a checkout (or an editable install) the repository is the share folder, whatever the prefixes."""
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    share_folder(tmp_path)
    assert paths.share_dir() == ROOT
