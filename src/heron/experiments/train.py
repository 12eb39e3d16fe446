"""`heron train` / `heron eval`: wire an agent, a loop and a tracked run together.

This is the only layer that knows about both loops and tracking: loops report through
callbacks, and the callbacks here write metrics, evaluations and checkpoints into the
run directory and drive the progress bar.
"""

import contextlib
import dataclasses
import json
import sys
from pathlib import Path

import jax
import numpy as np

from heron.agents.registry import AgentSpec, get_agent
from heron.config import apply_overrides, config_from_dict, config_to_dict
from heron.envs.spaces import check_action_space
from heron.errors import HeronError
from heron.loops.online_host import Evaluator, HostLoop, HostLoopConfig
from heron.tracking.metrics import eval_returns_matrix
from heron.tracking.run import Run, default_runs_root

DEFAULT_STEPS = 100_000
DEFAULT_OFFLINE_UPDATES = 1_000_000  # the papers' budget (TD3+BC, IQL: 1M gradient steps)
NO_ENV = "none"  # `--env none`: train offline without evaluating in an env


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """Everything `heron train` needs; saved as the run's resolved config."""

    algo: str
    env_id: str | None
    steps: int = DEFAULT_STEPS
    seed: int = 0
    seeds: int = 1
    loop: str = "auto"
    eval_every: int = 0
    eval_episodes: int = 10
    log_every: int = 0
    checkpoint_every: int = 0
    overrides: tuple[str, ...] = ()
    dataset: str | None = None
    """Offline runs: the dataset (a path, or a name under the datasets root); steps are then updates."""
    online_steps: int = 0
    """Offline runs: env steps of online fine-tuning after the `steps` offline updates (0: offline only)."""
    finetune_method: str | None = None
    """Switch rule: None/own (the algorithm's), wsrl, or plain (heron.loops.finetune.resolve_rule)."""
    keep_offline_data: bool | None = None
    """Override of the rule: keep the offline data in the online buffer."""
    warmup_steps: int | None = None
    """Override of the rule: warm-up env steps of the pre-trained policy before online updates."""
    updates_per_step: int | None = None
    """Override of the rule: gradient updates per online env step."""
    eval_env: str | None = None
    """Evaluate in this env instead of env_id, with the same spaces: online runs, e.g. a policy trained in a
    simulator scored on its real system; offline→online runs (H2O: the real system, env_id its simulator)."""


def resolve_agent_config(spec: AgentSpec, overrides, steps: int):
    cfg = apply_overrides(spec.config(), list(overrides), what=f"{spec.name} config")
    # Schedules (learning-rate annealing, ε decay) span the run unless set explicitly.
    names = {f.name for f in dataclasses.fields(cfg)}
    given = {o.split("=", 1)[0].strip("-").replace("-", "_") for o in overrides}
    for name in ("total_timesteps", "total_updates"):
        if name in names and name not in given:
            cfg = dataclasses.replace(cfg, **{name: steps})
    return cfg


def check_learning_starts(algo: str, cfg, steps: int) -> None:
    """Refuse an off-policy run that ends before its first update (it would report its random
    initial policy as trained)."""
    starts = getattr(cfg, "learning_starts", None)
    if starts is not None and starts >= steps:
        raise HeronError(f"{algo} takes its first update after learning_starts={starts} env steps, but the run has "
                         f"{steps}, so it would learn nothing: raise --steps above {starts} or pass "
                         f"learning_starts=N with N < {steps}")


def check_phases(spec: AgentSpec, steps: int, online_steps: int) -> None:
    """Refuse an offline-only phase to an agent that has none (H2O learns from the dataset and online data
    together in every batch)."""
    if spec.finetune.offline_rows_first and (steps or not online_steps):
        raise HeronError(f"{spec.name} learns from the dataset and online data together in every batch, with no "
                         f"offline-only phase: `heron train {spec.name} --dataset D --env SIM --steps 0 --online-steps M`")


