"""Offline→online runs: `heron train ALGO --dataset D --online-steps M` and `heron finetune RUN_DIR`.

One run directory holds both phases. Steps are one axis: 0..N are the offline phase's gradient
updates, N + t is online env step t. The offline phase is the offline loop (tracked, resumable);
at the switch a checkpoint of the pre-trained agent is written; the online phase is the host loop
under the algorithm's `FinetuneRule` (loops/finetune.py) with checkpoints at episode boundaries,
so `heron train --resume RUN_DIR` continues either phase exactly.

`heron finetune PARENT` starts a new run from a finished offline run's last checkpoint: the new
run's config records the parent, and its history starts with the parent's evaluations (the
offline phase), so its curve shows the offline phase, the switch and the online phase. Its config
records every setting of the online phase, so `heron train --resume RUN_DIR` continues it exactly too
(from its newest online checkpoint, or from the switch when it was killed before the first one).

`finetune.json` in the run directory holds the switch metrics (pre-switch score, dip % and
steps to recover, final score), and report.md shows them with the curve.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from heron import _fs
from heron.agents.registry import AgentSpec
from heron.config import config_to_dict
from heron.errors import HeronError
from heron.experiments.bench_report import score_normaliser
from heron.tracking.run import PROVENANCE_FILE, Run, default_runs_root

SUMMARY_FILE = "finetune.json"
_HISTORY_FILE = "finetune_start.json"
"""A `heron finetune` run's log lengths once the parent's history is copied in: a run killed before
its first online checkpoint is cut back to them and restarted from the switch."""


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


def _score(returns, normalise) -> float:
    mean = float(np.mean(returns))
    return float(normalise(mean)) if normalise is not None else mean


class _Tracker:
    """Eval/log callbacks of both phases into one run, on the shared step axis."""

    def __init__(self, run: Run, callbacks, normalise, offset: int):
        self.run, self.callbacks, self.normalise, self.offset = run, callbacks, normalise, offset
        self.online_scores: list[tuple[int, float]] = []

    # the host loop's Callbacks protocol (online steps)
    def on_log(self, step, metrics):
        self.callbacks.on_log(self.offset + step, {**metrics, "online/env_steps": step})

    def on_eval(self, step, returns):
        self.callbacks.on_eval(self.offset + step, returns)
        extra = {"eval/return": float(np.mean(returns))}
        if self.normalise is not None:
            extra["eval/normalized_score"] = _score(returns, self.normalise)
        self.run.log(self.offset + step, extra)
        self.online_scores.append((int(step), _score(returns, self.normalise)))

    def on_checkpoint(self, step, tree, meta):
        from heron.experiments.train import save_host_checkpoint

        save_host_checkpoint(self.run, self.offset + step, tree, {**meta, "phase": "online"})


def _offline_scores(run: Run, normalise, until: int) -> list[tuple[int, float]]:
    return [(step, _score(returns, normalise)) for step, returns in run.eval_table() if step <= until]


def _online_scores(run: Run, normalise, offset: int) -> list[tuple[int, float]]:
    return [(step - offset, _score(returns, normalise)) for step, returns in run.eval_table() if step > offset]


# ---------------------------------------------------------------------------------------------
# The online phase
# ---------------------------------------------------------------------------------------------


def _latest_phase(run: Run, offset: int):
    """("offline" | "online", path) of the newest valid checkpoint, or (None, None)."""
    from heron.tracking.checkpoint import (
        CheckpointDefect,
        list_checkpoints,
        verify_checkpoint,
    )

    for step, path in list_checkpoints(run.path):
        try:
            verify_checkpoint(path)
        except CheckpointDefect:
            continue
        return ("offline" if step <= offset else "online"), path
    return None, None


def _run_online(run: Run, spec: AgentSpec, agent_cfg, rule, phase, dataset, agent, offset: int, normalise,
                callbacks, resume_tree=None) -> dict:
    """Run (or continue) the online phase; returns the switch metrics."""
    from heron.experiments.train import load_host_checkpoint, save_host_checkpoint
    from heron.loops import finetune

    loop = finetune.make_loop(spec, agent_cfg, rule, phase, dataset.num_transitions if dataset is not None else 0)
    try:
        if resume_tree is not None:
            loaded = load_host_checkpoint(run, finetune.template_state(loop, agent))
            step, tree, meta = loaded
            state = {"tree": tree, "meta": {k: v for k, v in meta.items() if k != "phase"}}
            run.rewind_logs(step)
        else:
            state = finetune.switch_state(loop, agent, dataset, rule, phase.seed)
        tracker = _Tracker(run, callbacks, normalise, offset)
        final = loop.run(state, tracker)
        save_host_checkpoint(run, offset + final["meta"]["env_steps"], final["tree"], {**final["meta"], "phase": "online"})
    finally:
        loop.close()
    summary = finetune.switch_metrics(_offline_scores(run, normalise, offset), _online_scores(run, normalise, offset))
    summary.update(score="normalised" if normalise is not None else "return", switch_step=offset,
                   online_steps=phase.online_steps, rule=finetune.rule_summary(rule))
    _fs.atomic_write_json(run.path / SUMMARY_FILE, summary)
    return summary


def _phase(req, env_id: str, online_steps: int, eval_env_id: str | None = None):
    from heron.loops.finetune import OnlinePhase

    eval_every = req.get("online_eval_every") or max(online_steps // 10, 1)
    return OnlinePhase(env_id=env_id, online_steps=online_steps, seed=req["seed"], eval_every=eval_every,
                       eval_episodes=req["eval_episodes"], log_every=max(min(1_000, online_steps // 20), 1),
                       checkpoint_every=req.get("online_checkpoint_every") or 0, eval_env_id=eval_env_id)


# ---------------------------------------------------------------------------------------------
# `heron train ALGO --dataset D --env E --online-steps M`
# ---------------------------------------------------------------------------------------------


def train_offline_to_online(req, spec: AgentSpec, *, runs_root: Path | None = None, progress: bool = True,
                            argv: list[str] | None = None, resume: Path | None = None, observer=None) -> Path:
    """Offline phase of req.steps updates, then req.online_steps env steps under the algorithm's rule."""
    from heron.experiments.train import (
        RunCallbacks,
        resolve_agent_config,
        tracked,
        write_report,
    )
    from heron.experiments.train_offline import (
        _check_request,
        _load_dataset,
        _resolve_env,
    )
    from heron.loops import finetune, offline

    _check_request(req, spec)
    finetune.check_finetunable(spec)
    if req.seeds != 1:
        raise HeronError("offline→online runs train one seed (the online phase steps a Gymnasium env on the host): "
                         "drop --seeds and launch one run per --seed")
    ds, info = _load_dataset(req.dataset)
    used = offline.check_dataset(spec, ds)
    env_id = _resolve_env(req, used)
    if env_id is None:
        raise HeronError("the online phase needs an env: pass --env ID (the dataset names none)")
    # --eval-env: evaluate elsewhere than where the agent acts (H2O: the real system, --env its simulator)
    eval_env = _resolve_env(dataclasses.replace(req, env_id=req.eval_env), used) if req.eval_env else env_id
    for checked in dict.fromkeys([env_id, eval_env]):
        evaluator = offline.PolicyEvaluator(spec, checked, req.eval_episodes)
        try:
            offline.check_env_matches(used, *evaluator.spaces, checked)
        finally:
            evaluator.close()
    agent_cfg = resolve_agent_config(spec, req.overrides, req.steps)
    rule = finetune.resolve_rule(spec, req.finetune_method, keep_offline_data=req.keep_offline_data,
                                 warmup_steps=req.warmup_steps, updates_per_step=req.updates_per_step)
    if resume is None:
        finetune.check_warmup(rule, req.online_steps)
    offset = req.steps
    ft = {"method": req.finetune_method, "rule": finetune.rule_summary(rule), "online_steps": req.online_steps,
          "switch_step": offset, "env": env_id, **({"eval_env": eval_env} if req.eval_env else {})}
    if resume is None:
        config = {"request": config_to_dict(req), "loop": "offline_to_online", "agent": config_to_dict(agent_cfg),
                  "algo": req.algo, "env": env_id, "seeds": 1, "seed": req.seed, "steps": req.steps + req.online_steps,
                  "dataset": info, "finetune": ft}
        run = Run.create(runs_root or default_runs_root(), f"{req.algo}-{info['name']}-o2o", config, argv or sys.argv,
                         req.seed)
        _fs.atomic_write_json(run.path / PROVENANCE_FILE, {**run.provenance, "dataset": info})
    else:
        run = Run.open(resume)
        if (run.config.get("dataset") or {}).get("sha256") != info["sha256"]:
            raise HeronError(f"the dataset at {info['path']} changed since {run.path.name} started; resume with the "
                             "original data, or start a new run")
    normalise = score_normaliser(info)
    phase = _phase({"seed": req.seed, "eval_episodes": req.eval_episodes,
                    "online_checkpoint_every": req.checkpoint_every}, env_id, req.online_steps, eval_env)
    callbacks = RunCallbacks(run, req.steps + req.online_steps, progress, observer)
    with tracked(run, callbacks):
        template = offline.init_offline(req.seed, 1, spec, agent_cfg, used.observation_space, used.action_space,
                                        offline.dataset_stats(used))
        kind, path = _latest_phase(run, offset) if resume is not None else (None, None)
        if kind == "online":
            _run_online(run, spec, agent_cfg, rule, phase, used, offline.seed_slice(template, 0), offset, normalise,
                        callbacks, resume_tree=True)
        else:
            from heron.tracking.checkpoint import load_checkpoint

            checkpoint = load_checkpoint(path, template) if path is not None else None
            if resume is not None:
                run.rewind_logs(checkpoint)
            if req.steps:
                _offline_phase(run, spec, agent_cfg, used, req, eval_env, checkpoint.tree if checkpoint else None,
                               callbacks)
                pretrained = run.load_latest_checkpoint(template).tree
            else:  # no offline phase: the online phase starts from the initialised agent
                pretrained = template
            _run_online(run, spec, agent_cfg, rule, phase, used, offline.seed_slice(pretrained, 0), offset, normalise,
                        callbacks)
    write_report(run)
    write_finetune_report(run)
    run.finish("finished")
    return run.path


