"""Where the package's config/, launch/ and models/ live, whichever way it was installed; reading
and checking config files."""
import math
import os
import sys
from pathlib import Path

import numpy as np

PACKAGE = 'ros2_imitation'


def share_dir() -> Path:
    """The folder holding config/, launch/ and models/.

    A source checkout or editable install uses the repository root; a colcon or pip install
    uses <prefix>/share/ros2_imitation.
    """
    repo = Path(__file__).resolve().parent.parent
    if (repo / 'config').is_dir() and (repo / 'package.xml').is_file():
        return repo
    # the ament index `ros2 launch` resolved (a sourced colcon workspace) before this interpreter's
    # own prefix: a stale pip install in a venv must not shadow the workspace's config and models
    candidates = [Path(prefix) / 'share' / PACKAGE
                  for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if prefix]
    candidates.append(Path(sys.prefix) / 'share' / PACKAGE)
    for candidate in candidates:
        if (candidate / 'config').is_dir():
            return candidate
    raise FileNotFoundError(
        f'cannot find the {PACKAGE} share folder (looked in {repo} and {[str(c) for c in candidates]})')


def resolve(kind: str, name_or_path: str, suffix: str = '.yaml') -> Path:
    """A config file given by name (config/<kind>/<name>.yaml) or by path."""
    path = Path(name_or_path).expanduser()
    if path.suffix and path.is_file():
        return path
    candidate = share_dir() / 'config' / kind / f'{name_or_path}{suffix}'
    if candidate.is_file():
        return candidate
    available = sorted(p.stem for p in (share_dir() / 'config' / kind).glob(f'*{suffix}'))
    raise FileNotFoundError(
        f'unknown {kind[:-1] if kind.endswith("s") else kind} {name_or_path!r}: '
        f'not a file and not one of {available}')


def read_config(kind: str, name_or_path: str, what: str, error=ValueError) -> tuple:
    """(path, mapping) of a YAML config file by name (config/<kind>/<name>.yaml) or path; invalid
    YAML or a top level that is not a mapping is `error`, naming `what` and the file."""
    import yaml
    path = resolve(kind, name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise error(f'{what} {path}: not valid YAML: {exc}') from None
    if not isinstance(raw, dict):
        raise error(f'{what} {path}: expected a mapping at the top level')
    return path, raw


def config_value(body, where, key, default=None, kind=dict):
    """body[key] (or default) checked to be a `kind`: dict, str (non-empty), list (of distinct
    non-empty names, returned as a tuple) or float (finite); a ValueError names `where.key`."""
    label = f'{where}.{key}' if where else key
    if not isinstance(body, dict) or body.get(key, default) is None:
        raise ValueError(f'missing key {label!r}')
    value = body.get(key, default)
    ok = {dict: lambda: isinstance(value, dict), str: lambda: isinstance(value, str) and value,
          list: lambda: isinstance(value, list) and all(isinstance(v, str) and v for v in value),
          float: lambda: isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}
    if not ok[kind]():
        what = {dict: 'a mapping', str: 'a non-empty string', list: 'a list of joint names',
                float: 'a finite number'}[kind]
        raise ValueError(f'{label} must be {what}, got {value!r}')
    if kind is list and len(set(value)) != len(value):
        raise ValueError(f'{label} has a joint twice: {value}')
    return tuple(value) if kind is list else float(value) if kind is float else value


def config_vector(body, where, key, n, sign=None):
    """body[key] as n finite numbers (sign '>' or '>=': each compared with 0), else a ValueError."""
    label = f'{where}.{key}' if where else key
    if not isinstance(body, dict) or key not in body:
        raise ValueError(f'missing key {label!r}')
    value = body[key]
    ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    arr = np.asarray(value, dtype=float) if ok else None
    if arr is None or arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise ValueError(f'{label} must be {n} finite numbers (one per arm joint), got {value!r}')
    if sign is not None and not np.all(arr > 0 if sign == '>' else arr >= 0):
        raise ValueError(f'{label} must be {sign} 0 for every joint, got {value!r}')
    return arr