def check_budget(spec: AgentSpec, overrides, steps: int, online_steps: int = 0, finetune_method: str | None = None,
                 warmup_steps: int | None = None, learning_starts_known: bool = True) -> None:
    """Before any run starts (suites, studies): refuse a budget under which nothing would be learned —
    an online run ending before learning_starts (unless a study searches it: `learning_starts_known`),
    a switch rule's warm-up filling the online phase — or phases the agent does not have (check_phases)."""
    check_phases(spec, steps, online_steps)
    if spec.family != "offline" and learning_starts_known:
        check_learning_starts(spec.name, resolve_agent_config(spec, overrides, steps), steps)
    if online_steps:
        from heron.loops import finetune

        finetune.check_finetunable(spec)
        finetune.check_warmup(finetune.resolve_rule(spec, finetune_method, warmup_steps=warmup_steps), online_steps)


def choose_loop(req: TrainRequest) -> str:
    from heron.envs.jax_envs import available_jax_envs

    if req.loop not in ("auto", "host", "compiled"):
        raise HeronError(f"unknown loop {req.loop!r}: use --loop auto, host or compiled")
    has_jax_env = req.env_id in available_jax_envs()
    if req.loop == "compiled" and not has_jax_env:
        raise HeronError(f"--loop compiled needs a pure-JAX env, and {req.env_id} has none: use one of "
                         f"{', '.join(available_jax_envs())} or --loop host")
    if req.seeds > 1 and not has_jax_env:
        raise HeronError(f"--seeds {req.seeds} trains seeds together by vmap in the compiled loop, which needs a pure-JAX env "
                         f"({', '.join(available_jax_envs())}); for {req.env_id} run one seed per command with --seed")
    if req.loop == "auto":
        return "compiled" if has_jax_env else "host"
    if req.loop == "host" and req.seeds > 1:
        raise HeronError("--seeds N > 1 needs --loop compiled (or auto); the host loop trains one seed per run")
    return req.loop


def _action_space(env_id: str, loop_kind: str):
    """The env's action space, checked before any run directory is created."""
    if loop_kind == "compiled":
        from heron.envs.jax_envs import make_jax_env

        return make_jax_env(env_id).action_space
    from heron.envs.gym_envs import make_env

    env = make_env(env_id)
    try:
        return env.action_space
    finally:
        env.close()


def _validate(req: TrainRequest):
    if req.steps < 0 or (req.steps == 0 and not req.online_steps):  # 0 offline updates: RLPD's setting
        raise HeronError(f"--steps must be positive, got {req.steps}")
    for name in ("seeds", "eval_episodes"):
        if getattr(req, name) <= 0:
            raise HeronError(f"--{name.replace('_', '-')} must be positive, got {getattr(req, name)}")
    for name in ("eval_every", "checkpoint_every", "log_every"):
        if getattr(req, name) < 0:
            raise HeronError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(req, name)}")


class RunCallbacks:
    """Loop callbacks that write into a `Run` and update a progress bar."""

    def __init__(self, run: Run, total: int, progress: bool, observer=None):
        self.run = run
        self.observer = observer
        """`observer(step, returns)` after each evaluation (tuning reports to Optuna from it; it may raise
        to stop the run)."""
        self.bar = None
        self.last_return = float("nan")
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", unit_scale=True, dynamic_ncols=True, file=sys.stderr)

    def _advance(self, step: int, metrics: dict | None = None):
        if self.bar is None:
            return
        self.bar.update(step - self.bar.n)
        postfix = {"return": f"{self.last_return:.1f}"}
        if metrics and "time/steps_per_second" in metrics:
            postfix["steps/s"] = f"{metrics['time/steps_per_second']:.0f}"
        self.bar.set_postfix(postfix, refresh=False)

    def on_log(self, step, metrics):
        self.run.log(step, metrics)
        if "train/episode_return" in metrics:
            returns = np.asarray(metrics["train/episode_return"], dtype=np.float64)  # [seeds] or scalar
            if not np.all(np.isnan(returns)):
                self.last_return = float(np.nanmean(returns))
        self._advance(step, metrics)

    def on_eval(self, step, returns):
        returns = eval_returns_matrix(returns)  # [seeds, episodes]: eval.csv keeps each row's seed
        self.run.log_eval(step, returns)
        self.last_return = float(returns.mean())
        self._advance(step)
        if self.observer is not None:
            self.observer(step, returns.reshape(-1))

    def on_checkpoint(self, step, tree, meta):
        save_host_checkpoint(self.run, step, tree, meta)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def save_host_checkpoint(run: Run, step: int, tree: dict, meta: dict):
    """The replay buffer's rows go to the `.npz` part; everything else to msgpack."""
    tree = dict(tree)
    arrays = {}
    if "buffer" in tree:
        buffer = tree.pop("buffer")
        arrays = {f"buffer.{name}": np.asarray(value) for name, value in buffer.data._asdict().items()}
        tree["buffer_position"] = {"pos": buffer.pos, "size": buffer.size}
    run.save_checkpoint(step, tree, arrays, meta)


