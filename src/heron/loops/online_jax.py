"""Online training with the env and the agent in ONE compiled program (PureJaxRL style).

Everything a run carries between steps — agent state, env states, the observation to act
on, the replay buffer, the key, the iteration counter and the unfinished episodes'
return/length — is one pytree, `LoopState`. `run_chunk(loop_state, n)` advances it by `n`
iterations inside a single `jit`-compiled `while_loop` (compiled once: `n` is a traced
argument) and returns chunk metrics; a driver calls it repeatedly and logs or checkpoints in
between. Resuming is continuing from a saved `LoopState`: the result is bit-identical to
never having stopped, because nothing outside the pytree influences the run.

One *iteration* is, by the agent family (`spec.family`):

* on-policy: a `lax.scan` rollout of `cfg.num_steps` steps of `cfg.num_envs` vmapped envs
  (keys split per step and per env), then `update(state, rollout[T, N], key, cfg)`;
* off-policy: one step of the `cfg.num_envs` envs (uniform random actions while fewer than
  `cfg.learning_starts` env steps were taken), the transitions written into the device
  replay buffer (size `min(cfg.buffer_size, total_steps)`), and — once
  `cfg.learning_starts` steps are reached, every `cfg.train_frequency` iterations —
  `cfg.gradient_steps` updates on uniformly sampled batches of `cfg.batch_size`. The same
  rules as the host loop (`online_host`), under `lax.cond`.

Transitions carry the true next observation (`auto_reset_step`), `terminated` and
`truncated` as float32, actions as int32 (discrete) or float32 (continuous), like the host
loop's.

Seeds: a LoopState may hold S independent runs (`seeds=S`): every leaf but the shared
iteration counter gets a leading seed axis and `run_chunk` `vmap`s over it. Because the
counter is shared, the off-policy `lax.cond`s stay real branches under `vmap` (no update is
computed and thrown away). Seed i of `init_loop_seeds(seed, S, ...)` starts from the same key
as a single run with seed `seed + i`.

The loop never prints or writes files: `train` reports through `callback(step, metrics)`.
"""

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from heron.agents.registry import AgentSpec
from heron.data.replay import ReplayBuffer, replay_add, replay_init, replay_sample
from heron.envs.jax_envs import auto_reset_step, make_jax_env
from heron.envs.spaces import check_action_space, random_actions
from heron.errors import HeronError
from heron.types import Transition

_LOOP_FIELDS = {
    "on_policy": ("num_envs", "num_steps"),
    "off_policy": ("num_envs", "buffer_size", "batch_size", "learning_starts", "train_frequency", "gradient_steps"),
}


@struct.dataclass
class LoopState:
    agent: Any  # the agent's State pytree
    env_state: Any  # [num_envs] env states
    obs: jax.Array  # [num_envs, *obs_shape] observation to act on next
    episode_return: jax.Array  # [num_envs] return so far of each env's unfinished episode
    episode_length: jax.Array  # [num_envs] int32
    buffer: ReplayBuffer | None  # off-policy only
    key: jax.Array  # raw uint32 PRNG key (serialisable)
    iteration: jax.Array  # int32 iterations done; shared by all seeds (no seed axis)
    spec: AgentSpec = struct.field(pytree_node=False)
    cfg: Any = struct.field(pytree_node=False)
    env: Any = struct.field(pytree_node=False)
    seeds: int = struct.field(pytree_node=False, default=0)  # 0: one run; S: leading seed axis of size S

    @property
    def steps_per_iteration(self) -> int:
        return steps_per_iteration(self.spec, self.cfg)

    @property
    def env_steps(self) -> int:
        """Env steps taken so far, per seed (a host int: reads the counter from the device)."""
        return int(self.iteration) * self.steps_per_iteration


def steps_per_iteration(spec: AgentSpec, cfg) -> int:
    return int(cfg.num_envs) * (int(cfg.num_steps) if spec.family == "on_policy" else 1)


# ---------------------------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------------------------


def _check(spec: AgentSpec, cfg, env) -> None:
    check_action_space(spec.name, spec.action_kinds, env.action_space, env.env_id)
    missing = [f for f in _LOOP_FIELDS[spec.family] if not hasattr(cfg, f)]
    if missing:
        raise HeronError(f"{spec.name}: its config lacks the {spec.family} loop settings {', '.join(missing)}; "
                         f"add them to {type(cfg).__name__}")
    if not isinstance(cfg.num_envs, int) or cfg.num_envs <= 0:
        raise HeronError(f"{spec.name}: num_envs must be a positive integer, got {cfg.num_envs!r}")


