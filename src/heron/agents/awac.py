"""Advantage-Weighted Actor-Critic (Nair, Gupta, Dalal & Levine 2020, "AWAC: Accelerating Online
Reinforcement Learning with Offline Datasets"), offline.

Twin Q-functions (one fused `Ensemble`) are fitted by TD to r + γ (1 − d) min_i Q̄_i(s', a'),
a' ~ π(·|s'), with no entropy term; the policy maximises the advantage-weighted log-likelihood of
the dataset actions,

    L_π = −E_B[ w log π(a|s) ],   w = min(exp(A(s, a) / λ), w_max),
    A(s, a) = min_i Q_i(s, a) − min_i Q_i(s, ã),  ã ~ π(·|s)  (V(s) by one policy sample),

the closed-form solution of the KL-constrained policy improvement step with Lagrange multiplier λ
projected onto the policy class. One `update` call follows CORL's awac.py: critic step, then the
actor step against the updated critics, then the Polyak target update.

The policy (CORL's, as the authors' rlkit one) is N(μ(s), σ²) with an unsquashed mean and a
state-independent log σ clipped to [-20, 2]; its samples are clipped to [-1, 1]. States are
standardised with the dataset's mean and std. Networks work in normalised action units [-1, 1].
"""

from dataclasses import dataclass

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
from heron.core.networks import Ensemble, QNetwork, StateIndependentGaussian
from heron.core.normalization import dataset_obs_normalizer, ema_update, normalized_obs
from heron.errors import HeronError
from heron.types import Transition


@dataclass(frozen=True)
class Config:
    """AWAC hyperparameters.

    Defaults are CORL's offline D4RL settings (github.com/tinkoff-ai/CORL, algorithms/offline/
    awac.py): λ = 1 (the paper's MuJoCo value), weights exp(A/λ) clipped at 100 and not
    normalised over the batch, Adam 3e-4 for policy and critics, 3x256 ReLU, batch 256,
    γ = 0.99, target rate 5e-3, states normalised with std + 1e-3, Gaussian policy with
    unsquashed mean and state-independent log σ in [-20, 2] (initialised at 0).
    """

    batch_size: int = 256
    """Dataset transitions per gradient step."""
    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Target critic update rate: Q̄ ← tau Q + (1 − tau) Q̄ after every step."""
    awac_lambda: float = 1.0
    """Lagrange multiplier λ (temperature; β = 1/λ) in w = exp(A/λ) (paper and CORL: 1.0)."""
    max_weight: float = 100.0
    """Upper clip w_max of the weights (CORL exp_adv_max: 100)."""
    actor_lr: float = 3e-4
    """Adam step size of the policy (CORL learning_rate)."""
    critic_lr: float = 3e-4
    """Adam step size of the Q-functions (CORL learning_rate)."""
    actor_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of the policy network (CORL: 3x256)."""
    critic_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of each Q-network (CORL: 3x256)."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    num_critics: int = 2
    """Number of Q-functions; targets, Q(s, a) and V(s) use their minimum."""
    log_std_min: float = -20.0
    """Lower clip of the policy's log σ (CORL)."""
    log_std_max: float = 2.0
    """Upper clip of the policy's log σ (CORL)."""
    normalize_obs: bool = True
    """Standardise states with the dataset's mean and std (CORL)."""
    obs_std_eps: float = 1e-3
    """eps added to the dataset's state std (CORL: 1e-3)."""

    def __post_init__(self):
        if self.batch_size < 1:
            raise HeronError(f"awac: batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.gamma <= 1.0:
            raise HeronError(f"awac: gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise HeronError(f"awac: tau must be in (0, 1], got {self.tau}")
        if self.awac_lambda <= 0 or self.max_weight <= 0:
            raise HeronError(f"awac: awac_lambda and max_weight must be > 0, got {self.awac_lambda}, {self.max_weight}")
        if self.num_critics < 1:
            raise HeronError(f"awac: num_critics must be >= 1, got {self.num_critics}")
        if self.log_std_min > self.log_std_max or self.obs_std_eps < 0:
            raise HeronError("awac: log_std_min must not exceed log_std_max; obs_std_eps must be >= 0")


@struct.dataclass
class State:
    """Everything AWAC learns, as a pytree; module definitions and bounds are static."""

    actor_params: FrozenDict
    critic_params: FrozenDict
    target_critic_params: FrozenDict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    obs_mean: jax.Array
    """[obs_dim] state normaliser mean (0 unless normalize_obs)."""
    obs_std: jax.Array
    """[obs_dim] state normaliser scale σ + eps (1 unless normalize_obs)."""
    step: jax.Array
    """Gradient steps taken (int32)."""
    actor: StateIndependentGaussian = struct.field(pytree_node=False)
    critic: Ensemble = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)


def _optimizers(cfg: Config) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    return optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr)


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    low, high = box_bounds(act_space, "awac")
    obs_dim, act_dim = int(np.prod(obs_space.shape)), len(low)
    actor = StateIndependentGaussian(cfg.actor_hidden, act_dim, cfg.activation, cfg.log_std_min, cfg.log_std_max)
    critic = Ensemble(QNetwork, cfg.num_critics, FrozenDict(hidden=cfg.critic_hidden, act=cfg.activation))
    k_actor, k_critic = jax.random.split(key)
    obs, action = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, act_dim), jnp.float32)
    actor_params = actor.init(k_actor, obs)
    critic_params = critic.init(k_critic, obs, action)
    actor_tx, critic_tx = _optimizers(cfg)
    obs_mean, obs_std = dataset_obs_normalizer(dataset_stats, obs_dim, cfg.normalize_obs, cfg.obs_std_eps)
    return State(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=jax.tree.map(jnp.copy, critic_params),
        actor_opt_state=actor_tx.init(actor_params),
        critic_opt_state=critic_tx.init(critic_params),
        obs_mean=obs_mean,
        obs_std=obs_std,
        step=jnp.zeros((), jnp.int32),
        actor=actor,
        critic=critic,
        action_low=low,
        action_high=high,
    )


