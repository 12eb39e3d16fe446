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


class LabelledTransition(NamedTuple):
    """A `Transition` plus `label`: one number per transition computed from its whole episode by
    the agent's `AgentSpec.label_episode` hook (Cal-QL: the discounted Monte-Carlo return-to-go).
    Loops hand these to agents that set the hook (see heron/agents/registry.py); every other
    agent keeps receiving plain `Transition`s, so their batches, buffers and checkpoints are as
    before. Agents read the shared fields by name, so both types serve them alike."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    label: jax.Array
    """[...] the episode label; −inf while the episode is still running online (not known yet)."""


UNLABELLED = float("-inf")
"""The label of a transition whose episode has not ended yet."""


def with_label(transition: Transition, label) -> LabelledTransition:
    """`transition`'s fields plus `label` (same leading shape as `transition.reward`)."""
    return LabelledTransition(*transition, label=label)
