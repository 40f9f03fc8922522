"""The package's shape: rooms by job, no import cycles, no reaching into another module's private
names, and a core that imports without rclpy (and, outside policy/, without torch)."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / 'ros2_imitation'
ROOMS = {'commands', 'control', 'data', 'graph', 'nodes', 'policy', 'runtime', 'sensors', 'sim', 'viz'}
# ROS-free rooms (the brief's core) and, of those, the ones that must not need torch
ROS_FREE = ['control', 'runtime', 'sensors', 'data', 'sim', 'policy']
TORCH_FREE = ['control', 'runtime', 'sensors', 'sim', 'data']


def modules():
    for path in sorted(PACKAGE.rglob('*.py')):
        rel = path.relative_to(PACKAGE.parent).with_suffix('')
        name = '.'.join(rel.parts[:-1] if rel.name == '__init__' else rel.parts)
        yield name, path


def imports(name, path):
    """Every ros2_imitation module `name` imports, at module level or inside functions."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith('ros2_imitation')}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(parts + ([base] if base else []))
            if base.startswith('ros2_imitation'):
                for alias in node.names:
                    found.add(f'{base}.{alias.name}')
                    found.add(base)
    return found, path


def test_the_top_level_holds_rooms_cli_and_at_most_three_small_modules():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / '__init__.py').exists()}
    loose = sorted(p.name for p in PACKAGE.glob('*.py') if p.name not in ('__init__.py', 'cli.py'))
    assert rooms == ROOMS
    assert len(loose) <= 3, loose
    assert all(len((PACKAGE / m).read_text().splitlines()) < 150 for m in loose), loose


def test_no_import_cycles():
    names = dict(modules())
    graph = {}
    for name, path in names.items():
        deps, _ = imports(name, path)
        # a package's own __init__ re-exporting its modules is not a dependency of those modules
        graph[name] = {d for d in deps if d in names and d != name and not name.startswith(d + '.')}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):   # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f'import cycles: {cycles}'


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for name, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('ros2_imitation'):
                offenders += [f'{name}: {node.module}.{a.name}' for a in node.names
                              if a.name.startswith('_') and not a.name.startswith('__')]
    assert not offenders, offenders


def test_the_core_imports_without_rclpy_and_outside_policy_without_torch():
    core = [n for n, _ in modules() if n.split('.')[1:2] and n.split('.')[1] in ROS_FREE]
    torch_free = [n for n in core if n.split('.')[1] in TORCH_FREE]
    script = f'''
import importlib, sys
class Block:
    def __init__(self, names): self.names = names
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in self.names:
            raise ImportError(f'{{name}} is blocked')
sys.meta_path.insert(0, Block({{'rclpy', 'launch', 'launch_ros'}}))
for m in {core!r}:
    importlib.import_module(m)
assert 'rclpy' not in sys.modules
'''
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    check_torch = f'''
import importlib, sys
for m in {torch_free!r}:
    importlib.import_module(m)
print('torch' in sys.modules)
'''
    result = subprocess.run([sys.executable, '-c', check_torch], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == 'False', 'a module outside policy/ imports torch at import time'