# ----------------------------------------------------------------------------- losses


def awac_target(reward, terminated, next_q, gamma):
    """y = r + γ (1 − d) min_i Q̄_i(s', a'), a' ~ π(·|s') (no entropy term); next_q: [N, B]."""
    return reward + gamma * (1.0 - terminated) * jnp.min(next_q, axis=0)


def critic_loss(q, target):
    """Σ_i E_B[(Q_i(s, a) − y)²]; q: [N, B], y: [B] (no gradient through y; CORL's summed MSEs)."""
    return jnp.sum(jnp.mean((q - jax.lax.stop_gradient(target)) ** 2, axis=-1))


def awac_weights(q_data, q_pi, awac_lambda, max_weight):
    """w = min(exp((min_i Q_i(s, a) − min_i Q_i(s, ã)) / λ), w_max); q_*: [N, B]; held constant."""
    advantage = jnp.min(q_data, axis=0) - jnp.min(q_pi, axis=0)
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(advantage / awac_lambda), max_weight)), advantage


def awac_actor_loss(weights, log_prob):
    """L_π(φ) = −E_B[w log π_φ(a|s)]."""
    return -jnp.mean(weights * log_prob)


# ----------------------------------------------------------------------------- update


def _policy_sample(key, mean, log_std):
    """a ~ N(μ, σ²) clipped to [-1, 1] (CORL's Actor.forward)."""
    return jnp.clip(mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, jnp.float32), -1.0, 1.0)


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """Critic step, actor step against the updated critics, Polyak target update (CORL's order)."""
    actor_tx, critic_tx = _optimizers(cfg)
    k_next, k_pi = jax.random.split(key)
    obs, next_obs = normalized_obs(state, batch.obs), normalized_obs(state, batch.next_obs)
    batch_size = obs.shape[0]
    action = to_unit(batch.action.reshape(batch_size, -1), state.action_low, state.action_high)
    reward = batch.reward.astype(jnp.float32).reshape(-1)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)

    # One policy forward pass for s (the V(s) sample) and s' (the backup's a').
    mean, log_std = state.actor.apply(state.actor_params, jnp.concatenate([obs, next_obs]))
    next_action = _policy_sample(k_next, mean[batch_size:], log_std[batch_size:])
    target = awac_target(reward, terminated, state.critic.apply(state.target_critic_params, next_obs, next_action),
                         cfg.gamma)

    def critic_objective(params):
        q = state.critic.apply(params, obs, action)
        return critic_loss(q, target), q

    (q_loss, q), grads = jax.value_and_grad(critic_objective, has_aux=True)(state.critic_params)
    updates, critic_opt_state = critic_tx.update(grads, state.critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)

    # Weights from the updated critics: Q at the dataset action and at one policy sample ã (V(s)).
    pi_action = _policy_sample(k_pi, mean[:batch_size], log_std[:batch_size])
    q_both = state.critic.apply(critic_params, jnp.concatenate([obs, obs]), jnp.concatenate([action, pi_action]))
    weights, advantage = awac_weights(q_both[:, :batch_size], q_both[:, batch_size:], cfg.awac_lambda, cfg.max_weight)

    def actor_objective(params):
        mean, log_std = state.actor.apply(params, obs)
        return awac_actor_loss(weights, gaussian_log_prob(mean, log_std, action))

    pi_loss, grads = jax.value_and_grad(actor_objective)(state.actor_params)
    updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)

    new_state = state.replace(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=ema_update(state.target_critic_params, critic_params, cfg.tau),
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        step=state.step + 1,
    )
    metrics = {"critic_loss": q_loss, "actor_loss": pi_loss, "q_mean": jnp.mean(q), "target_mean": jnp.mean(target),
               "advantage_mean": jnp.mean(advantage), "weight_mean": jnp.mean(weights),
               "weight_clipped": jnp.mean((weights >= cfg.max_weight).astype(jnp.float32))}
    return new_state, metrics


# ----------------------------------------------------------------------------- act


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] raw observations -> [B, act_dim] in env units: the mean μ(s) if deterministic,
    else a sample of N(μ, σ²); both clipped to the bounds (the env clips in CORL)."""
    mean, log_std = state.actor.apply(state.actor_params, normalized_obs(state, obs))
    action = jnp.where(deterministic, jnp.clip(mean, -1.0, 1.0), _policy_sample(key, mean, log_std))
    return from_unit(action, state.action_low, state.action_high)


register(AgentSpec(
    name="awac",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="Advantage-Weighted Actor-Critic: twin-Q TD critic, policy by exp(A/λ)-weighted likelihood (offline, continuous).",
))
