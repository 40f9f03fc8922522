"""Benchmarks write their own section of docs/benchmarks.md, with machine, command and date."""
import datetime
import os
import platform
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / 'docs' / 'benchmarks.md'
HEADER = """# Benchmarks

Every section is written by the script named in it (`python bench/<script>.py`); `python bench/run_all.py`
regenerates them all. Figures are from the machine and date given in each section.
"""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}'


def write_section(name: str, title: str, body: str, doc: Path | None = None) -> None:
    """Replace (or append) the section `name` of docs/benchmarks.md (or of `doc`)."""
    doc = DOC if doc is None else Path(doc)
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(DOC.parent.parent):   # as typed in the repository root
        script = script.relative_to(DOC.parent.parent)
    command = 'python ' + ' '.join([str(script), *sys.argv[1:]])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    section = (f'<!-- {name}:start -->\n## {title}\n\n'
               f'Machine: {machine()}. Command: `{command}`. Date: {stamp}.\n\n{body.strip()}\n'
               f'<!-- {name}:end -->')
    text = doc.read_text() if doc.exists() else HEADER
    pattern = re.compile(rf'<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->', re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + '\n\n' + section + '\n'
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    print(f'wrote section {name!r} of {doc}')
