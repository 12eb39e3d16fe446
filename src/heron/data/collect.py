"""Rolling out a behaviour policy into Minari-style episodes, and a replay buffer into episodes.

A *policy* here is `RandomPolicy()` (uniform over the action space, D4RL's `random`) or
`AgentPolicy(spec, state, deterministic)` (the agent's own `act`; D4RL collected its medium and
expert data with the stochastic SAC policy, `deterministic=False`). Episodes are dicts with
observations [T+1] (the final one included) and actions, rewards, terminations, truncations [T],
ready for `heron.data.from_episodes`.

Whole episodes only, chosen without length bias: episodes are numbered in the order they start
and the result is the shortest prefix of that order holding at least `min_transitions`
transitions (D4RL instead cut its last episode at exactly 1M steps). Episodes run in parallel
(a vmapped batch in a pure-JAX env, a Gymnasium vector env otherwise), and a parallel batch
finishes its short episodes first, so keeping "the first episodes to finish" would favour short
ones. Every random draw comes from the one JAX key passed in: the same key gives the same
episodes (on the same machine and versions).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from heron.agents.registry import AgentSpec
from heron.envs.spaces import random_actions
from heron.errors import HeronError


@dataclass(frozen=True)
class RandomPolicy:
    """Uniform random actions over the action space."""

    def describe(self) -> str:
        return "uniform-random"


@dataclass(frozen=True, eq=False)
class AgentPolicy:
    """An agent state acting through its algorithm's `act`."""

    spec: AgentSpec
    """The algorithm (its `act` is called)."""
    state: Any
    """The agent's State pytree (e.g. a training snapshot)."""
    deterministic: bool = False
    """False: sample from the policy (as D4RL collected); True: its mode."""

    def describe(self) -> str:
        return f"{self.spec.name}-{'deterministic' if self.deterministic else 'stochastic'}"


def _actions(policy, space: gym.Space, obs: jax.Array, key: jax.Array) -> jax.Array:
    if isinstance(policy, RandomPolicy):
        return random_actions(space, key, obs.shape[0])
    return policy.spec.act(policy.state, obs, key, policy.deterministic)


# --------------------------------------------------------------------------------- pure-JAX envs
@partial(jax.jit, static_argnums=(0, 1, 3, 4))
def _jax_batch(env, policy_kind, agent_state, spec, num_episodes: int, key: jax.Array):
    """`num_episodes` episodes run to their end in parallel: (obs [T+1, B], actions [T, B], rewards,
    terminated, truncated, alive [T, B]) with T = the env's time limit."""
    reset_key, key = jax.random.split(key)
    env_state, obs = jax.vmap(env.reset)(jax.random.split(reset_key, num_episodes))
    policy = RandomPolicy() if policy_kind == "random" else AgentPolicy(spec, agent_state, policy_kind == "deterministic")

    def step(carry, k):
        env_state, obs, done = carry
        act_key, env_key = jax.random.split(k)
        action = _actions(policy, env.action_space, obs, act_key)
        env_state, next_obs, reward, terminated, truncated = jax.vmap(env.step)(
            jax.random.split(env_key, num_episodes), env_state, action)
        alive = ~done  # this step belongs to the episode; after its end the env idles
        done = done | terminated | truncated
        return (env_state, next_obs, done), (next_obs, action, reward, terminated, truncated, alive)

    init = (env_state, obs, jnp.zeros((num_episodes,), jnp.bool_))
    _, (next_obs, action, reward, terminated, truncated, alive) = jax.lax.scan(
        step, init, jax.random.split(key, env.max_episode_steps))
    return jnp.concatenate([obs[None], next_obs]), action, reward, terminated, truncated, alive


