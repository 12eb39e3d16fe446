"""Shared data types passed between loops and agents."""

from typing import NamedTuple

import jax


class Transition(NamedTuple):
    """One step (or a batch / rollout of steps) of experience.

    `next_obs` is always the true next observation: on truncation it is the final
    observation of the episode, never the first observation of the next one, so that
    value targets bootstrap from the right state. `terminated` stops bootstrapping;
    `truncated` does not (it only ends the episode for GAE and n-step returns).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array
