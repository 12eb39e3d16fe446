"""Action-space helpers shared by agents and loops."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from heron.errors import HeronError


def action_kind(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
        return "continuous"
    return f"unsupported ({type(space).__name__} {getattr(space, 'shape', '')})"


def check_action_space(algo: str, kinds: frozenset[str], space: gym.Space, env_id: str) -> str:
    """Return the space's kind, or raise naming what the algorithm can handle instead."""
    kind = action_kind(space)
    if kind not in kinds:
        wanted = " or ".join(sorted(kinds))
        raise HeronError(
            f"{algo} cannot handle the {kind} action space of {env_id}: it needs a {wanted} action space; "
            f"pick an env with {wanted} actions or an algorithm that supports {kind} actions"
        )
    return kind


def spaces_mismatch(obs_a: gym.Space, act_a: gym.Space, obs_b: gym.Space, act_b: gym.Space) -> str | None:
    """Why a policy for (obs_a, act_a) cannot act in (obs_b, act_b) — "observations (3,) vs (2,)" — or None:
    observation shapes, action types and shapes, and Box action bounds must agree."""
    if tuple(obs_a.shape) != tuple(obs_b.shape):
        return f"observations {tuple(obs_a.shape)} vs {tuple(obs_b.shape)}"
    if type(act_a) is not type(act_b) or getattr(act_a, "shape", None) != getattr(act_b, "shape", None):
        return f"actions {act_a} vs {act_b}"
    if isinstance(act_a, gym.spaces.Box) and not (np.allclose(act_a.low, act_b.low) and np.allclose(act_a.high, act_b.high)):
        return f"action bounds {act_a} vs {act_b}"
    return None


def random_actions(space: gym.Space, key: jax.Array, n: int) -> jax.Array:
    """n uniform random actions from a JAX key (the loops' warm-up before `learning_starts`)."""
    if isinstance(space, gym.spaces.Discrete):
        return jax.random.randint(key, (n,), 0, int(space.n)).astype(jnp.int32) + int(space.start)
    low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
    return jax.random.uniform(key, (n, *space.shape), jnp.float32, low, high)
