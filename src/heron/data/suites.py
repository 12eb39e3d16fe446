"""Local D4RL-style dataset suites: `heron data suite make NAME`.

For every task the suite trains one SAC agent (the compiled loop where the env has a pure-JAX
twin, the host Gymnasium loop otherwise), snapshotting the policy every `snapshot_every` env
steps, and writes six datasets following D4RL (Fu et al. 2020, and its collection script
scripts/generation/mujoco/collect_data.py):

    random         uniform random actions (D4RL: `env.action_space.sample()`)
    expert         the fully trained policy
    medium         the snapshot closest to `medium_fraction` (1/3) of the expert's normalised score,
                   taken at the first snapshot that reaches it or the one before (D4RL early-stopped
                   its training "at about 1/3 of the expert's performance")
    medium-replay  every transition of the training run's replay buffer up to the medium snapshot
    medium-expert  the medium episodes followed by the expert episodes (equal sizes)
    full-replay    the whole replay buffer of the expert's training run (D4RL-v2); the task's
                   replay reference (D_ref of SACo) in the manifest

Behaviour policies act stochastically (sampled actions), as D4RL's script did. random, medium and
expert hold whole episodes, at least `dataset_transitions` transitions each (D4RL cut its last
episode at exactly 1M steps instead). Scores are normalised between the mean returns of
`reference_episodes` fresh episodes of the random and of the (stochastic) expert policy:
ref_min_score and ref_max_score, stored in every dataset and in the manifest. Medium candidates
are scored by the same formula from `snapshot_eval_episodes` episodes each.

Layout: ROOT/NAME/<slug>-<kind>/ (a heron dataset, loadable as `load_dataset("NAME/<slug>-<kind>")`)
and ROOT/NAME/manifest.json (generating config, provenance, per-task reference scores and medium
choice, per-dataset sizes and SHA-256 of every file). Reproducible: the same preset and seed give
byte-identical datasets on the same machine and versions; each task's randomness derives from
(seed, env id) only, so `--tasks` subsets build the same datasets as a whole suite.

Presets and cost (measured on this project's 2-core x86 CPU, shared with other jobs, load ~5;
`time heron data suite make small --root /tmp/suites`):

    small  Pendulum-v1: SAC 12k steps (compiled loop, ~7.5 ms/step), 20k-transition datasets,
                        snapshots every 200 steps; ~110 s
           Hopper-v5:   SAC 15k steps (host loop, ~95-115 steps/s), 20k-transition datasets,
                        snapshots every 1.5k steps; ~195 s (collecting 60k transitions: ~30 s)
           HalfCheetah-v5: SAC 40k steps (host loop), 20k-transition datasets, snapshots every 2k
                        steps; 1017 s beside the test suite and a benchmark (~50 steps/s; at 15k steps
                        its policy still returned -148 against random's -284, so 40k)
           Pendulum and Hopper alone: 307 s, 12 datasets, 18 MB
    full   Pendulum-v1: SAC 50k steps, 1M-transition datasets; ~10 min
           Hopper-v5, HalfCheetah-v5, Walker2d-v5: SAC 1M steps each (published defaults, buffer 1M,
                        snapshots every 10k), 1M-transition random/medium/expert, medium-expert 2M,
                        full-replay 1M, medium-replay = the steps until the medium snapshot;
                        per task ~2.5-3 h of training (1M steps at ~100 steps/s) + ~25 min of
                        collection (3M transitions + 200 reference episodes + medium candidates)
           whole suite: ~10 CPU-hours on 2 cores, ~2 GB on disk, ~0.5 GB RAM per task
                        (replay buffer 1M rows + ~100 policy snapshots). Build it task by task
                        (`--tasks hopper`, then `--tasks halfcheetah`, ...) so a crash costs one task.
    sim-real  small's budgets on the "real" systems of heron/envs/sim_real.py (H2O's real data):
           pendulum-real (heron/Pendulum-real-v0, g = 15): 157 s; hopper-real (heron/Hopper-real-v0,
                        torso mass doubled): 233 s beside a benchmark, its expert returning ~300

Failure and overwrite rules: a task is the unit of work. Its six datasets are written into a
staging directory inside the suite, moved into place only when all six are complete, and then
the manifest is rewritten atomically; a failure removes the staging directory, so the suite
holds only whole tasks, each listed in the manifest. Adding tasks to an existing suite made with
the same preset and seed needs no flag (so a long build can continue task by task; a preset that
has since gained tasks, or changed only tasks not yet built, still counts as the same); rebuilding a
task that exists, or a suite made with another preset or seed or with other budgets for a task it
holds, needs `force` (the latter then drops the old suite's tasks when the first new task is committed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from heron import _fs
from heron.agents import sac
from heron.data.collect import (
    AgentPolicy,
    RandomPolicy,
    episode_returns,
    replay_to_episodes,
    rollout_gym,
    rollout_jax,
)
from heron.data.dataset import EpisodeDataset, concatenate, from_episodes
from heron.data.minari_io import HERON_FILE, default_datasets_root, save_dataset
from heron.errors import HeronError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert", "full-replay")
REPLAY_REFERENCE_KIND = "full-replay"


# ===================================================================== presets
@dataclass(frozen=True)
class TaskBudget:
    """How one task's policies are trained and its datasets collected."""

    slug: str
    """Short task name used in dataset names (`<suite>/<slug>-<kind>`)."""
    env_id: str
    """Gymnasium id (a pure-JAX twin, if heron has one, trains in the compiled loop)."""
    expert_steps: int
    """Env steps of SAC training; the final policy is the expert, its whole buffer is full-replay."""
    snapshot_every: int
    """Env steps between policy snapshots (the candidates for the medium policy)."""
    dataset_transitions: int
    """Minimum transitions of random, medium and expert (whole episodes; medium-expert has twice as many)."""
    reference_episodes: int
    """Episodes of the random and of the expert policy whose mean returns are ref_min_score / ref_max_score."""
    snapshot_eval_episodes: int
    """Episodes scoring each medium candidate."""
    agent: sac.Config = field(default_factory=sac.Config)
    """SAC hyperparameters; buffer_size must be at least expert_steps (the buffer is saved whole)."""
    collect_envs: int = 8
    """Gymnasium envs stepped together while collecting (host-loop tasks only)."""

    def __post_init__(self):
        for name in ("expert_steps", "snapshot_every", "dataset_transitions", "reference_episodes",
                     "snapshot_eval_episodes", "collect_envs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise HeronError(f"task {self.slug}: {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.expert_steps % self.agent.num_envs or self.snapshot_every % self.agent.num_envs:
            raise HeronError(f"task {self.slug}: expert_steps and snapshot_every must be multiples of agent.num_envs="
                             f"{self.agent.num_envs} (the loops step all envs together)")
        if self.agent.buffer_size < self.expert_steps:
            raise HeronError(f"task {self.slug}: agent.buffer_size={self.agent.buffer_size} is smaller than expert_steps="
                             f"{self.expert_steps}; full-replay needs the whole buffer, so raise buffer_size")
        if self.snapshot_every >= self.expert_steps:
            raise HeronError(f"task {self.slug}: snapshot_every={self.snapshot_every} leaves no medium candidate before "
                             f"expert_steps={self.expert_steps}; lower it")


@dataclass(frozen=True)
class SuitePreset:
    """A named set of task budgets."""

    name: str
    """Preset name (`--preset`)."""
    tasks: tuple[TaskBudget, ...]
    """The tasks, in build order."""
    medium_fraction: float = 1 / 3
    """Target normalised score of the medium policy, as a fraction of expert − random (D4RL: about 1/3)."""
    description: str = ""
    """One line for `heron data suite list`: what it costs."""

    def __post_init__(self):
        if not 0.0 < self.medium_fraction < 1.0:
            raise HeronError(f"preset {self.name}: medium_fraction must be in (0, 1), got {self.medium_fraction}")
        slugs = [t.slug for t in self.tasks]
        if not slugs or len(set(slugs)) != len(slugs):
            raise HeronError(f"preset {self.name}: needs at least one task and unique task slugs, got {slugs}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _task(slug, env_id, expert_steps, snapshot_every, transitions, ref_eps, snap_eps, **agent) -> TaskBudget:
    return TaskBudget(slug, env_id, expert_steps, snapshot_every, transitions, ref_eps, snap_eps,
                      sac.Config(buffer_size=expert_steps, **agent))


def _pendulum(*budget, **agent) -> TaskBudget:
    return _task("pendulum", "Pendulum-v1", *budget, **agent)


# Measured on this project's 2-core CPU: `small` builds in about five minutes (see the module docstring).
SMALL = SuitePreset(
    name="small",
    tasks=(
        _pendulum(12_000, 200, 20_000, 100, 20, learning_starts=1_000),
        _task("hopper", "Hopper-v5", 15_000, 1_500, 20_000, 10, 5, learning_starts=2_000),
        # HalfCheetah never falls, so early SAC only flails: after 15k steps its policy returned -148 (random -284)
        _task("halfcheetah", "HalfCheetah-v5", 40_000, 2_000, 20_000, 10, 5, learning_starts=2_000),
    ),
    description="Pendulum-v1 (12k SAC steps), Hopper-v5 (15k) and HalfCheetah-v5 (40k), 20k-transition datasets; "
                "minutes on 2 cores",
)

# D4RL sizes: 1M-transition datasets, 1M-step SAC experts (published SAC defaults, CleanRL warm-up).
FULL = SuitePreset(
    name="full",
    tasks=(
        _pendulum(50_000, 500, 1_000_000, 100, 20, learning_starts=5_000),
        _task("hopper", "Hopper-v5", 1_000_000, 10_000, 1_000_000, 100, 10),
        _task("halfcheetah", "HalfCheetah-v5", 1_000_000, 10_000, 1_000_000, 100, 10),
        _task("walker2d", "Walker2d-v5", 1_000_000, 10_000, 1_000_000, 100, 10),
    ),
    description="Pendulum-v1, Hopper-v5, HalfCheetah-v5, Walker2d-v5; 1M-step SAC experts, 1M-transition datasets; "
                "about 10 CPU-hours on 2 cores",
)

# The "real" systems of the sim/real pairs (heron/envs/sim_real.py) at the small budgets: the fixed real-world
# data H2O learns from beside the stock simulator (`heron train h2o --dataset sim-real/pendulum-real-medium
# --env Pendulum-v1 --eval-env heron/Pendulum-real-v0`).
_REAL_SYSTEMS = {"pendulum": "heron/Pendulum-real-v0", "hopper": "heron/Hopper-real-v0"}
SIM_REAL = SuitePreset(
    name="sim-real",
    tasks=tuple(dataclasses.replace(t, slug=f"{t.slug}-real", env_id=_REAL_SYSTEMS[t.slug])
                for t in SMALL.tasks if t.slug in _REAL_SYSTEMS),
    description="the real systems of the sim/real pairs (Pendulum with g = 15, Hopper with a doubled torso mass) at "
                "small's budgets; datasets for H2O",
)

PRESETS: dict[str, SuitePreset] = {p.name: p for p in (SMALL, FULL, SIM_REAL)}


def get_preset(preset: str | SuitePreset) -> SuitePreset:
    if isinstance(preset, SuitePreset):
        return preset
    if preset not in PRESETS:
        raise HeronError(f"unknown suite preset {preset!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def select_tasks(preset: SuitePreset, tasks) -> tuple[TaskBudget, ...]:
    """The preset's tasks named by slug or env id (all when `tasks` is None), in the preset's order."""
    if tasks is None:
        return preset.tasks
    wanted = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    by_name = {t.slug: t for t in preset.tasks} | {t.env_id: t for t in preset.tasks}
    unknown = [t for t in wanted if t not in by_name]
    if unknown or not wanted:
        valid = ", ".join(f"{t.slug} ({t.env_id})" for t in preset.tasks)
        what = f"unknown task {unknown[0]!r}" if unknown else "no task given"
        raise HeronError(f"{what} for preset {preset.name}: choose from {valid}, comma-separated")
    chosen = {by_name[t].slug for t in wanted}
    return tuple(t for t in preset.tasks if t.slug in chosen)


# ===================================================================== keys
_STREAMS = {"train": 0, "random": 1, "medium": 2, "expert": 3, "reference-random": 4, "reference-expert": 5,
            "snapshot-eval": 6}


def task_key(seed: int, env_id: str) -> jax.Array:
    """The task's root key: a function of (seed, env id) only, so task subsets reproduce whole suites."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(env_id.encode()) & 0x7FFFFFFF)


def _stream(key: jax.Array, name: str) -> jax.Array:
    return jax.random.fold_in(key, _STREAMS[name])


# ===================================================================== training
@dataclass
class TrainedRun:
    """A finished training run: policy snapshots (oldest first, the last is the expert) and its buffer."""

    snapshots: list[tuple[int, object]]
    buffer: object
    num_envs: int
    loop: str
    seconds: float


def _uses_compiled_loop(env_id: str) -> bool:
    from heron.envs.jax_envs import available_jax_envs

    return env_id in available_jax_envs()


def train_snapshots(task: TaskBudget, key: jax.Array, log: Callable[[str], None]) -> TrainedRun:
    """Train SAC on the task for `expert_steps`, keeping the agent state every `snapshot_every` steps."""
    spec = sac_spec()
    start = time.perf_counter()
    if _uses_compiled_loop(task.env_id):
        from heron.envs.jax_envs import make_jax_env
        from heron.loops import online_jax

        env = make_jax_env(task.env_id)
        ls = online_jax.init_loop(key, spec, task.agent, env, task.expert_steps)
        per_iteration = online_jax.steps_per_iteration(spec, task.agent)
        total = -(-task.expert_steps // per_iteration)
        every = max(1, task.snapshot_every // per_iteration)
        snapshots, iteration = [], 0
        while iteration < total:
            n = min(every, total - iteration)
            ls, metrics = online_jax.run_chunk(ls, n)
            iteration += n
            snapshots.append((iteration * per_iteration, ls.agent))  # states are immutable: no copy needed
            if _tenth(iteration * per_iteration, n * per_iteration, task.expert_steps):
                log(f"{task.slug}: {iteration * per_iteration}/{total * per_iteration} SAC steps, "
                    f"training return {float(metrics['episode_return']):.1f}")
        return TrainedRun(snapshots, ls.buffer, int(task.agent.num_envs), "compiled", time.perf_counter() - start)

    from heron.loops.online_host import HostLoop, HostLoopConfig

    snapshots: list = []

    class Snapshots:
        def on_log(self, step, metrics):
            if "train/episode_return" in metrics and _tenth(step, task.snapshot_every, task.expert_steps):
                log(f"{task.slug}: {step}/{task.expert_steps} SAC steps, training return "
                    f"{metrics['train/episode_return']:.1f}, {metrics['time/steps_per_second']:.0f} steps/s")

        def on_eval(self, step, returns):
            pass

        def on_checkpoint(self, step, tree, meta):
            # A host-loop checkpoint is also a segment boundary (envs reset); replay_to_episodes
            # cuts the unfinished episodes there as truncations.
            snapshots.append((step, tree["agent"]))

    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    loop = HostLoop(spec, task.agent, HostLoopConfig(
        env_id=task.env_id, total_steps=task.expert_steps, seed=seed, eval_every=0, eval_episodes=0,
        log_every=task.snapshot_every, checkpoint_every=task.snapshot_every))
    try:
        final = loop.run(loop.init(), Snapshots())
    finally:
        loop.close()
    snapshots.append((final["meta"]["env_steps"], final["tree"]["agent"]))
    return TrainedRun(snapshots, final["tree"]["buffer"], int(task.agent.num_envs), "host", time.perf_counter() - start)


def _tenth(step: int, chunk: int, total: int) -> bool:
    """Whether the chunk ending at `step` crossed a tenth of the run (progress lines stay few)."""
    return step >= total or step * 10 // total != (step - chunk) * 10 // total


def sac_spec():
    from heron.agents import get_agent

    return get_agent("sac")


def rollout(task: TaskBudget, policy, key: jax.Array, *, min_transitions=None, num_episodes=None) -> list[dict]:
    """Episodes of `policy` in the task's env (pure-JAX where heron has the env, else Gymnasium)."""
    if _uses_compiled_loop(task.env_id):
        from heron.envs.jax_envs import make_jax_env

        return rollout_jax(make_jax_env(task.env_id), policy, key, min_transitions, num_episodes=num_episodes)
    return rollout_gym(task.env_id, policy, key, min_transitions, num_episodes=num_episodes, num_envs=task.collect_envs)


# ===================================================================== one task
def normalized(value, ref_min: float, ref_max: float):
    return 100.0 * (np.asarray(value, np.float64) - ref_min) / (ref_max - ref_min)


def choose_medium(scores: list[tuple[int, float]], target: float) -> int:
    """Index of the medium snapshot among (step, normalised score) pairs, oldest first: at the first
    score >= target, that one or the previous, whichever is closer; if none reaches it, the closest."""
    for i, (_, s) in enumerate(scores):
        if s >= target:
            if i > 0 and abs(scores[i - 1][1] - target) < abs(s - target):
                return i - 1
            return i
    return int(np.argmin([abs(s - target) for _, s in scores]))


def build_task(task: TaskBudget, preset: SuitePreset, suite: str, seed: int, out_dir: Path,
               log: Callable[[str], None]) -> dict:
    """Train, collect and write the task's six datasets under `out_dir`; returns its manifest records."""
    spec = sac_spec()
    key = task_key(seed, task.env_id)
    run = train_snapshots(task, _stream(key, "train"), log)
    expert_step, expert_state = run.snapshots[-1]

    ref_random = episode_returns(rollout(task, RandomPolicy(), _stream(key, "reference-random"),
                                         num_episodes=task.reference_episodes))
    ref_expert = episode_returns(rollout(task, AgentPolicy(spec, expert_state), _stream(key, "reference-expert"),
                                         num_episodes=task.reference_episodes))
    ref_min, ref_max = float(ref_random.mean()), float(ref_expert.mean())
    if not ref_max > ref_min:
        raise HeronError(f"{task.slug}: the trained policy (mean return {ref_max:.1f}) is no better than random "
                         f"({ref_min:.1f}), so scores cannot be normalised; raise expert_steps in the preset")
    log(f"{task.slug}: reference returns random {ref_min:.1f}, expert {ref_max:.1f}")

    # Medium: score the snapshots oldest first, up to the first that reaches the target.
    target = 100.0 * preset.medium_fraction
    eval_key = _stream(key, "snapshot-eval")
    scores = []
    for i, (step, state) in enumerate(run.snapshots[:-1]):
        returns = episode_returns(rollout(task, AgentPolicy(spec, state), jax.random.fold_in(eval_key, i),
                                          num_episodes=task.snapshot_eval_episodes))
        scores.append((step, float(normalized(returns.mean(), ref_min, ref_max))))
        if scores[-1][1] >= target:
            break
    medium_index = choose_medium(scores, target)
    medium_step, medium_state = run.snapshots[medium_index]
    log(f"{task.slug}: medium policy = snapshot at step {medium_step} (normalised score {scores[medium_index][1]:.1f})")

    common = {"generator": "heron data suite make", "suite": suite, "preset": preset.name, "seed": seed,
              "task": task.slug, "env_id": task.env_id, "agent": spec.name, "training_loop": run.loop,
              "training_env_steps": expert_step}
    meta = {"env_id": task.env_id, "ref_min_score": ref_min, "ref_max_score": ref_max}
    obs_space, act_space = _spaces(task)

    def make(kind: str, episodes: list[dict], **step) -> EpisodeDataset:
        return from_episodes(episodes, obs_space, act_space, name=f"{suite}/{task.slug}-{kind}",
                             provenance=({**common, "kind": kind, **step},), **meta)

    n = task.dataset_transitions
    datasets = {
        "random": make("random", rollout(task, RandomPolicy(), _stream(key, "random"), min_transitions=n),
                       policy="uniform-random"),
        "medium": make("medium", rollout(task, AgentPolicy(spec, medium_state), _stream(key, "medium"), min_transitions=n),
                       policy="sac-stochastic", policy_env_step=medium_step),
        "expert": make("expert", rollout(task, AgentPolicy(spec, expert_state), _stream(key, "expert"), min_transitions=n),
                       policy="sac-stochastic", policy_env_step=expert_step),
        "medium-replay": make("medium-replay", replay_to_episodes(run.buffer, run.num_envs, medium_step),
                              policy="sac-replay-buffer", replay_env_steps=medium_step),
        "full-replay": make("full-replay", replay_to_episodes(run.buffer, run.num_envs),
                            policy="sac-replay-buffer", replay_env_steps=expert_step),
    }
    datasets["medium-expert"] = concatenate(
        [datasets["medium"], datasets["expert"]], f"{suite}/{task.slug}-medium-expert",
        {**common, "kind": "medium-expert", "policy": "sac-stochastic medium+expert"})

    records = {}
    replay_reference = f"{task.slug}-{REPLAY_REFERENCE_KIND}"
    for kind in KINDS:
        ds = datasets[kind]
        rel = f"{task.slug}-{kind}"
        save_dataset(ds, out_dir / rel)
        returns = ds.episode_returns()
        records[rel] = {
            "name": ds.name, "path": rel, "task": task.slug, "kind": kind, "env_id": task.env_id,
            "episodes": ds.num_episodes, "transitions": ds.num_transitions,
            "mean_return": float(returns.mean()), "normalized_score": float(ds.normalized_score(returns.mean())),
            "ref_min_score": ref_min, "ref_max_score": ref_max, "replay_reference": replay_reference,
            "sha256": _dataset_digests(out_dir / rel),
        }
        log(f"{task.slug}: wrote {ds.name} ({ds.num_episodes} episodes, {ds.num_transitions} transitions, "
            f"normalised score {records[rel]['normalized_score']:.1f})")
    task_record = {
        "env_id": task.env_id, "agent": spec.name, "agent_config": dataclasses.asdict(task.agent),
        "training_loop": run.loop, "training_seconds": round(run.seconds, 1), "expert_env_steps": expert_step,
        "ref_min_score": ref_min, "ref_max_score": ref_max, "reference_episodes": task.reference_episodes,
        "reference_policies": {"min": "uniform-random", "max": "sac-stochastic (final policy)"},
        "medium": {"env_step": medium_step, "normalized_score": scores[medium_index][1], "target": target,
                   "eval_episodes": task.snapshot_eval_episodes},
        "snapshot_scores": [{"env_step": s, "normalized_score": v} for s, v in scores],
        "replay_reference": replay_reference,
        "datasets": [f"{task.slug}-{kind}" for kind in KINDS],
    }
    return {"task": task_record, "datasets": records}


def _spaces(task: TaskBudget):
    if _uses_compiled_loop(task.env_id):
        from heron.envs.jax_envs import make_jax_env

        env = make_jax_env(task.env_id)
        return env.observation_space, env.action_space
    from heron.envs.gym_envs import make_env

    env = make_env(task.env_id)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def _dataset_digests(path: Path) -> dict[str, str]:
    """SHA-256 of a dataset's files: the data files' from its heron.json, plus heron.json's own."""
    heron_meta = _fs.read_json(path / HERON_FILE)
    return {**heron_meta["sha256"], HERON_FILE: _fs.sha256_file(path / HERON_FILE)}


# ===================================================================== the suite
def read_manifest(suite_dir: str | os.PathLike) -> dict | None:
    """The suite's manifest, or None if it has none; HeronError if it is unreadable."""
    path = Path(suite_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = _fs.read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HeronError(f"{path} cannot be read ({err}): delete the suite directory or rebuild it with --force") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise HeronError(f"{path} is not a heron suite manifest (format {MANIFEST_FORMAT}); rebuild it with --force")
    return manifest


def verify_suite(suite_dir: str | os.PathLike) -> list[str]:
    """Datasets whose files no longer match the manifest's SHA-256 (empty: all intact)."""
    suite_dir = Path(suite_dir)
    manifest = read_manifest(suite_dir)
    if manifest is None:
        raise HeronError(f"{suite_dir} has no {MANIFEST}: it is not a suite made by `heron data suite make`")
    bad = []
    for rel, record in manifest["datasets"].items():
        for file, digest in record["sha256"].items():
            p = suite_dir / rel / file
            if not p.is_file() or _fs.sha256_file(p) != digest:
                bad.append(rel)
                break
    return bad


def _check_suite_name(name: str) -> None:
    if not isinstance(name, str) or not name or name.startswith(".") or "/" in name or "\\" in name or name in ("..",):
        raise HeronError(f"bad suite name {name!r}: use a plain directory name such as `small` (no slashes, not hidden)")


def make_suite(name: str, preset: str | SuitePreset | None = None, *, tasks=None, seed: int = 0,
               root: str | os.PathLike | None = None, force: bool = False,
               log: Callable[[str], None] | None = None, argv: list[str] | None = None) -> Path:
    """Build (or extend) the suite ROOT/NAME; returns its directory. See the module docstring.

    `preset` is a preset name or a `SuitePreset` (tests pass tiny ones); None means the preset
    named NAME. `tasks`: slugs or env ids (a list or a comma-separated string), default all.
    """
    from heron.tracking.provenance import collect_provenance

    _check_suite_name(name)
    if preset is None:
        if name not in PRESETS:
            raise HeronError(f"suite {name!r} is not a preset name: pass --preset ({', '.join(PRESETS)})")
        preset = name
    preset = get_preset(preset)
    chosen = select_tasks(preset, tasks)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise HeronError(f"--seed must be a non-negative integer, got {seed!r}")
    log = log or (lambda message: None)
    suite_dir = Path(root if root is not None else default_datasets_root()) / name
    config = {"preset": preset.to_dict(), "seed": seed}

    manifest = read_manifest(suite_dir) if suite_dir.is_dir() else None
    replace_all = False
    foreign = manifest is None and suite_dir.exists() and any(not p.name.startswith(".") for p in suite_dir.iterdir())
    if foreign and not force:
        raise HeronError(f"{suite_dir} exists and is not a suite (no {MANIFEST}): choose another NAME or --root, "
                         "or pass --force to replace its datasets")
    if manifest is not None:
        if not _fits(manifest.get("config", {}), config, manifest.get("tasks", {})):
            old = manifest.get("config", {})
            if not force:
                raise HeronError(f"suite {suite_dir} was made with preset {old.get('preset', {}).get('name')!r} seed "
                                 f"{old.get('seed')!r} (or other budgets): choose another NAME, or pass --force to replace it")
            replace_all = True
        else:
            existing = [t.slug for t in chosen if t.slug in manifest.get("tasks", {})]
            if existing and not force:
                raise HeronError(f"suite {suite_dir} already has task(s) {', '.join(existing)}: pass --force to rebuild "
                                 "them, or --tasks to add others")
    suite_dir.mkdir(parents=True, exist_ok=True)
    provenance = collect_provenance(list(argv if argv is not None else sys.argv), seed)

    for task in chosen:
        log(f"{task.slug}: building {', '.join(KINDS)} ({task.env_id})")
        staging = suite_dir / f".staging-{task.slug}-{os.getpid()}-{os.urandom(3).hex()}"
        try:
            records = build_task(task, preset, name, seed, staging, log)
            _commit(staging, suite_dir, records["datasets"])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if manifest is None or replace_all:
            if manifest is not None:  # the old suite's other tasks go once the first new task is in place
                for rel in manifest.get("datasets", {}):
                    if rel not in records["datasets"]:
                        shutil.rmtree(suite_dir / rel, ignore_errors=True)
            manifest = {"format": MANIFEST_FORMAT, "suite": name, "generator": "heron data suite make",
                        "config": config, "kinds": list(KINDS), "tasks": {}, "datasets": {}}
            replace_all = False
        manifest["config"] = config  # a preset that gained tasks: the built ones' budgets are unchanged (_fits)
        manifest["provenance"] = provenance
        manifest["tasks"][task.slug] = records["task"]
        manifest["datasets"].update(records["datasets"])
        manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        _fs.atomic_write_json(suite_dir / MANIFEST, manifest)
        log(f"{task.slug}: done; manifest {suite_dir / MANIFEST}")
    return suite_dir


def _fits(old: dict, new: dict, built) -> bool:
    """Whether a suite made under config `old`, with tasks `built`, can take tasks under config `new`: the same
    seed, preset name and medium fraction, and every built task under the same budget. So a preset that gained a
    task (or changed one not built yet) extends an existing suite without rebuilding the others."""
    old_preset, new_preset = old.get("preset") or {}, new["preset"]
    if (old.get("seed"), old_preset.get("name"), old_preset.get("medium_fraction")) != (
            new["seed"], new_preset["name"], new_preset["medium_fraction"]):
        return False
    old_tasks = {t.get("slug"): t for t in old_preset.get("tasks", [])}
    new_tasks = {t["slug"]: t for t in new_preset["tasks"]}
    return all(slug in new_tasks and old_tasks.get(slug) == new_tasks[slug] for slug in built)


def _commit(staging: Path, suite_dir: Path, records: dict) -> None:
    """Move a task's finished datasets from staging into the suite (replacing older copies)."""
    for rel in records:
        target = suite_dir / rel
        if target.exists():
            old = suite_dir / f".{rel}.old-{os.getpid()}-{os.urandom(3).hex()}"
            os.replace(target, old)
            os.replace(staging / rel, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging / rel, target)
    _fs.fsync_dir(suite_dir)


def list_suites(root: str | os.PathLike | None = None) -> list[tuple[str, dict]]:
    """(name, manifest) of every suite under ROOT, by name."""
    root = Path(root if root is not None else default_datasets_root())
    if not root.is_dir():
        return []
    found = []
    for p in sorted(root.iterdir()):
        if p.is_dir() and (p / MANIFEST).is_file():
            try:
                found.append((p.name, read_manifest(p)))
            except HeronError:
                continue
    return found
