"""`heron tune ALGO --env ID | --dataset D --trials N`: hyperparameter search with Optuna.

A trial is one configuration trained with K seeds (`--seeds`, the same seeds for every trial, so
configurations are compared on common random numbers); its objective aggregates the seeds by the
interquartile mean (IQM), robust to one lucky or unlucky seed. Objectives (`--objective`, several
make a multi-objective study with a Pareto front, as in Felten et al., "Hyperparameter
Optimization for Multi-Objective Reinforcement Learning"):

    final   IQM over seeds of the last evaluation's mean return (normalised score for datasets with
            references); maximised
    auc     IQM over seeds of the mean over all evaluations (area under the learning curve: sample
            efficiency); maximised
    time    wall-clock seconds of the trial; minimised

Single-objective studies prune with Optuna's median rule on the evaluations as they come in (a
trial whose running mean return falls below the median of earlier trials at the same step stops);
multi-objective studies do not prune (Optuna does not support it). Samplers: TPE (one objective)
or NSGA-II (several), seeded by `--seed`.

The study lives in TUNE_ROOT/STUDY/study.db (SQLite: resumable; `--storage URL` for a database
shared by a cluster), each trial's runs in TUNE_ROOT/STUDY/runs/. Running the same command again
continues the study up to `--trials` finished trials; a trial left running by a killed process is
marked failed and its configuration tried again. With `--workers N` / `--ray-address`, trials run
as Ray tasks (heron.experiments.scale); a worker killed mid-trial is retried and resumes its runs.
"""

from __future__ import annotations

import math
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heron import _fs
from heron.errors import HeronError
from heron.experiments.bench import Cell, run_cell, slug

TUNE_DIR_ENV = "HERON_TUNE_DIR"
MAX_FAILURES = 3
"""Failed trials, with none finished, after which a study stops (every trial would fail the same way). Counted per
invocation: a resumed study gets MAX_FAILURES new tries, so a fixed cause (a dataset made since) can still finish."""
OBJECTIVES = {"final": "maximize", "auc": "maximize", "time": "minimize"}

# Default search spaces: the hyperparameters each method's papers and tuning studies vary most.
DEFAULT_SPACES = {
    "ppo": ["learning_rate=float:1e-5:1e-2:log", "ent_coef=float:1e-5:0.1:log", "clip_coef=float:0.1:0.4",
            "gae_lambda=float:0.8:0.99", "gamma=float:0.9:0.999"],
    "dqn": ["learning_rate=float:1e-5:1e-2:log", "exploration_fraction=float:0.05:0.5",
            "target_network_frequency=int:100:2000:log", "gamma=float:0.9:0.999"],
    "sac": ["actor_lr=float:1e-5:3e-3:log", "critic_lr=float:1e-5:3e-3:log", "tau=float:0.001:0.05:log",
            "gamma=float:0.9:0.999"],
    "td3": ["actor_lr=float:1e-5:3e-3:log", "critic_lr=float:1e-5:3e-3:log", "policy_noise=float:0.05:0.5",
            "gamma=float:0.9:0.999"],
    "bc": ["learning_rate=float:1e-5:1e-2:log"],
    "td3bc": ["alpha=float:0.5:10:log", "actor_lr=float:1e-5:1e-3:log", "critic_lr=float:1e-5:1e-3:log"],
    "iql": ["expectile=float:0.5:0.95", "beta=float:0.5:10:log", "actor_lr=float:1e-5:1e-3:log"],
    "cql": ["cql_alpha=float:0.5:20:log", "actor_lr=float:1e-5:1e-3:log", "critic_lr=float:1e-5:1e-3:log"],
    "awac": ["awac_lambda=float:0.1:10:log", "actor_lr=float:1e-5:1e-3:log", "critic_lr=float:1e-5:1e-3:log"],
    "h2o": ["penalty_weight=float:0.001:1:log", "actor_lr=float:1e-5:1e-3:log", "critic_lr=float:1e-5:1e-3:log"],
}


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: `name=float:LOW:HIGH[:log]`, `name=int:LOW:HIGH[:log]` or
    `name=choice:A|B|C` (choices are name=value override strings' values, e.g. 64,64|256,256)."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[str, ...] = ()

    def suggest(self, trial):
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))