def _action_dtype(space: gym.Space):
    return jnp.int32 if isinstance(space, gym.spaces.Discrete) else jnp.float32


def init_loop(key: jax.Array, spec: AgentSpec, cfg, env, total_steps: int) -> LoopState:
    """A fresh single-run LoopState: agent initialised, `cfg.num_envs` envs reset."""
    _check(spec, cfg, env)
    return _jitted_init(key, spec, cfg, env, int(total_steps))


def _init_loop(key, spec, cfg, env, total_steps):
    key, agent_key, reset_key = jax.random.split(key, 3)
    agent = spec.init(agent_key, env.observation_space, env.action_space, cfg)
    env_state, obs = jax.vmap(env.reset)(jax.random.split(reset_key, cfg.num_envs))
    buffer = None
    if spec.family == "off_policy":
        capacity = max(min(int(cfg.buffer_size), int(total_steps)), 1)
        act_shape = () if isinstance(env.action_space, gym.spaces.Discrete) else env.action_space.shape
        buffer = replay_init(capacity, env.observation_space.shape, jnp.float32, act_shape, _action_dtype(env.action_space))
    return LoopState(
        agent=agent, env_state=env_state, obs=obs,
        episode_return=jnp.zeros((cfg.num_envs,), jnp.float32),
        episode_length=jnp.zeros((cfg.num_envs,), jnp.int32),
        buffer=buffer, key=key, iteration=jnp.zeros((), jnp.int32),
        spec=spec, cfg=cfg, env=env, seeds=0,
    )


def init_loop_seeds(seed: int, seeds: int, spec: AgentSpec, cfg, env, total_steps: int) -> LoopState:
    """`seeds` independent runs in one LoopState; run i is exactly `init_loop(PRNGKey(seed + i))`.

    The runs are initialised one by one (one compiled init, called `seeds` times) and stacked,
    NOT by `vmap`: a vmapped init batches the orthogonal initialisers' QR decompositions, and
    jaxlib 0.10.2's batched CPU QR (`lapack_sorgqr_ffi` -> `OrthogonalQr` -> `ParallelBatchMap`)
    waits on tasks queued to the same intra-op pool its callers occupy; on a 2-core machine two
    concurrent QRs (actor and critic) block both workers for good. Seen here: every XLA worker
    idle in `OrthogonalQr`, the main thread in `BlockUntilReady`; `jit(vmap(orthogonal init))`
    of two 64x64 matrices for 8 keys hangs on its first call. Unbatched QRs do not.
    """
    _check(spec, cfg, env)
    if seeds < 1:
        raise HeronError(f"seeds must be at least 1, got {seeds}")
    runs = [_jitted_init(jax.random.PRNGKey(seed + i), spec, cfg, env, int(total_steps)) for i in range(seeds)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *runs)
    return stacked.replace(iteration=runs[0].iteration, seeds=seeds)


_jitted_init = partial(jax.jit, static_argnums=(1, 2, 3, 4))(_init_loop)


def _seed_axes(ls: LoopState) -> LoopState:
    """vmap axes for a seed-batched LoopState: 0 everywhere but the shared counter."""
    return ls.replace(agent=0, env_state=0, obs=0, episode_return=0, episode_length=0,
                      buffer=None if ls.buffer is None else 0, key=0, iteration=None)


# ---------------------------------------------------------------------------------------------
# One iteration
# ---------------------------------------------------------------------------------------------


class _Tally(NamedTuple):
    """Sums over a chunk: finished episodes, and update metrics over the updates done."""

    return_sum: jax.Array
    length_sum: jax.Array
    episodes: jax.Array
    updates: jax.Array
    metric_sums: dict


def _tally_episodes(ep_return, ep_length, rewards, dones):
    """Episode bookkeeping for T steps of N envs at once, after the fact (no per-step work).

    `rewards`, `dones` [T, N]; `ep_return`, `ep_length` [N]: the unfinished episodes' return
    and length before the first step. Every step up to an env's last episode end belongs to
    an episode that finished within these T steps. Returns the new (ep_return, ep_length) and
    the finished episodes' summed return, summed length and count.
    """
    num_steps = rewards.shape[0]
    t = jnp.arange(num_steps)[:, None]
    last_end = jnp.max(jnp.where(dones, t, -1), axis=0)  # [N], -1 where no episode ended
    ended = last_end >= 0
    in_finished = t <= last_end
    finished_return = jnp.sum(jnp.where(ended, ep_return, 0.0)) + jnp.sum(jnp.where(in_finished, rewards, 0.0))
    finished_length = jnp.sum(jnp.where(ended, ep_length + last_end + 1, 0))
    ep_return = jnp.where(ended, 0.0, ep_return) + jnp.sum(jnp.where(in_finished, 0.0, rewards), axis=0)
    ep_length = jnp.where(ended, num_steps - 1 - last_end, ep_length + num_steps)
    return ep_return, ep_length, (finished_return, finished_length, jnp.sum(dones.astype(jnp.int32)))


