"""Shared helpers of the speed benchmarks: machine facts, versions, timing, BENCHMARKS.md sections.

Every benchmark script runs in the bench venv (`/work/main/bench-venv`, see BENCHMARKS.md), where
heron (editable) and the peers are importable side by side with heron's own jax/flax/optax pins.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "BENCHMARKS.md"
PEERS = REPO / "benchmarks" / "_peers"


def loadavg() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, {ram_gib():.0f} GiB RAM, {platform.system()} {platform.release()}"


def versions(*names: str) -> str:
    out = [f"python {platform.python_version()}"]
    for n in names:
        try:
            out.append(f"{n} {_md.version(n)}")
        except _md.PackageNotFoundError:
            out.append(f"{n} (not installed)")
    return ", ".join(out)


def median(xs):
    return statistics.median(xs)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def fmt(x: float, digits: int = 0) -> str:
    if x != x:  # NaN
        return "n/a"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def command_line() -> str:
    rel = os.path.relpath(sys.argv[0], REPO)
    venv = os.path.relpath(sys.prefix, REPO)  # bench-venv for peer comparisons, .venv for heron-only ones
    return f"{venv}/bin/python " + " ".join([rel, *sys.argv[1:]])


def header(title: str, load_before: str, load_after: str, pkgs: tuple[str, ...]) -> str:
    return (
        f"Command: `{command_line()}`  \n"
        f"Date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}  \n"
        f"Machine: {machine()}  \n"
        f"Versions: {versions(*pkgs)}  \n"
        f"Load average (1/5/15 min) before: {load_before}; after: {load_after} "
        f"(the machine is shared: a 1-min load above ~0.3 means other work ran beside the benchmark)"
    )


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) the section `name` of BENCHMARKS.md, delimited by HTML comments."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n## {title}\n\n{body.strip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# heron speed benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(RESULTS)


def add_purejaxrl_to_path() -> None:
    """PureJaxRL is not on PyPI; its ppo.py/wrappers.py sit in the gitignored benchmarks/_peers/."""
    if not (PEERS / "purejaxrl" / "ppo.py").exists():
        raise SystemExit(
            f"PureJaxRL peer missing: put purejaxrl/ppo.py and purejaxrl/wrappers.py of "
            f"luchris429/purejaxrl under {PEERS}/purejaxrl/ (see BENCHMARKS.md)")
    sys.path.insert(0, str(PEERS))
