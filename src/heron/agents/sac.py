"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications").

Off-policy maximum-entropy actor-critic for continuous (Box) actions: a tanh-squashed
Gaussian policy, N (default 2) Q-functions evaluated as one fused `Ensemble` with the
clipped double-Q minimum, Polyak-averaged target critics, and a temperature α learned by
dual gradient descent toward the target entropy H̄ = −|A|.

Networks work in normalised action units [-1, 1]; `act` rescales to the Box bounds and
`update` maps the buffer's env-unit actions back to [-1, 1].

One `update` call = one critic step, then one actor step (against the freshly updated
critic, as in SB3 / sbx / CleanRL), then one temperature step, then the target update.
"""

from dataclasses import dataclass

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.core import FrozenDict

from heron.agents.registry import AgentSpec, register
from heron.core.actions import box_bounds, from_unit, to_unit
from heron.core.distributions import tanh_gaussian_sample
from heron.core.networks import Ensemble, GaussianHead, QNetwork
from heron.core.normalization import ema_update
from heron.core.validation import check_loop_settings
from heron.errors import HeronError
from heron.types import Transition


@dataclass(frozen=True)
class Config:
    """SAC hyperparameters.

    Defaults are the published ones: Haarnoja et al. 2018b (arXiv:1812.05905), Table 1
    (Adam 3e-4 everywhere, 2x256 ReLU, batch 256, buffer 1e6, τ=0.005, γ=0.99, one
    gradient step per env step, target entropy −|A|). `learning_starts` = 5000 follows
    CleanRL's sac_continuous_action.py (SB3 uses 100); `initial_alpha` = 1 and the log-std
    bounds [-20, 2] follow SB3 and the authors' softlearning code.
    """

    num_envs: int = 1
    """Parallel environments the loop steps (each vector step adds num_envs transitions)."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity |D|."""
    batch_size: int = 256
    """Transitions per gradient step (minibatch size)."""
    learning_starts: int = 5_000
    """Env steps of uniform-random actions before the first update (CleanRL)."""
    train_frequency: int = 1
    """Vector env steps between rounds of updates."""
    gradient_steps: int = 1
    """`update` calls per round (gradient steps per env step = gradient_steps / train_frequency)."""
    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Target smoothing coefficient τ: Q̄ ← τ Q + (1 − τ) Q̄ after every step."""
    actor_lr: float = 3e-4
    """Adam step size λ_π of the policy."""
    critic_lr: float = 3e-4
    """Adam step size λ_Q of the Q-functions."""
    alpha_lr: float = 3e-4
    """Adam step size of the temperature (optimised as log α)."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy network."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each Q-network."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    num_critics: int = 2
    """Number N of Q-functions; targets and the policy use their minimum (clipped double-Q)."""
    critic_layer_norm: bool = False
    """LayerNorm after each hidden layer of the critics (off in the paper)."""
    autotune: bool = True
    """Learn α by minimising J(α); if False α stays at initial_alpha."""
    initial_alpha: float = 1.0
    """Initial temperature α₀."""
    target_entropy: float | None = None
    """Target entropy H̄; None means −|A| (the paper's heuristic)."""
    log_std_min: float = -20.0
    """Lower clip of the policy's log σ."""
    log_std_max: float = 2.0
    """Upper clip of the policy's log σ."""

    def __post_init__(self):
        check_loop_settings(self)
        if self.num_critics < 1:
            raise HeronError(f"sac: num_critics must be >= 1, got {self.num_critics}; use 2 for clipped double-Q")
        if self.initial_alpha <= 0:
            raise HeronError(f"sac: initial_alpha must be > 0, got {self.initial_alpha}")


@struct.dataclass
class State:
    """Everything SAC learns, as a pytree; the module definitions and bounds are static."""

    actor_params: FrozenDict
    critic_params: FrozenDict
    target_critic_params: FrozenDict
    log_alpha: jax.Array
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    step: jax.Array
    """Gradient steps taken (int32)."""
    actor: GaussianHead = struct.field(pytree_node=False)
    critic: Ensemble = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)


def _flat_obs(obs: jax.Array) -> jax.Array:
    return jnp.asarray(obs, jnp.float32).reshape(obs.shape[0], -1)


def _optimizers(cfg: Config) -> tuple[optax.GradientTransformation, ...]:
    return optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.alpha_lr)


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config) -> State:
    low, high = box_bounds(act_space, "sac")
    obs_dim, act_dim = int(np.prod(obs_space.shape)), len(low)
    actor = GaussianHead(cfg.actor_hidden, act_dim, cfg.activation, cfg.log_std_min, cfg.log_std_max)
    critic = Ensemble(QNetwork, cfg.num_critics,
                      FrozenDict(hidden=cfg.critic_hidden, act=cfg.activation, layer_norm=cfg.critic_layer_norm))
    k_actor, k_critic = jax.random.split(key)
    obs, action = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, act_dim), jnp.float32)
    actor_params = actor.init(k_actor, obs)
    critic_params = critic.init(k_critic, obs, action)
    log_alpha = jnp.asarray(np.log(cfg.initial_alpha), jnp.float32)
    actor_tx, critic_tx, alpha_tx = _optimizers(cfg)
    return State(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=jax.tree.map(jnp.copy, critic_params),
        log_alpha=log_alpha,
        actor_opt_state=actor_tx.init(actor_params),
        critic_opt_state=critic_tx.init(critic_params),
        alpha_opt_state=alpha_tx.init(log_alpha),
        step=jnp.zeros((), jnp.int32),
        actor=actor,
        critic=critic,
        action_low=low,
        action_high=high,
    )