def load_host_checkpoint(run: Run, template: dict):
    template = dict(template)
    buffer_template = template.pop("buffer", None)
    if buffer_template is not None:
        template["buffer_position"] = {"pos": buffer_template.pos, "size": buffer_template.size}
    loaded = run.load_latest_checkpoint(template)
    if loaded is None:
        return None
    step, tree, arrays, meta = loaded
    tree = dict(tree)
    if buffer_template is not None:
        import jax.numpy as jnp

        position = tree.pop("buffer_position")
        data = type(buffer_template.data)(**{name: jnp.asarray(arrays[f"buffer.{name}"]) for name in buffer_template.data._fields})
        tree["buffer"] = type(buffer_template)(data, jnp.asarray(position["pos"]), jnp.asarray(position["size"]))
    return step, tree, meta


def train(req: TrainRequest, *, runs_root: Path | None = None, progress: bool = True, argv: list[str] | None = None,
          resume: Path | None = None, observer=None) -> Path:
    """Train (or resume) one tracked run and return its directory (`observer`: see RunCallbacks)."""
    _validate(req)
    spec = get_agent(req.algo)
    check_phases(spec, req.steps, req.online_steps)
    if req.online_steps:
        from heron.experiments.finetune import train_offline_to_online

        return train_offline_to_online(req, spec, runs_root=runs_root, progress=progress, argv=argv, resume=resume,
                                       observer=observer)
    if req.dataset is not None or spec.family == "offline":
        from heron.experiments.train_offline import train_offline

        return train_offline(req, spec, runs_root=runs_root, progress=progress, argv=argv, resume=resume,
                             observer=observer)
    if not req.env_id:
        raise HeronError(f"missing --env: `heron train {req.algo} --env ID`, e.g. --env CartPole-v1")
    from heron.envs.gym_envs import check_env_id
    from heron.envs.jax_envs import available_jax_envs

    for env_id in dict.fromkeys([req.env_id, req.eval_env]):
        if env_id is not None and env_id not in available_jax_envs():
            check_env_id(env_id)
    if req.eval_env is not None:
        _check_eval_env(req.env_id, req.eval_env)
    loop_kind = choose_loop(req)
    agent_cfg = resolve_agent_config(spec, req.overrides, req.steps)
    if resume is None:
        check_learning_starts(req.algo, agent_cfg, req.steps)
    check_action_space(spec.name, spec.action_kinds, _action_space(req.env_id, loop_kind), req.env_id)
    eval_every = req.eval_every or max(req.steps // 10, 1)

    if resume is None:
        config = {"request": config_to_dict(req), "loop": loop_kind, "agent": config_to_dict(agent_cfg),
                  "algo": req.algo, "env": req.env_id, "seeds": req.seeds, "seed": req.seed, "steps": req.steps,
                  **({"eval_env": req.eval_env} if req.eval_env else {})}
        run = Run.create(runs_root or default_runs_root(), f"{req.algo}-{req.env_id}", config, argv or sys.argv, req.seed)
    else:
        run = Run.open(resume)
    callbacks = RunCallbacks(run, req.steps, progress, observer)
    with tracked(run, callbacks):
        if loop_kind == "host":
            _train_host(run, spec, agent_cfg, req, eval_every, callbacks, resuming=resume is not None)
        else:
            _train_compiled(run, spec, agent_cfg, req, eval_every, callbacks, resuming=resume is not None)
    write_report(run)
    run.finish("finished")
    return run.path


@contextlib.contextmanager
def tracked(run: Run, callbacks, interrupted: str = "interrupted by the user (Ctrl-C); continue with "
                                                    "`heron train --resume RUN_DIR`"):
    """The body of a tracked run: on any exception the progress bar closes and the run, if this
    process owns it, is marked failed (saying why; `interrupted` on Ctrl-C), then the exception
    goes on. A resume refused before the take-over (e.g. the run still runs elsewhere) leaves the
    run's status alone."""
    try:
        yield
    except KeyboardInterrupt:
        callbacks.close()
        if run.owned:
            run.finish("failed", interrupted)
        raise
    except BaseException as err:
        callbacks.close()
        if run.owned:
            run.finish("failed", f"{type(err).__name__}: {err}")
        raise
    callbacks.close()


def _train_host(run, spec, agent_cfg, req, eval_every, callbacks, resuming: bool):
    loop_cfg = HostLoopConfig(env_id=req.env_id, total_steps=req.steps, seed=req.seed, eval_every=eval_every,
                              eval_episodes=req.eval_episodes, log_every=req.log_every or 1_000, checkpoint_every=req.checkpoint_every,
                              eval_env_id=req.eval_env)
    loop = HostLoop(spec, agent_cfg, loop_cfg)
    try:
        state = loop.init()
        if resuming:
            loaded = load_host_checkpoint(run, loop.template())
            if loaded is not None:
                step, tree, meta = loaded
                state = {"tree": tree, "meta": meta}
            run.rewind_logs(step if loaded is not None else None)
            if callbacks.bar is not None:
                callbacks.bar.update(state["meta"]["env_steps"])
        final = loop.run(state, callbacks)
        save_host_checkpoint(run, final["meta"]["env_steps"], final["tree"], final["meta"])
    finally:
        loop.close()


def _train_compiled(run, spec, agent_cfg, req, eval_every, callbacks, resuming: bool):
    """Chunks of the compiled loop between log / eval / checkpoint boundaries.

    The whole loop state (env states included) is one pytree, so a checkpoint is just that
    pytree and resuming needs no episode boundary. Evaluation keys are derived from
    (seed, step), so they do not depend on where a run was interrupted.
    """
    from heron.envs.jax_envs import make_jax_env
    from heron.loops import online_jax

    env = make_jax_env(req.env_id)
    loop_state = online_jax.init_loop_seeds(req.seed, req.seeds, spec, agent_cfg, env, req.steps)
    if resuming:
        checkpoint = run.load_latest_checkpoint(loop_state)
        if checkpoint is not None:
            loop_state = checkpoint.tree
        run.rewind_logs(checkpoint)
    per_iteration = online_jax.steps_per_iteration(spec, agent_cfg)
    total_iterations = -(-req.steps // per_iteration)
    iteration = int(loop_state.iteration)
    if callbacks.bar is not None:
        callbacks.bar.update(iteration * per_iteration)

    def every(steps: int) -> int:
        return max(1, steps // per_iteration) if steps > 0 else 0

    # Each chunk is one compiled call; logging between them costs a host round trip, so the
    # default is 100 rows per run rather than the host loop's every 1000 steps.
    log_it = every(req.log_every or max(req.steps // 100, 1))
    eval_it, ckpt_it = every(eval_every), every(req.checkpoint_every)
    eval_key = jax.random.fold_in(jax.random.PRNGKey(req.seed), 0xE7A1)
    evaluator = None
    if req.eval_env is not None:  # another env: its pure-JAX twin where it has one, else Gymnasium
        from heron.loops.offline import PolicyEvaluator

        evaluator = PolicyEvaluator(spec, req.eval_env, req.eval_episodes)
    wall_start, start_iteration = _now(), iteration
    try:
        while iteration < total_iterations:
            next_stop = min([total_iterations] + [(iteration // n + 1) * n for n in (log_it, eval_it, ckpt_it) if n])
            loop_state, metrics = online_jax.run_chunk(loop_state, next_stop - iteration)
            iteration = next_stop
            step = iteration * per_iteration
            done = iteration >= total_iterations
            if (log_it and iteration % log_it == 0) or done:
                row = {f"train/{k}": np.asarray(v) for k, v in jax.device_get(metrics).items()}
                row["time/steps_per_second"] = (iteration - start_iteration) * per_iteration * req.seeds / max(_now() - wall_start, 1e-9)
                callbacks.on_log(step, row)
            if (eval_it and iteration % eval_it == 0) or done:
                key = jax.random.fold_in(eval_key, step)
                returns = (evaluator(loop_state, key) if evaluator is not None
                           else online_jax.evaluate_seeds(loop_state, key, req.eval_episodes))
                callbacks.on_eval(step, np.asarray(returns))
            if (ckpt_it and iteration % ckpt_it == 0) or done:
                run.save_checkpoint(step, loop_state, meta={"env_steps": step, "seeds": req.seeds})
    finally:
        if evaluator is not None:
            evaluator.close()


def _now() -> float:
    import time

    return time.perf_counter()


def _evaluate_compiled(run, spec, agent_cfg, req, episodes: int, seed: int, env_id: str | None) -> np.ndarray:
    from heron.envs.jax_envs import make_jax_env
    from heron.loops import online_jax

    template = online_jax.init_loop_seeds(req.seed, req.seeds, spec, agent_cfg, make_jax_env(req.env_id), req.steps)
    checkpoint = run.load_latest_checkpoint(template)
    if checkpoint is None:
        raise HeronError(f"{run.path} has no checkpoint to evaluate yet: resume it with `heron train --resume {run.path}`")
    if env_id is None:
        return np.asarray(online_jax.evaluate_seeds(checkpoint.tree, jax.random.PRNGKey(seed), episodes)).reshape(-1)
    # Another env (its pure-JAX twin where it has one, else Gymnasium), every seed, keys split as offline runs'.
    from heron.loops.offline import PolicyEvaluator

    evaluator = PolicyEvaluator(spec, env_id, episodes)
    try:
        return evaluator(checkpoint.tree, jax.random.PRNGKey(seed)).reshape(-1)
    finally:
        evaluator.close()


def _spaces_mismatch(own_id: str, other_id: str) -> str | None:
    """How env `other_id` fails to take the observations and actions of env `own_id` (the rule a dataset and its
    env follow: observation shape; action type, shape and bounds), or None."""
    from heron.envs.gym_envs import make_env
    from heron.envs.spaces import spaces_mismatch

    own = make_env(own_id)
    try:
        other = make_env(other_id)  # a bad id fails here, with `own` still closed below
        try:
            return spaces_mismatch(own.observation_space, own.action_space, other.observation_space,
                                   other.action_space)
        finally:
            other.close()
    finally:
        own.close()


def _check_eval_env(env_id: str, eval_env: str) -> None:
    problem = _spaces_mismatch(env_id, eval_env)
    if problem:
        raise HeronError(f"--eval-env {eval_env} does not fit --env {env_id}: {problem} (--env vs --eval-env); "
                         "evaluate in an env with the same spaces")


def own_eval_env(run: Run) -> str | None:
    """Where a run is evaluated by default: its eval env if it has one, else the env it acts in."""
    return (run.config.get("finetune") or {}).get("eval_env") or run.config.get("eval_env") or run.config.get("env")


def _check_same_spaces(run: Run, env_id: str) -> None:
    """`heron eval --env`: the other env must take the run's observations and actions."""
    from heron.envs.gym_envs import make_env

    own_id = own_eval_env(run)
    if own_id:
        problem, source = _spaces_mismatch(own_id, env_id), f"evaluated in {own_id}"
    else:  # an offline run trained without an env: compare with its dataset's spaces, as recorded in the run
        from heron.envs.spaces import spaces_mismatch

        dataset = run.config.get("dataset") or {}
        env = make_env(env_id)  # (an unknown env id fails here)
        try:
            if "observation_space" not in dataset:  # a run made before heron recorded them: the checkpoint decides
                return
            from heron.data.minari_io import read_spaces
            from heron.tracking.run import CONFIG_FILE

            obs_space, act_space = read_spaces(dataset, f"{run.path / CONFIG_FILE}, dataset",
                                               "the run's config was edited: restore it, or evaluate without --env")
            problem = spaces_mismatch(obs_space, act_space, env.observation_space, env.action_space)
            source = f"trained on {dataset.get('name')}"
        finally:
            env.close()
    if problem:
        raise HeronError(f"--env {env_id} does not fit {run.path.name}, {source}: {problem} (run vs --env); evaluate "
                         "in an env with the run's spaces")


def load_request(run: Run) -> tuple[TrainRequest, AgentSpec, object]:
    config = run.config
    try:
        req = config_from_dict(TrainRequest, config["request"])
        spec = get_agent(req.algo)
        agent_cfg = config_from_dict(spec.config, config["agent"])
    except (KeyError, TypeError) as err:
        raise HeronError(f"{run.path}/config.json is not a heron train config ({err}); was it written by `heron train`?") from None
    return req, spec, agent_cfg


def resume_run(run_dir: Path, *, progress: bool = True) -> Path:
    run = Run.open(run_dir)
    if run.config.get("loop") == "finetune":
        from heron.experiments.finetune import resume_finetune

        return resume_finetune(run.path, progress=progress)
    req, _, _ = load_request(run)
    return train(req, progress=progress, resume=run.path)


def evaluate_run(run_dir: Path, episodes: int = 10, seed: int = 0, env_id: str | None = None) -> np.ndarray:
    """Evaluate the latest checkpoint of a run with the deterministic policy, in the run's own env or in
    `env_id` (same spaces: e.g. a policy trained in a simulator, deployed on its "real" system)."""
    run = Run.open(run_dir)
    req, spec, agent_cfg = load_request(run)
    if env_id is not None:
        _check_same_spaces(run, env_id)
    if run.config.get("loop") in ("offline_to_online", "finetune"):
        from heron.experiments.finetune import evaluate_finetune_run

        return evaluate_finetune_run(run, spec, agent_cfg, episodes, seed, env_id)
    if run.config.get("loop") == "offline":
        from heron.experiments.train_offline import evaluate_offline_run

        return evaluate_offline_run(run, req, spec, agent_cfg, episodes, seed, env_id)
    if run.config.get("loop") == "compiled":
        return _evaluate_compiled(run, spec, agent_cfg, req, episodes, seed, env_id or req.eval_env)
    loop = HostLoop(spec, agent_cfg, HostLoopConfig(env_id=req.env_id, total_steps=req.steps, eval_episodes=0))
    try:
        loaded = load_host_checkpoint(run, loop.template())
    finally:
        loop.close()
    if loaded is None:
        raise HeronError(f"{run.path} has no checkpoint to evaluate yet: train it further or resume it with `heron train --resume {run.path}`")
    evaluator = Evaluator(env_id or req.eval_env or req.env_id, episodes, spec.act)
    try:
        return evaluator(loaded[1]["agent"], jax.random.PRNGKey(seed))
    finally:
        evaluator.close()


def write_report(run: Run) -> Path:
    """A short Markdown report with the evaluation curve, next to the run's data."""
    from heron.tracking.plots import plot_runs

    png = run.path / "eval_curve.png"
    evals = run.eval_table()
    dataset = run.config.get("dataset") or {}
    lines = [f"# {run.config.get('algo')} on {run.config.get('env')}", "",
             f"- run: `{run.path.name}`", f"- steps: {run.config.get('steps')}, seeds: {run.config.get('seeds')}, "
             f"loop: {run.config.get('loop')}"]
    if dataset:
        lines.append(f"- dataset: `{dataset.get('name')}` at `{dataset.get('path')}` ({dataset.get('transitions')} "
                     f"transitions, {dataset.get('episodes')} episodes); steps are gradient updates")
    if run.config.get("eval_env"):
        lines.append(f"- evaluated in `{run.config['eval_env']}`, not in the env it acts in")
    lines.append("")
    refs = (dataset.get("ref_min_score"), dataset.get("ref_max_score"))
    normalise = None
    if None not in refs:  # D4RL-style normalised score from the dataset's reference returns
        normalise = lambda r: 100.0 * (r - refs[0]) / (refs[1] - refs[0])
    if evals:
        try:
            plot_runs([run.path], out=png)
            lines += ["![evaluation return](eval_curve.png)", ""]
        except HeronError:
            pass
        if normalise is None:
            lines += ["| step | mean eval return | std | episodes |", "|---:|---:|---:|---:|"]
        else:
            lines += ["| step | mean eval return | std | episodes | normalised score |", "|---:|---:|---:|---:|---:|"]
        for step, returns in evals:
            row = f"| {step} | {np.mean(returns):.1f} | {np.std(returns):.1f} | {len(returns)} |"
            lines.append(row if normalise is None else f"{row} {normalise(float(np.mean(returns))):.1f} |")
    lines += ["", "## Agent config", "", "```json", json.dumps(run.config.get("agent", {}), indent=2), "```", ""]
    report = run.path / "report.md"
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(report)
    return report
