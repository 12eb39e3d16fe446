"""`heron train ALGO --dataset PATH_OR_NAME [--env ID]`: an offline loop in a tracked run.

The run directory is the online runs' (config, provenance, metrics, eval, checkpoints, report);
in addition `config.json` and `provenance.json` record the dataset: its resolved path, name,
size, reference returns and fingerprint (the SHA-256 table from its heron.json plus the hash of
heron.json itself, or the hashes of its data files when it has none). `--resume` refuses a
dataset whose fingerprint changed, so a resumed run learns from the same data.

`--steps` counts gradient updates. `--env` defaults to the dataset's env id; `--env none`
(or a dataset without one) trains without env evaluation, with the offline metric only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np

from heron import _fs
from heron.agents.registry import AgentSpec, agent_info, available, get_agent
from heron.config import config_to_dict
from heron.errors import HeronError
from heron.tracking.run import PROVENANCE_FILE, Run, default_runs_root


def _offline_algos() -> str:
    return ", ".join(n for n in available() if agent_info(n).family == "offline")


def _check_request(req, spec: AgentSpec) -> None:
    if spec.family != "offline":
        raise HeronError(f"{spec.name} is an online ({spec.family}) algorithm and cannot learn from --dataset; use an "
                         f"offline algorithm ({_offline_algos()}), or drop --dataset to train {spec.name} with --env")
    if req.dataset is None:
        raise HeronError(f"{spec.name} learns from a dataset: `heron train {spec.name} --dataset PATH_OR_NAME` "
                         "(make one with `heron data suite make small`)")
    if req.loop != "auto":
        raise HeronError(f"--loop {req.loop} applies to online training; offline runs have one loop: drop --loop")


def dataset_fingerprint(path: Path) -> dict:
    """What identifies the dataset's content: heron.json's SHA-256 table and its own hash, or
    the hashes of the data files (a plain Minari directory, or a D4RL-style file)."""
    from heron.data.minari_io import DATA_FILE, HERON_FILE, METADATA_FILE

    if path.is_file():
        return {"file": _fs.sha256_file(path)}
    heron_file = path / HERON_FILE
    if heron_file.is_file():
        recorded = _fs.read_json(heron_file).get("sha256") or {}
        return {**{rel: recorded.get(rel) for rel in sorted(recorded)}, HERON_FILE: _fs.sha256_file(heron_file)}
    return {rel: _fs.sha256_file(path / rel) for rel in (DATA_FILE, METADATA_FILE) if (path / rel).is_file()}


def _load_dataset(name: str):
    from heron.data.minari_io import load_dataset, resolve_dataset_path

    path = resolve_dataset_path(name).resolve()
    ds = load_dataset(path)
    info = {"given": name, "path": str(path), "name": ds.name, "env_id": ds.env_id, "episodes": ds.num_episodes,
            "transitions": ds.num_transitions, "ref_min_score": ds.ref_min_score, "ref_max_score": ds.ref_max_score,
            "sha256": dataset_fingerprint(path), **_space_records(ds)}
    return ds, info


def _space_records(ds) -> dict:
    # `heron eval RUN --env ID` checks ID against these when the run has no env of its own
    from minari.serialization import serialize_space

    return {"observation_space": serialize_space(ds.observation_space), "action_space": serialize_space(ds.action_space)}


def _resolve_env(req, ds) -> str | None:
    from heron.envs.gym_envs import check_env_id
    from heron.envs.jax_envs import available_jax_envs
    from heron.experiments.train import NO_ENV

    env_id = req.env_id or ds.env_id
    if env_id is None or env_id.lower() == NO_ENV:
        return None
    if env_id not in available_jax_envs():
        check_env_id(env_id)
    return env_id


def train_offline(req, spec: AgentSpec, *, runs_root: Path | None = None, progress: bool = True,
                  argv: list[str] | None = None, resume: Path | None = None, observer=None) -> Path:
    """Train (or resume) one offline run; every check happens before a run directory exists."""
    from heron.experiments.train import (
        RunCallbacks,
        resolve_agent_config,
        tracked,
        write_report,
    )
    from heron.loops import offline

    _check_request(req, spec)
    ds, info = _load_dataset(req.dataset)
    used = offline.check_dataset(spec, ds)
    info["episodes_used"] = used.num_episodes  # action-free episodes are left out
    env_id = _resolve_env(req, used)
    if env_id is not None:
        evaluator = offline.PolicyEvaluator(spec, env_id, req.eval_episodes)
        try:
            offline.check_env_matches(used, *evaluator.spaces, env_id)
        finally:
            evaluator.close()
    agent_cfg = resolve_agent_config(spec, req.overrides, req.steps)
    eval_every = req.eval_every or max(req.steps // 10, 1)
    log_every = req.log_every or max(req.steps // 100, 1)

    if resume is None:
        config = {"request": config_to_dict(req), "loop": "offline", "agent": config_to_dict(agent_cfg),
                  "algo": req.algo, "env": env_id, "seeds": req.seeds, "seed": req.seed, "steps": req.steps,
                  "dataset": info}
        run = Run.create(runs_root or default_runs_root(), f"{req.algo}-{info['name']}", config, argv or sys.argv,
                         req.seed, seeds=req.seeds)
        # The dataset is part of where the run came from: record it next to the code's provenance.
        _fs.atomic_write_json(run.path / PROVENANCE_FILE, {**run.provenance, "dataset": info})
    else:
        run = Run.open(resume)
        recorded = (run.config.get("dataset") or {}).get("sha256")
        if recorded != info["sha256"]:
            raise HeronError(f"the dataset at {info['path']} changed since {run.path.name} started (its SHA-256 "
                             "fingerprint differs from config.json's); resume with the original data, or start a new run")

    callbacks = RunCallbacks(run, req.steps, progress, observer)
    with tracked(run, callbacks):
        state = None
        if resume is not None:
            template = offline.init_offline(req.seed, req.seeds, spec, agent_cfg, used.observation_space,
                                            used.action_space, offline.dataset_stats(used))
            checkpoint = run.load_latest_checkpoint(template)
            state = checkpoint.tree if checkpoint is not None else None
            run.rewind_logs(checkpoint)
            if callbacks.bar is not None and state is not None:
                callbacks.bar.update(int(state.step))
        start = int(state.step) if state is not None else 0
        on_log, on_eval, on_checkpoint = offline_run_callbacks(run, callbacks, start, req.seeds)
        offline.train(spec, agent_cfg, used, req.steps, seeds=req.seeds, seed=req.seed, env_id=env_id,
                      eval_every=eval_every, eval_episodes=req.eval_episodes, log_every=log_every,
                      checkpoint_every=req.checkpoint_every, state=state, on_log=on_log, on_eval=on_eval,
                      on_checkpoint=on_checkpoint)
    write_report(run)
    run.finish("finished")
    return run.path


def offline_run_callbacks(run: Run, callbacks, start: int, seeds: int, phase: str | None = None):
    """(on_log, on_eval, on_checkpoint) writing an offline loop's reports into `run` (`callbacks`
    is the run's RunCallbacks: progress bar and eval/metrics rows)."""
    wall = time.perf_counter()
    extra_meta = {"phase": phase} if phase else {}

    def on_log(step, metrics):
        row = {f"train/{k}": v for k, v in metrics.items() if k != "behaviour_mse"}
        row["offline/behaviour_mse"] = metrics["behaviour_mse"]
        row["time/updates_per_second"] = (step - start) * seeds / max(time.perf_counter() - wall, 1e-9)
        callbacks.on_log(step, row)

    def on_eval(step, returns, score):
        callbacks.on_eval(step, returns)
        extra = {"eval/return": returns.mean(axis=-1)}
        if score is not None:
            extra["eval/normalized_score"] = score
        run.log(step, extra)

    def on_checkpoint(step, st):
        run.save_checkpoint(step, st, meta={"updates": step, "seeds": seeds, **extra_meta})

    return on_log, on_eval, on_checkpoint


def evaluate_offline_run(run: Run, req, spec: AgentSpec, agent_cfg, episodes: int, seed: int,
                         env_id: str | None = None) -> np.ndarray:
    """Deterministic episodes of the latest checkpoint's policies in the run's env, or `env_id` (all seeds,
    flattened)."""
    from heron.loops import offline

    env_id = env_id or run.config.get("env")
    if not env_id:
        raise HeronError(f"{run.path.name} was trained without an env (--env none or a dataset without an env id), "
                         "so there is nothing to evaluate in; pass `heron eval --env ID`")
    evaluator = offline.PolicyEvaluator(spec, env_id, episodes)
    try:
        obs_space, act_space = evaluator.spaces
        template = offline.init_offline(req.seed, req.seeds, spec, agent_cfg, obs_space, act_space, None)
        checkpoint = run.load_latest_checkpoint(template)
        if checkpoint is None:
            raise HeronError(f"{run.path} has no checkpoint to evaluate yet: resume it with `heron train --resume {run.path}`")
        return evaluator(checkpoint.tree, jax.random.PRNGKey(seed)).reshape(-1)
    finally:
        evaluator.close()
