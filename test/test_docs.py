"""Every command the docs show names things that exist.

The shell code blocks (```bash, ```sh, ```shell, ```console) of README.md and docs/*.md, and inline
`code` that starts like one of the package's own commands, are split into commands; each is checked:

* `ros2-imitation SUB ...`: SUB is a subcommand, every --flag is one of SUB's options, a
  `bringup GRAPH` / `--graph GRAPH` names a graph in config/graphs, `--config X` a policy config;
* `ros2 run ros2_imitation EXE`: EXE is one of the package's executables (a node,
  ros2_imitation/nodes/EXE.py, or a console script of setup.py); `ros2 run ros2_imitation ros2-imitation
  SUB ...` is checked as `ros2-imitation SUB ...`;
* `ros2 launch ros2_imitation FILE name:=value`: FILE is in launch/ and declares `name`;
* `python path.py`, and any argument that is a path into the repository (config/, launch/, docs/, ...):
  the file exists; `python -m ros2_imitation.x`: the module exists;
* `make TARGET`: the Makefile has a rule for TARGET;
* `colcon build --packages-select NAME`: NAME is this package.

On a ROS 2 machine (the sections of COLCON_CONTEXTS, the launch files' docstrings, the commands the
Docker images run) the package is a colcon install: its executables are in
install/ros2_imitation/lib/ros2_imitation/, not on PATH, so a command there must reach them through
`ros2 run ros2_imitation EXE` or `ros2 launch`; a bare `ros2-imitation ...` or `sim_node` is an error.

A failure names the document, the line and what is missing. Commands of other packages
(`ros2 launch franka_bringup ...`) and placeholders (`<fci-ip>`, `GRAPH`, `...`) are not checked.
"""
import argparse
import ast
import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_launch_files import declared_arguments

from ros2_imitation.cli import build_parser
from ros2_imitation.paths import PACKAGE, share_dir

ROOT = share_dir()
DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
SHELL_LANGUAGES = {'bash', 'sh', 'shell', 'console', 'shell-session'}
# arguments that start like these are paths into the repository and must exist
REPO_FOLDERS = ('config/', 'launch/', 'docs/', 'docker/', 'bench/', 'test/', 'ros2_imitation/', 'models/',
                'resource/', '.ci/')
# options whose value is something the command writes: it need not exist yet
OUTPUT_OPTIONS = {'--out', '-o', '--json', '--video', '--output', '-f'}
SEPARATORS = {'&&', '||', ';', '|', '&', '(', ')', '$(', '`'}
INLINE_STARTS = ('ros2-imitation ', 'ros2 launch ros2_imitation ', 'ros2 run ros2_imitation ', 'make ',
                 'python bench/', 'docker compose ')
# Where the docs speak of a ROS 2 machine with the colcon install (README, "On a ROS 2 machine"):
# {document: the headings whose sections (subsections included) run there; () = the whole document}.
COLCON_CONTEXTS = {
    'README.md': ('On a ROS 2 machine (Jazzy)',),
    'docs/physical_arm.md': (),
    'docs/gazebo.md': (),
    'docs/recording.md': ('With `ros2 launch` and `ros2 bag record`', 'Physical arms'),
}
# what precedes the command word without being the command
WRAPPERS = ('sudo', 'exec', 'env', 'time', 'nice')


@dataclass
class Command:
    doc: Path
    line: int
    text: str
    colcon: bool = False     # runs on a ROS 2 machine with the colcon install

    def where(self) -> str:
        return f'{self.doc.relative_to(ROOT)}:{self.line}'


# ---------------------------------------------------------------- reading the docs