def _env_step(ls: LoopState, env_state, obs, action, step_keys, reset):
    """Vectorised auto-reset step ([num_envs] step keys, and resets drawn beforehand) + its transition."""
    step = jax.vmap(partial(auto_reset_step, ls.env))(step_keys, env_state, action, reset)
    transition = Transition(obs=obs, action=action, reward=step.reward.astype(jnp.float32), next_obs=step.next_obs,
                            terminated=step.terminated.astype(jnp.float32), truncated=step.truncated.astype(jnp.float32))
    return step, transition


def _on_policy_iteration(ls: LoopState):
    spec, cfg = ls.spec, ls.cfg
    n = cfg.num_envs
    key, rollout_key, update_key = jax.random.split(ls.key, 3)

    def rollout_step(carry, xs):
        env_state, obs = carry
        act_key, step_keys, reset = xs
        action = spec.act(ls.agent, obs, act_key, False)
        step = jax.vmap(partial(auto_reset_step, ls.env))(step_keys, env_state, action, reset)
        return (step.env_state, step.obs), (action, step.reward, step.next_obs, step.terminated, step.truncated)

    # All the rollout's keys in one batched split (per step: act, then per env step and reset),
    # and every candidate reset drawn at once outside the scan (a reset does not depend on the
    # state): fewer, larger ops than drawing them step by step.
    keys = jax.random.split(rollout_key, cfg.num_steps * (1 + 2 * n)).reshape(cfg.num_steps, 1 + 2 * n, -1)
    reset_states, reset_obs = jax.vmap(jax.vmap(ls.env.reset))(keys[:, 1 + n:])
    (env_state, obs), (action, reward, next_obs, terminated, truncated) = jax.lax.scan(
        rollout_step, (ls.env_state, ls.obs), (keys[:, 0], keys[:, 1:1 + n], (reset_states, reset_obs)))
    # The observations acted on need not leave the scan: after step t it is the reset
    # observation where the episode ended, else the next one.
    done = jnp.logical_or(terminated, truncated)
    continued = jnp.where(done[(...,) + (None,) * (next_obs.ndim - 2)], reset_obs, next_obs)
    rollout = Transition(obs=jnp.concatenate([ls.obs[None], continued[:-1]]), action=action,
                         reward=reward.astype(jnp.float32), next_obs=next_obs,
                         terminated=terminated.astype(jnp.float32), truncated=truncated.astype(jnp.float32))
    ep_return, ep_length, finished = _tally_episodes(ls.episode_return, ls.episode_length, rollout.reward, done)
    agent, metrics = spec.update(ls.agent, rollout, update_key, cfg)
    tally = _Tally(*finished, jnp.ones((), jnp.int32), jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), metrics))
    ls = ls.replace(agent=agent, env_state=env_state, obs=obs, episode_return=ep_return, episode_length=ep_length,
                    key=key, iteration=ls.iteration + 1)
    return ls, tally


def _update_metric_shapes(ls: LoopState):
    """The update's metric pytree (as zeros), without running it."""
    spec, cfg = ls.spec, ls.cfg
    if spec.family == "on_policy":
        example = jax.eval_shape(lambda l: _on_policy_update_only(l), ls)
    else:
        example = jax.eval_shape(lambda l: spec.update(l.agent, replay_sample(l.buffer, l.key, cfg.batch_size), l.key, cfg)[1], ls)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), example)


def _on_policy_update_only(ls: LoopState):
    num_envs, num_steps = ls.cfg.num_envs, ls.cfg.num_steps
    action = ls.spec.act(ls.agent, ls.obs, ls.key, False)
    tile = lambda x: jnp.broadcast_to(x, (num_steps, *x.shape))
    f = jnp.zeros((num_steps, num_envs), jnp.float32)
    rollout = Transition(tile(ls.obs), tile(action), f, tile(ls.obs), f, f)
    return ls.spec.update(ls.agent, rollout, ls.key, ls.cfg)[1]


