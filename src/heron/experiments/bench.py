"""Benchmark suites: a declared grid of algorithms × tasks × seeds × budget, run as tracked runs.

A suite is a TOML file (the shipped ones live in `heron/suites/`, `heron bench list` names them):

    name = "online-classic"
    description = "..."
    seeds = 5                      # seeds 0..4 (or a list: [0, 3, 7])
    eval_episodes = 10

    [references."CartPole-v1"]     # normalised score = 100 (return - random) / (expert - random)
    random = 22.0
    expert = 500.0

    [[grid]]                       # every algorithm × every task of the block
    algos = ["ppo", "dqn"]
    envs = ["CartPole-v1"]         # or datasets = ["small/pendulum-medium"] (+ env, online_steps,
                                   #   finetune_method, warmup_steps, eval_env)
    eval_env = "..."               # optional: evaluate in this env (same spaces) instead of the one acted in
    steps = 100_000
    overrides = { ppo = ["learning_rate=0.001"] }
    label = "..."                  # optional, one-algorithm blocks: the method's name in reports (an
                                   #   ablation: the same algorithm under other overrides)

Each (algorithm, task, seed) is a cell; its runs live in SUITE_DIR/runs/<cell key>/. Running a
suite skips cells that already hold a finished run, resumes a cell whose run was killed or
interrupted from its last checkpoint (every cell checkpoints `checkpoint_fraction` of its budget),
and starts the rest, so an interrupted suite continues where it stopped. `vmap_seeds = true`
trains the seeds of a cell together in one compiled program (`--seeds N`) where the loop allows.
The same cells run in this process, or as Ray tasks (heron.experiments.scale) with no change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from heron.errors import HeronError

BENCH_DIR_ENV = "HERON_BENCH_DIR"
SUITE_KEYS = {"name", "description", "seeds", "eval_episodes", "checkpoint_fraction", "vmap_seeds", "references",
              "grid"}
GRID_KEYS = {"algos", "envs", "datasets", "env", "steps", "online_steps", "overrides", "eval_every", "eval_episodes",
             "loop", "finetune_method", "warmup_steps", "eval_env", "label"}


_LATER_FIELDS = ("warmup_steps", "eval_env")
"""Cell fields added after suites had run: unset, they stay out of the key's digest (see Cell.key)."""
_NOT_IN_KEY = ("name",)
"""Cell fields that only name results in reports: renaming must not orphan a cell's runs."""