def code_blocks(text: str):
    """(language, first line number, lines) of each fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r'^(\s*)(```+|~~~+)\s*([\w+-]*)', lines[i])
        if not match:
            i += 1
            continue
        fence, language = match.group(2), match.group(3).lower()
        start = i + 1
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        yield language, start + 1, lines[start:i]
        i += 1


def commands_in_block(language: str, first_line: int, lines: list):
    """(line number, command text): continuation lines joined; console blocks: only `$ ` lines."""
    pending, pending_line = '', None
    for offset, raw in enumerate(lines):
        line = raw.rstrip()
        number = first_line + offset
        if language in ('console', 'shell-session') and not pending:
            stripped = line.lstrip()
            if not stripped.startswith(('$ ', '# ')):
                continue  # output
            line = stripped[2:]
        if not line.strip():
            continue
        if pending_line is None:
            pending_line = number
        if line.endswith('\\'):
            pending += line[:-1] + ' '
            continue
        if not balanced(pending + line):  # a quoted string goes on on the next line
            pending += line + '\n'
            continue
        yield pending_line, pending + line
        pending, pending_line = '', None
    if pending:
        yield pending_line, pending


def balanced(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
        return True
    except ValueError:
        return False


def inline_commands(text: str):
    """(line number, command) for inline `code` outside fenced blocks that starts like our commands."""
    in_block = False
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(r'^\s*(```|~~~)', line):
            in_block = not in_block
            continue
        if in_block:
            continue
        for span in re.findall(r'`([^`]+)`', line):
            span = span.strip()
            if span.startswith(INLINE_STARTS):
                yield number, span


def section_titles(text: str) -> list:
    """For each line (index = line number - 1): the titles of the headings it is under, outermost first."""
    chain, out, in_block = [], [], False
    for line in text.splitlines():
        if re.match(r'^\s*(```|~~~)', line):
            in_block = not in_block
        match = None if in_block else re.match(r'^(#{1,6})\s+(.*?)\s*#*\s*$', line)
        if match:
            level = len(match.group(1))
            chain = [(lvl, title) for lvl, title in chain if lvl < level] + [(level, match.group(2))]
        out.append([title for _, title in chain])
    return out


def colcon_sections(doc: Path):
    """COLCON_CONTEXTS' headings of a document (() = all of it), or None: no ROS-machine section."""
    try:
        return COLCON_CONTEXTS.get(str(doc.relative_to(ROOT)))
    except ValueError:
        return None


def doc_commands(doc: Path, colcon=False) -> list:
    """The commands of a document; `colcon`: the headings under which they run on a colcon install
    (() = everywhere, None = nowhere; default: COLCON_CONTEXTS)."""
    text = doc.read_text()
    if colcon is False:
        colcon = colcon_sections(doc)
    titles = section_titles(text)

    def command(number, text):
        on_ros = colcon is not None and (not colcon or any(t in colcon for t in titles[number - 1]))
        return Command(doc, number, text, on_ros)
    found = []
    for language, first, lines in code_blocks(text):
        if language in SHELL_LANGUAGES:
            found += [command(n, c) for n, c in commands_in_block(language, first, lines)]
    found += [command(n, c) for n, c in inline_commands(text)]
    return found


def split_commands(text: str) -> list:
    """Simple commands of a shell line: token lists, split at && || ; | & and $( ... )."""
    text = text.replace('$(which ros2-imitation)', 'ros2-imitation')
    lexer = shlex.shlex(text, posix=True, punctuation_chars=';&|()`')
    lexer.whitespace_split = True
    lexer.commenters = '#'
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote in prose-like text: fall back to plain splitting
        tokens = text.split()
    out, current = [], []
    for token in tokens:
        if token in SEPARATORS or set(token) <= set(';&|()`'):
            if current:
                out.append(current)
            current = []
        else:
            current.append(token)
    if current:
        out.append(current)
    return out


# ---------------------------------------------------------------- what exists