def _off_policy_iteration(ls: LoopState, zero_metrics: dict):
    spec, cfg, env = ls.spec, ls.cfg, ls.env
    n = cfg.num_envs
    keys = jax.random.split(ls.key, 3 + 2 * n)
    key, act_key, train_key, step_keys, reset_keys = keys[0], keys[1], keys[2], keys[3:3 + n], keys[3 + n:]
    dtype = _action_dtype(env.action_space)
    action = jax.lax.cond(
        ls.iteration * n < cfg.learning_starts,
        lambda: random_actions(env.action_space, act_key, n),
        lambda: spec.act(ls.agent, ls.obs, act_key, False).astype(dtype),
    )
    step, transition = _env_step(ls, ls.env_state, ls.obs, action, step_keys, jax.vmap(env.reset)(reset_keys))
    buffer = replay_add(ls.buffer, transition)
    ep_return, ep_length, finished = _tally_episodes(ls.episode_return, ls.episode_length, transition.reward[None],
                                                     jnp.logical_or(step.terminated, step.truncated)[None])
    iteration = ls.iteration + 1

    def train(agent):
        def one_update(carry, k):
            agent, metric_sums = carry
            sample_key, update_key = jax.random.split(k)
            agent, metrics = spec.update(agent, replay_sample(buffer, sample_key, cfg.batch_size), update_key, cfg)
            metric_sums = jax.tree.map(lambda s, m: s + jnp.asarray(m, jnp.float32), metric_sums, metrics)
            return (agent, metric_sums), None

        (agent, metric_sums), _ = jax.lax.scan(one_update, (agent, zero_metrics),
                                               jax.random.split(train_key, cfg.gradient_steps))
        return agent, metric_sums, jnp.asarray(cfg.gradient_steps, jnp.int32)

    do_train = (iteration * n >= cfg.learning_starts) & (iteration % cfg.train_frequency == 0)
    agent, metric_sums, updates = jax.lax.cond(do_train, train, lambda a: (a, zero_metrics, jnp.zeros((), jnp.int32)),
                                               ls.agent)
    tally = _Tally(*finished, updates, metric_sums)
    ls = ls.replace(agent=agent, env_state=step.env_state, obs=step.obs, episode_return=ep_return,
                    episode_length=ep_length, buffer=buffer, key=key, iteration=iteration)
    return ls, tally


# ---------------------------------------------------------------------------------------------
# Chunks
# ---------------------------------------------------------------------------------------------


def _run_chunk_single(ls: LoopState, num_iterations: jax.Array):
    zero_metrics = _update_metric_shapes(ls)
    zero = _Tally(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32),
                  jnp.zeros((), jnp.int32), zero_metrics)
    if ls.spec.family == "on_policy":
        iteration_fn = _on_policy_iteration
    else:
        iteration_fn = partial(_off_policy_iteration, zero_metrics=zero_metrics)

    def body(carry):
        i, ls, total = carry
        ls, tally = iteration_fn(ls)
        total = jax.tree.map(lambda a, b: a + b.astype(a.dtype), total, tally)
        return i + 1, ls, total

    _, ls, total = jax.lax.while_loop(lambda c: c[0] < num_iterations, body, (jnp.zeros((), jnp.int32), ls, zero))
    nan = jnp.float32(jnp.nan)
    episodes = total.episodes
    metrics = {
        "episode_return": jnp.where(episodes > 0, total.return_sum / jnp.maximum(episodes, 1), nan),
        "episode_length": jnp.where(episodes > 0, total.length_sum / jnp.maximum(episodes, 1), nan),
        "episodes": episodes,
        "updates": total.updates,
    }
    for name, value in total.metric_sums.items():
        metrics[name] = jnp.where(total.updates > 0, value / jnp.maximum(total.updates, 1), nan)
    return ls, metrics


@jax.jit
def _run_chunk(ls: LoopState, num_iterations: jax.Array):
    if ls.seeds:
        axes = _seed_axes(ls)
        return jax.vmap(_run_chunk_single, in_axes=(axes, None), out_axes=(axes, 0))(ls, num_iterations)
    return _run_chunk_single(ls, num_iterations)


