"""Running mean/variance normalisers held inside the agent state (so they checkpoint,
resume and `vmap` with everything else)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class RunningMeanStd(NamedTuple):
    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @staticmethod
    def create(shape: tuple[int, ...] = ()) -> "RunningMeanStd":
        return RunningMeanStd(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.asarray(1e-4, jnp.float32))

    def update(self, x: jax.Array) -> "RunningMeanStd":
        """Merge a batch (leading axes are samples) with Chan et al.'s parallel formula."""
        x = x.reshape((-1,) + self.mean.shape).astype(jnp.float32)
        batch_mean, batch_var, n = jnp.mean(x, 0), jnp.var(x, 0), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        return RunningMeanStd(mean, m2 / total, total)

    def normalize(self, x: jax.Array, clip: float = 10.0) -> jax.Array:
        return jnp.clip((x - self.mean) / jnp.sqrt(self.var + 1e-8), -clip, clip)


def ema_update(target, online, tau: float):
    """Polyak averaging: target <- tau * online + (1 - tau) * target (tau=1 copies)."""
    return jax.tree.map(lambda t, o: tau * o + (1.0 - tau) * t, target, online)


def dataset_obs_normalizer(stats, obs_dim: int, enabled: bool, eps: float) -> tuple[jax.Array, jax.Array]:
    """(mean, std) that standardise observations as s ← (s − μ) / (σ + eps), with μ, σ from a
    `DatasetStats` (TD3+BC's state normalisation); identity (0, 1) when disabled or `stats` is None."""
    if not enabled or stats is None:
        return jnp.zeros((obs_dim,), jnp.float32), jnp.ones((obs_dim,), jnp.float32)
    mean = jnp.asarray(stats.obs_mean, jnp.float32).reshape(obs_dim)
    std = jnp.asarray(stats.obs_std, jnp.float32).reshape(obs_dim) + eps
    return mean, std


def normalized_obs(state, obs: jax.Array) -> jax.Array:
    """[B, ...] raw observations -> [B, obs_dim] float32 standardised with `state.obs_mean` and
    `state.obs_std` (the leaves `dataset_obs_normalizer` made; identity when normalisation is off)."""
    flat = jnp.asarray(obs, jnp.float32).reshape(obs.shape[0], -1)
    return (flat - state.obs_mean) / state.obs_std


def return_range_reward_scale(stats, enabled: bool, target: float) -> jax.Array:
    """c in r ← c r with c = target / (max_e R_e − min_e R_e) (IQL's locomotion reward scaling);
    1 when disabled, without statistics, or when every episode has the same return."""
    spread = 0.0 if stats is None else float(stats.return_max) - float(stats.return_min)
    if not enabled or not spread > 0.0:
        return jnp.ones((), jnp.float32)
    return jnp.asarray(target / spread, jnp.float32)
