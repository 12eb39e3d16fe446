"""Behaviour cloning: supervised regression of the dataset's actions on its states.

The offline baseline every offline method is compared with (Fu et al. 2020, D4RL; Fujimoto &
Gu 2021, TD3+BC §5). Two policy classes, one config switch:

* `policy="deterministic"`: a = tanh(MLP(s)), trained by the mean squared error to the dataset
  action (TD3+BC's actor with λ = 0, as CORL's BC); `act` adds Gaussian noise σ unless
  deterministic (only used when the policy keeps acting online);
* `policy="gaussian"`: π(a|s) = N(tanh(μ(s)), σ(s)²) with a state-dependent, clipped log σ,
  trained by the negative log-likelihood of the dataset action; `act` samples (clipped to
  the bounds) or returns tanh(μ(s)).

Networks work in normalised action units [-1, 1] (`update` maps the dataset's env-unit
actions there); observations are standardised with the dataset's mean and std, held in the
state so that `act` applies the same transform.
"""

from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.core import FrozenDict

from heron.agents.registry import AgentSpec, DatasetStats, register
from heron.core.actions import box_bounds, from_unit, to_unit
from heron.core.distributions import gaussian_log_prob
from heron.core.networks import DeterministicActor, GaussianHead
from heron.core.normalization import dataset_obs_normalizer, normalized_obs
from heron.errors import HeronError
from heron.types import Transition


@dataclass(frozen=True)
class Config:
    """BC hyperparameters.

    Defaults are TD3+BC's actor settings (Fujimoto & Gu 2021, github.com/sfujim/TD3_BC: 2x256
    ReLU, Adam 3e-4, batch 256, states standardised with std + 1e-3), which CORL's
    any_percent_bc.py also uses; the Gaussian variant's log σ bounds [-5, 2] follow IQL's policy.
    """

    batch_size: int = 256
    """Dataset transitions per gradient step N."""
    policy: Literal["deterministic", "gaussian"] = "deterministic"
    """deterministic: MSE to the dataset action; gaussian: negative log-likelihood of N(tanh μ(s), σ(s)²)."""
    learning_rate: float = 3e-4
    """Adam step size of the policy."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy network."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    normalize_obs: bool = True
    """Standardise states with the dataset's mean and std (s − μ) / (σ + eps), as TD3+BC."""
    obs_std_eps: float = 1e-3
    """eps added to the dataset's state std (TD3+BC: 1e-3)."""
    log_std_min: float = -5.0
    """Lower clip of log σ(s) (gaussian policy)."""
    log_std_max: float = 2.0
    """Upper clip of log σ(s) (gaussian policy)."""
    exploration_noise: float = 0.1
    """Std σ of the Gaussian noise `act` adds to a deterministic policy when not deterministic (TD3's 0.1)."""

    def __post_init__(self):
        if self.batch_size < 1:
            raise HeronError(f"bc: batch_size must be >= 1, got {self.batch_size}")
        if self.policy not in ("deterministic", "gaussian"):
            raise HeronError(f"bc: policy must be deterministic or gaussian, got {self.policy!r}")
        if self.learning_rate <= 0 or self.obs_std_eps < 0 or self.exploration_noise < 0:
            raise HeronError("bc: learning_rate must be > 0; obs_std_eps and exploration_noise >= 0")
        if self.log_std_min > self.log_std_max:
            raise HeronError(f"bc: log_std_min {self.log_std_min} exceeds log_std_max {self.log_std_max}")