def run_chunk(loop_state: LoopState, num_iterations: int) -> tuple[LoopState, dict]:
    """Advance by `num_iterations` iterations in one compiled call (compiled once per LoopState
    structure, whatever `num_iterations`). Metrics, per seed where `seeds` > 0:
    `episode_return` / `episode_length`: mean over episodes finished in the chunk (NaN if none);
    `episodes`, `updates`: counts; the update's metrics averaged over the chunk's updates (NaN if none)."""
    return _run_chunk(loop_state, jnp.asarray(num_iterations, jnp.int32))


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnums=(0, 2, 4))
def evaluate(spec: AgentSpec, agent_state, env, key: jax.Array, num_episodes: int) -> jax.Array:
    """Returns [num_episodes] of the deterministic policy, episodes run in parallel to their end
    (termination or the env's time limit). `vmap` it over a seed axis for seed-batched states."""
    reset_key, key = jax.random.split(key)
    env_state, obs = jax.vmap(env.reset)(jax.random.split(reset_key, num_episodes))

    def step(carry, k):
        env_state, obs, returns, done = carry
        act_key, env_key = jax.random.split(k)
        action = spec.act(agent_state, obs, act_key, True)
        env_state, obs, reward, terminated, truncated = jax.vmap(env.step)(
            jax.random.split(env_key, num_episodes), env_state, action)
        returns = returns + jnp.where(done, 0.0, reward)
        done = done | terminated | truncated
        return (env_state, obs, returns, done), None

    init = (env_state, obs, jnp.zeros((num_episodes,), jnp.float32), jnp.zeros((num_episodes,), jnp.bool_))
    (_, _, returns, _), _ = jax.lax.scan(step, init, jax.random.split(key, env.max_episode_steps))
    return returns


def evaluate_seeds(loop_state: LoopState, key: jax.Array, num_episodes: int) -> jax.Array:
    """`evaluate` every run of a LoopState: [seeds, num_episodes] (or [num_episodes] for one run)."""
    ls = loop_state
    if not ls.seeds:
        return evaluate(ls.spec, ls.agent, ls.env, key, num_episodes)
    keys = jax.random.split(key, ls.seeds)
    return jax.vmap(lambda a, k: evaluate(ls.spec, a, ls.env, k, num_episodes))(ls.agent, keys)


# ---------------------------------------------------------------------------------------------
# A whole run
# ---------------------------------------------------------------------------------------------


class TrainResult(NamedTuple):
    loop_state: LoopState  # final, seed-batched (seeds axis first)
    steps: np.ndarray  # [chunks] env steps per seed at the end of each chunk
    episode_returns: np.ndarray  # [seeds, chunks] mean return of the episodes finished in each chunk (NaN: none)
    eval_returns: np.ndarray | None  # [seeds, eval_episodes] deterministic returns at the end, if asked for


def train(spec: AgentSpec, cfg, env_id: str, total_steps: int, seeds: int = 1, seed: int = 0,
          callback: Callable[[int, dict[str, np.ndarray]], None] | None = None, *,
          log_every: int | None = None, eval_episodes: int = 0, loop_state: LoopState | None = None) -> TrainResult:
    """Train `seeds` independent runs (vmapped, one process) for `total_steps` env steps each.

    After every chunk of about `log_every` env steps (default: total_steps / 20) calls
    `callback(step, metrics)`, each metric an array [seeds] (see `run_chunk`). Pass a saved
    seed-batched `loop_state` to continue a run (its seed count wins over `seeds`).
    `eval_episodes` > 0 evaluates the final deterministic policies (key derived from `seed`).
    """
    env = make_jax_env(env_id)
    per_iteration = steps_per_iteration(spec, cfg)
    if loop_state is None:
        loop_state = init_loop_seeds(seed, seeds, spec, cfg, env, total_steps)
    elif not loop_state.seeds:
        raise HeronError("train continues seed-batched LoopStates (from init_loop_seeds); use run_chunk for a single run")
    elif (loop_state.spec.name, loop_state.cfg, loop_state.env.env_id) != (spec.name, cfg, env_id):
        raise HeronError(f"the LoopState to continue was made for {loop_state.spec.name} on {loop_state.env.env_id} with "
                         f"another config; continue it with the algorithm, env and config it was started with")
    total_iterations = -(-int(total_steps) // per_iteration)
    chunk = max(1, (log_every or max(total_steps // 20, 1)) // per_iteration)
    steps, returns = [], []
    iteration = int(loop_state.iteration)
    while iteration < total_iterations:
        n = min(chunk, total_iterations - iteration)
        loop_state, metrics = run_chunk(loop_state, n)
        iteration += n
        metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
        steps.append(iteration * per_iteration)
        returns.append(metrics["episode_return"])
        if callback is not None:
            callback(iteration * per_iteration, metrics)
    eval_returns = None
    if eval_episodes > 0:
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED)
        eval_returns = np.asarray(evaluate_seeds(loop_state, key, eval_episodes))
    episode_returns = np.stack(returns, axis=1) if returns else np.zeros((loop_state.seeds, 0), np.float32)
    return TrainResult(loop_state, np.asarray(steps, np.int64), episode_returns, eval_returns)