def parse_param(text: str) -> Param:
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(float|int|choice):(.+)", text.strip())
    usage = ("give name=float:LOW:HIGH[:log], name=int:LOW:HIGH[:log] or name=choice:A|B, "
             "e.g. learning_rate=float:1e-5:1e-2:log")
    if not m:
        raise HeronError(f"--param {text!r}: {usage}")
    name, kind, rest = m.groups()
    if kind == "choice":
        choices = tuple(c for c in rest.split("|") if c)
        if len(choices) < 2:
            raise HeronError(f"--param {text!r}: a choice needs at least two values separated by |")
        return Param(name, kind, choices=choices)
    parts = rest.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise HeronError(f"--param {text!r}: {usage}")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise HeronError(f"--param {text!r}: LOW and HIGH must be numbers; {usage}") from None
    log = len(parts) == 3
    if not low < high or (log and low <= 0) or (kind == "int" and (low != int(low) or high != int(high))):
        raise HeronError(f"--param {text!r}: need LOW < HIGH ({'> 0 on a log scale' if log else 'numbers'}"
                         f"{', integers' if kind == 'int' else ''})")
    return Param(name, kind, low, high, log)


@dataclass(frozen=True)
class TuneRequest:
    algo: str
    env_id: str | None
    dataset: str | None
    steps: int
    trials: int
    seeds: int = 3
    params: tuple[str, ...] = ()
    """Search space as --param strings; empty: DEFAULT_SPACES[algo]."""
    overrides: tuple[str, ...] = ()
    """Fixed hyperparameters of every trial (name=value)."""
    objectives: tuple[str, ...] = ("final",)
    study: str | None = None
    seed: int = 0
    eval_episodes: int = 10
    evaluations: int = 5
    """Evaluations per trial (the pruner's checkpoints)."""
    pruner: str = "auto"
    online_steps: int = 0
    finetune_method: str | None = None
    """Offline→online trials: the switch rule (None: the algorithm's own; wsrl; plain)."""
    warmup_steps: int | None = None
    """Offline→online trials: the rule's warm-up env steps; None: the rule's own."""
    eval_env: str | None = None
    """Evaluate (and so score) trials in this env, not the one they act in: a simulator-trained policy on its
    real system; H2O."""


def _space(req: TuneRequest) -> list[Param]:
    from heron.agents.registry import get_agent
    from heron.config import field_docs

    spec = get_agent(req.algo)
    texts = req.params or tuple(DEFAULT_SPACES.get(req.algo, ()))
    if not texts:
        raise HeronError(f"no default search space for {req.algo}: give --param name=float:LOW:HIGH[:log] ... "
                         f"(fields: `heron train {req.algo} --help`)")
    params = [parse_param(t) for t in texts]
    fields = field_docs(spec.config)
    for p in params:
        if p.name not in fields:
            raise HeronError(f"--param {p.name}: {req.algo} has no hyperparameter {p.name!r} "
                             f"(see `heron train {req.algo} --help`)")
    fixed = {o.split("=", 1)[0] for o in req.overrides}
    clash = sorted(fixed & {p.name for p in params})
    if clash:
        raise HeronError(f"{clash[0]} is both searched (--param) and fixed (name=value); keep one")
    return params


