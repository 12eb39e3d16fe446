"""Shared pieces of the dataset transforms: checks, provenance steps, read-only sharing, a rebuild
from the transition view, and one small compiled training loop for the learned parts."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from heron.core.networks import MLP
from heron.data.dataset import EpisodeDataset
from heron.errors import HeronError


# -------------------------------------------------------------------- argument checks
def check_fraction(name: str, value, *, allow_zero: bool = True, allow_one: bool = True) -> float:
    """A number in [0, 1] (ends optional), else one HeronError naming the argument."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise HeronError(f"{name} must be a number in [0, 1], got {value!r}") from None
    lo_ok = v >= 0.0 if allow_zero else v > 0.0
    hi_ok = v <= 1.0 if allow_one else v < 1.0
    if not (math.isfinite(v) and lo_ok and hi_ok):
        lo, hi = "[" if allow_zero else "(", "]" if allow_one else ")"
        raise HeronError(f"{name} must lie in {lo}0, 1{hi}, got {value!r}: give a fraction such as 0.3")
    return v


def check_positive(name: str, value, *, integer: bool = False, allow_zero: bool = False) -> float | int:
    try:
        v = int(value) if integer else float(value)
        if integer and v != float(value):
            raise ValueError
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise HeronError(f"{name} must be {kind}, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise HeronError(f"{name} must be {bound}, got {value!r}")
    return v


def as_key(seed_or_key) -> jax.Array:
    """An explicit JAX key from an int seed (or a key passed through)."""
    if isinstance(seed_or_key, (int, np.integer)):
        return jax.random.PRNGKey(int(seed_or_key))
    if isinstance(seed_or_key, jax.Array):
        return seed_or_key
    raise HeronError(f"seed must be an integer (or a JAX key), got {seed_or_key!r}")


def seed_of(seed_or_key):
    """What provenance records for the randomness: the int seed, or the key's data."""
    if isinstance(seed_or_key, (int, np.integer)):
        return int(seed_or_key)
    return np.asarray(jax.random.key_data(seed_or_key) if jnp.issubdtype(seed_or_key.dtype, jax.dtypes.prng_key)
                      else seed_or_key).tolist()


# -------------------------------------------------------------------- provenance
def jsonable(x):
    """numpy scalars/arrays -> plain Python, recursively (provenance must be JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return jsonable(np.asarray(x).tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    return x


def step(transform: str, **fields) -> dict:
    """A provenance step: {"transform": name, ...parameters, seed and measured quantities}."""
    return jsonable({"transform": transform, **fields})


# -------------------------------------------------------------------- sharing without aliasing
def read_only(a: np.ndarray | None) -> np.ndarray | None:
    """A read-only view: the output may share the source's memory but can never write into it."""
    if a is None:
        return None
    v = a.view()
    v.flags.writeable = False
    return v


def derive(ds: EpisodeDataset, **changes) -> EpisodeDataset:
    """`ds` with fields replaced; every array not replaced is shared read-only (source untouched)."""
    shared = {f: read_only(getattr(ds, f)) for f in ("observations", "actions", "rewards", "terminations",
                                                     "truncations", "episode_starts", "action_known",
                                                     "episode_weights") if f not in changes}
    return dataclasses.replace(ds, **shared, **changes)


# -------------------------------------------------------------------- rebuild from transitions
def rebuild_from_transitions(ds: EpisodeDataset, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                             next_obs: np.ndarray, breaks: np.ndarray) -> tuple[EpisodeDataset, int]:
    """A dataset with `ds`'s transitions in order but the given per-transition arrays.

    The flat layout shares o_{t+1} between transition t's next state and transition t+1's state.
    Where a transform changes one but not the other (RIQL corrupts `observations` and
    `next_observations` independently), `breaks[t]` says transition t no longer starts where
    t-1 ended: the episode is split there, the first piece ending *truncated* at t-1 (its true
    next state kept, bootstrapping intact), the second starting at the new o_t. Every transition
    (s, a, r, s', terminated) is preserved exactly; pieces inherit their episode's action_known
    and weight. Returns (dataset, number of splits).
    """
    n, e = ds.num_transitions, ds.num_episodes
    starts = ds.episode_starts
    is_start = np.zeros(n, bool)
    is_start[starts[:-1]] = True
    breaks = np.asarray(breaks, bool) & ~is_start
    piece_start = is_start | breaks
    p_starts = np.flatnonzero(piece_start)
    p_ends = np.append(p_starts[1:], n)  # exclusive
    num_p = len(p_starts)
    piece = np.cumsum(piece_start) - 1  # [N] piece of each transition
    new_obs = np.empty((n + num_p, *ds.observation_space.shape), ds.observations.dtype)
    new_obs[np.arange(n) + piece] = obs
    new_obs[p_ends + np.arange(num_p)] = next_obs[p_ends - 1]
    truncations = np.array(ds.truncations, copy=True)
    new_end = np.zeros(n, bool)
    new_end[p_ends - 1] = True
    old_end = np.zeros(n, bool)
    old_end[starts[1:] - 1] = True
    truncations[new_end & ~old_end] = True  # a split is a time-limit-like cut: bootstrap from s'
    parent = ds.episode_of_transition()[p_starts]
    pick = (lambda a: None if a is None else np.asarray(a)[parent].copy())
    out = dataclasses.replace(
        ds, observations=new_obs, actions=np.array(actions, copy=True), rewards=np.array(rewards, np.float32, copy=True),
        terminations=np.array(ds.terminations, copy=True), truncations=truncations,
        episode_starts=np.append(p_starts, n).astype(np.int64),
        action_known=pick(ds.action_known), episode_weights=pick(ds.episode_weights))
    return out, int(num_p - e)


# -------------------------------------------------------------------- one small training loop
def fit_params(key: jax.Array, params, loss_fn: Callable, data: dict, *, steps: int, batch_size: int,
               lr: float) -> tuple[object, np.ndarray]:
    """Adam on `loss_fn(params, batch)` for `steps` minibatches drawn with replacement from `data`.

    The whole loop is one `lax.scan` (compiled once per shape). Returns (params, per-step losses).
    """
    tx = optax.adam(lr)
    n = int(next(iter(data.values())).shape[0])
    b = int(min(batch_size, n))

    def one(carry, k):
        p, opt = carry
        idx = jax.random.randint(k, (b,), 0, n)
        batch = jax.tree.map(lambda x: x[idx], data)
        loss, grads = jax.value_and_grad(loss_fn)(p, batch)
        updates, opt = tx.update(grads, opt, p)
        return (optax.apply_updates(p, updates), opt), loss

    @jax.jit
    def run(p, ks):
        (p, _), losses = jax.lax.scan(one, (p, tx.init(p)), ks)
        return p, losses

    params, losses = run(params, jax.random.split(key, int(steps)))
    return params, np.asarray(losses)


def standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) over the first axis; std floored so constant dimensions stay finite."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return x.mean(0).astype(np.float32), np.maximum(x.std(0), 1e-6).astype(np.float32)


def mlp(hidden, out_dim) -> nn.Module:
    return MLP(tuple(int(h) for h in hidden), int(out_dim))


def batched_apply(fn: Callable, arrays: tuple, batch_size: int = 8192) -> np.ndarray:
    """fn(*chunk) over the first axis in chunks (bounded memory), concatenated as numpy."""
    n = len(arrays[0])
    outs = [np.asarray(fn(*(a[i:i + batch_size] for a in arrays))) for i in range(0, n, batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)
