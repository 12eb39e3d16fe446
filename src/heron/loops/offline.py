"""Offline training: updates on a logged dataset, compiled in long chains, seeds by `vmap`.

The dataset lives on the device as one `DeviceDataset` pytree. `run_chunk(state, data, n)`
runs n updates in ONE compiled call: each update splits the run's key, samples a batch on
the device (`sample_transitions`: uniform, or by the dataset's episode weights) and applies
`spec.update`, inside a `lax.fori_loop` whose trip count is a traced argument — compiled once
whatever the chunk length (a `lax.scan` lowers to the same XLA while loop, but would compile
once per distinct length). Metrics are averaged over the chunk's updates.

Seeds: an `OfflineState` always holds S ≥ 1 runs; every leaf but the shared update counter
has a leading seed axis and `run_chunk` `vmap`s over it, with the dataset NOT mapped
(`in_axes=None`): one copy serves every seed. Seed i starts from `PRNGKey(seed + i)`, so it
is the same run as a single-seed run with that seed.

Resuming is continuing from a saved `OfflineState` (agent states, keys, counter): the dataset
is fixed and the key is in the state, so a resumed run equals the uninterrupted one.

Evaluation: in the env, with the deterministic policy: the pure-JAX env (`online_jax.evaluate`,
vmapped over seeds) where there is one, else Gymnasium (`online_host.Evaluator`); returns become
D4RL-style normalised scores with the dataset's reference returns. Without an env,
`behaviour_mse` (the policy's squared distance to the dataset's actions) is the offline check.

The loop never prints or writes files: `train` reports through callbacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from heron.agents.registry import AgentSpec, DatasetStats
from heron.data.dataset import (
    DeviceDataset,
    EpisodeDataset,
    gather_transitions,
    label_episodes,
    sample_transitions,
)
from heron.envs.spaces import check_action_space
from heron.errors import HeronError


@struct.dataclass
class OfflineState:
    agent: Any  # the agent's State pytree, leading seed axis [S]
    key: jax.Array  # [S, 2] raw uint32 PRNG keys (serialisable)
    step: jax.Array  # int32 updates done per seed; shared by all seeds (no seed axis)
    spec: AgentSpec = struct.field(pytree_node=False)
    cfg: Any = struct.field(pytree_node=False)
    seeds: int = struct.field(pytree_node=False, default=1)


# ---------------------------------------------------------------------------------------------
# Dataset side
# ---------------------------------------------------------------------------------------------


def dataset_stats(ds: EpisodeDataset) -> DatasetStats:
    """Observation mean/std over the transitions' o_t (final observations excluded, as in D4RL's
    flat arrays) and the range of episode returns."""
    obs = ds.observations[ds.obs_index()].reshape(ds.num_transitions, -1).astype(np.float64)
    returns = ds.episode_returns()
    return DatasetStats(obs_mean=obs.mean(0).astype(np.float32), obs_std=obs.std(0).astype(np.float32),
                        return_min=float(returns.min()), return_max=float(returns.max()))


def check_dataset(spec: AgentSpec, ds: EpisodeDataset) -> EpisodeDataset:
    """The dataset an offline agent can learn from: its action space fits the agent, and
    action-free episodes (if any) are left out; raises HeronError otherwise."""
    if spec.family != "offline":
        raise HeronError(f"{spec.name} is an online ({spec.family}) algorithm and cannot learn from a dataset; "
                         "use an offline algorithm (see `heron algos`)")
    check_action_space(spec.name, spec.action_kinds, ds.action_space, f"dataset {ds.name!r}")
    if ds.action_known is not None and not np.all(ds.action_known):
        known = np.flatnonzero(ds.action_known)
        if known.size == 0:
            raise HeronError(f"dataset {ds.name!r} has no actions (every episode is action-free); {spec.name} needs "
                             "actions: use a dataset with actions")
        ds = ds.select_episodes(known)
    return ds


def check_env_matches(ds: EpisodeDataset, obs_space: gym.Space, act_space: gym.Space, env_id: str) -> None:
    """The env's spaces must be the dataset's (shapes, and bounds for Box actions)."""
    from heron.envs.spaces import spaces_mismatch

    problem = spaces_mismatch(ds.observation_space, ds.action_space, obs_space, act_space)
    if problem:
        raise HeronError(f"dataset {ds.name!r} does not fit env {env_id}: {problem} (dataset vs env); "
                         f"pass the env the data was collected in with --env (the dataset says {ds.env_id})")


# ---------------------------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------------------------


def init_offline(seed: int, seeds: int, spec: AgentSpec, cfg, obs_space: gym.Space, act_space: gym.Space,
                 stats: DatasetStats | None) -> OfflineState:
    """`seeds` runs; run i's agent and key come from `PRNGKey(seed + i)`. `stats=None` gives a
    template of the same structure (to restore a checkpoint into).

    Runs are initialised one by one and stacked, not by a vmapped init (see
    `online_jax.init_loop_seeds`: batched CPU QR decompositions can deadlock on 2 cores)."""
    if seeds < 1:
        raise HeronError(f"seeds must be at least 1, got {seeds}")
    if spec.family != "offline":
        raise HeronError(f"{spec.name} is not an offline algorithm; see `heron algos`")

    # One compiled init called per seed; the statistics are closed over as host constants
    # (init may branch on them, e.g. on a zero return range).
    @jax.jit
    def one(key):
        key, agent_key = jax.random.split(key)
        return spec.init(agent_key, obs_space, act_space, cfg, dataset_stats=stats), key

    runs = [one(jax.random.PRNGKey(seed + i)) for i in range(seeds)]
    agents = jax.tree.map(lambda *xs: jnp.stack(xs), *[r[0] for r in runs])
    keys = jnp.stack([r[1] for r in runs])
    return OfflineState(agent=agents, key=keys, step=jnp.zeros((), jnp.int32), spec=spec, cfg=cfg, seeds=seeds)


# ---------------------------------------------------------------------------------------------
# Chunks of updates
# ---------------------------------------------------------------------------------------------


def _metric_zeros(spec, cfg, agent, data):
    shapes = jax.eval_shape(lambda a, k: spec.update(a, sample_transitions(data, k, cfg.batch_size), k, cfg)[1],
                            agent, jax.random.PRNGKey(0))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), shapes)


def _updates_single(spec, cfg, agent, key, data: DeviceDataset, num_updates):
    zero = _metric_zeros(spec, cfg, agent, data)

    def body(_, carry):
        agent, key, sums = carry
        key, sample_key, update_key = jax.random.split(key, 3)
        agent, metrics = spec.update(agent, sample_transitions(data, sample_key, cfg.batch_size), update_key, cfg)
        sums = jax.tree.map(lambda s, m: s + jnp.asarray(m, jnp.float32), sums, metrics)
        return agent, key, sums

    agent, key, sums = jax.lax.fori_loop(0, num_updates, body, (agent, key, zero))
    n = jnp.maximum(num_updates, 1).astype(jnp.float32)
    return agent, key, jax.tree.map(lambda s: s / n, sums)


@jax.jit
def _run_chunk(state: OfflineState, data: DeviceDataset, num_updates: jax.Array):
    single = lambda a, k: _updates_single(state.spec, state.cfg, a, k, data, num_updates)
    if state.seeds == 1:
        # No vmap for one seed: under vmap a `lax.cond` on per-seed state (e.g. TD3+BC's delayed
        # actor step) becomes a select that computes both branches every update.
        agent, key, metrics = single(jax.tree.map(lambda x: x[0], state.agent), state.key[0])
        agent, key, metrics = jax.tree.map(lambda x: x[None], (agent, key, metrics))
    else:
        agent, key, metrics = jax.vmap(single)(state.agent, state.key)  # data is closed over: shared, not mapped
    return state.replace(agent=agent, key=key, step=state.step + num_updates), metrics


def run_chunk(state: OfflineState, data: DeviceDataset, num_updates: int) -> tuple[OfflineState, dict]:
    """`num_updates` updates of every seed in one compiled call (compiled once per state
    structure and dataset shape, whatever `num_updates`). Metrics: [seeds] averages over the
    chunk's updates."""
    return _run_chunk(state, data, jnp.asarray(num_updates, jnp.int32))


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def seed_slice(state: OfflineState, i: int):
    """Run i's agent state (no seed axis)."""
    return jax.tree.map(lambda x: x[i], state.agent)