def slug(text: str) -> str:
    """`text` as a file-name part: runs of other characters than letters, digits, . and - become _."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


@dataclass(frozen=True)
class Cell:
    """One (algorithm, task, seeds) of a suite: everything `heron train` needs to make its run."""

    algo: str
    task: str
    """An env id (online cells) or a dataset name or path (offline and offline→online cells)."""
    seeds: tuple[int, ...]
    """One seed, or several trained together by vmap."""
    steps: int
    is_dataset: bool = False
    env: str | None = None
    """Dataset cells: the env to evaluate (and fine-tune) in; None: the dataset's own."""
    online_steps: int = 0
    overrides: tuple[str, ...] = ()
    eval_every: int = 0
    eval_episodes: int = 10
    checkpoint_every: int = 0
    loop: str = "auto"
    finetune_method: str | None = None
    warmup_steps: int | None = None
    """Offline→online cells: the switch rule's warm-up env steps; None: the rule's own."""
    eval_env: str | None = None
    """Evaluate in this env instead of the one the cell acts in (`task` for env cells, `env` for offline→online
    ones): a simulator-trained policy scored on its real system; H2O."""
    name: str | None = None
    """How reports name the method (an ablation: one algorithm under other settings); None: `label`'s default."""

    @property
    def label(self) -> str:
        """How reports name the cell's method: the algorithm, plus the switch rule when one is chosen
        (IQL fine-tuned under WSRL's rule is "iql+wsrl", not IQL), or the block's own name for it."""
        if self.name:
            return self.name
        return f"{self.algo}+{self.finetune_method}" if self.finetune_method else self.algo

    @property
    def key(self) -> str:
        """Directory name of the cell: readable, and unique for the cell's whole definition."""
        seeds = f"s{self.seeds[0]}" if len(self.seeds) == 1 else f"s{self.seeds[0]}-{self.seeds[-1]}x{len(self.seeds)}"
        task = slug(self.task)
        fields = {k: v for k, v in dataclasses.asdict(self).items()
                  if k not in _NOT_IN_KEY and not (k in _LATER_FIELDS and v is None)}
        # (a field added later enters the digest only when set, so earlier suites keep their cell keys)
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.algo}__{task}__{seeds}__{digest}"

    def request(self):
        from heron.experiments.train import TrainRequest

        return TrainRequest(algo=self.algo, env_id=self.env if self.is_dataset else self.task, steps=self.steps,
                            seed=self.seeds[0], seeds=len(self.seeds), loop=self.loop, eval_every=self.eval_every,
                            eval_episodes=self.eval_episodes, checkpoint_every=self.checkpoint_every,
                            overrides=self.overrides, dataset=self.task if self.is_dataset else None,
                            online_steps=self.online_steps, finetune_method=self.finetune_method,
                            warmup_steps=self.warmup_steps, eval_env=self.eval_env)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    cells: tuple[Cell, ...]
    references: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Task → (random, expert) returns for normalised scores; dataset tasks use the dataset's own."""
    source: str = ""

    def references_for(self, cell: Cell) -> tuple[float, float] | None:
        """The references a cell's returns are normalised with: its task's, or for an env cell evaluated in
        another env, that env's (a simulator-trained policy is scored against the real system's)."""
        return self.references.get(cell.eval_env if cell.eval_env and not cell.is_dataset else cell.task)

    @property
    def algos(self) -> list[str]:
        """The methods (cell labels) in declaration order."""
        return list(dict.fromkeys(c.label for c in self.cells))

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(c.task for c in self.cells))


# -- declaration --------------------------------------------------------------------------------

def shipped_suites() -> dict[str, Path]:
    """Name → TOML file of the suites that come with heron."""
    folder = resources.files("heron") / "suites"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def shipped_reference_file(name: str) -> Path | None:
    """The reference results shipped with suite NAME (heron/suites/NAME.reference.json), or None."""
    toml = shipped_suites().get(name)
    path = toml.with_name(f"{name}.reference.json") if toml is not None else None
    return path if path is not None and path.is_file() else None


