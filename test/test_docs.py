"""Every command the docs show names things that exist.

The shell code blocks (```bash, ```sh, ```shell, ```console) of README.md and docs/*.md, and inline
`code` that starts like one of the package's own commands, are split into commands; each is checked:

* `ros2-imitation SUB ...`: SUB is a subcommand, every --flag is one of SUB's options, a
  `bringup GRAPH` / `--graph GRAPH` names a graph in config/graphs, `--config X` a policy config;
* `ros2 run ros2_imitation EXE`: EXE is a node executable (ros2_imitation/nodes/EXE.py);
* `ros2 launch ros2_imitation FILE name:=value`: FILE is in launch/ and declares `name`;
* `python path.py`, and any argument that is a path into the repository (config/, launch/, docs/, ...):
  the file exists; `python -m ros2_imitation.x`: the module exists;
* `make TARGET`: the Makefile has a rule for TARGET;
* `colcon build --packages-select NAME`: NAME is this package.

A failure names the document, the line and what is missing. Commands of other packages
(`ros2 launch franka_bringup ...`) and placeholders (`<fci-ip>`, `GRAPH`, `...`) are not checked.
"""
import argparse
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


@dataclass
class Command:
    doc: Path
    line: int
    text: str

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


def doc_commands(doc: Path) -> list:
    text = doc.read_text()
    found = []
    for language, first, lines in code_blocks(text):
        if language in SHELL_LANGUAGES:
            found += [Command(doc, n, c) for n, c in commands_in_block(language, first, lines)]
    found += [Command(doc, n, c) for n, c in inline_commands(text)]
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


def check_ros2(args: list) -> list:
    if len(args) < 3 or args[1] != PACKAGE:
        return []  # another package's command, or `ros2 topic ...`
    verb, target = args[0], args[2]
    if is_placeholder(target):
        return []
    if verb == 'run':
        if target not in node_executables():
            return [f'`ros2 run {PACKAGE} {target}`: no executable {target} (nodes: '
                    f'{", ".join(sorted(node_executables()))})']
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


def check_simple_command(tokens: list, options: dict) -> list:
    # skip environment assignments and wrappers in front of the command
    while tokens and (re.match(r'^[A-Za-z_][A-Za-z0-9_]*=', tokens[0]) or tokens[0] in ('sudo', 'exec', 'env',
                                                                                         'time', 'nice')):
        tokens = tokens[1:]
    problems = []
    for i, token in enumerate(tokens):
        if token == 'ros2-imitation' or token.endswith('/ros2-imitation'):
            problems += check_ros2_imitation(tokens[i + 1:], options)
            break
        if token == 'ros2' and i + 1 < len(tokens):
            problems += check_ros2(tokens[i + 1:])
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
        problems += check_simple_command(tokens, options)
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
