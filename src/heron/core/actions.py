"""Continuous action units: networks work in [-1, 1], environments in their Box bounds."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from heron.errors import HeronError


def box_bounds(act_space: gym.Space, algo: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The Box's bounds as hashable tuples, or a clear error for anything else."""
    if not (isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1
            and np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise HeronError(f"{algo} needs a 1-D Box action space with finite bounds, got {act_space}; "
                         "pick an env with continuous actions")
    return tuple(float(x) for x in act_space.low), tuple(float(x) for x in act_space.high)


def to_unit(action: jax.Array, low: tuple[float, ...], high: tuple[float, ...]) -> jax.Array:
    """Env units [low, high] -> [-1, 1]."""
    low, high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
    return (2.0 * (action.astype(jnp.float32) - low) / (high - low) - 1.0).clip(-1.0, 1.0)


def from_unit(action: jax.Array, low: tuple[float, ...], high: tuple[float, ...]) -> jax.Array:
    """[-1, 1] -> env units [low, high] (clipped so rounding never leaves the Box)."""
    low, high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
    return jnp.clip(low + 0.5 * (action + 1.0) * (high - low), low, high).astype(jnp.float32)