def _format(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _cells(req: TuneRequest, overrides: tuple[str, ...]) -> list[Cell]:
    """The runs of one trial: its K seeds together by vmap where the loop allows, else one run each."""
    from heron.experiments.train import TrainRequest, choose_loop

    seeds = tuple(range(req.seed, req.seed + req.seeds))
    is_dataset = req.dataset is not None
    env = req.env_id
    eval_every = max(1, (req.online_steps or req.steps) // req.evaluations)
    if req.online_steps:
        vmap = False
    elif is_dataset:
        vmap = True
    else:
        vmap = choose_loop(TrainRequest(algo=req.algo, env_id=env, steps=req.steps, seeds=2)) == "compiled"
    groups = [seeds] if vmap else [(s,) for s in seeds]
    return [Cell(algo=req.algo, task=req.dataset if is_dataset else env, seeds=g, steps=req.steps,
                 is_dataset=is_dataset, env=env if is_dataset else None, online_steps=req.online_steps,
                 overrides=overrides, eval_every=eval_every, eval_episodes=req.eval_episodes,
                 checkpoint_every=max(1, (req.online_steps or req.steps) // 2), finetune_method=req.finetune_method,
                 warmup_steps=req.warmup_steps, eval_env=req.eval_env) for g in groups]


def _iqm(x) -> float:
    from rliable import metrics

    return float(metrics.aggregate_iqm(np.asarray(x, np.float64).reshape(-1, 1)))


def trial_objectives(root: Path, cells: list[Cell], objectives: tuple[str, ...], seconds: float) -> list[float]:
    """The objective values of a trial whose runs all finished (see the module docstring)."""
    from heron.experiments.bench import cell_status
    from heron.experiments.bench_report import per_seed_scores

    finals, aucs = [], []
    for cell in cells:
        state, path = cell_status(root, cell)
        if state != "finished":
            raise HeronError(f"trial run {cell.key} did not finish ({state})")
        _, curve, _ = per_seed_scores(path, len(cell.seeds))  # [evaluations, seeds]
        finals.extend(curve[-1])
        aucs.extend(curve.mean(axis=0))
    values = {"final": _iqm(finals), "auc": _iqm(aucs), "time": seconds}
    return [values[o] for o in objectives]


class _Pruning:
    """Eval observer: report the running mean return to Optuna; stop the run when it says prune."""

    def __init__(self, trial, offset: int):
        self.trial, self.offset = trial, offset

    def __call__(self, step, returns):
        import optuna

        self.trial.report(float(np.mean(returns)), self.offset + int(step))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")


def run_trial(root: str, cells: list[Cell], objectives: tuple[str, ...], prune: dict | None) -> dict:
    """Train a trial's runs (resuming any a killed worker left) and return its outcome.

    `prune`: {"storage": URL, "study": name, "trial_id": id, "pruner": an Optuna pruner} to report
    to Optuna from this process (a Ray worker opens the study itself; the pruner travels with the
    task because Optuna's storage does not keep it), or None."""
    import optuna

    trial = None
    if prune is not None:
        study = optuna.load_study(study_name=prune["study"], storage=prune["storage"], pruner=prune["pruner"])
        trial = optuna.trial.Trial(study, prune["trial_id"])
    start = time.perf_counter()
    for i, cell in enumerate(cells):
        observer = _Pruning(trial, i * (cell.steps + cell.online_steps)) if trial is not None else None
        try:
            result = run_cell(root, cell, observer=observer)
        except optuna.TrialPruned as err:
            return {"state": "pruned", "message": str(err)}
        if result.outcome == "failed":
            return {"state": "failed", "message": result.error}
    seconds = time.perf_counter() - start
    return {"state": "complete", "values": trial_objectives(Path(root), cells, objectives, seconds)}


def tune_dir(req: TuneRequest, root: str | os.PathLike | None) -> Path:
    name = req.study or f"{req.algo}-{slug(req.dataset or req.env_id)}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise HeronError(f"--study {name!r}: use letters, digits, - _ .")
    return Path(root or os.environ.get(TUNE_DIR_ENV) or "tune") / name


def _check(req: TuneRequest) -> None:
    from heron.agents.registry import get_agent

    spec = get_agent(req.algo)
    if req.env_id is None and req.dataset is None:
        raise HeronError(f"give --env ID (online) or --dataset D (offline) to tune {req.algo} on")
    if spec.family == "offline" and req.dataset is None:
        raise HeronError(f"{req.algo} learns from a dataset: add --dataset D")
    if spec.family != "offline" and req.dataset is not None:
        raise HeronError(f"{req.algo} is {spec.family}: tune it with --env ID, not --dataset")
    for name, low in (("trials", 1), ("seeds", 1), ("steps", 0 if req.online_steps else 1), ("evaluations", 1),
                      ("eval_episodes", 1), ("online_steps", 0)):  # 0 offline updates: RLPD's and H2O's setting
        if getattr(req, name) < low:
            raise HeronError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(req, name)}")
    switch = [f for f, v in (("--finetune-method", req.finetune_method), ("--warmup-steps", req.warmup_steps))
              if v is not None]
    if switch and not req.online_steps:
        raise HeronError(f"{switch[0]} applies to offline→online trials: add --dataset D --online-steps M")
    if req.eval_env is not None and req.dataset is not None and not req.online_steps:
        raise HeronError("--eval-env applies to online and offline→online trials: add --online-steps M (an offline "
                         "trial is evaluated in --env)")
    bad = [o for o in req.objectives if o not in OBJECTIVES]
    if bad or not req.objectives or len(set(req.objectives)) != len(req.objectives):
        raise HeronError(f"--objective must be distinct values from {', '.join(OBJECTIVES)}, got {list(req.objectives)}")
    if req.pruner not in ("auto", "median", "none"):
        raise HeronError(f"--pruner must be auto, median or none, got {req.pruner!r}")
    if req.pruner == "median" and len(req.objectives) > 1:
        raise HeronError("pruning needs a single objective (Optuna cannot prune multi-objective studies): "
                         "drop --pruner median or keep one --objective")
    from heron.experiments.train import check_budget

    searched = {t.split("=", 1)[0] for t in req.params or DEFAULT_SPACES.get(req.algo, ())}
    check_budget(spec, req.overrides, req.steps, req.online_steps, req.finetune_method, req.warmup_steps,
                 learning_starts_known="learning_starts" not in searched)  # else each trial's run checks it


def _fail_stale_trials(study) -> list[dict]:
    """Trials left RUNNING by a process that is gone: mark them failed, return their params to retry."""
    from optuna.trial import TrialState

    from heron.tracking.run import pid_alive

    retry = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner") or {}
        if owner.get("host") == socket.gethostname() and not pid_alive(owner.get("pid", -1)):
            study.tell(t.number, state=TrialState.FAIL)
            retry.append(t.params)
    return retry


def tune(req: TuneRequest, *, root: str | os.PathLike | None = None, storage: str | None = None, workers: int = 0,
         ray_address: str | None = None, on_trial=None) -> Path:
    """Run (or continue) the study until it holds `req.trials` finished (complete or pruned) trials."""
    import optuna
    from optuna.trial import TrialState

    _check(req)
    params = _space(req)
    from heron.envs.gym_envs import check_env_id
    from heron.envs.jax_envs import available_jax_envs

    for env_id in dict.fromkeys([req.env_id, req.eval_env]):  # an unknown env fails before any study exists
        if env_id is not None and env_id not in available_jax_envs():
            check_env_id(env_id)
    if req.dataset is not None:
        from heron.data.minari_io import resolve_dataset_path

        resolve_dataset_path(req.dataset)  # so does a missing dataset
    out = tune_dir(req, root)
    out.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    multi = len(req.objectives) > 1
    sampler = (optuna.samplers.NSGAIISampler(seed=req.seed) if multi
               else optuna.samplers.TPESampler(seed=req.seed))
    pruner = (optuna.pruners.NopPruner() if multi or req.pruner == "none"
              else optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(study_name=out.name, storage=url, load_if_exists=True, sampler=sampler,
                                    pruner=pruner, directions=[OBJECTIVES[o] for o in req.objectives])
    except ValueError as err:
        raise HeronError(f"study {out.name} at {url} exists with other objectives ({err}); keep its --objective "
                         "list or start another --study") from None
    recorded = study.user_attrs.get("request")
    mine = {"algo": req.algo, "env": req.env_id, "dataset": req.dataset, "steps": req.steps, "seeds": req.seeds,
            "seed": req.seed, "objectives": list(req.objectives), "overrides": list(req.overrides),
            "online_steps": req.online_steps, "space": [p.__dict__ | {"choices": list(p.choices)} for p in params]}
    # (settings added later are recorded only when set, so studies begun before them continue)
    mine |= {k: v for k, v in (("finetune_method", req.finetune_method), ("warmup_steps", req.warmup_steps),
                                ("eval_env", req.eval_env)) if v is not None}
    if recorded is not None and recorded != mine:
        changed = sorted(k for k in mine.keys() | recorded.keys() if recorded.get(k) != mine.get(k))
        raise HeronError(f"study {out.name} was started with other settings ({', '.join(changed)}); continue it with "
                         "the same command, or name a new --study")
    study.set_user_attr("request", mine)
    for retry in _fail_stale_trials(study):
        study.enqueue_trial(retry)

    def finished() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    def start_trial():
        trial = study.ask()
        trial.set_user_attr("owner", {"host": socket.gethostname(), "pid": os.getpid()})
        overrides = tuple(req.overrides) + tuple(f"{p.name}={_format(p.suggest(trial))}" for p in params)
        trial.set_user_attr("overrides", list(overrides))
        prune = None if multi or req.pruner == "none" else {"storage": url, "study": out.name,
                                                               "trial_id": trial._trial_id, "pruner": pruner}
        return trial, (str(out), _cells(req, overrides), tuple(req.objectives), prune)

    failures = []

    def finish_trial(trial, outcome: dict):
        if outcome["state"] == "failed":
            failures.append(outcome.get("message"))
        if outcome["state"] == "complete":
            study.tell(trial, outcome["values"])
        elif outcome["state"] == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            trial.set_user_attr("error", outcome.get("message"))
            study.tell(trial, state=TrialState.FAIL)
        if on_trial is not None:
            on_trial(trial.number, outcome)
        if len(failures) >= MAX_FAILURES and finished() == 0:  # a setting every trial fails on: stop, say why
            write_summary(study, out, req.objectives)
            raise HeronError(f"study {out.name}: its first {len(failures)} trials failed and none finished; the last "
                             f"said: {failures[-1]}")

    if workers or ray_address:
        _tune_on_ray(start_trial, finish_trial, finished, req.trials, workers, ray_address)
    else:
        while finished() < req.trials:
            trial, args = start_trial()
            finish_trial(trial, run_trial(*args))
    write_summary(study, out, req.objectives)
    return out


def _tune_on_ray(start_trial, finish_trial, finished, trials: int, workers: int, address: str | None) -> None:
    """Keep `workers` trials in flight as Ray tasks; ask for the next as each one ends."""
    import ray

    from heron.experiments.scale import DEFAULT_RETRIES, init_ray, wait_next

    init_ray(workers, address)
    try:
        remote = ray.remote(num_cpus=1, max_retries=DEFAULT_RETRIES, retry_exceptions=False)(run_trial)
        slots = workers or int(ray.cluster_resources().get("CPU", 1))
        pending = {}
        while True:
            while len(pending) < slots and finished() + len(pending) < trials:
                trial, args = start_trial()
                pending[remote.remote(*args)] = trial
            if not pending:
                break
            trial, outcome, crash = wait_next(pending)
            if crash is not None:
                outcome = {"state": "failed", "message": f"its worker died {DEFAULT_RETRIES + 1} times ({crash})"}
            finish_trial(trial, outcome)
    finally:
        ray.shutdown()


def write_summary(study, out: Path, objectives: tuple[str, ...]) -> dict:
    """best.json (the best trial, or the Pareto front, as override strings) and trials.csv."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    rows = ["number,state," + ",".join(objectives) + ",overrides"]
    for t in study.get_trials(deepcopy=False):
        values = t.values or [math.nan] * len(objectives)
        rows.append(f"{t.number},{t.state.name}," + ",".join(repr(float(v)) for v in values) + ","
                    + '"' + " ".join(t.user_attrs.get("overrides", [])) + '"')
    _fs.atomic_write_bytes(out / "trials.csv", ("\n".join(rows) + "\n").encode())
    best = [{"number": t.number, "values": dict(zip(objectives, t.values)), "overrides": t.user_attrs["overrides"]}
            for t in (study.best_trials if complete else [])]
    summary = {"objectives": list(objectives), "trials": len(study.trials), "complete": len(complete),
               "pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
               "failed": len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))),
               "pareto_front" if len(objectives) > 1 else "best": best}
    _fs.atomic_write_json(out / "best.json", summary)
    return summary
