"""Networks: MLP torso, ensembles by `vmap`, and policy / value heads.

Every agent builds its networks from these, so that e.g. "LayerNorm critics" or "an
ensemble of 10 Q-functions" is a config flag, not a new class.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS: dict[str, Callable] = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "silu": nn.silu, "elu": nn.elu}


def activation(name: str) -> Callable:
    return ACTIVATIONS[name]


def orthogonal(scale: float = float(np.sqrt(2))):
    return nn.initializers.orthogonal(scale)


INITS = ("lecun", "torch")
"""Default initialisations of Dense layers: "lecun" is Flax's (LeCun-normal weights, zero biases);
"torch" is PyTorch's nn.Linear (weights and biases U(−1/√fan_in, 1/√fan_in): a third of the weight
variance, and nonzero biases), the init of the reference code of the PyTorch-era papers."""


def _uniform(bound: float) -> Callable:
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


def dense(width: int, fan_in: int, weight_init: str = "lecun", kernel_init: Callable | None = None) -> nn.Dense:
    """A Dense layer under the named default `weight_init` (see INITS); an explicit `kernel_init` wins."""
    if weight_init == "torch":
        bound = 1.0 / float(np.sqrt(fan_in))
        return nn.Dense(width, kernel_init=kernel_init or _uniform(bound), bias_init=_uniform(bound))
    if weight_init != "lecun":
        raise ValueError(f"weight_init must be one of {', '.join(INITS)}, got {weight_init!r}")
    return nn.Dense(width, kernel_init=kernel_init or nn.initializers.lecun_normal())


class MLP(nn.Module):
    """Dense layers with an activation, optional LayerNorm after each hidden layer.

    `kernel_init` / `last_init` let PPO use orthogonal init (scale sqrt(2), 0.01 for the
    policy head, 1 for the value head) while SAC/TD3 keep Flax's lecun-normal default;
    `weight_init="torch"` is PyTorch's default instead (see INITS).
    """

    hidden: Sequence[int]
    out_dim: int | None = None
    act: str = "relu"
    layer_norm: bool = False
    kernel_init: Callable | None = None
    last_init: Callable | None = None
    weight_init: str = "lecun"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = dense(width, x.shape[-1], self.weight_init, self.kernel_init)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = activation(self.act)(x)
        if self.out_dim is not None:
            x = dense(self.out_dim, x.shape[-1], self.weight_init, self.last_init or self.kernel_init)(x)
        return x


class QNetwork(nn.Module):
    """Q(s, a) -> scalar for continuous actions (state and action concatenated)."""

    hidden: Sequence[int]
    act: str = "relu"
    layer_norm: bool = False
    weight_init: str = "lecun"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(self.hidden, 1, self.act, self.layer_norm, weight_init=self.weight_init)(x).squeeze(-1)


class Ensemble(nn.Module):
    """`num` independent copies of `module_cls(**kwargs)`, evaluated in one batched call.

    Parameters get a leading axis of size `num`; inputs are broadcast; outputs get a
    leading axis of size `num`. This is how twin critics (num=2) and Q-ensembles (num=10)
    run as one fused matmul per layer instead of a Python loop.
    """

    module_cls: type[nn.Module]
    num: int
    kwargs: dict

    @nn.compact
    def __call__(self, *args):
        batched = nn.vmap(
            self.module_cls,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num,
        )
        return batched(**self.kwargs)(*args)


class DeterministicActor(nn.Module):
    """a = tanh(MLP(s)), rescaled by the loop to the action bounds (TD3, TD3+BC)."""

    hidden: Sequence[int]
    action_dim: int
    act: str = "relu"
    weight_init: str = "lecun"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return jnp.tanh(MLP(self.hidden, self.action_dim, self.act, weight_init=self.weight_init)(obs))


class GaussianHead(nn.Module):
    """MLP -> (mean, log_std) with log_std clipped to [log_std_min, log_std_max] (SAC)."""

    hidden: Sequence[int]
    action_dim: int
    act: str = "relu"
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    weight_init: str = "lecun"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = MLP(self.hidden, None, self.act, weight_init=self.weight_init)(obs)
        mean = dense(self.action_dim, x.shape[-1], self.weight_init)(x)
        log_std = dense(self.action_dim, x.shape[-1], self.weight_init)(x)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


class StateIndependentGaussian(nn.Module):
    """MLP -> mean, plus a learned log_std vector that does not depend on the state (zeros at
    init, clipped to [log_std_min, log_std_max]); IQL's policy (Kostrikov et al. 2021)."""

    hidden: Sequence[int]
    action_dim: int
    act: str = "relu"
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = MLP(self.hidden, None, self.act)(obs)
        mean = nn.Dense(self.action_dim)(x)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        log_std = jnp.broadcast_to(jnp.clip(log_std, self.log_std_min, self.log_std_max), mean.shape)
        return mean, log_std


class ValueNetwork(nn.Module):
    """V(s) -> scalar (IQL's state value)."""

    hidden: Sequence[int]
    act: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden, 1, self.act, self.layer_norm)(obs).squeeze(-1)