def rollout_jax(env, policy, key: jax.Array, min_transitions: int | None = None, *, num_episodes: int | None = None,
                batch_episodes: int = 64) -> list[dict]:
    """Whole episodes of `policy` in a pure-JAX env (`heron.envs.jax_envs`): at least `min_transitions`
    transitions, or exactly `num_episodes` episodes; batches of `batch_episodes` episodes run in one
    compiled call."""
    enough = _stop_rule(min_transitions, num_episodes)
    if isinstance(policy, RandomPolicy):
        kind, state, spec = "random", None, None
    else:
        kind, state, spec = ("deterministic" if policy.deterministic else "stochastic"), policy.state, policy.spec
    episodes, total, batch = [], 0, 0
    while not enough(len(episodes), total):
        arrays = jax.device_get(_jax_batch(env, kind, state, spec, batch_episodes, jax.random.fold_in(key, batch)))
        obs, action, reward, terminated, truncated, alive = (np.asarray(a) for a in arrays)
        for b in range(batch_episodes):
            t = int(alive[:, b].sum())  # steps up to and including the episode's end
            ended = terminated[t - 1, b] or truncated[t - 1, b]
            if not ended:  # cannot happen with a TimeLimit; guard against an env without one
                raise HeronError(f"{env.env_id}: an episode did not end within {env.max_episode_steps} steps")
            episodes.append(_episode(obs[:t + 1, b], action[:t, b], reward[:t, b], terminated[:t, b], truncated[:t, b]))
            total += t
            if enough(len(episodes), total):
                break
        batch += 1
    return episodes


# --------------------------------------------------------------------------------- Gymnasium envs
def rollout_gym(env_id: str, policy, key: jax.Array, min_transitions: int | None = None, *,
                num_episodes: int | None = None, num_envs: int = 8) -> list[dict]:
    """Whole episodes of `policy` in `num_envs` Gymnasium envs stepped together: the episodes that
    started first, holding at least `min_transitions` transitions, or exactly `num_episodes` of them.
    Env seeds come from `key`."""
    from heron.envs.gym_envs import make_vector_env
    from heron.loops.online_host import env_seeds

    enough = _stop_rule(min_transitions, num_episodes)
    envs = make_vector_env(env_id, num_envs)
    space = envs.single_action_space
    if isinstance(policy, RandomPolicy):
        act = jax.jit(lambda obs, k: random_actions(space, k, num_envs))
    else:
        agent_act = _jitted_act(policy.spec, policy.deterministic)
        act = partial(agent_act, policy.state)
    try:
        key, reset_key = jax.random.split(key)
        obs, _ = envs.reset(seed=env_seeds(reset_key, num_envs))
        slot_episode = list(range(num_envs))  # episode number each env is running (numbered by start)
        started = num_envs
        running = {e: {"observations": [obs[e]], "actions": [], "rewards": [], "terminations": [], "truncations": []}
                   for e in range(num_envs)}
        finished: dict[int, dict] = {}
        prefix, prefix_steps = 0, 0  # episodes 0..prefix-1 are all finished and hold prefix_steps steps
        step = 0
        while not enough(prefix, prefix_steps):
            action = np.asarray(act(obs, jax.random.fold_in(key, step)))
            step += 1
            next_obs, reward, terminated, truncated, info = envs.step(action)
            for i in range(num_envs):
                ep = running[slot_episode[i]]
                done = bool(terminated[i] or truncated[i])
                ep["observations"].append(info["final_obs"][i] if done else next_obs[i])
                ep["actions"].append(action[i])
                ep["rewards"].append(reward[i])
                ep["terminations"].append(bool(terminated[i]))
                ep["truncations"].append(bool(truncated[i]))
                if done:  # SAME_STEP autoreset: next_obs[i] already starts the slot's next episode
                    finished[slot_episode[i]] = running.pop(slot_episode[i])
                    slot_episode[i] = started
                    running[started] = {"observations": [next_obs[i]], "actions": [], "rewards": [],
                                        "terminations": [], "truncations": []}
                    started += 1
            obs = next_obs
            while prefix in finished and not enough(prefix, prefix_steps):
                prefix_steps += len(finished[prefix]["rewards"])
                prefix += 1
    finally:
        envs.close()
    return [_episode(*(np.asarray(finished[e][k]) for k in ("observations", "actions", "rewards", "terminations",
                                                            "truncations"))) for e in range(prefix)]