def _offline_phase(run: Run, spec, agent_cfg, used, req, env_id, state, callbacks) -> None:
    from heron.experiments.train_offline import offline_run_callbacks
    from heron.loops import offline

    on_log, on_eval, on_checkpoint = offline_run_callbacks(run, callbacks, int(state.step) if state is not None else 0,
                                                           1, phase="offline")
    offline.train(spec, agent_cfg, used, req.steps, seeds=1, seed=req.seed, env_id=env_id,
                  eval_every=req.eval_every or max(req.steps // 10, 1), eval_episodes=req.eval_episodes,
                  log_every=req.log_every or max(req.steps // 100, 1), checkpoint_every=req.checkpoint_every,
                  state=state, on_log=on_log, on_eval=on_eval, on_checkpoint=on_checkpoint)


# ---------------------------------------------------------------------------------------------
# `heron finetune RUN_DIR --env E --online-steps M`
# ---------------------------------------------------------------------------------------------


def finetune_run(parent_dir: Path, *, env_id: str | None, online_steps: int, method: str | None = None,
                 keep_offline_data: bool | None = None, warmup_steps: int | None = None,
                 updates_per_step: int | None = None, parent_seed: int = 0, eval_every: int = 0,
                 eval_episodes: int = 10, checkpoint_every: int = 0, runs_root: Path | None = None,
                 progress: bool = True, argv: list[str] | None = None) -> Path:
    """A new run continuing `parent_dir`'s offline agent online."""
    if online_steps < 1:
        raise HeronError(f"--online-steps must be at least 1, got {online_steps}")
    parent = Run.open(parent_dir)
    if parent.config.get("loop") != "offline":
        raise HeronError(f"{parent.path.name} is not an offline run (loop {parent.config.get('loop')!r}): "
                         "`heron finetune` continues runs made by `heron train ALGO --dataset D`")
    if not 0 <= parent_seed < int(parent.config.get("seeds", 1)):
        raise HeronError(f"--parent-seed {parent_seed} is out of range: {parent.path.name} trained "
                         f"{parent.config.get('seeds', 1)} seeds (0..{int(parent.config.get('seeds', 1)) - 1})")
    env_id = env_id or parent.config.get("env")
    if not env_id:
        raise HeronError(f"{parent.path.name} has no env: pass --env ID for the online phase")
    # Everything the online phase depends on, so `heron train --resume` rebuilds it from config.json alone.
    settings = {"method": method, "keep_offline_data": keep_offline_data, "warmup_steps": warmup_steps,
                "updates_per_step": updates_per_step, "parent_seed": parent_seed, "eval_every": eval_every,
                "eval_episodes": eval_episodes, "checkpoint_every": checkpoint_every}
    from heron.loops.finetune import check_warmup, rule_summary

    setup = _FinetuneSetup(parent, env_id, online_steps, settings)
    check_warmup(setup.rule, online_steps)
    agent, offset = setup.pretrained_agent(parent)

    ft = {"method": method, "rule": rule_summary(setup.rule), "online_steps": online_steps, "switch_step": offset,
          "env": env_id, "parent": str(parent.path.resolve()), "parent_seed": parent_seed, "settings": settings}
    config = {"request": parent.config["request"], "loop": "finetune", "agent": parent.config["agent"],
              "algo": setup.spec.name, "env": env_id, "seeds": 1, "seed": setup.seed,
              "steps": offset + online_steps, "dataset": setup.info, "finetune": ft}
    run = Run.create(runs_root or default_runs_root(), f"{setup.spec.name}-finetune-{env_id}", config,
                     argv or sys.argv, setup.seed)
    _fs.atomic_write_json(run.path / PROVENANCE_FILE, {**run.provenance, "dataset": setup.info,
                                                       "parent": str(parent.path.resolve())})
    _copy_history(run, parent, offset, parent_seed, setup.normalise)
    return setup.run_online(run, agent, offset, progress, resume=False)


def _copy_history(run: Run, parent: Run, offset: int, parent_seed: int, normalise) -> None:
    """The parent's evaluations up to the switch (parent_seed's returns), so the run's curve starts
    with the offline phase; then the log lengths, for a resume before the first online checkpoint."""
    from heron.tracking.checkpoint import log_bytes

    seeds = int(parent.config.get("seeds", 1))
    for step, returns in parent.eval_table():
        if step <= offset:
            returns = np.asarray(returns)
            per_seed = returns.reshape(seeds, -1)[parent_seed] if returns.size % max(seeds, 1) == 0 else returns
            run.log_eval(step, per_seed)
            extra = {"eval/return": float(np.mean(per_seed))}
            if normalise is not None:
                extra["eval/normalized_score"] = _score(per_seed, normalise)
            run.log(step, extra)
    run.sync()
    _fs.atomic_write_json(run.path / _HISTORY_FILE, {"step": offset, "log_bytes": log_bytes(run.path)})


def resume_finetune(run_dir: Path, *, progress: bool = True) -> Path:
    """Continue a killed or interrupted `heron finetune` run from its newest online checkpoint (or, with
    none yet, from the switch), exactly as if it had not stopped."""
    run = Run.open(run_dir)
    ft = run.config.get("finetune") or {}
    if "settings" not in ft:
        raise HeronError(f"{run.path.name} was made by an older heron whose `heron finetune` runs did not record "
                         f"their settings; start it again with `heron finetune {ft.get('parent')}`")
    from heron.loops.finetune import rule_summary

    setup = _FinetuneSetup(run, ft["env"], int(ft["online_steps"]), ft["settings"])
    if rule_summary(setup.rule) != ft.get("rule"):
        raise HeronError(f"this heron resolves {run.path.name}'s switch rule differently ({rule_summary(setup.rule)} "
                         f"instead of {ft.get('rule')}): resume it with the heron that started it")
    offset = int(ft["switch_step"])
    kind, _ = _latest_phase(run, offset)
    if kind == "online":  # the checkpoint holds everything: the parent is not needed
        return setup.run_online(run, setup.template_agent(), offset, progress, resume=True)
    # Killed before the first online checkpoint: again from the switch, with the parent's agent.
    parent_dir = Path(ft["parent"])
    if not parent_dir.is_dir():
        raise HeronError(f"{run.path.name} has no online checkpoint yet and continues {parent_dir}, which is gone: "
                         "it holds the pre-trained agent; restore it (`heron runs import`) or start a new "
                         "`heron finetune`")
    parent = Run.open(parent_dir)
    agent, _ = setup.pretrained_agent(parent, step=offset)
    mark_file = run.path / _HISTORY_FILE
    if mark_file.is_file():  # back to the copied history
        mark = _fs.read_json(mark_file)
        run.resume(SimpleNamespace(step=offset, log_bytes={k: int(v) for k, v in mark["log_bytes"].items()}))
    else:  # killed while copying it: copy it again
        run.resume(None)
        _copy_history(run, parent, offset, int(ft["settings"]["parent_seed"]), setup.normalise)
    return setup.run_online(run, agent, offset, progress, resume=False)


class _FinetuneSetup:
    """What a `heron finetune` run's online phase is made of: agent config, rule, data, phase. `source`
    is the parent (a new run) or the fine-tuning run itself (a resume): both hold the request, the
    agent config and the dataset."""

    def __init__(self, source: Run, env_id: str, online_steps: int, settings: dict):
        from heron.experiments.train import load_request
        from heron.experiments.train_offline import _load_dataset
        from heron.loops import finetune, offline

        self.env_id, self.online_steps, self.settings = env_id, online_steps, settings
        self.preq, self.spec, self.agent_cfg = load_request(source)
        finetune.check_finetunable(self.spec)
        self.rule = finetune.resolve_rule(self.spec, settings["method"], keep_offline_data=settings["keep_offline_data"],
                                          warmup_steps=settings["warmup_steps"],
                                          updates_per_step=settings["updates_per_step"])
        self.info = dict(source.config.get("dataset") or {})
        self.dataset = None
        if self.rule.keep_offline_data:
            ds, now = _load_dataset(self.info.get("path") or self.preq.dataset)
            if now["sha256"] != self.info.get("sha256"):
                raise HeronError(f"the dataset at {now['path']} changed since {source.path.name} was trained; "
                                 "fine-tune with the original data, or pass --drop-offline-data")
            self.dataset = offline.check_dataset(self.spec, ds)
        evaluator = offline.PolicyEvaluator(self.spec, env_id, settings["eval_episodes"])
        try:
            self.obs_space, self.act_space = evaluator.spaces
        finally:
            evaluator.close()
        self.seed = self.preq.seed + settings["parent_seed"]
        self.normalise = score_normaliser(self.info)
        self.template = offline.init_offline(self.preq.seed, self.preq.seeds, self.spec, self.agent_cfg,
                                             self.obs_space, self.act_space, None)

    def template_agent(self):
        from heron.loops import offline

        return offline.seed_slice(self.template, 0)

    def pretrained_agent(self, parent: Run, step: int | None = None):
        """(the parent's agent for parent_seed, its step): from the parent's checkpoint at `step`
        (a resume from the switch, even if the parent trained on since), else its newest."""
        from heron.loops import offline
        from heron.tracking.checkpoint import list_checkpoints, load_checkpoint

        if step is None:
            checkpoint = parent.load_latest_checkpoint(self.template)
            if checkpoint is None:
                raise HeronError(f"{parent.path.name} has no checkpoint: finish it first "
                                 f"(`heron train --resume {parent.path}`)")
        else:
            path = dict(list_checkpoints(parent.path)).get(step)
            if path is None:
                raise HeronError(f"{parent.path.name} no longer has its checkpoint at the switch step {step} (it was "
                                 "pruned after the parent trained on); start a new `heron finetune`")
            checkpoint = load_checkpoint(path, self.template)
        return offline.seed_slice(checkpoint.tree, self.settings["parent_seed"]), int(checkpoint.step)

    def run_online(self, run: Run, agent, offset: int, progress: bool, resume: bool) -> Path:
        from heron.experiments.train import RunCallbacks, tracked, write_report

        s = self.settings
        phase = _phase({"seed": self.seed, "eval_episodes": s["eval_episodes"], "online_eval_every": s["eval_every"],
                        "online_checkpoint_every": s["checkpoint_every"]}, self.env_id, self.online_steps)
        callbacks = RunCallbacks(run, offset + self.online_steps, progress)
        if callbacks.bar is not None:
            callbacks.bar.update(offset)
        with tracked(run, callbacks, f"interrupted by the user (Ctrl-C); continue with `heron train --resume {run.path}`"):
            _run_online(run, self.spec, self.agent_cfg, self.rule, phase, self.dataset, agent, offset, self.normalise,
                        callbacks, resume_tree=True if resume else None)
        write_report(run)
        write_finetune_report(run)
        run.finish("finished")
        return run.path


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def plot_switch(run: Run, out: Path) -> Path:
    """Evaluation score vs step, offline phase and online phase in two colours, the switch marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ft = run.config["finetune"]
    offset = int(ft["switch_step"])
    normalise = score_normaliser(run.config.get("dataset") or {})
    rows = [(step, _score(returns, normalise)) for step, returns in run.eval_table()]
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    off = [(s, v) for s, v in rows if s <= offset]
    on = [(s, v) for s, v in rows if s >= offset]
    if off:
        ax.plot(*zip(*off), "o-", color="tab:blue", label="offline phase (x: gradient updates)")
    if on:
        if off:
            on = [off[-1]] + [r for r in on if r[0] > offset]
        ax.plot(*zip(*on), "o-", color="tab:orange", label="online phase (x: switch + env steps)")
    ax.axvline(offset, color="grey", linestyle="--", linewidth=1)
    ax.annotate("switch", (offset, ax.get_ylim()[1]), textcoords="offset points", xytext=(4, -12), color="grey")
    ax.set_xlabel(f"step: offline updates 0..{offset}, then {offset} + online env steps")
    ax.set_ylabel("normalised score" if normalise is not None else "mean eval return")
    ax.set_title(f"{run.config.get('algo')}: offline → online on {run.config.get('env')}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(out)
    return out


def write_finetune_report(run: Run) -> Path:
    """Prepend the offline→online section (curve, switch metrics, rule) to report.md."""
    summary = _fs.read_json(run.path / SUMMARY_FILE)
    ft = run.config["finetune"]
    plot_switch(run, run.path / "switch_curve.png")
    unit = "normalised score" if summary.get("score") == "normalised" else "mean return"

    def fmt(x):
        return "—" if x is None else (f"{x:.1f}" if isinstance(x, float) else str(x))

    rule = ft["rule"]
    lines = [f"# {run.config.get('algo')}: offline → online on {run.config.get('env')}", "",
             f"Dataset `{(run.config.get('dataset') or {}).get('name')}`; offline phase {ft['switch_step']} gradient "
             f"updates{' (run ' + Path(ft['parent']).name + ')' if ft.get('parent') else ''}, then "
             f"{ft['online_steps']} online env steps.", "",
             "![offline then online](switch_curve.png)", "",
             f"| {unit} before the switch | dip after it | env steps to recover | final | best online | change |",
             "|---:|---:|---:|---:|---:|---:|",
             f"| {fmt(summary.get('pre_switch_score'))} | {fmt(summary.get('dip_percent'))}% | "
             f"{fmt(summary.get('steps_to_recover'))} | {fmt(summary.get('final_score'))} | "
             f"{fmt(summary.get('best_online_score'))} | {fmt(summary.get('improvement'))} |", "",
             "The dip is how far the online evaluations fall below the last offline one before they first reach it "
             "again, in % of it; steps to recover counts env steps after the switch (— : never within the budget).", "",
             f"Switch rule: {rule['source']}. Offline data kept: {rule['keep_offline_data']}; warm-up env steps: "
             f"{rule['warmup_steps']}; updates per env step: {rule['updates_per_step']}.", "", "---", ""]
    lines += _card_section(run)
    report = run.path / "report.md"
    body = report.read_text() if report.exists() else ""
    _fs.atomic_write_bytes(report, ("\n".join(lines) + body).encode())
    return report


def _card_section(run: Run) -> list[str]:
    """The dataset's card (TQ, SACo, returns, coverage) beside the curve, when the data is still there."""
    from heron.data.diagnostics import card_for, card_text, write_card

    path = (run.config.get("dataset") or {}).get("path")
    try:
        ds, card, reference = card_for(path)
        write_card(ds, card, reference, run.path, stem="dataset_card")
    except (HeronError, TypeError) as err:
        return [f"(No dataset card: {err})", "", "---", ""]
    return ["## The dataset", "", "```", card_text(card), "```", "", "![dataset card](dataset_card.png)", "",
            "---", ""]


def evaluate_finetune_run(run: Run, spec: AgentSpec, agent_cfg, episodes: int, seed: int,
                          env_id: str | None = None) -> np.ndarray:
    """Deterministic episodes of the run's latest agent (offline or online phase) in the env it was evaluated
    in, or `env_id`."""
    import jax

    from heron.experiments.train import own_eval_env
    from heron.loops import offline
    from heron.loops.online_host import Evaluator

    env_id = env_id or own_eval_env(run)
    evaluator = Evaluator(env_id, episodes, spec.act)
    try:
        obs_space, act_space = evaluator.env.single_observation_space, evaluator.env.single_action_space
        template = offline.init_offline(0, 1, spec, agent_cfg, obs_space, act_space, None)
        kind, path = _latest_phase(run, int(run.config["finetune"]["switch_step"]))
        if kind is None:
            raise HeronError(f"{run.path} has no checkpoint to evaluate yet: resume it with `heron train --resume {run.path}`")
        from heron.tracking.checkpoint import load_checkpoint

        if kind == "offline":
            agent = offline.seed_slice(load_checkpoint(path, template).tree, 0)
        else:
            agent_t = offline.seed_slice(template, 0)
            online_t = {"agent": agent_t, "key": jax.random.PRNGKey(0),
                        "buffer_position": {"pos": np.zeros((), np.int32), "size": np.zeros((), np.int32)}}
            agent = load_checkpoint(path, online_t).tree["agent"]
        return evaluator(agent, jax.random.PRNGKey(seed))
    finally:
        evaluator.close()


def load_summary(run_dir: Path) -> dict:
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        raise HeronError(f"{run_dir} has no {SUMMARY_FILE}: it is not a finished offline→online run")
    return json.loads(path.read_text())

