"""A uniform replay buffer as a pytree of device arrays.

Being a pytree, the buffer lives inside jitted programs (adds and samples fuse with the
update, no host round trip per step), checkpoints with the rest of the loop state, and
batches over seeds with `vmap`. Sampling draws indices from an explicit JAX key.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from heron.types import UNLABELLED, LabelledTransition, Transition, with_label


class ReplayBuffer(NamedTuple):
    data: Transition | LabelledTransition  # each field [capacity, ...]
    pos: jax.Array  # next write index (int32)
    size: jax.Array  # number of valid rows (int32)

    @property
    def capacity(self) -> int:
        return self.data.reward.shape[0]


def replay_init(capacity: int, obs_shape: tuple, obs_dtype, act_shape: tuple, act_dtype,
                labelled: bool = False) -> ReplayBuffer:
    """An empty buffer; `labelled` adds a `label` row per transition (`LabelledTransition`, for agents
    with `AgentSpec.label_episode`), UNLABELLED (−inf) until `replay_set_labels` writes it."""
    def zeros(shape, dtype):
        return jnp.zeros((capacity, *shape), dtype)

    data = Transition(
        obs=zeros(obs_shape, obs_dtype),
        action=zeros(act_shape, act_dtype),
        reward=zeros((), jnp.float32),
        next_obs=zeros(obs_shape, obs_dtype),
        terminated=zeros((), jnp.float32),
        truncated=zeros((), jnp.float32),
    )
    if labelled:
        data = with_label(data, jnp.full((capacity,), UNLABELLED, jnp.float32))
    return ReplayBuffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def replay_init_like(capacity: int, example: Transition) -> ReplayBuffer:
    """Buffer whose rows have the shapes/dtypes of one unbatched `example` transition."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity, *np.shape(x)), jnp.asarray(x).dtype), example)
    return ReplayBuffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def replay_add(buffer: ReplayBuffer, batch: Transition) -> ReplayBuffer:
    """Write a batch of n transitions (leading axis n) at the ring position."""
    n = batch.reward.shape[0]
    capacity = buffer.capacity
    idx = (buffer.pos + jnp.arange(n)) % capacity
    data = jax.tree.map(lambda store, x: store.at[idx].set(x.astype(store.dtype)), buffer.data, batch)
    return ReplayBuffer(data, (buffer.pos + n) % capacity, jnp.minimum(buffer.size + n, capacity))


def replay_sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Transition:
    """Uniform sample with replacement among the valid rows."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda store: store[idx], buffer.data)


def replay_sample_mixed(buffer: ReplayBuffer, key: jax.Array, batch_size: int, offline_rows: int,
                        offline_fraction: float, shuffle: bool = True) -> Transition:
    """Symmetric sampling (RLPD): rows [0, offline_rows) hold fixed offline data and online data
    follows them; round(batch_size * offline_fraction) rows come from the offline part, the rest
    from the online part, shuffled together so any slice of the batch mixes both. `shuffle=False`
    keeps the offline rows first (an update that treats them differently, H2O's, reads them there)."""
    k_off, k_on, k_perm = jax.random.split(key, 3)
    n_off = int(round(batch_size * offline_fraction))
    off = jax.random.randint(k_off, (n_off,), 0, max(offline_rows, 1))
    on = jax.random.randint(k_on, (batch_size - n_off,), offline_rows, jnp.maximum(buffer.size, offline_rows + 1))
    idx = jnp.concatenate([off, on])
    if shuffle:
        idx = jax.random.permutation(k_perm, idx)
    return jax.tree.map(lambda store: store[idx], buffer.data)


def replay_set_labels(buffer: ReplayBuffer, rows: jax.Array, labels: jax.Array) -> ReplayBuffer:
    """Write `labels` into the `label` of `rows` (a finished episode's rows); rows ≥ capacity are
    padding and are dropped (callers pad to a few fixed lengths so this compiles a few times only)."""
    label = buffer.data.label.at[rows].set(labels.astype(jnp.float32), mode="drop")
    return buffer._replace(data=buffer.data._replace(label=label))
