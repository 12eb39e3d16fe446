"""Robust IQL (Yang et al. 2023, "Towards Robust Offline Reinforcement Learning under Diverse Data
Corruption", ICLR 2024).

IQL (see `heron.agents.iql`) with three changes aimed at corrupted datasets, as in the authors'
RIQL.py (github.com/YangRui2015/RIQL):

1. state normalisation with the dataset's mean and std (the normaliser lives in the state, so
   `act` takes raw observations);
2. the Q-functions regress onto r + γ V(s') with a Huber loss l_H^δ instead of a squared error,
   so heavy-tailed targets (from corrupted rewards or next states) pull with bounded force;
3. K critics whose α-quantile Q_α(s, a) (not their minimum) is the value target and the
   advantage: a small α penalises transitions the ensemble disagrees on (corrupted ones), a
   large one keeps learning stable.

One `update` follows the authors' order, which differs from heron's IQL (the authors' code
of ikostrikov/implicit_q_learning): V(s') for the Q-target and V(s) for the advantage both come
from V *before* this step's value update; then value step, critic step, actor step, and the
Polyak update of the target critics. The actor is deterministic (the authors' code builds a
`DeterministicPolicy` whatever `iql_deterministic` says), trained by advantage-weighted MSE.

State, init and act are IQL's (`iql.State`, `iql.init`, `iql.act`); the losses reuse
`iql.expectile_loss`, `iql.iql_q_target`, `iql.awr_weights` and the actor losses.
"""

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from heron.agents import iql
from heron.agents.registry import AgentSpec, register
from heron.core.actions import to_unit
from heron.core.distributions import gaussian_log_prob
from heron.core.normalization import ema_update, normalized_obs
from heron.errors import HeronError
from heron.types import Transition