class PolicyEvaluator:
    """Deterministic episodes of every seed's policy: [seeds, episodes] returns.

    Uses the pure-JAX env when `env_id` has one (all seeds and episodes in one vmapped
    program), else Gymnasium vector envs, one seed after the other. Keys are derived from
    the key passed in, so an evaluation does not depend on when a run was interrupted."""

    def __init__(self, spec: AgentSpec, env_id: str, episodes: int):
        from heron.envs.jax_envs import available_jax_envs, make_jax_env

        self.spec, self.env_id, self.episodes = spec, env_id, int(episodes)
        self.jax_env = make_jax_env(env_id) if env_id in available_jax_envs() else None
        self._host = None

    @property
    def spaces(self) -> tuple[gym.Space, gym.Space]:
        if self.jax_env is not None:
            return self.jax_env.observation_space, self.jax_env.action_space
        host = self._host_evaluator()
        return host.env.single_observation_space, host.env.single_action_space

    def _host_evaluator(self):
        if self._host is None:
            from heron.loops.online_host import Evaluator

            self._host = Evaluator(self.env_id, self.episodes, self.spec.act)
        return self._host

    def __call__(self, state: OfflineState, key: jax.Array) -> np.ndarray:
        keys = jax.random.split(key, state.seeds)
        if self.jax_env is not None:
            from heron.loops.online_jax import evaluate

            env, spec, n = self.jax_env, self.spec, self.episodes
            return np.asarray(jax.vmap(lambda a, k: evaluate(spec, a, env, k, n))(state.agent, keys))
        host = self._host_evaluator()
        return np.stack([np.asarray(host(seed_slice(state, i), keys[i])) for i in range(state.seeds)])

    def close(self):
        if self._host is not None:
            self._host.close()
            self._host = None