def load_suite(ref: str | os.PathLike, check_budgets: bool = True) -> Suite:
    """A shipped suite by name, or a TOML file by path (`check_budgets`: see parse_suite)."""
    shipped = shipped_suites()
    path = Path(ref)
    if str(ref) in shipped and not path.exists():
        path = shipped[str(ref)]
    if not path.is_file():
        raise HeronError(f"no suite {str(ref)!r}: give a TOML file or one of {', '.join(sorted(shipped))} "
                         "(`heron bench list`)")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise HeronError(f"suite {path}: not valid TOML ({err}); fix the file") from None
    return parse_suite(raw, source=str(path), check_budgets=check_budgets)


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise HeronError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _typed(table: dict, key: str, kind, where: str, default=None):
    value = table.get(key, default)
    if value is not None and not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise HeronError(f"{where}: {key} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def parse_suite(raw: dict, source: str = "", check_budgets: bool = True) -> Suite:
    """Validate a suite declaration (a parsed TOML table) and expand its grid into cells. `check_budgets`:
    also resolve each algorithm's config with the block's overrides and budget (imports the agents, and with
    them JAX); False only lists a suite (`heron bench list`), it never runs one."""
    from heron.agents.registry import agent_info, get_agent

    where = f"suite {source or raw.get('name', '?')}"
    _check_keys(raw, SUITE_KEYS, where)
    name = _typed(raw, "name", str, where)
    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise HeronError(f"{where}: name must be a plain word (letters, digits, - _ .), got {name!r}")
    seeds = raw.get("seeds", 5)
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
        seeds = list(range(seeds))
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)
            and len(set(seeds)) == len(seeds)):
        raise HeronError(f"{where}: seeds must be a count >= 1 or a list of distinct seeds >= 0, got {raw['seeds']!r}")
    eval_episodes = _typed(raw, "eval_episodes", int, where, 10)
    fraction = _typed(raw, "checkpoint_fraction", float, where, 0.25)
    if not 0 < fraction <= 1:
        raise HeronError(f"{where}: checkpoint_fraction must be in (0, 1], got {fraction}")
    vmap = _typed(raw, "vmap_seeds", bool, where, False)
    references = {}
    for task, ref in (_typed(raw, "references", dict, where, {}) or {}).items():
        if not (isinstance(ref, dict) and isinstance(ref.get("random"), int | float)
                and isinstance(ref.get("expert"), int | float) and ref["expert"] != ref["random"]):
            raise HeronError(f"{where}: references.{task} needs numbers random and expert (different), got {ref!r}")
        references[task] = (float(ref["random"]), float(ref["expert"]))
    grid = raw.get("grid")
    if not isinstance(grid, list) or not grid:
        raise HeronError(f"{where}: needs at least one [[grid]] block with algos and envs or datasets")
    cells = []
    for i, block in enumerate(grid):
        bw = f"{where}, grid block {i + 1}"
        if not isinstance(block, dict):
            raise HeronError(f"{bw}: must be a table")
        _check_keys(block, GRID_KEYS, bw)
        algos = block.get("algos")
        if not (isinstance(algos, list) and algos and all(isinstance(a, str) for a in algos)):
            raise HeronError(f"{bw}: algos must be a list of algorithm names (see `heron algos`)")
        for algo in algos:
            agent_info(algo)  # names a known algorithm, or says which ones exist
        if ("envs" in block) == ("datasets" in block):
            raise HeronError(f"{bw}: give either envs (online) or datasets (offline), not both or neither")
        is_dataset = "datasets" in block
        tasks = block["datasets" if is_dataset else "envs"]
        if not (isinstance(tasks, list) and tasks and all(isinstance(t, str) and t for t in tasks)):
            raise HeronError(f"{bw}: {'datasets' if is_dataset else 'envs'} must be a list of names")
        steps = _typed(block, "steps", int, bw)
        online = _typed(block, "online_steps", int, bw, 0)
        if online and not is_dataset or online < 0:
            raise HeronError(f"{bw}: online_steps (>= 0) applies to dataset blocks only")
        if steps is None or steps < (0 if online else 1):
            raise HeronError(f"{bw}: steps (env steps, or updates for datasets; 0 allowed with online_steps) must be "
                             "an integer >= 1")
        overrides = _typed(block, "overrides", dict, bw, {}) or {}
        for algo, values in overrides.items():
            if algo not in algos or not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
                raise HeronError(f"{bw}: overrides.{algo} must be a list of name=value strings for an algorithm "
                                 "of this block")
        env = _typed(block, "env", str, bw)
        if env is not None and not is_dataset:
            raise HeronError(f"{bw}: env applies to dataset blocks (where to evaluate); online blocks use envs")
        budget = steps + online
        method, warmup = _typed(block, "finetune_method", str, bw), _typed(block, "warmup_steps", int, bw)
        if (method is not None or warmup is not None) and not online:
            raise HeronError(f"{bw}: finetune_method and warmup_steps apply to blocks with online_steps")
        if warmup is not None and warmup < 0:
            raise HeronError(f"{bw}: warmup_steps must be >= 0, got {warmup}")
        eval_env = _typed(block, "eval_env", str, bw)
        if eval_env is not None and is_dataset and not online:
            raise HeronError(f"{bw}: eval_env applies to env blocks and to dataset blocks with online_steps (act in "
                             "env, evaluate in eval_env); an offline block is evaluated in env = ID")
        label = _typed(block, "label", str, bw)
        if label is not None and len(algos) != 1:
            raise HeronError(f"{bw}: label names one algorithm's results in reports; split the block's "
                             f"{len(algos)} algorithms into one block each")
        if label is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", label):
            raise HeronError(f"{bw}: label must be a plain word (letters, digits, - _ . +), got {label!r}")
        for algo in algos:
            family = agent_info(algo).family
            if is_dataset != (family == "offline"):
                raise HeronError(f"{bw}: {algo} is {family}; put it in a block with "
                                 f"{'datasets' if family == 'offline' else 'envs'}")
            if check_budgets:
                from heron.experiments.train import check_budget

                try:
                    check_budget(get_agent(algo), overrides.get(algo, ()), steps, online, method, warmup)
                except HeronError as e:
                    raise HeronError(f"{bw}, {algo}: {e}") from None
            for task in tasks:
                groups = [tuple(seeds)] if vmap and not online else [(s,) for s in seeds]
                for group in groups:
                    cells.append(Cell(
                        algo=algo, task=task, seeds=group, steps=steps, is_dataset=is_dataset, env=env,
                        online_steps=online, overrides=tuple(overrides.get(algo, ())),
                        eval_every=_typed(block, "eval_every", int, bw, 0),
                        eval_episodes=_typed(block, "eval_episodes", int, bw, eval_episodes),
                        checkpoint_every=max(1, int(budget * fraction)) if not online else max(1, int(online * fraction)),
                        loop=_typed(block, "loop", str, bw, "auto"),
                        finetune_method=method, warmup_steps=warmup, eval_env=eval_env, name=label))
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise HeronError(f"{where}: the grid declares the same cell twice; remove the duplicate block")
    seen = {}
    for c in cells:  # reports pool a method's runs by (label, task): two settings must not share a label
        settings = dataclasses.replace(c, seeds=())
        other = seen.setdefault((c.label, c.task), settings)
        if other != settings:
            fix = f"give them different labels (both are {c.label!r})" if c.name and other.name else \
                "give one of them a label (label = \"NAME\")"
            raise HeronError(f"{where}: two blocks run {c.label} on {c.task} with different settings; {fix} so "
                             "reports keep them apart")
    return Suite(name=name, description=_typed(raw, "description", str, where, ""), cells=tuple(cells),
                 references=references, source=source)