@cache
def _jitted_act(spec: AgentSpec, deterministic: bool):
    """One compiled `act` per algorithm, the state an argument (every snapshot reuses the compilation)."""
    return jax.jit(lambda state, obs, key: spec.act(state, obs, key, deterministic))


def _episode(obs, actions, rewards, terminations, truncations) -> dict:
    return {"observations": np.asarray(obs, np.float32), "actions": np.asarray(actions),
            "rewards": np.asarray(rewards, np.float32), "terminations": np.asarray(terminations, bool),
            "truncations": np.asarray(truncations, bool)}


def _stop_rule(min_transitions, num_episodes):
    """enough(episodes, transitions) for exactly one of the two targets."""
    if (min_transitions is None) == (num_episodes is None):
        raise HeronError("give exactly one of min_transitions and num_episodes")
    target, name = (min_transitions, "min_transitions") if num_episodes is None else (num_episodes, "num_episodes")
    if not isinstance(target, (int, np.integer)) or isinstance(target, bool) or target < 1:
        raise HeronError(f"{name} must be a positive integer, got {target!r}")
    if num_episodes is None:
        return lambda episodes, transitions: transitions >= target
    return lambda episodes, transitions: episodes >= target


def episode_returns(episodes: list[dict]) -> np.ndarray:
    """[E] undiscounted return of each episode dict."""
    return np.array([float(np.sum(np.asarray(ep["rewards"], np.float64))) for ep in episodes])


# --------------------------------------------------------------------------------- replay buffers
def replay_to_episodes(buffer, num_envs: int, count: int | None = None) -> list[dict]:
    """The first `count` transitions a loop wrote into its replay buffer (all by default), as episodes.

    The loops write one row per env per vector step, so row `k * num_envs + i` is env i's k-th
    transition; each env's stream is split where an episode terminated or was truncated, and
    where the next row does not continue the previous one (an env reset the loop made without a
    flag, e.g. the host loop's checkpoint boundaries). A stream's unfinished last episode ends
    as truncated: its next observation is real, only the data collection stopped there.
    The buffer must not have wrapped around (capacity >= rows written): the suite sizes it so.
    """
    data = jax.device_get(buffer.data)
    size = int(buffer.size)
    if int(buffer.pos) != size % buffer.capacity or (size == buffer.capacity and int(buffer.pos) != 0):
        raise HeronError("the replay buffer wrapped around (older transitions were overwritten): "
                         "give the training run a buffer_size of at least its total env steps")
    count = size if count is None else int(count)
    if not 0 < count <= size:
        raise HeronError(f"asked for the first {count} replay transitions, the buffer holds {size}")
    if count % num_envs:
        raise HeronError(f"{count} replay rows do not split over {num_envs} envs (rows are written num_envs at a time)")
    episodes = []
    for i in range(num_envs):
        rows = np.arange(i, count, num_envs)
        obs, next_obs = np.asarray(data.obs)[rows], np.asarray(data.next_obs)[rows]
        action, reward = np.asarray(data.action)[rows], np.asarray(data.reward)[rows]
        term, trunc = np.asarray(data.terminated)[rows] > 0, np.asarray(data.truncated)[rows] > 0
        end = term | trunc
        jump = np.zeros(len(rows), bool)
        jump[:-1] = np.any(next_obs[:-1] != obs[1:], axis=tuple(range(1, obs.ndim))) & ~end[:-1]
        cut = end | jump
        cut[-1] = True
        start = 0
        for last in np.flatnonzero(cut):
            sl = slice(start, last + 1)
            t_flag = term[sl].copy()
            r_flag = trunc[sl].copy()
            r_flag[-1] = r_flag[-1] or not t_flag[-1]  # an unflagged cut is a truncation (true next obs kept)
            episodes.append((int(rows[start]), _episode(np.concatenate([obs[sl], next_obs[last:last + 1]]),
                                                        action[sl], reward[sl], t_flag, r_flag)))
            start = last + 1
    # chronological: by the buffer row where each episode starts
    return [ep for _, ep in sorted(episodes, key=lambda item: item[0])]