@jax.jit
def _behaviour_mse(state: OfflineState, data: DeviceDataset, key: jax.Array, num: int = 4096):
    idx = jax.random.randint(key, (num,), 0, data.size)
    batch = gather_transitions(data, idx)

    def one(agent):
        action = state.spec.act(agent, batch.obs, key, True)
        return jnp.mean((action - batch.action.reshape(action.shape)) ** 2)

    return jax.vmap(one)(state.agent)


def behaviour_mse(state: OfflineState, data: DeviceDataset, key: jax.Array) -> np.ndarray:
    """[seeds] mean squared difference (env units) between each deterministic policy's actions
    and the dataset's, on 4096 transitions drawn with `key` (an env-free training check)."""
    return np.asarray(_behaviour_mse(state, data, key))


# ---------------------------------------------------------------------------------------------
# A whole run
# ---------------------------------------------------------------------------------------------


class TrainResult(NamedTuple):
    state: OfflineState
    eval_steps: np.ndarray  # [evaluations]
    eval_returns: np.ndarray | None  # [evaluations, seeds, episodes] (None without an env)
    normalized_scores: np.ndarray | None  # [evaluations, seeds] mean normalised score (None without refs)


def normalized_scores(ds: EpisodeDataset, returns: np.ndarray) -> np.ndarray | None:
    """D4RL-style 100 (R − R_random) / (R_expert − R_random) per seed (mean over episodes), or
    None when the dataset carries no reference returns."""
    if ds.ref_min_score is None or ds.ref_max_score is None:
        return None
    return np.asarray(ds.normalized_score(np.asarray(returns).mean(axis=-1)))


