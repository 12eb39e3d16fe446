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


def random_actions(space: gym.Space, key: jax.Array, n: int) -> jax.Array:
    """n uniform random actions from a JAX key (the loops' warm-up before `learning_starts`)."""
    if isinstance(space, gym.spaces.Discrete):
        return jax.random.randint(key, (n,), 0, int(space.n)).astype(jnp.int32) + int(space.start)
    low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
    return jax.random.uniform(key, (n, *space.shape), jnp.float32, low, high)
