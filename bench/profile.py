"""Where a measured process spends its CPU: py-spy's sampled stacks summed by package and by function.

`python -m bench --profile` records each measured process with `py-spy record --format raw --gil`
(only samples of the thread holding the GIL: Python's CPU, not C code that released it) into
`logs/<run>.stacks`; `python -m bench.profile FILE...` prints the summary again. "Self" counts a
sample for the innermost frame's package; "inclusive" for every package on the stack, so a library's
inclusive share includes what it called.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

#: `function (path:line)`, as py-spy writes a frame; a frame without a path (a thread's name) has no match.
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")
SITE = re.compile(r"(?:site|dist)-packages/(?P<package>[A-Za-z0-9_]+)")
STDLIB = re.compile(r"/lib/python3\.\d+/(?P<module>[A-Za-z0-9_]+)")
OWN = ("workers", "contracts", "handlers", "bench")


@dataclass(frozen=True)
class Summary:
    """One process's samples: total, those of start-up imports (left out), counts per package and function."""

    samples: int
    importing: int
    self_by_package: Counter[str]
    inclusive_by_package: Counter[str]
    self_by_function: Counter[str]


def package_of(path: str) -> str:
    """A frame's file as py-spy names it, as its package: `sqlalchemy`, `workers.runtime`, `stdlib:threading`."""
    if path.startswith("<frozen "):  # <frozen importlib._bootstrap>, <frozen runpy>
        return f"stdlib:{path.removeprefix('<frozen ').split('.')[0].rstrip('>')}"
    if match := SITE.search(path):
        return match["package"]
    if match := STDLIB.search(path):
        return f"stdlib:{match['module'].removesuffix('.py')}"
    parts = path.split("/")
    top = parts[0].removesuffix(".py")
    if top in OWN:
        return ".".join([top, *parts[1:-1][:1]])
    if top in sys.stdlib_module_names:
        return f"stdlib:{top}"
    return top


def summarize(text: str) -> Summary:
    """Sum py-spy's raw (collapsed) stacks: each line is `frame;frame;...;innermost count`."""
    self_by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_by_function: Counter[str] = Counter()
    total = importing = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [m for m in (FRAME.match(frame) for frame in stack.split(";")) if m and m["path"]]
        if not frames or any(frame["function"] == "_find_and_load" for frame in frames):
            importing += count  # start-up, before the first message: not what the run measures
            continue
        total += count
        innermost = frames[-1]
        package = package_of(innermost["path"])
        self_by_package[package] += count
        self_by_function[f"{innermost['function']} ({package})"] += count
        for seen in {package_of(frame["path"]) for frame in frames}:
            inclusive[seen] += count
    return Summary(total, importing, self_by_package, inclusive, self_by_function)


def markdown(name: str, summary: Summary, *, top: int = 12) -> str:
    """Two tables: packages by self share (with their inclusive share), then the busiest innermost functions."""
    if not summary.samples:
        return f"#### {name}\n\nno samples\n"

    def share(count: int) -> str:
        return f"{100 * count / summary.samples:.1f} %"

    lines = [
        f"#### {name} ({summary.samples:,} samples holding the GIL; {summary.importing:,} of imports left out)",
        "",
        "| package | self | inclusive |",
        "|---|---:|---:|",
    ]
    for package, count in summary.self_by_package.most_common(top):
        lines.append(f"| `{package}` | {share(count)} | {share(summary.inclusive_by_package[package])} |")
    lines += ["", "| innermost function | self |", "|---|---:|"]
    for function, count in summary.self_by_function.most_common(top):
        lines.append(f"| `{function}` | {share(count)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python -m bench.profile FILE.stacks...", file=sys.stderr)
        return 2
    for path in paths:
        print(markdown(path.stem, summarize(path.read_text(errors="replace"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