@struct.dataclass
class State:
    """Everything BC learns, as a pytree; the network definition and bounds are static."""

    actor_params: FrozenDict
    opt_state: optax.OptState
    obs_mean: jax.Array
    """[obs_dim] state normaliser mean μ (dataset statistics; 0 when disabled)."""
    obs_std: jax.Array
    """[obs_dim] state normaliser scale σ + eps (1 when disabled)."""
    step: jax.Array
    """Gradient steps taken (int32)."""
    actor: DeterministicActor | GaussianHead = struct.field(pytree_node=False)
    gaussian: bool = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)
    exploration_noise: float = struct.field(pytree_node=False)


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    low, high = box_bounds(act_space, "bc")
    obs_dim, act_dim = int(np.prod(obs_space.shape)), len(low)
    gaussian = cfg.policy == "gaussian"
    actor = (GaussianHead(cfg.actor_hidden, act_dim, cfg.activation, cfg.log_std_min, cfg.log_std_max) if gaussian
             else DeterministicActor(cfg.actor_hidden, act_dim, cfg.activation))
    actor_params = actor.init(key, jnp.zeros((1, obs_dim), jnp.float32))
    obs_mean, obs_std = dataset_obs_normalizer(dataset_stats, obs_dim, cfg.normalize_obs, cfg.obs_std_eps)
    return State(actor_params=actor_params, opt_state=optax.adam(cfg.learning_rate).init(actor_params),
                 obs_mean=obs_mean, obs_std=obs_std, step=jnp.zeros((), jnp.int32), actor=actor, gaussian=gaussian,
                 action_low=low, action_high=high, exploration_noise=float(cfg.exploration_noise))


# ----------------------------------------------------------------------------- losses


def mse_loss(pred_action, action):
    """L(φ) = E_B[(1/|A|) Σ_j (π_φ(s)_j − a_j)²], the mean over batch and action dimensions."""
    return jnp.mean((pred_action - action) ** 2)


def gaussian_nll_loss(mean, log_std, action):
    """L(φ) = −E_B[log N(a; tanh μ_φ(s), σ_φ(s)²)] (diagonal; summed over action dimensions).

    `mean` is the already squashed tanh μ_φ(s); per sample −log N = Σ_j [½ ((a_j − m_j)/σ_j)² + log σ_j + ½ log 2π].
    """
    return -jnp.mean(gaussian_log_prob(mean, log_std, action))


# ----------------------------------------------------------------------------- update


def _policy(state: State, params, obs):
    """(tanh μ(s), log σ(s)) of the Gaussian policy, or (π(s), None)."""
    if state.gaussian:
        mean, log_std = state.actor.apply(params, obs)
        return jnp.tanh(mean), log_std
    return state.actor.apply(params, obs), None


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """One gradient step on the cloning loss (`key` is unused: the loss is deterministic)."""
    del key
    tx = optax.adam(cfg.learning_rate)
    obs = normalized_obs(state, batch.obs)
    action = to_unit(batch.action.reshape(obs.shape[0], -1), state.action_low, state.action_high)

    def objective(params):
        mean, log_std = _policy(state, params, obs)
        loss = gaussian_nll_loss(mean, log_std, action) if state.gaussian else mse_loss(mean, action)
        return loss, mean

    (loss, mean), grads = jax.value_and_grad(objective, has_aux=True)(state.actor_params)
    updates, opt_state = tx.update(grads, state.opt_state, state.actor_params)
    new_state = state.replace(actor_params=optax.apply_updates(state.actor_params, updates), opt_state=opt_state,
                              step=state.step + 1)
    return new_state, {"bc_loss": loss, "action_mse": mse_loss(mean, action)}


# ----------------------------------------------------------------------------- act


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] -> [B, act_dim] in env units: the mean action if deterministic, else a sample
    of the Gaussian policy (or the deterministic policy plus N(0, σ²) noise), clipped to the bounds."""
    mean, log_std = _policy(state, state.actor_params, normalized_obs(state, obs))
    std = jnp.exp(log_std) if state.gaussian else state.exploration_noise
    sample = jnp.clip(mean + std * jax.random.normal(key, mean.shape, jnp.float32), -1.0, 1.0)
    return from_unit(jnp.where(deterministic, mean, sample), state.action_low, state.action_high)


register(AgentSpec(
    name="bc",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="Behaviour cloning: regress dataset actions, deterministic (MSE) or Gaussian (NLL) policy (offline, continuous).",
))
