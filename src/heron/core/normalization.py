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
