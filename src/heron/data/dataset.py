"""`EpisodeDataset`: logged episodes in memory, a transition view, and sampling on device.

Layout (flat arrays, episodes back to back, no duplicated next observations):

    observations  [N + E, *obs_shape]  each episode's T_e + 1 observations, final one included
    actions       [N, *act_shape]      rewards, terminations, truncations: [N]
    episode_starts [E + 1]             episode e owns transitions episode_starts[e] : episode_starts[e+1]
                                       and observations episode_starts[e] + e : episode_starts[e+1] + e + 1

so transition t of episode e reads `observations[t + e]` and `observations[t + e + 1]`.
A dataset needs no environment: spaces, reference scores and provenance travel with it.
On disk it is a Minari dataset (see `heron.data.minari_io`).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import flax.struct
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from heron.errors import HeronError
from heron.types import LabelledTransition, Transition, with_label


@dataclasses.dataclass(frozen=True, eq=False)
class EpisodeDataset:
    """Episodes of (o_0, a_0, r_0, o_1, ..., o_T) with per-step termination/truncation flags.

    `action_known[e]` is False for action-free episodes (their actions are NaN placeholders);
    `episode_weights[e]` is the relative sampling weight of episode e's transitions (uniform
    when None). `provenance` lists how the data came to be, oldest first: the generating
    config, then every transform applied, each a JSON-able dict.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    episode_starts: np.ndarray
    observation_space: gym.spaces.Box
    action_space: gym.Space
    name: str = "dataset"
    env_id: str | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    action_known: np.ndarray | None = None
    episode_weights: np.ndarray | None = None
    provenance: tuple[dict, ...] = ()

    def __post_init__(self):
        check_layout(self)

    # ---------------------------------------------------------------- sizes and views
    @property
    def num_episodes(self) -> int:
        return len(self.episode_starts) - 1

    @property
    def num_transitions(self) -> int:
        return len(self.rewards)

    def __len__(self) -> int:
        return self.num_transitions

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self.episode_starts)

    @property
    def discrete_actions(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    def episode_of_transition(self) -> np.ndarray:
        """[N] episode index of every transition."""
        return np.repeat(np.arange(self.num_episodes), self.episode_lengths)

    def obs_index(self) -> np.ndarray:
        """[N] row of `observations` holding each transition's o_t (o_{t+1} is the next row)."""
        return np.arange(self.num_transitions) + self.episode_of_transition()

    def episode_returns(self) -> np.ndarray:
        """[E] undiscounted return of every episode."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts[:-1]) if self.num_episodes else np.zeros(0)

    def episode(self, e: int) -> dict[str, np.ndarray]:
        """Episode e as Minari's per-episode arrays (observations has one more row)."""
        if not 0 <= e < self.num_episodes:
            raise IndexError(f"episode {e} out of range [0, {self.num_episodes})")
        s, t = int(self.episode_starts[e]), int(self.episode_starts[e + 1])
        return {"observations": self.observations[s + e:t + e + 1], "actions": self.actions[s:t],
                "rewards": self.rewards[s:t], "terminations": self.terminations[s:t], "truncations": self.truncations[s:t]}

    def transitions(self) -> Transition:
        """All N transitions as numpy arrays (next_obs materialised: this copies observations)."""
        idx = self.obs_index()
        return Transition(obs=self.observations[idx], action=self.actions, reward=self.rewards,
                          next_obs=self.observations[idx + 1], terminated=self.terminations, truncated=self.truncations)

    def transition_weights(self) -> np.ndarray | None:
        """[N] sampling weight of each transition (its episode's weight), or None for uniform."""
        if self.episode_weights is None:
            return None
        return np.repeat(self.episode_weights.astype(np.float64), self.episode_lengths)

    def normalized_score(self, returns) -> np.ndarray:
        """D4RL-style 100 * (return - random) / (expert - random) using the dataset's references."""
        if self.ref_min_score is None or self.ref_max_score is None:
            raise HeronError(f"dataset {self.name!r} has no reference scores (ref_min_score/ref_max_score): "
                             "datasets made by `heron data suite make` carry them; set them with `with_metadata`")
        return 100.0 * (np.asarray(returns, np.float64) - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)

    # ---------------------------------------------------------------- derived datasets
    def with_metadata(self, **changes) -> EpisodeDataset:
        """A copy with fields replaced (arrays are shared, never modified in place)."""
        return dataclasses.replace(self, **changes)

    def with_step(self, step: dict) -> EpisodeDataset:
        """A copy whose provenance ends with `step` (a JSON-able description of a transform)."""
        return dataclasses.replace(self, provenance=(*self.provenance, step))

    def select_episodes(self, episodes) -> EpisodeDataset:
        """A new dataset made of the given episode indices, in that order."""
        episodes = np.asarray(episodes, dtype=np.int64).reshape(-1)
        if episodes.size and (episodes.min() < 0 or episodes.max() >= self.num_episodes):
            raise HeronError(f"episode indices must lie in [0, {self.num_episodes})")
        lengths = self.episode_lengths[episodes]
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        t_idx = np.concatenate([np.arange(self.episode_starts[e], self.episode_starts[e + 1]) for e in episodes]) \
            if episodes.size else np.zeros(0, np.int64)
        o_idx = np.concatenate([np.arange(self.episode_starts[e] + e, self.episode_starts[e + 1] + e + 1) for e in episodes]) \
            if episodes.size else np.zeros(0, np.int64)
        pick = (lambda a: None if a is None else a[episodes])
        return dataclasses.replace(
            self, observations=self.observations[o_idx], actions=self.actions[t_idx], rewards=self.rewards[t_idx],
            terminations=self.terminations[t_idx], truncations=self.truncations[t_idx], episode_starts=starts,
            action_known=pick(self.action_known), episode_weights=pick(self.episode_weights))

    def split(self, fraction: float, seed: int = 0) -> tuple[EpisodeDataset, EpisodeDataset]:
        """Split by whole episodes: (≈fraction of the episodes, the rest), shuffled by `seed`."""
        if not 0.0 < fraction < 1.0:
            raise HeronError(f"split fraction must be in (0, 1), got {fraction}")
        if self.num_episodes < 2:
            raise HeronError(f"dataset {self.name!r} has {self.num_episodes} episode(s); a split needs at least 2")
        order = np.asarray(jax.random.permutation(jax.random.PRNGKey(seed), self.num_episodes))
        k = min(max(1, int(round(fraction * self.num_episodes))), self.num_episodes - 1)
        return self.select_episodes(np.sort(order[:k])), self.select_episodes(np.sort(order[k:]))

    def to_device(self, labels: np.ndarray | None = None) -> DeviceDataset:
        """The transition view as device arrays, ready for `sample_transitions` inside jit;
        `labels` ([N], e.g. `label_episodes(ds, fn)`) makes its batches `LabelledTransition`s."""
        weights = self.transition_weights()
        if weights is None:
            cum = jnp.zeros((0,), jnp.float32)
        else:
            c = np.cumsum(weights)
            cum = jnp.asarray(c / c[-1], jnp.float32)
        return DeviceDataset(observations=jnp.asarray(self.observations), actions=jnp.asarray(self.actions),
                             rewards=jnp.asarray(self.rewards, jnp.float32),
                             terminations=jnp.asarray(self.terminations, jnp.float32),
                             truncations=jnp.asarray(self.truncations, jnp.float32),
                             obs_index=jnp.asarray(self.obs_index(), jnp.int32), cum_weights=cum,
                             labels=None if labels is None else jnp.asarray(labels, jnp.float32).reshape(-1))

    def __repr__(self) -> str:
        return (f"EpisodeDataset({self.name!r}, episodes={self.num_episodes}, transitions={self.num_transitions}, "
                f"obs={self.observation_space}, action={self.action_space}, env={self.env_id})")


@flax.struct.dataclass
class DeviceDataset:
    """A dataset's transitions on device; a pytree, so it lives inside compiled loops and vmaps."""

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    terminations: jax.Array
    truncations: jax.Array
    obs_index: jax.Array
    cum_weights: jax.Array  # [N] normalised cumulative weights, or [0] for uniform sampling
    labels: jax.Array | None = None  # [N] per-transition episode labels (AgentSpec.label_episode), or None

    @property
    def size(self) -> int:
        return self.rewards.shape[0]


def sample_indices(data: DeviceDataset, key: jax.Array, batch_size: int) -> jax.Array:
    """Transition indices: uniform, or ∝ the transition weights (inverse CDF, O(B log N))."""
    if data.cum_weights.shape[0] == 0:
        return jax.random.randint(key, (batch_size,), 0, data.size)
    u = jax.random.uniform(key, (batch_size,))
    return jnp.minimum(jnp.searchsorted(data.cum_weights, u, side="right"), data.size - 1)


def gather_transitions(data: DeviceDataset, idx: jax.Array) -> Transition | LabelledTransition:
    o = data.obs_index[idx]
    batch = Transition(obs=data.observations[o], action=data.actions[idx], reward=data.rewards[idx],
                       next_obs=data.observations[o + 1], terminated=data.terminations[idx],
                       truncated=data.truncations[idx])
    return batch if data.labels is None else with_label(batch, data.labels[idx])


def label_episodes(ds: EpisodeDataset, label_episode) -> np.ndarray:
    """[N] float32: `label_episode(rewards, terminations, truncations)` of each episode (its [T_e]
    arrays), concatenated in transition order (an agent's `AgentSpec.label_episode` with its config bound)."""
    out = np.empty(ds.num_transitions, np.float32)
    starts = np.asarray(ds.episode_starts)
    for a, b in itertools.pairwise(starts):
        out[a:b] = label_episode(np.asarray(ds.rewards[a:b]), np.asarray(ds.terminations[a:b]),
                                 np.asarray(ds.truncations[a:b]))
    return out


def sample_transitions(data: DeviceDataset, key: jax.Array, batch_size: int) -> Transition:
    """A batch of transitions sampled with replacement; jittable (batch_size static)."""
    return gather_transitions(data, sample_indices(data, key, batch_size))


# -------------------------------------------------------------------- construction
def from_episodes(episodes: list[dict[str, Any]], observation_space: gym.Space, action_space: gym.Space,
                  **metadata) -> EpisodeDataset:
    """Build a dataset from Minari-style episode dicts (observations has T+1 rows, the rest T)."""
    if not episodes:
        raise HeronError("a dataset needs at least one episode")
    lengths = [len(ep["rewards"]) for ep in episodes]
    act_dtype = np.int32 if isinstance(action_space, gym.spaces.Discrete) else np.float32
    obs_dtype = _obs_dtype(observation_space)
    return EpisodeDataset(
        observations=np.concatenate([np.asarray(ep["observations"], obs_dtype) for ep in episodes]),
        actions=np.concatenate([np.asarray(ep["actions"], act_dtype) for ep in episodes]),
        rewards=np.concatenate([np.asarray(ep["rewards"], np.float32).reshape(-1) for ep in episodes]),
        terminations=np.concatenate([np.asarray(ep["terminations"], bool).reshape(-1) for ep in episodes]),
        truncations=np.concatenate([np.asarray(ep["truncations"], bool).reshape(-1) for ep in episodes]),
        episode_starts=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        observation_space=observation_space, action_space=action_space, **metadata)


def concatenate(datasets: list[EpisodeDataset], name: str, provenance_step: dict | None = None) -> EpisodeDataset:
    """Episodes of several datasets with identical spaces, in order (weights reset to uniform)."""
    if not datasets:
        raise HeronError("nothing to concatenate")
    first = datasets[0]
    for d in datasets[1:]:
        if d.observation_space != first.observation_space or d.action_space != first.action_space:
            raise HeronError(f"cannot mix {first.name!r} and {d.name!r}: their observation/action spaces differ "
                             f"({first.observation_space}, {first.action_space} vs {d.observation_space}, {d.action_space})")
    offsets = np.cumsum([0] + [d.num_transitions for d in datasets[:-1]])
    known = None
    if any(d.action_known is not None for d in datasets):
        known = np.concatenate([d.action_known if d.action_known is not None else np.ones(d.num_episodes, bool)
                                for d in datasets])
    refs = {(d.ref_min_score, d.ref_max_score) for d in datasets}
    ref_min, ref_max = refs.pop() if len(refs) == 1 else (None, None)
    envs = {d.env_id for d in datasets}
    return EpisodeDataset(
        observations=np.concatenate([d.observations for d in datasets]),
        actions=np.concatenate([d.actions for d in datasets]),
        rewards=np.concatenate([d.rewards for d in datasets]),
        terminations=np.concatenate([d.terminations for d in datasets]),
        truncations=np.concatenate([d.truncations for d in datasets]),
        episode_starts=np.concatenate([[0]] + [d.episode_starts[1:] + off for d, off in zip(datasets, offsets)]).astype(np.int64),
        observation_space=first.observation_space, action_space=first.action_space, name=name,
        env_id=envs.pop() if len(envs) == 1 else None, ref_min_score=ref_min, ref_max_score=ref_max,
        action_known=known,
        provenance=tuple([{"sources": [{"name": d.name, "provenance": list(d.provenance)} for d in datasets]}]
                         + ([provenance_step] if provenance_step else [])))


def _obs_dtype(space: gym.Space):
    if not isinstance(space, gym.spaces.Box):
        raise HeronError(f"observation space {space} is not supported: heron datasets hold Box (array) observations")
    return np.float32 if np.issubdtype(space.dtype, np.floating) else space.dtype


# -------------------------------------------------------------------- integrity
def check_layout(ds: EpisodeDataset, where: str | None = None) -> None:
    """Shapes, lengths, dtypes and episode boundaries; raises HeronError naming the first defect."""
    at = where or f"dataset {ds.name!r}"

    def fail(defect: str):
        raise HeronError(f"{at}: {defect}")

    if not isinstance(ds.observation_space, gym.spaces.Box):
        fail(f"observation space {ds.observation_space} is not supported (Box observations only)")
    if not isinstance(ds.action_space, (gym.spaces.Box, gym.spaces.Discrete)):
        fail(f"action space {ds.action_space} is not supported (Box or Discrete actions only)")
    starts = np.asarray(ds.episode_starts)
    if starts.ndim != 1 or len(starts) < 2 or starts[0] != 0 or np.any(np.diff(starts) < 1):
        fail("episode boundaries are malformed (every episode needs at least one transition)")
    n, e = int(starts[-1]), len(starts) - 1
    for field in ("rewards", "terminations", "truncations"):
        arr = getattr(ds, field)
        if arr.shape != (n,):
            fail(f"{field} has shape {arr.shape}, expected ({n},) for {n} transitions")
    if ds.observations.shape != (n + e, *ds.observation_space.shape):
        fail(f"observations have shape {ds.observations.shape}, expected {(n + e, *ds.observation_space.shape)} "
             f"({n} transitions + one final observation for each of {e} episodes, space {ds.observation_space})")
    act_shape = () if isinstance(ds.action_space, gym.spaces.Discrete) else ds.action_space.shape
    if ds.actions.shape != (n, *act_shape):
        fail(f"actions have shape {ds.actions.shape}, expected {(n, *act_shape)} for action space {ds.action_space}")
    if not np.all(np.isfinite(ds.observations)):
        fail("observations contain NaN or infinity")
    if not np.all(np.isfinite(ds.rewards)):
        fail("rewards contain NaN or infinity")
    ends = np.zeros(n, bool)
    ends[starts[1:] - 1] = True
    if np.any((ds.terminations | ds.truncations) & ~ends):
        first = int(np.flatnonzero((ds.terminations | ds.truncations) & ~ends)[0])
        fail(f"transition {first} is flagged terminated/truncated but is not the last of its episode "
             "(an episode boundary inside an episode)")
    for field in ("action_known", "episode_weights"):
        arr = getattr(ds, field)
        if arr is not None and np.shape(arr) != (e,):
            fail(f"{field} has shape {np.shape(arr)}, expected ({e},) (one per episode)")
    if ds.episode_weights is not None and (not np.all(np.isfinite(ds.episode_weights)) or np.any(ds.episode_weights < 0)
                                           or not np.any(ds.episode_weights > 0)):
        fail("episode_weights must be finite, non-negative and not all zero")
    known = np.ones(e, bool) if ds.action_known is None else np.asarray(ds.action_known, bool)
    known_t = np.repeat(known, np.diff(starts))
    if isinstance(ds.action_space, gym.spaces.Discrete):
        a = ds.actions[known_t]
        if a.size and (a.min() < ds.action_space.start or a.max() >= ds.action_space.start + ds.action_space.n):
            fail(f"discrete actions fall outside {ds.action_space}")
    elif not np.all(np.isfinite(ds.actions[known_t])):
        fail("actions contain NaN or infinity in episodes marked as having actions")