@dataclass(frozen=True)
class Config:
    """RIQL hyperparameters.

    Defaults are the authors' code (RIQL.py `TrainConfig` and `get_config` in RIQL_config.py):
    K = 5 critics, quantile α = 0.25, Huber σ = 1 (δ = 1/σ² = 1), IQL's β = 3 and expectile 0.7,
    Adam 3e-4 everywhere with a cosine schedule for the actor, 2x256 ReLU, batch 256,
    γ = 0.99, target rate 0.005, states normalised (std + 1e-3), rewards NOT rescaled
    (`modify_reward` is never called), deterministic actor. Per-task tuning in RIQL_config.py
    changes K ∈ {3, 5}, α ∈ {0.1, 0.25, 0.5} and σ ∈ {0.1, 0.5, 1, 3} by dataset and corruption.
    """

    batch_size: int = 256
    """Dataset transitions per gradient step N."""
    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Target critic update rate: Q̄ ← tau Q + (1 − tau) Q̄ after every step."""
    expectile: float = 0.7
    """IQL's expectile τ of the value regression (authors' code: iql_tau = 0.7)."""
    beta: float = 3.0
    """Inverse temperature β of the advantage weights exp(β (Q_α(s, a) − V(s))) (authors' code: 3)."""
    max_weight: float = 100.0
    """Upper clip of the exponentiated advantage weights (authors' code: EXP_ADV_MAX = 100)."""
    num_critics: int = 5
    """Ensemble size K of the Q-functions (authors' code: 5; 3 for some tasks)."""
    quantile: float = 0.25
    """α of the ensemble quantile Q_α used for the value target and the advantage (authors' code: 0.25)."""
    huber_delta: float = 1.0
    """δ of the Huber critic loss (authors' code: sigma = 1, δ = 1/sigma²)."""
    q_target_clip: tuple[float, float] | None = None
    """Clip of the Q-target y; the authors' code clamps to (−100, 1000), a guard for D4RL
    locomotion's positive returns that would cut negative-reward tasks: off by default."""
    actor_lr: float = 3e-4
    """Adam step size of the policy (initial value of the cosine schedule)."""
    critic_lr: float = 3e-4
    """Adam step size of the Q-functions."""
    value_lr: float = 3e-4
    """Adam step size of the value function V_ψ."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """Actor learning-rate schedule: cosine decay to 0 over total_updates (authors' code), or constant."""
    total_updates: int = 1_000_000
    """Gradient steps the cosine schedule spans (`heron train` sets it to --steps)."""
    policy: Literal["gaussian", "deterministic"] = "deterministic"
    """deterministic: advantage-weighted MSE (authors' code); gaussian: weighted log-likelihood as IQL."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy network."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each Q-network."""
    value_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the value network."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    log_std_min: float = -5.0
    """Lower clip of the Gaussian policy's log σ (policy="gaussian" only)."""
    log_std_max: float = 2.0
    """Upper clip of the Gaussian policy's log σ."""
    normalize_reward: bool = False
    """Scale rewards by reward_scale_target / (max − min episode return) (off: the authors' RIQL does not)."""
    reward_scale_target: float = 1000.0
    """The return range rewards are scaled to when normalize_reward."""
    normalize_obs: bool = True
    """Standardise states with the dataset's mean and std (RIQL's first change)."""
    obs_std_eps: float = 1e-3
    """eps added to the dataset's state std (authors' code: 1e-3)."""
    exploration_noise: float = 0.1
    """Std σ of the noise `act` adds to the deterministic policy when not deterministic (TD3's 0.1)."""

    def __post_init__(self):
        if self.batch_size < 1 or self.total_updates < 1:
            raise HeronError(f"riql: batch_size and total_updates must be >= 1, got {self.batch_size}, {self.total_updates}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise HeronError(f"riql: gamma must be in [0, 1] and tau in (0, 1], got {self.gamma}, {self.tau}")
        if not 0.0 < self.expectile < 1.0:
            raise HeronError(f"riql: expectile must be in (0, 1), got {self.expectile}")
        if not 0.0 <= self.quantile <= 1.0:
            raise HeronError(f"riql: quantile α must be in [0, 1], got {self.quantile}; the paper uses 0.1-0.5")
        if self.huber_delta <= 0:
            raise HeronError(f"riql: huber_delta must be > 0, got {self.huber_delta}")
        if self.q_target_clip is not None and not self.q_target_clip[0] < self.q_target_clip[1]:
            raise HeronError(f"riql: q_target_clip must be (low, high) with low < high, got {self.q_target_clip}")
        if self.beta < 0 or self.max_weight <= 0 or self.num_critics < 1:
            raise HeronError("riql: beta must be >= 0, max_weight > 0 and num_critics >= 1")
        if self.policy not in ("gaussian", "deterministic") or self.lr_schedule not in ("cosine", "constant"):
            raise HeronError("riql: policy must be gaussian or deterministic, lr_schedule cosine or constant")
        if self.log_std_min > self.log_std_max:
            raise HeronError(f"riql: log_std_min {self.log_std_min} exceeds log_std_max {self.log_std_max}")
        if self.reward_scale_target <= 0 or min(self.obs_std_eps, self.exploration_noise) < 0:
            raise HeronError("riql: reward_scale_target must be > 0; obs_std_eps and exploration_noise >= 0")


# IQL's state and initialisation serve unchanged: the config carries every field they read.
State = iql.State
init = iql.init


# ----------------------------------------------------------------------------- losses


def huber_loss(diff, delta):
    """l_H^δ(u) = u² / (2δ) if |u| ≤ δ, else |u| − δ/2 (elementwise; the authors' `huber_loss` with δ = 1/sigma²).

    Quadratic near 0 (an L2 regression toward the mean), linear in the tails (an L1 regression
    toward the median), so a few huge targets from corrupted data move Q only by a bounded gradient.
    """
    a = jnp.abs(diff)
    return jnp.where(a <= delta, 0.5 * a**2 / delta, a - 0.5 * delta)


def ensemble_quantile(q, alpha):
    """Q_α(s, a) = the α-quantile over the K critics (axis 0, linear interpolation as torch.quantile)."""
    return jnp.quantile(q, alpha, axis=0)


def riql_critic_loss(q, target, delta):
    """L_Q(θ) = E_{k, B}[l_H^δ(y − Q_θk(s, a))]; q: [K, B], y: [B] (no gradient through y; the
    authors' code averages over critics and batch)."""
    return jnp.mean(huber_loss(jax.lax.stop_gradient(target)[None] - q, delta))


# ----------------------------------------------------------------------------- update


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """Value, critic and actor steps with the pre-update V, then the target update (`key` unused)."""
    del key
    actor_tx, critic_tx, value_tx = iql._optimizers(cfg)
    obs, next_obs = normalized_obs(state, batch.obs), normalized_obs(state, batch.next_obs)
    action = to_unit(batch.action.reshape(obs.shape[0], -1), state.action_low, state.action_high)
    reward = state.reward_scale * batch.reward.astype(jnp.float32).reshape(-1)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)

    batch_size = obs.shape[0]
    old_v = state.value.apply(state.value_params, jnp.concatenate([obs, next_obs]))
    v_obs, v_next = old_v[:batch_size], old_v[batch_size:]

    # Value: expectile of the target ensemble's α-quantile at the dataset actions.
    target_q_all = state.critic.apply(state.target_critic_params, obs, action)
    target_q = ensemble_quantile(target_q_all, cfg.quantile)

    def value_objective(params):
        v = state.value.apply(params, obs)
        return iql.expectile_loss(target_q - v, cfg.expectile), v

    (v_loss, v), grads = jax.value_and_grad(value_objective, has_aux=True)(state.value_params)
    updates, value_opt_state = value_tx.update(grads, state.value_opt_state, state.value_params)
    value_params = optax.apply_updates(state.value_params, updates)

    # Critic: Huber regression onto r + γ V(s') (V before this step's update, as the authors').
    target = iql.iql_q_target(reward, terminated, v_next, cfg.gamma)
    if cfg.q_target_clip is not None:
        target = jnp.clip(target, *cfg.q_target_clip)

    def critic_objective(params):
        q = state.critic.apply(params, obs, action)
        return riql_critic_loss(q, target, cfg.huber_delta), q

    (q_loss, q), grads = jax.value_and_grad(critic_objective, has_aux=True)(state.critic_params)
    updates, critic_opt_state = critic_tx.update(grads, state.critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)

    # Actor: advantage-weighted regression, A = Q_α − V(s) with the pre-update V.
    advantage = target_q - v_obs
    weights = iql.awr_weights(advantage, cfg.beta, cfg.max_weight)

    def actor_objective(params):
        mean, log_std = iql._policy_mean(state, params, obs)
        if state.gaussian:
            return iql.awr_actor_loss(weights, gaussian_log_prob(mean, log_std, action))
        return iql.weighted_mse_actor_loss(weights, mean, action)

    pi_loss, grads = jax.value_and_grad(actor_objective)(state.actor_params)
    updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)

    new_state = state.replace(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=ema_update(state.target_critic_params, critic_params, cfg.tau),
        value_params=value_params,
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        value_opt_state=value_opt_state,
        step=state.step + 1,
    )
    metrics = {"value_loss": v_loss, "critic_loss": q_loss, "actor_loss": pi_loss, "v_mean": jnp.mean(v), "q_mean": jnp.mean(q),
                   "target_q_std": jnp.mean(jnp.std(target_q_all, axis=0)), "advantage_mean": jnp.mean(advantage),
                   "weight_mean": jnp.mean(weights),
                   "weight_clipped": jnp.mean((weights >= cfg.max_weight).astype(jnp.float32))}
    return new_state, metrics


act = iql.act

register(AgentSpec(
    name="riql",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="Robust IQL: IQL with normalised states, Huber Q loss and an α-quantile Q ensemble (offline, continuous).",
))