def suite_dir(suite: Suite, root: str | os.PathLike | None = None) -> Path:
    """Where a suite's runs and report go: ROOT/NAME (ROOT: --root, $HERON_BENCH_DIR, ./bench)."""
    return Path(root or os.environ.get(BENCH_DIR_ENV) or "bench") / suite.name


# -- execution ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellResult:
    cell_key: str
    outcome: str
    """finished (trained now), resumed (continued a killed run), skipped (already finished), running
    (another process holds it), failed."""
    run: str | None = None
    error: str | None = None


def cell_runs(root: Path, cell: Cell) -> list[Path]:
    """The cell's run directories, oldest first."""
    from heron.tracking.run import is_run_dir

    folder = root / "runs" / cell.key
    return sorted((p for p in folder.iterdir() if is_run_dir(p)), key=lambda p: p.name) if folder.is_dir() else []


def cell_status(root: Path, cell: Cell) -> tuple[str, Path | None]:
    """("finished" | "running" | "resumable" | "new", the run that decides it)."""
    from heron.tracking.run import effective_status, read_status

    runs = cell_runs(root, cell)
    statuses = [(effective_status(read_status(p)), p) for p in runs]
    for wanted in ("finished", "running"):
        hits = [p for s, p in statuses if s == wanted]
        if hits:
            return wanted, hits[-1]
    if runs:
        return "resumable", runs[-1]
    return "new", None