def train(spec: AgentSpec, cfg, dataset: EpisodeDataset, total_updates: int, *, seeds: int = 1, seed: int = 0,
          env_id: str | None = None, eval_every: int = 0, eval_episodes: int = 10, log_every: int = 0,
          checkpoint_every: int = 0, state: OfflineState | None = None,
          on_log: Callable[[int, dict], None] | None = None,
          on_eval: Callable[[int, np.ndarray, np.ndarray | None], None] | None = None,
          on_checkpoint: Callable[[int, OfflineState], None] | None = None) -> TrainResult:
    """Train `seeds` runs for `total_updates` updates each on `dataset`.

    Chunks end at multiples of `log_every` (default total/100), `eval_every` (default total/10)
    and `checkpoint_every` (0: only at the end), and at the end. Callbacks:
    `on_log(step, metrics)` (each [seeds]: the update metrics averaged over the chunk, and
    `offline/behaviour_mse`); `on_eval(step, returns [seeds, episodes], normalised [seeds] or
    None)` when `env_id` is given; `on_checkpoint(step, state)`. Pass a saved `state` to continue.
    Evaluation keys derive from (seed, step): they do not depend on interruptions.
    """
    ds = check_dataset(spec, dataset)
    evaluator = PolicyEvaluator(spec, env_id, eval_episodes) if env_id else None
    try:
        if evaluator is not None:
            check_env_matches(ds, *evaluator.spaces, env_id)
        if state is None:
            state = init_offline(seed, seeds, spec, cfg, ds.observation_space, ds.action_space, dataset_stats(ds))
        elif (state.spec.name, state.cfg) != (spec.name, cfg):
            raise HeronError(f"the state to continue was made for {state.spec.name} with another config; continue it "
                             "with the algorithm and config it was started with")
        # Agents that learn from per-transition episode quantities (RCSL's return-to-go, ReCOIL's
        # expert flag) relabel the data once here; statistics above and the evaluation references
        # use the raw data.
        relabelled = spec.relabel(ds, cfg) if spec.relabel is not None else ds
        # Agents with `label_episode` (Cal-QL's return-to-go) get every episode's labels in their batches.
        labels = None if spec.label_episode is None else label_episodes(
            relabelled, lambda r, term, trunc: spec.label_episode(r, term, trunc, cfg))
        data = relabelled.to_device(labels)
        log_every = log_every or max(total_updates // 100, 1)
        eval_every = eval_every or max(total_updates // 10, 1)
        eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 0xE7A1)
        steps_done, eval_steps, eval_returns, scores = int(state.step), [], [], []
        while steps_done < total_updates:
            stop = min([total_updates] + [(steps_done // n + 1) * n for n in (log_every, eval_every, checkpoint_every) if n])
            state, metrics = run_chunk(state, data, stop - steps_done)
            steps_done = stop
            done = steps_done >= total_updates
            if steps_done % log_every == 0 or done:
                row = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
                row["behaviour_mse"] = behaviour_mse(state, data, jax.random.fold_in(eval_key, steps_done))
                if on_log is not None:
                    on_log(steps_done, row)
            if evaluator is not None and (steps_done % eval_every == 0 or done):
                returns = evaluator(state, jax.random.fold_in(eval_key, steps_done))
                score = normalized_scores(ds, returns)
                eval_steps.append(steps_done)
                eval_returns.append(returns)
                scores.append(score)
                if on_eval is not None:
                    on_eval(steps_done, returns, score)
            if on_checkpoint is not None and ((checkpoint_every and steps_done % checkpoint_every == 0) or done):
                on_checkpoint(steps_done, state)
    finally:
        if evaluator is not None:
            evaluator.close()
    have_scores = scores and all(s is not None for s in scores)
    return TrainResult(state, np.asarray(eval_steps, np.int64), np.stack(eval_returns) if eval_returns else None,
                       np.stack(scores) if have_scores else None)