# ----------------------------------------------------------------------------- losses


def soft_q_target(reward, terminated, next_q, next_log_prob, alpha, gamma):
    """Soft Bellman target y = r + γ (1 − d) (min_i Q̄_i(s', a') − α log π(a'|s')), a' ~ π(·|s').

    next_q: [N, B] target-critic values at (s', a'); reward, terminated, next_log_prob: [B].
    """
    soft_value = jnp.min(next_q, axis=0) - alpha * next_log_prob
    return reward + gamma * (1.0 - terminated) * soft_value


def critic_loss(q, target):
    """J_Q = Σ_i E_B[½ (Q_i(s, a) − y)²]; q: [N, B], y: [B] (no gradient through y)."""
    return 0.5 * jnp.sum(jnp.mean((q - jax.lax.stop_gradient(target)) ** 2, axis=-1))


def actor_loss(log_prob, q, alpha):
    """J_π = E_B[α log π(ã|s) − min_i Q_i(s, ã)], ã = tanh(μ + σ ε) reparameterised; q: [N, B]."""
    return jnp.mean(alpha * log_prob - jnp.min(q, axis=0))


def temperature_loss(log_alpha, log_prob, target_entropy):
    """J(α) = E_B[−α (log π(ã|s) + H̄)] with α = exp(log α); log π is held fixed."""
    return -jnp.mean(jnp.exp(log_alpha) * (jax.lax.stop_gradient(log_prob) + target_entropy))


# ----------------------------------------------------------------------------- update


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """One gradient step each for the critics, the policy and α, then the Polyak target update."""
    actor_tx, critic_tx, alpha_tx = _optimizers(cfg)
    k_next, k_pi = jax.random.split(key)
    obs, next_obs = _flat_obs(batch.obs), _flat_obs(batch.next_obs)
    action = to_unit(batch.action.reshape(obs.shape[0], -1), state.action_low, state.action_high)
    reward = batch.reward.astype(jnp.float32).reshape(-1)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)
    target_entropy = -float(action.shape[-1]) if cfg.target_entropy is None else cfg.target_entropy
    alpha = jnp.exp(state.log_alpha)

    # Critic: y from the current policy at s' and the target critics.
    mean, log_std = state.actor.apply(state.actor_params, next_obs)
    next_action, next_log_prob = tanh_gaussian_sample(k_next, mean, log_std)
    next_q = state.critic.apply(state.target_critic_params, next_obs, next_action)
    target = soft_q_target(reward, terminated, next_q, next_log_prob, alpha, cfg.gamma)

    def critic_objective(params):
        q = state.critic.apply(params, obs, action)
        return critic_loss(q, target), q

    (q_loss, q), grads = jax.value_and_grad(critic_objective, has_aux=True)(state.critic_params)
    updates, critic_opt_state = critic_tx.update(grads, state.critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)

    # Policy: against the updated critics (their parameters are constants here).
    def actor_objective(params):
        mean, log_std = state.actor.apply(params, obs)
        pi_action, log_prob = tanh_gaussian_sample(k_pi, mean, log_std)
        q_pi = state.critic.apply(critic_params, obs, pi_action)
        return actor_loss(log_prob, q_pi, alpha), log_prob

    (pi_loss, log_prob), grads = jax.value_and_grad(actor_objective, has_aux=True)(state.actor_params)
    updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)

    # Temperature.
    metrics = {}
    log_alpha, alpha_opt_state = state.log_alpha, state.alpha_opt_state
    if cfg.autotune:
        alpha_loss, grad = jax.value_and_grad(temperature_loss)(state.log_alpha, log_prob, target_entropy)
        updates, alpha_opt_state = alpha_tx.update(grad, state.alpha_opt_state, state.log_alpha)
        log_alpha = optax.apply_updates(state.log_alpha, updates)
        metrics["alpha_loss"] = alpha_loss

    new_state = state.replace(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=ema_update(state.target_critic_params, critic_params, cfg.tau),
        log_alpha=log_alpha,
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        alpha_opt_state=alpha_opt_state,
        step=state.step + 1,
    )
    metrics.update(critic_loss=q_loss, actor_loss=pi_loss, alpha=alpha, entropy=-jnp.mean(log_prob),
                   q_mean=jnp.mean(q), target_mean=jnp.mean(target))
    return new_state, metrics


# ----------------------------------------------------------------------------- act


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] -> [B, act_dim] float32 in env units: tanh(μ) if deterministic, else a sample."""
    mean, log_std = state.actor.apply(state.actor_params, _flat_obs(obs))
    sample, _ = tanh_gaussian_sample(key, mean, log_std)
    action = jnp.where(deterministic, jnp.tanh(mean), sample)
    return from_unit(action, state.action_low, state.action_high)


register(AgentSpec(
    name="sac",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="off_policy",
    action_kinds=frozenset({"continuous"}),
    summary="Soft Actor-Critic: maximum-entropy actor-critic, twin critics, learned temperature (continuous actions).",
))