def subcommand_options() -> dict:
    """{subcommand: {option strings}} from ros2_imitation.cli's parser."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o for action in p._actions for o in action.option_strings} for name, p in sub.choices.items()}


def make_targets() -> set:
    targets = set()
    for line in (ROOT / 'Makefile').read_text().splitlines():
        match = re.match(r'^([A-Za-z0-9_./-]+(?:\s+[A-Za-z0-9_./-]+)*)\s*:(?!=)', line)
        if match and not line.startswith(('\t', '.PHONY')):
            targets.update(match.group(1).split())
    return targets


def node_executables() -> set:
    return {p.stem for p in (ROOT / PACKAGE / 'nodes').glob('*_node.py')}


def colcon_executables() -> set:
    """What a colcon build installs into lib/ros2_imitation/ (test_install_layout checks it does): one
    executable per node module (setup.py's NODES) and setup.py's other console scripts."""
    scripts = re.findall(r"'([\w.-]+) = ros2_imitation[\w.]*:\w+'", (ROOT / 'setup.py').read_text())
    assert 'ros2-imitation' in scripts
    return node_executables() | set(scripts)


def config_names(kind: str) -> set:
    return {p.stem for p in (ROOT / 'config' / kind).glob('*.yaml')}


_launch_arguments = {}


def launch_arguments(name: str) -> set:
    if name not in _launch_arguments:
        _launch_arguments[name] = set(declared_arguments(name))
    return _launch_arguments[name]


def is_placeholder(token: str) -> bool:
    return (token in ('...', '…') or any(c in token for c in '<>[]{}*$') or token.isupper()
            or token.startswith('~') or 'path/to' in token)


def repo_path(token: str) -> Path | None:
    """The repository file an argument names, if it names one (config/graphs/sim.yaml, bench/x.py)."""
    value = token.split('=', 1)[1] if token.startswith('-') and '=' in token else token
    value = value.split(':=', 1)[1] if ':=' in value else value
    if value.startswith('./'):
        value = value[2:]
    if not value.startswith(REPO_FOLDERS) or is_placeholder(value):
        return None
    return ROOT / value.rstrip('/')


# ---------------------------------------------------------------- the checks

def check_ros2_imitation(args: list, options: dict) -> list:
    if not args or is_placeholder(args[0]):
        return []
    sub = args[0]
    if sub in ('-h', '--help'):
        return []
    if sub not in options:
        return [f'`ros2-imitation {sub}`: no such subcommand (subcommands: {", ".join(sorted(options))})']
    problems = []
    rest = args[1:]
    for i, token in enumerate(rest):
        if token == '--':
            break
        if token.startswith('--') and len(token) > 2:
            flag = token.split('=', 1)[0]
            if flag not in options[sub]:
                problems.append(f'`ros2-imitation {sub} {flag}`: no such option')
            value = token.split('=', 1)[1] if '=' in token else (rest[i + 1] if i + 1 < len(rest) else None)
            if value is None or is_placeholder(value):
                continue
            if flag == '--graph' and value not in config_names('graphs') and not Path(value).suffix:
                problems.append(f'`--graph {value}`: no config/graphs/{value}.yaml')
            if flag == '--config' and sub == 'train' and value not in config_names('policies') \
                    and not (ROOT / value).is_file():
                problems.append(f'`--config {value}`: no config/policies/{value}.yaml')
    if sub == 'bringup':
        positional = [t for i, t in enumerate(rest) if not t.startswith('-')
                      and not (i > 0 and rest[i - 1] in ('--arg', '--set', '--duration'))]
        if positional and not is_placeholder(positional[0]) and not Path(positional[0]).suffix \
                and positional[0] not in config_names('graphs'):
            problems.append(f'`bringup {positional[0]}`: no config/graphs/{positional[0]}.yaml')
    return problems


def check_ros2(args: list, options: dict) -> list:
    if len(args) < 3 or args[1] != PACKAGE:
        return []  # another package's command, or `ros2 topic ...`
    verb, target = args[0], args[2]
    if is_placeholder(target):
        return []
    if verb == 'run':
        if target not in colcon_executables():
            return [f'`ros2 run {PACKAGE} {target}`: no executable {target} (executables: '
                    f'{", ".join(sorted(colcon_executables()))})']
        if target == 'ros2-imitation':
            return check_ros2_imitation(args[3:], options)
    elif verb == 'launch':
        if not (ROOT / 'launch' / target).is_file():
            return [f'`ros2 launch {PACKAGE} {target}`: no launch/{target}']
        problems = []
        for token in args[3:]:
            if ':=' in token and not token.startswith('-'):
                name = token.split(':=', 1)[0]
                if name not in launch_arguments(target):
                    problems.append(f'`{target} {name}:=`: {target} declares no argument {name} '
                                    f'(it has: {", ".join(sorted(launch_arguments(target)))})')
        return problems
    return []


def without_wrappers(tokens: list) -> list:
    """The command from its command word on: environment assignments and wrappers skipped."""
    while tokens and (re.match(r'^[A-Za-z_][A-Za-z0-9_]*=', tokens[0]) or tokens[0] in WRAPPERS):
        tokens = tokens[1:]
    return tokens


def check_colcon_reachable(tokens: list) -> list:
    """On a colcon install the package's executables are only in <prefix>/lib/ros2_imitation/."""
    tokens = without_wrappers(tokens)
    if not tokens:
        return []
    word = tokens[0]
    name = word.rsplit('/', 1)[-1]
    if name not in colcon_executables() or f'/lib/{PACKAGE}/{name}' in word:
        return []
    rest = ' '.join(tokens[1:3])
    return [f'`{word}` is not on PATH after `colcon build` (it installs into lib/{PACKAGE}/): '
            f'write `ros2 run {PACKAGE} {name}{" " + rest if rest else ""} ...`']


def check_simple_command(tokens: list, options: dict, colcon: bool = False) -> list:
    tokens = without_wrappers(tokens)
    problems = check_colcon_reachable(tokens) if colcon else []
    for i, token in enumerate(tokens):
        if token == 'ros2-imitation' or token.endswith('/ros2-imitation'):
            problems += check_ros2_imitation(tokens[i + 1:], options)
            break
        if token == 'ros2' and i + 1 < len(tokens):
            problems += check_ros2(tokens[i + 1:], options)
            break
    if tokens and tokens[0] == 'make':
        for target in tokens[1:]:
            if not target.startswith('-') and '=' not in target and target not in make_targets():
                problems.append(f'`make {target}`: the Makefile has no rule {target} '
                                f'(rules: {", ".join(sorted(make_targets()))})')
    if tokens and re.match(r'^(python3?|\.venv/bin/python3?|\$PY)$', tokens[0]) and len(tokens) > 1:
        if tokens[1] == '-m' and len(tokens) > 2 and tokens[2].startswith(PACKAGE):
            if importlib.util.find_spec(tokens[2]) is None:
                problems.append(f'`python -m {tokens[2]}`: no such module')
        elif tokens[1].endswith('.py') and not is_placeholder(tokens[1]) and not (ROOT / tokens[1]).is_file():
            problems.append(f'`python {tokens[1]}`: no file {tokens[1]}')
    if tokens[:2] == ['colcon', 'build'] and '--packages-select' in tokens:
        name = tokens[tokens.index('--packages-select') + 1]
        if name != PACKAGE:
            problems.append(f'`colcon build --packages-select {name}`: the package is {PACKAGE}')
    python_script = 1 if tokens and re.match(r'^(python3?|\.venv/bin/python3?|\$PY)$', tokens[0]) else None
    for i, token in enumerate(tokens):
        if i == python_script or (i > 0 and tokens[i - 1] in OUTPUT_OPTIONS and tokens[0] != 'docker'):
            continue  # checked above / written by the command
        path = repo_path(token)
        if path is not None and not path.exists():
            problems.append(f'{token}: no such file in the repository')
    return problems


def check_command(command: Command, options: dict) -> list:
    problems = []
    for tokens in split_commands(command.text):
        problems += check_simple_command(tokens, options, command.colcon)
    return [f'{command.where()}: {p}\n    in: {command.text.strip()}' for p in problems]


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_commands_name_things_that_exist(doc):
    options = subcommand_options()
    problems = [p for command in doc_commands(doc) for p in check_command(command, options)]
    assert not problems, f'{len(problems)} broken command(s) in {doc.relative_to(ROOT)}:\n' + '\n'.join(problems)


def test_the_docs_have_commands():
    """The checker reads the blocks at all: the README's set-up block is found."""
    commands = [c.text for c in doc_commands(ROOT / 'README.md')]
    assert 'make install   # fresh Debian/Ubuntu machine -> .venv with everything (apt libs, CPU torch, ROS 2 wheels)' \
        in commands
    assert any(c.startswith('ros2-imitation bringup') for c in commands)


def test_the_checker_catches_broken_commands(tmp_path):
    doc = ROOT / 'docs' / 'example.md'  # a name for messages; the text below is never written
    text = '\n'.join([
        '# example', '',
        '```bash',
        'ros2-imitation trian --dataset x.zarr',                                    # 4: subcommand
        'ros2-imitation train --dataset x.zarr --epochz 3 \\',                      # 5: flag
        '    --config no_such_config',
        'ros2 run ros2_imitation camera_nod',                                        # 7: executable
        'ros2 launch ros2_imitation robot.launch.py dry_rn:=true',                  # 8: launch argument
        'ros2 launch ros2_imitation nothing.launch.py',                              # 9: launch file
        'cd ws && make tests',                                                       # 10: make target
        'python bench/no_such_bench.py --quick',                                     # 11: script
        'ros2-imitation bringup no_such_graph --arg task=reach',                     # 12: graph
        'ros2-imitation demo --graph no_such_graph',                                 # 13: graph
        'ros2-imitation eval --model models/no_such_model',                          # 14: path
        'ros2 launch franka_bringup franka.launch.py robot_ip:=<fci-ip>   # not ours: not checked',
        'ros2-imitation train --dataset data.zarr --out runs/x   # fine',
        '```', '',
        'Inline: `ros2-imitation record-demos --nosie 0.1` and `make tset`.',       # 19
        '',
        '```console',
        '$ ros2-imitation graphs',
        'sim   the MuJoCo Panda simulation alone   (output, not a command)',
        '$ ros2-imitation grahps',                                                   # 24
        '```',
    ])
    path = tmp_path / 'example.md'
    path.write_text(text)
    commands = doc_commands(path)
    for command in commands:
        command.doc = doc
    options = subcommand_options()
    problems = [p for c in commands for p in check_command(c, options)]
    joined = '\n'.join(problems)
    for line, missing in [(4, 'trian'), (5, '--epochz'), (5, 'no_such_config'), (7, 'camera_nod'),
                          (8, 'dry_rn'), (9, 'nothing.launch.py'), (10, 'make tests'),
                          (11, 'bench/no_such_bench.py'), (12, 'no_such_graph'), (13, 'no_such_graph'),
                          (14, 'models/no_such_model'), (19, '--nosie'), (19, 'make tset'), (24, 'grahps')]:
        assert any(p.startswith(f'docs/example.md:{line}:') and missing in p for p in problems), \
            f'line {line} ({missing}) not reported:\n{joined}'
    assert len(problems) == 14, joined


def test_the_checker_catches_commands_a_colcon_install_cannot_reach(tmp_path):
    text = '\n'.join([
        '# example', '',
        '## On a workstation', '',
        '```bash',
        'ros2-imitation record-demos --task push_cube --out demos   # fine: a venv',            # 6
        '```', '',
        '## On the robot PC', '',
        '```bash',
        'ros2-imitation record-demos --attach --out demos',                                       # 12
        'ROS_DOMAIN_ID=3 sim_node --ros-args -p task:=reach',                                     # 13
        '.venv/bin/ros2-imitation graphs',                                                        # 14
        'ros2 run ros2_imitation ros2-imitation record-demos --attach --out demos   # fine',
        'ros2 run ros2_imitation ros2-imitation record-demos --atach --out demos',                # 16
        'ros2 run ros2_imitation sim_node --ros-args -p task:=reach   # fine',
        '$(ros2 pkg prefix ros2_imitation)/lib/ros2_imitation/ros2-imitation graphs   # fine',
        'ros2 launch ros2_imitation sim.launch.py   # fine',
        '```', '',
        '### A subsection of it', '',
        'Inline: `ros2-imitation bringup sim` and `ros2 run ros2_imitation ros2-imitation graphs`.',   # 24
    ])
    path = tmp_path / 'example.md'
    path.write_text(text)
    commands = doc_commands(path, colcon=('On the robot PC',))
    for command in commands:
        command.doc = ROOT / 'docs' / 'example.md'   # a name for messages; the text is never written there
    assert [c.colcon for c in commands] == [False] + [True] * 10
    options = subcommand_options()
    problems = [p for c in commands for p in check_command(c, options)]
    joined = '\n'.join(problems)
    for line, missing in [(12, '`ros2-imitation` is not on PATH'), (13, '`sim_node` is not on PATH'),
                          (14, '`.venv/bin/ros2-imitation` is not on PATH'), (16, '--atach'),
                          (24, '`ros2-imitation` is not on PATH')]:
        assert any(p.startswith(f'docs/example.md:{line}:') and missing in p for p in problems), \
            f'line {line} ({missing}) not reported:\n{joined}'
    assert len(problems) == 5, joined
    assert 'write `ros2 run ros2_imitation ros2-imitation record-demos --attach ...`' in problems[0]
    # the same text outside any ROS-machine context: only the typo
    others = doc_commands(path, colcon=None)
    for command in others:
        command.doc = ROOT / 'docs' / 'example.md'
    assert len([p for c in others for p in check_command(c, options)]) == 1


def test_colcon_contexts_name_sections_that_exist():
    for name, headings in COLCON_CONTEXTS.items():
        titles = {t for chain in section_titles((ROOT / name).read_text()) for t in chain}
        assert set(headings) <= titles, f'{name}: no heading {set(headings) - titles}'
        assert any(c.colcon for c in doc_commands(ROOT / name)), name


def launch_docstring_commands() -> list:
    """The commands a launch file's docstring shows (indented lines that start like a command)."""
    starts = ('ros2 ', 'ros2-imitation ', *(f'{e} ' for e in colcon_executables()))
    found = []
    for path in sorted((ROOT / 'launch').glob('*.launch.py')):
        tree = ast.parse(path.read_text())
        doc = ast.get_docstring(tree, clean=False) or ''
        first = tree.body[0].lineno
        for offset, line in enumerate(doc.splitlines()):
            if line.startswith('    ') and line.strip().startswith(starts):
                found.append(Command(path, first + offset, line.strip(), colcon=True))
    return found


def test_launch_file_docstrings_show_commands_a_colcon_install_runs():
    commands = launch_docstring_commands()
    assert {c.doc.name for c in commands} == {p.name for p in (ROOT / 'launch').glob('*.launch.py')}
    options = subcommand_options()
    problems = [p for command in commands for p in check_command(command, options)]
    assert not problems, '\n'.join(problems)


def docker_commands() -> list:
    """(where, tokens) of every command the images run: the Dockerfiles' CMD and the `docker run`
    examples in their comments, compose.yaml's service commands."""
    import yaml
    found = []
    for name in ('Dockerfile', 'Dockerfile.cuda'):
        pending, start = '', None
        for number, line in enumerate((ROOT / 'docker' / name).read_text().splitlines(), start=1):
            where = f'docker/{name}:{start or number}'
            if line.startswith('CMD '):
                found.append((where, yaml.safe_load(line[4:])))
            if not line.startswith('#'):
                continue
            text = pending + line.lstrip('#').strip()
            if text.endswith('\\'):
                pending, start = text[:-1] + ' ', start or number
                continue
            pending, start = '', None
            if text.startswith('docker run '):
                tokens = shlex.split(text, comments=True)
                image = next(i for i, t in enumerate(tokens) if t.startswith(f'{PACKAGE}:'))
                if tokens[image + 1:]:
                    found.append((where, tokens[image + 1:]))
    compose = yaml.safe_load((ROOT / 'docker' / 'compose.yaml').read_text())
    for service, body in compose['services'].items():
        if 'command' in body:
            command = body['command']
            found.append((f'docker/compose.yaml: {service}', command if isinstance(command, list)
                          else shlex.split(command)))
    return found


def test_docker_images_run_commands_the_colcon_install_has():
    """The images are colcon builds (docker/Dockerfile): what they run must be reachable there."""
    commands = docker_commands()
    assert len(commands) >= 4 and all(tokens for _, tokens in commands)
    options = subcommand_options()
    problems = [f'{where}: {p}' for where, tokens in commands
                for p in check_simple_command(list(tokens), options, colcon=True)]
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_yaml_blocks_parse_and_robot_profiles_load(doc, tmp_path):
    """```yaml blocks are valid YAML; the robot profiles among them load as RobotProfile does."""
    import yaml

    from ros2_imitation.robot import RobotProfile
    for language, first, lines in code_blocks(doc.read_text()):
        if language not in ('yaml', 'yml'):
            continue
        where = f'{doc.relative_to(ROOT)}:{first}'
        try:
            data = yaml.safe_load('\n'.join(lines))
        except yaml.YAMLError as exc:
            pytest.fail(f'{where}: not valid YAML: {exc}')
        if isinstance(data, dict) and 'arm_joints' in data:
            path = tmp_path / f'profile_{first}.yaml'
            path.write_text('\n'.join(lines))
            try:
                profile = RobotProfile.load(str(path))
            except ValueError as exc:
                pytest.fail(f'{where}: robot profile does not load: {exc}')
            lim = profile.limits
            assert all(lim.safe_lower <= profile.home) and all(profile.home <= lim.safe_upper), \
                f'{where}: home pose outside the position limits'


def heading_slugs(text: str) -> set:
    """GitHub's anchors of a Markdown file's headings."""
    slugs = set()
    for line in text.splitlines():
        match = re.match(r'^#{1,6}\s+(.*)$', line)
        if match:
            title = re.sub(r'[`*]', '', match.group(1).strip()).lower()
            slugs.add(re.sub(r'\s', '-', re.sub(r'[^\w\s-]', '', title)))
    return slugs


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_links_point_at_files_that_exist(doc):
    text = doc.read_text()
    without_code = re.sub(r'```.*?```', '', text, flags=re.S)
    problems = []
    for target in re.findall(r'\]\(([^)\s]+)\)', without_code):
        if re.match(r'^[a-z]+:', target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition('#')
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            problems.append(f'{doc.relative_to(ROOT)}: link to {target}: no {path}')
        elif anchor and file.suffix == '.md' and anchor not in heading_slugs(file.read_text()):
            problems.append(f'{doc.relative_to(ROOT)}: link to {target}: no heading #{anchor} in {path or doc.name}')
    assert not problems, '\n'.join(problems)
