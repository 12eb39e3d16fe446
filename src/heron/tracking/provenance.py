"""Provenance of a run: where the code came from and what it ran on.

`collect_provenance(argv, seed)` returns a JSON-ready dict written to `provenance.json` when a
run is created:

* ``git``: commit, dirty flag (tracked files modified) and branch of the repository that
  contains the current working directory, or ``None`` outside a git checkout / without git;
* ``heron``: the heron version, and ``heron_commit``: the commit of the checkout heron's code runs from (None
  for an installed copy), which ``git`` does not give when the working directory is another repository;
* ``packages``: versions of jax, jaxlib, flax, optax, gymnasium, numpy, mujoco (``None`` if
  not installed) — read from package metadata, nothing is imported for this;
* ``python``, ``platform``, ``cpu``, ``hostname``;
* ``jax_devices`` and ``jax_backend`` (only if jax is already imported by the caller, so the
  CLI never initialises a backend just to write this file);
* ``env``: the JAX_*/XLA_* variables and CUDA_VISIBLE_DEVICES, which change numerics;
* ``seed`` and ``command`` (the argv list).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("jax", "jaxlib", "flax", "optax", "gymnasium", "numpy", "mujoco")
_ENV_PREFIXES = ("JAX_", "XLA_")
_ENV_NAMES = ("CUDA_VISIBLE_DEVICES",)


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(cwd, *args: str) -> str | None:
    """stdout of one git command in `cwd`, or None (no git, not a checkout, a failing command)."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(cwd: str | os.PathLike | None = None) -> dict | None:
    """Commit, dirty flag and branch of the git checkout containing `cwd` (None if none)."""
    commit = _git(cwd, "rev-parse", "HEAD")
    if commit is None:
        return None
    porcelain = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "dirty": bool(porcelain) if porcelain is not None else None,
        "branch": _git(cwd, "rev-parse", "--abbrev-ref", "HEAD"),
        "root": _git(cwd, "rev-parse", "--show-toplevel"),
    }


def heron_source_commit() -> str | None:
    """The commit of the git checkout heron's own code runs from (an editable install), whatever the working
    directory; None for an installed copy (its version says what it is). Two git calls: it runs at every run's
    creation."""
    here = Path(__file__).resolve().parent
    # a copy installed inside some other checkout (a venv in a project) is not that project's code
    if _git(here, "ls-files", "--error-unmatch", Path(__file__).name) is None:
        return None
    return _git(here, "rev-parse", "HEAD")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def jax_devices() -> tuple[str | None, list[str] | None]:
    """(backend, devices) if jax is already imported, else (None, None)."""
    jax = sys.modules.get("jax")
    if jax is None:
        return None, None
    try:
        return jax.default_backend(), [str(d) for d in jax.devices()]
    except Exception:  # pragma: no cover - a broken backend must not stop a run
        return None, None


def collect_provenance(argv: list[str], seed: int | None, cwd: str | None = None) -> dict:
    from heron import __version__

    backend, devices = jax_devices()
    return {
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": list(argv),
        "cwd": os.getcwd(),
        "seed": seed,
        "git": git_info(cwd),
        "heron": __version__,
        "heron_commit": heron_source_commit(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "python": sys.version.split()[0],
        "python_full": sys.version,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "hostname": socket.gethostname(),
        "jax_backend": backend,
        "jax_devices": devices,
        "env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.startswith(_ENV_PREFIXES) or k in _ENV_NAMES
        },
    }
