"""Online training over Gymnasium vector envs on the host, with jitted `act` / `update`.

Correctness rules this loop guarantees:

* Terminated vs truncated: envs use Gymnasium 1.x SAME_STEP autoreset, so when an episode
  ends the step returns the reset observation and the true final observation sits in
  `info["final_obs"]`. Stored transitions always carry the true next observation, so a
  truncated episode bootstraps from its real last state, and no transition ever joins
  the last state of one episode to the first state of the next.
* Episode labels: for agents with `AgentSpec.label_episode` (Cal-QL's Monte-Carlo return-to-go)
  the buffer rows carry a label, −inf while their episode runs; when an episode ends, or is cut
  by a checkpoint's reset or the run's end, the agent's hook labels its rows from the episode's
  rewards and flags (a cut episode ends with neither flag set).
* Exact resume: a checkpoint is an episode boundary. At the start of every segment (the
  run's start and right after each checkpoint) all envs are reset with seeds drawn from
  the loop's JAX key, and the unfinished episodes are cut there (their transitions are
  kept; they are simply not counted as finished episodes). An uninterrupted run does the
  same at the same steps, so a run resumed from a checkpoint replays it bit for bit on
  the same machine: agent state, replay buffer, key and counters all come back from the
  checkpoint, and the env state is a deterministic function of the key.

The loop reports through a `Callbacks` object and never prints or writes files itself.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, Protocol

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from heron.agents.registry import AgentSpec
from heron.data.replay import (
    ReplayBuffer,
    replay_add,
    replay_init,
    replay_sample,
    replay_sample_mixed,
    replay_set_labels,
)
from heron.envs.gym_envs import make_vector_env
from heron.envs.spaces import check_action_space, random_actions
from heron.types import UNLABELLED, Transition, with_label


@dataclass(frozen=True)
class HostLoopConfig:
    """Settings of the host loop (the agent's own hyperparameters live in its config)."""

    env_id: str
    """Gymnasium environment id."""
    total_steps: int
    """Environment steps to train for (summed over the vector envs)."""
    seed: int = 0
    """Seed of the run's single JAX key; everything random derives from it."""
    eval_every: int = 10_000
    """Evaluate the deterministic policy every this many env steps (0: only at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation, run in parallel in a separate evaluation env."""
    log_every: int = 1_000
    """Report training metrics every this many env steps."""
    checkpoint_every: int = 0
    """Checkpoint every this many env steps (0: never during the run)."""
    eval_env_id: str | None = None
    """Evaluate in this env instead of env_id (H2O: the real system, while env_id is its simulator)."""


class ReplaySettings(NamedTuple):
    """How an off-policy learner meets its replay buffer. Off-policy agents take these from their
    config (same names); offline agents continuing online get them from their `FinetuneRule`."""

    num_envs: int
    buffer_size: int
    batch_size: int
    learning_starts: int
    """Env steps before the first update."""
    train_frequency: int
    gradient_steps: int
    """`update` calls per round of updates (per train_frequency vector steps)."""
    warmup_with_policy: bool = False
    """Act with the agent before learning_starts (WSRL's warm-up) instead of uniformly at random."""
    offline_rows: int = 0
    """Rows at the start of the buffer holding offline data (never overwritten: capacity covers both)."""
    offline_fraction: float = 0.0
    """Share of each batch drawn from those rows (RLPD's symmetric sampling: 0.5); 0: uniform over all rows."""
    offline_first: bool = False
    """With offline_fraction: the batch's offline rows come first, unshuffled (H2O tells real from simulated rows)."""

    @classmethod
    def from_config(cls, cfg) -> "ReplaySettings":
        return cls(int(cfg.num_envs), int(cfg.buffer_size), int(cfg.batch_size), int(cfg.learning_starts),
                   int(cfg.train_frequency), int(cfg.gradient_steps))


class Callbacks(Protocol):
    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_eval(self, step: int, returns: np.ndarray) -> None: ...
    def on_checkpoint(self, step: int, tree: Any, meta: dict) -> None: ...


class NoCallbacks:
    def on_log(self, step, metrics):
        pass

    def on_eval(self, step, returns):
        pass

    def on_checkpoint(self, step, tree, meta):
        pass


def env_seeds(key: jax.Array, n: int) -> list[int]:
    return [int(s) for s in np.asarray(jax.random.randint(key, (n,), 0, 2**31 - 1))]


class Evaluator:
    """Runs `episodes` deterministic episodes in parallel (one per env), seeded by a key."""

    def __init__(self, env_id: str, episodes: int, act: Callable):
        self.env = make_vector_env(env_id, episodes)
        self.episodes = episodes
        self.act = jax.jit(partial(act, deterministic=True))

    def __call__(self, agent_state, key: jax.Array) -> np.ndarray:
        obs, _ = self.env.reset(seed=env_seeds(key, self.episodes))
        returns = np.zeros(self.episodes)
        running = np.ones(self.episodes, bool)
        while running.any():
            action = np.asarray(self.act(agent_state, obs, key))
            obs, reward, terminated, truncated, _ = self.env.step(action)
            returns += reward * running
            running &= ~(terminated | truncated)
        return returns

    def close(self):
        self.env.close()


class HostLoop:
    """Trains one agent on a Gymnasium vector env. `run()` is resumable from `restore()`."""

    def __init__(self, spec: AgentSpec, agent_cfg, loop_cfg: HostLoopConfig, replay: ReplaySettings | None = None):
        self.spec, self.cfg, self.loop_cfg = spec, agent_cfg, loop_cfg
        self.off_policy = spec.family in ("off_policy", "offline")
        self.labelled = self.off_policy and spec.label_episode is not None
        self.replay = replay or (ReplaySettings.from_config(agent_cfg) if self.off_policy else None)
        self.num_envs = self.replay.num_envs if self.off_policy else int(agent_cfg.num_envs)
        self.envs = make_vector_env(loop_cfg.env_id, self.num_envs)
        self.obs_space = self.envs.single_observation_space
        self.act_space = self.envs.single_action_space
        check_action_space(spec.name, spec.action_kinds, self.act_space, loop_cfg.env_id)
        self.evaluator = (Evaluator(loop_cfg.eval_env_id or loop_cfg.env_id, loop_cfg.eval_episodes, spec.act)
                          if loop_cfg.eval_episodes > 0 else None)
        self._compile()

    # ----------------------------------------------------------------- compiled pieces
    def _compile(self):
        spec, cfg, n, rs = self.spec, self.cfg, self.num_envs, self.replay

        def act_step(agent_state, obs, key):
            key, k = jax.random.split(key)
            return spec.act(agent_state, obs, k, False), key

        def random_step(key):
            key, k = jax.random.split(key)
            return random_actions(self.act_space, k, n), key

        self._act = jax.jit(act_step)
        self._random = jax.jit(random_step)
        if self.off_policy:
            def sample(buffer, key):
                if rs.offline_fraction > 0:
                    return replay_sample_mixed(buffer, key, rs.batch_size, rs.offline_rows, rs.offline_fraction,
                                               shuffle=not rs.offline_first)
                return replay_sample(buffer, key, rs.batch_size)

            def add_and_train(agent_state, buffer: ReplayBuffer, batch: Transition, key, train: bool):
                buffer = replay_add(buffer, batch)
                if not train:
                    return agent_state, buffer, key, {}

                def one_update(carry, _):
                    agent_state, key = carry
                    key, k_sample, k_update = jax.random.split(key, 3)
                    agent_state, metrics = spec.update(agent_state, sample(buffer, k_sample), k_update, cfg)
                    return (agent_state, key), metrics

                (agent_state, key), metrics = jax.lax.scan(one_update, (agent_state, key), None, length=rs.gradient_steps)
                return agent_state, buffer, key, jax.tree.map(lambda m: m[-1], metrics)

            self._add_and_train = jax.jit(add_and_train, static_argnames="train", donate_argnums=(1,))
            self._set_labels = jax.jit(replay_set_labels, donate_argnums=(0,))
        else:
            def update(agent_state, rollout, key):
                key, k = jax.random.split(key)
                agent_state, metrics = spec.update(agent_state, rollout, k, cfg)
                return agent_state, key, metrics

            self._update = jax.jit(update)

    # ----------------------------------------------------------------- state
    def init(self) -> dict:
        """Fresh loop state: a pytree (agent, buffer, key) plus host counters in `meta`."""
        key = jax.random.PRNGKey(self.loop_cfg.seed)
        key, k_init = jax.random.split(key)
        tree = {"agent": self.spec.init(k_init, self.obs_space, self.act_space, self.cfg), "key": key}
        if self.off_policy:
            capacity = min(self.replay.buffer_size, self.loop_cfg.total_steps)
            act_shape = () if isinstance(self.act_space, gym.spaces.Discrete) else self.act_space.shape
            act_dtype = jnp.int32 if isinstance(self.act_space, gym.spaces.Discrete) else jnp.float32
            tree["buffer"] = replay_init(capacity, self.obs_space.shape, jnp.float32, act_shape, act_dtype,
                                         labelled=self.labelled)
        meta = {"env_steps": 0, "vector_steps": 0, "updates": 0, "episodes": 0}
        return {"tree": tree, "meta": meta}

    def template(self) -> Any:
        """A tree with the structure of a checkpoint, for deserialisation."""
        return self.init()["tree"]

    # ----------------------------------------------------------------- main loop
    def run(self, state: dict, callbacks: Callbacks = NoCallbacks()) -> dict:
        lc, cfg, rs = self.loop_cfg, self.cfg, self.replay
        tree, meta = state["tree"], dict(state["meta"])
        agent, key = tree["agent"], tree["key"]
        buffer = tree.get("buffer")
        off_policy = self.off_policy
        steps_per_iter = self.num_envs * (1 if off_policy else int(cfg.num_steps))

        def due(every: int, step: int) -> bool:
            return every > 0 and step % every < steps_per_iter and step > 0

        # A segment starts here: reset every env from the key (see module docstring).
        key, k_reset = jax.random.split(key)
        obs, _ = self.envs.reset(seed=env_seeds(k_reset, self.num_envs))
        ep_return, ep_length = np.zeros(self.num_envs), np.zeros(self.num_envs, np.int64)
        finished_returns: list[float] = []
        finished_lengths: list[int] = []
        running = _RunningEpisodes(self.num_envs, int(buffer.pos)) if self.labelled else None
        last_metrics: dict = {}
        wall_start, steps_at_start = _now(), meta["env_steps"]

        while meta["env_steps"] < lc.total_steps:
            if off_policy:
                if meta["env_steps"] < rs.learning_starts and not rs.warmup_with_policy:
                    action, key = self._random(key)
                else:
                    action, key = self._act(agent, obs, key)
                action = np.asarray(action)
                next_obs, reward, terminated, truncated, info = self.envs.step(action)
                true_next = _true_next_obs(next_obs, info)
                batch = Transition(obs, action, reward.astype(np.float32), true_next,
                                   terminated.astype(np.float32), truncated.astype(np.float32))
                if running is not None:
                    batch = with_label(batch, np.full(self.num_envs, UNLABELLED, np.float32))
                meta["env_steps"] += self.num_envs
                meta["vector_steps"] += 1
                train = meta["env_steps"] >= rs.learning_starts and meta["vector_steps"] % rs.train_frequency == 0
                agent, buffer, key, metrics = self._add_and_train(agent, buffer, batch, key, train=train)
                if running is not None:
                    running.record(reward, terminated, truncated)
                    buffer = self._label(buffer, running, np.flatnonzero(terminated | truncated))
                if train:
                    meta["updates"] += rs.gradient_steps
                    last_metrics = metrics
                self._track_episodes(reward, terminated | truncated, ep_return, ep_length, finished_returns, finished_lengths)
                obs = next_obs
            else:
                rollout, obs, key = self._collect_rollout(agent, obs, key, ep_return, ep_length, finished_returns, finished_lengths)
                agent, key, last_metrics = self._update(agent, rollout, key)
                meta["env_steps"] += steps_per_iter
                meta["vector_steps"] += int(cfg.num_steps)
                meta["updates"] += 1

            step = meta["env_steps"]
            checkpoint_due = due(lc.checkpoint_every, step) and step < lc.total_steps
            # A checkpoint always follows a log, so no unlogged episode straddles it.
            if due(lc.log_every, step) or step >= lc.total_steps or checkpoint_due:
                metrics = {f"train/{k}": float(v) for k, v in last_metrics.items()}
                if finished_returns:
                    metrics["train/episode_return"] = float(np.mean(finished_returns))
                    metrics["train/episode_length"] = float(np.mean(finished_lengths))
                    meta["episodes"] += len(finished_returns)
                    finished_returns.clear(), finished_lengths.clear()
                metrics["time/steps_per_second"] = (step - steps_at_start) / max(_now() - wall_start, 1e-9)
                callbacks.on_log(step, metrics)
            if self.evaluator is not None and (due(lc.eval_every, step) or step >= lc.total_steps):
                key, k_eval = jax.random.split(key)
                callbacks.on_eval(step, self.evaluator(agent, k_eval))
            if checkpoint_due:
                if running is not None:  # the reset below cuts every running episode
                    buffer = self._label(buffer, running, range(self.num_envs))
                tree = {"agent": agent, "key": key, **({"buffer": buffer} if off_policy else {})}
                callbacks.on_checkpoint(step, tree, dict(meta))
                # New segment: the same reset an uninterrupted and a resumed run both do.
                key, k_reset = jax.random.split(key)
                obs, _ = self.envs.reset(seed=env_seeds(k_reset, self.num_envs))
                ep_return[:], ep_length[:] = 0, 0

        if running is not None:  # the run's end cuts every running episode
            buffer = self._label(buffer, running, range(self.num_envs))
        tree = {"agent": agent, "key": key, **({"buffer": buffer} if off_policy else {})}
        return {"tree": tree, "meta": meta}

    def _label(self, buffer: ReplayBuffer, running: "_RunningEpisodes", envs) -> ReplayBuffer:
        """Label the rows of each env's running episode with the agent's `label_episode` and forget it."""
        for i in envs:
            rows, rewards, terminated, truncated = running.pop(int(i))
            if len(rewards) == 0:
                continue
            labels = np.asarray(self.spec.label_episode(rewards, terminated, truncated, self.cfg), np.float32)
            keep = rows >= running.written - buffer.capacity  # rows not yet overwritten by the ring
            rows, labels = rows[keep] % buffer.capacity, labels[keep]
            padded = 1 << max(len(rows) - 1, 0).bit_length()  # a few lengths, so a few compiles
            rows = np.concatenate([rows, np.full(padded - len(rows), buffer.capacity)]).astype(np.int32)
            labels = np.concatenate([labels, np.zeros(padded - len(labels), np.float32)])
            buffer = self._set_labels(buffer, rows, labels)
        return buffer

    def _collect_rollout(self, agent, obs, key, ep_return, ep_length, finished_returns, finished_lengths):
        T, n = int(self.cfg.num_steps), self.num_envs
        obs_buf = np.zeros((T, n, *self.obs_space.shape), np.float32)
        next_buf = np.zeros_like(obs_buf)
        actions, rewards = [], np.zeros((T, n), np.float32)
        terms, truncs = np.zeros((T, n), np.float32), np.zeros((T, n), np.float32)
        for t in range(T):
            action, key = self._act(agent, obs, key)
            action = np.asarray(action)
            next_obs, reward, terminated, truncated, info = self.envs.step(action)
            obs_buf[t], next_buf[t] = obs, _true_next_obs(next_obs, info)
            actions.append(action)
            rewards[t], terms[t], truncs[t] = reward, terminated, truncated
            self._track_episodes(reward, terminated | truncated, ep_return, ep_length, finished_returns, finished_lengths)
            obs = next_obs
        rollout = Transition(obs_buf, np.stack(actions), rewards, next_buf, terms, truncs)
        return rollout, obs, key

    @staticmethod
    def _track_episodes(reward, done, ep_return, ep_length, finished_returns, finished_lengths):
        ep_return += reward
        ep_length += 1
        for i in np.flatnonzero(done):
            finished_returns.append(float(ep_return[i]))
            finished_lengths.append(int(ep_length[i]))
            ep_return[i], ep_length[i] = 0.0, 0

    def close(self):
        self.envs.close()
        if self.evaluator is not None:
            self.evaluator.close()


class _RunningEpisodes:
    """Per env: the buffer rows (counted without the ring's wrap-around) and the rewards and flags
    of its running episode, for `AgentSpec.label_episode` once it ends."""

    def __init__(self, num_envs: int, next_row: int):
        self.written = next_row  # rows written so far (the next write goes to written % capacity)
        self.steps: list[list[tuple[int, float, float, float]]] = [[] for _ in range(num_envs)]

    def record(self, reward, terminated, truncated) -> None:
        """One vector step, just added to the buffer (env i's row is written + i)."""
        for i, steps in enumerate(self.steps):
            steps.append((self.written + i, float(reward[i]), float(terminated[i]), float(truncated[i])))
        self.written += len(self.steps)

    def pop(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(rows, rewards, terminated, truncated) of env i's episode so far, which starts afresh."""
        steps, self.steps[i] = self.steps[i], []
        rows, rewards, terminated, truncated = list(zip(*steps, strict=True)) or [(), (), (), ()]
        return (np.asarray(rows, np.int64), np.asarray(rewards, np.float32), np.asarray(terminated, np.float32),
                np.asarray(truncated, np.float32))


def _true_next_obs(next_obs: np.ndarray, info: dict) -> np.ndarray:
    """The observation each env actually reached: the final one where an episode ended."""
    if "_final_obs" not in info or not info["_final_obs"].any():
        return next_obs
    true_next = next_obs.copy()
    for i in np.flatnonzero(info["_final_obs"]):
        true_next[i] = info["final_obs"][i]
    return true_next


def _now() -> float:
    import time

    return time.perf_counter()