def run_cell(root: str | os.PathLike, cell: Cell, *, progress: bool = False,
             observer: Callable | None = None) -> CellResult:
    """Bring one cell to a finished run: skip, resume its killed run, or train it."""
    from heron.experiments.train import train

    root = Path(root)
    state, path = cell_status(root, cell)
    if state == "finished":
        return CellResult(cell.key, "skipped", str(path))
    if state == "running":
        return CellResult(cell.key, "running", str(path))
    argv = ["heron", "bench", "cell", cell.key]
    try:
        if state == "resumable":
            out = train(cell.request(), progress=progress, argv=argv, resume=path, observer=observer)
            return CellResult(cell.key, "resumed", str(out))
        out = train(cell.request(), runs_root=root / "runs" / cell.key, progress=progress, argv=argv,
                    observer=observer)
        return CellResult(cell.key, "finished", str(out))
    except HeronError as err:
        return CellResult(cell.key, "failed", str(path) if path else None, str(err))
    except Exception as err:  # a bug in one cell must not stop the suite; its run records the error too
        if observer is not None:  # the observer's own signal (e.g. a pruned trial) goes to its caller
            raise
        return CellResult(cell.key, "failed", str(path) if path else None, f"{type(err).__name__}: {err}")


def run_suite(suite: Suite, root: Path, *, workers: int = 0, ray_address: str | None = None,
              dashboard: bool = False, progress: bool = True,
              on_result: Callable[[CellResult], None] | None = None) -> list[CellResult]:
    """Run every cell not finished yet: in this process, or as Ray tasks (`workers` > 0 or an address)."""
    root.mkdir(parents=True, exist_ok=True)
    _record_suite(suite, root)
    on_result = on_result or (lambda r: None)
    results = []
    if workers or ray_address:
        from heron.experiments.scale import DEFAULT_RETRIES, ray_map

        def crashed(item, err):
            return CellResult(item[1].key, "failed", None, f"its worker died {DEFAULT_RETRIES + 1} times ({err})")

        for result in ray_map(run_cell, [(str(root), cell) for cell in suite.cells], workers=workers,
                              address=ray_address, dashboard=dashboard, on_crash=crashed):
            results.append(result)
            on_result(result)
        return results
    for cell in suite.cells:
        result = run_cell(root, cell, progress=progress)
        results.append(result)
        on_result(result)
    return results


def _record_suite(suite: Suite, root: Path) -> None:
    """SUITE_DIR/suite.json: the resolved cells, so a report needs no TOML and a changed TOML shows."""
    from heron import _fs

    _fs.atomic_write_json(root / "suite.json", suite_to_dict(suite))


def suite_to_dict(suite: Suite) -> dict:
    return {"name": suite.name, "description": suite.description, "source": suite.source,
            "references": {k: list(v) for k, v in suite.references.items()},
            "cells": [dataclasses.asdict(c) | {"key": c.key} for c in suite.cells]}


def suite_from_dir(root: Path) -> Suite:
    """The suite recorded in SUITE_DIR/suite.json by `run_suite`."""
    path = root / "suite.json"
    if not path.is_file():
        raise HeronError(f"{root} holds no suite.json: run the suite first (`heron bench run SUITE`)")
    raw = json.loads(path.read_text())
    fields = {f.name for f in dataclasses.fields(Cell)}
    cells = tuple(Cell(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items() if k in fields})
                  for c in raw["cells"])
    return Suite(name=raw["name"], description=raw.get("description", ""), cells=cells,
                 references={k: tuple(v) for k, v in raw.get("references", {}).items()}, source=raw.get("source", ""))


def suite_progress(suite: Suite, root: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for cell in suite.cells:
        state, _ = cell_status(root, cell)
        counts[state] = counts.get(state, 0) + 1
    return counts


def summarize(results: Iterable[CellResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    return counts
