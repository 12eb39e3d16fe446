"""Implicit Q-Learning (Kostrikov, Nair & Levine 2021, "Offline Reinforcement Learning with
Implicit Q-Learning").

Never queries Q at actions outside the dataset. A state value V_ψ is fitted by expectile
regression (τ > ½) to the target critics' min_i Q̄_i(s, a) at dataset actions, which
approximates a maximum over the in-support actions; the twin Q-functions (one fused
`Ensemble`) regress onto r + γ V_ψ(s'); the policy is extracted by advantage-weighted
regression with weights exp(β (Q̄ − V)) clipped at 100.

One `update` call follows the authors' learner.py: value step, actor step (with the new V and
the target critics), critic step (with the new V at s'), then the Polyak target update.

The policy (`policy="gaussian"`, the paper's) is N(tanh μ(s), σ²) with a state-independent,
clipped log σ, trained by the weighted log-likelihood of the dataset action; its learning
rate follows a cosine decay over `total_updates` (the paper's MuJoCo setting; `heron train`
sets `total_updates` to the run's --steps unless given). `policy="deterministic"` regresses
π(s) onto the action with the same weights (weighted MSE, as CORL's iql_deterministic).
Rewards are scaled by 1000 / (max − min episode return) of the dataset (the authors'
locomotion setting), a factor computed by `init` from `dataset_stats` and held in the state.
Networks work in normalised action units [-1, 1].
"""

import dataclasses
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.core import FrozenDict

from heron.agents.registry import AgentSpec, DatasetStats, FinetuneRule, register
from heron.core.actions import box_bounds, from_unit, to_unit
from heron.core.distributions import gaussian_log_prob
from heron.core.networks import (
    DeterministicActor,
    Ensemble,
    QNetwork,
    StateIndependentGaussian,
    ValueNetwork,
)
from heron.core.normalization import (
    dataset_obs_normalizer,
    ema_update,
    normalized_obs,
    return_range_reward_scale,
)
from heron.errors import HeronError
from heron.types import Transition


@dataclass(frozen=True)
class Config:
    """IQL hyperparameters.

    Defaults are the paper's MuJoCo locomotion settings (Kostrikov et al. 2021, appendix:
    expectile τ = 0.7, inverse temperature β = 3, exponentiated advantages clipped at 100,
    Adam 3e-4 with a cosine schedule for the actor, 2x256 ReLU, batch 256, γ = 0.99, target
    rate 0.005, 1M gradient steps) as in the authors' code (github.com/ikostrikov/
    implicit_q_learning: configs/mujoco_config.py, learner.py, actor.py, critic.py,
    policy.py: Gaussian with tanh mean, state-independent log σ in [-5, 2]; train_offline.py:
    rewards × 1000 / return range, no state normalisation).
    """

    batch_size: int = 256
    """Dataset transitions per gradient step N."""
    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Target critic update rate: Q̄ ← tau Q + (1 − tau) Q̄ after every step (the paper's α)."""
    expectile: float = 0.7
    """Expectile τ of the value regression L₂^τ(u) = |τ − 1(u < 0)| u² (0.5: mean, → 1: max)."""
    beta: float = 3.0
    """Inverse temperature β of the advantage weights exp(β (Q̄(s, a) − V(s)))."""
    max_weight: float = 100.0
    """Upper clip of the exponentiated advantage weights (paper: 100)."""
    actor_lr: float = 3e-4
    """Adam step size of the policy (initial value of the cosine schedule)."""
    critic_lr: float = 3e-4
    """Adam step size of the Q-functions."""
    value_lr: float = 3e-4
    """Adam step size of the value function V_ψ."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """Actor learning-rate schedule: cosine decay to 0 over total_updates (paper, MuJoCo), or constant."""
    total_updates: int = 1_000_000
    """Gradient steps the cosine schedule spans (`heron train` sets it to --steps)."""
    policy: Literal["gaussian", "deterministic"] = "gaussian"
    """gaussian: weighted log-likelihood of N(tanh μ(s), σ²) (paper); deterministic: weighted MSE."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy network."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each Q-network."""
    value_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the value network."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    num_critics: int = 2
    """Number of Q-functions; the value target and the advantages use their minimum."""
    log_std_min: float = -5.0
    """Lower clip of the policy's log σ (authors' code)."""
    log_std_max: float = 2.0
    """Upper clip of the policy's log σ."""
    normalize_reward: bool = True
    """Scale rewards by reward_scale_target / (max − min episode return in the dataset) (authors' locomotion setting)."""
    reward_scale_target: float = 1000.0
    """The return range rewards are scaled to (authors' code: 1000)."""
    normalize_obs: bool = False
    """Standardise states with the dataset's mean and std (off in the authors' code)."""
    obs_std_eps: float = 1e-3
    """eps added to the dataset's state std when normalize_obs."""
    exploration_noise: float = 0.1
    """Std σ of the noise `act` adds to a deterministic policy when not deterministic (TD3's 0.1)."""

    def __post_init__(self):
        if self.batch_size < 1 or self.total_updates < 1:
            raise HeronError(f"iql: batch_size and total_updates must be >= 1, got {self.batch_size}, {self.total_updates}")
        if not 0.0 <= self.gamma <= 1.0:
            raise HeronError(f"iql: gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise HeronError(f"iql: tau must be in (0, 1], got {self.tau}")
        if not 0.0 < self.expectile < 1.0:
            raise HeronError(f"iql: expectile must be in (0, 1), got {self.expectile}; the paper uses 0.7 (MuJoCo), 0.9 (AntMaze)")
        if self.beta < 0 or self.max_weight <= 0:
            raise HeronError(f"iql: beta must be >= 0 and max_weight > 0, got {self.beta}, {self.max_weight}")
        if self.num_critics < 1:
            raise HeronError(f"iql: num_critics must be >= 1, got {self.num_critics}")
        if self.policy not in ("gaussian", "deterministic") or self.lr_schedule not in ("cosine", "constant"):
            raise HeronError("iql: policy must be gaussian or deterministic, lr_schedule cosine or constant")
        if self.log_std_min > self.log_std_max:
            raise HeronError(f"iql: log_std_min {self.log_std_min} exceeds log_std_max {self.log_std_max}")
        if self.reward_scale_target <= 0 or min(self.obs_std_eps, self.exploration_noise) < 0:
            raise HeronError("iql: reward_scale_target must be > 0; obs_std_eps and exploration_noise >= 0")


@struct.dataclass
class State:
    """Everything IQL learns, as a pytree; module definitions and bounds are static."""

    actor_params: FrozenDict
    critic_params: FrozenDict
    target_critic_params: FrozenDict
    value_params: FrozenDict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    value_opt_state: optax.OptState
    obs_mean: jax.Array
    """[obs_dim] state normaliser mean (0 unless normalize_obs)."""
    obs_std: jax.Array
    """[obs_dim] state normaliser scale (1 unless normalize_obs)."""
    reward_scale: jax.Array
    """c in r ← c r (from the dataset's return range; 1 when disabled)."""
    step: jax.Array
    """Gradient steps taken (int32)."""
    actor: StateIndependentGaussian | DeterministicActor = struct.field(pytree_node=False)
    critic: Ensemble = struct.field(pytree_node=False)
    value: ValueNetwork = struct.field(pytree_node=False)
    gaussian: bool = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)
    exploration_noise: float = struct.field(pytree_node=False)


def _optimizers(cfg: Config) -> tuple[optax.GradientTransformation, ...]:
    # Both are schedules (same optimiser state), so a run can switch from cosine to constant online.
    actor_lr = (optax.cosine_decay_schedule(cfg.actor_lr, cfg.total_updates) if cfg.lr_schedule == "cosine"
                else optax.constant_schedule(cfg.actor_lr))
    return optax.adam(actor_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.value_lr)


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    low, high = box_bounds(act_space, "iql")
    obs_dim, act_dim = int(np.prod(obs_space.shape)), len(low)
    gaussian = cfg.policy == "gaussian"
    actor = (StateIndependentGaussian(cfg.actor_hidden, act_dim, cfg.activation, cfg.log_std_min, cfg.log_std_max)
             if gaussian else DeterministicActor(cfg.actor_hidden, act_dim, cfg.activation))
    critic = Ensemble(QNetwork, cfg.num_critics, FrozenDict(hidden=cfg.critic_hidden, act=cfg.activation))
    value = ValueNetwork(cfg.value_hidden, cfg.activation)
    k_actor, k_critic, k_value = jax.random.split(key, 3)
    obs, action = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, act_dim), jnp.float32)
    actor_params = actor.init(k_actor, obs)
    critic_params = critic.init(k_critic, obs, action)
    value_params = value.init(k_value, obs)
    actor_tx, critic_tx, value_tx = _optimizers(cfg)
    obs_mean, obs_std = dataset_obs_normalizer(dataset_stats, obs_dim, cfg.normalize_obs, cfg.obs_std_eps)
    return State(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=jax.tree.map(jnp.copy, critic_params),
        value_params=value_params,
        actor_opt_state=actor_tx.init(actor_params),
        critic_opt_state=critic_tx.init(critic_params),
        value_opt_state=value_tx.init(value_params),
        obs_mean=obs_mean,
        obs_std=obs_std,
        reward_scale=return_range_reward_scale(dataset_stats, cfg.normalize_reward, cfg.reward_scale_target),
        step=jnp.zeros((), jnp.int32),
        actor=actor,
        critic=critic,
        value=value,
        gaussian=gaussian,
        action_low=low,
        action_high=high,
        exploration_noise=float(cfg.exploration_noise),
    )


# ----------------------------------------------------------------------------- losses


def expectile_loss(diff, expectile):
    """L_V(ψ) = E_B[L₂^τ(u)], L₂^τ(u) = |τ − 1(u < 0)| u², u = min_i Q̄_i(s, a) − V_ψ(s).

    Positive errors (Q̄ above V) weigh τ, negative ones 1 − τ, so for τ > ½ V leans toward
    the upper expectile of Q̄ over the dataset's actions.
    """
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return jnp.mean(weight * diff**2)


def iql_q_target(reward, terminated, next_v, gamma):
    """y = r + γ (1 − d) V_ψ(s') (no maximisation over actions, so no out-of-dataset queries)."""
    return reward + gamma * (1.0 - terminated) * next_v


def critic_loss(q, target):
    """L_Q(θ) = Σ_i E_B[(Q_θi(s, a) − y)²]; q: [N, B], y: [B] (no gradient through y)."""
    return jnp.sum(jnp.mean((q - jax.lax.stop_gradient(target)) ** 2, axis=-1))


def awr_weights(advantage, beta, max_weight):
    """w = min(exp(β A), max_weight), A = min_i Q̄_i(s, a) − V_ψ(s); held constant (no gradient)."""
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(beta * advantage), max_weight))


def awr_actor_loss(weights, log_prob):
    """L_π(φ) = −E_B[w log π_φ(a|s)] (advantage-weighted regression, Gaussian policy)."""
    return -jnp.mean(weights * log_prob)


def weighted_mse_actor_loss(weights, pred_action, action):
    """L_π(φ) = E_B[w Σ_j (π_φ(s)_j − a_j)²] (deterministic policy)."""
    return jnp.mean(weights * jnp.sum((pred_action - action) ** 2, axis=-1))


# ----------------------------------------------------------------------------- update


def _policy_mean(state: State, params, obs):
    """(tanh μ(s), log σ) of the Gaussian policy, or (π(s), None)."""
    if state.gaussian:
        mean, log_std = state.actor.apply(params, obs)
        return jnp.tanh(mean), log_std
    return state.actor.apply(params, obs), None


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """Value step, actor step, critic step, target update (authors' order; `key` is unused)."""
    del key
    actor_tx, critic_tx, value_tx = _optimizers(cfg)
    obs, next_obs = normalized_obs(state, batch.obs), normalized_obs(state, batch.next_obs)
    action = to_unit(batch.action.reshape(obs.shape[0], -1), state.action_low, state.action_high)
    reward = state.reward_scale * batch.reward.astype(jnp.float32).reshape(-1)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)

    # Value: expectile of the target critics' min at the dataset actions.
    target_q = jnp.min(state.critic.apply(state.target_critic_params, obs, action), axis=0)

    def value_objective(params):
        v = state.value.apply(params, obs)
        return expectile_loss(target_q - v, cfg.expectile), v

    (v_loss, v), grads = jax.value_and_grad(value_objective, has_aux=True)(state.value_params)
    updates, value_opt_state = value_tx.update(grads, state.value_opt_state, state.value_params)
    value_params = optax.apply_updates(state.value_params, updates)

    # The new V at s (for the actor) and at s' (for the critic) in one batched forward pass.
    batch_size = obs.shape[0]
    new_v = state.value.apply(value_params, jnp.concatenate([obs, next_obs]))
    v_obs, v_next = new_v[:batch_size], new_v[batch_size:]

    # Actor: advantage-weighted regression with the new V and the target critics.
    advantage = target_q - v_obs
    weights = awr_weights(advantage, cfg.beta, cfg.max_weight)

    def actor_objective(params):
        mean, log_std = _policy_mean(state, params, obs)
        if state.gaussian:
            return awr_actor_loss(weights, gaussian_log_prob(mean, log_std, action))
        return weighted_mse_actor_loss(weights, mean, action)

    pi_loss, grads = jax.value_and_grad(actor_objective)(state.actor_params)
    updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)

    # Critic: regress onto r + γ V(s') with the new V.
    target = iql_q_target(reward, terminated, v_next, cfg.gamma)

    def critic_objective(params):
        q = state.critic.apply(params, obs, action)
        return critic_loss(q, target), q

    (q_loss, q), grads = jax.value_and_grad(critic_objective, has_aux=True)(state.critic_params)
    updates, critic_opt_state = critic_tx.update(grads, state.critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)

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
    metrics = dict(value_loss=v_loss, critic_loss=q_loss, actor_loss=pi_loss, v_mean=jnp.mean(v), q_mean=jnp.mean(q),
                   advantage_mean=jnp.mean(advantage), weight_mean=jnp.mean(weights),
                   weight_clipped=jnp.mean((weights >= cfg.max_weight).astype(jnp.float32)))
    return new_state, metrics


# ----------------------------------------------------------------------------- act


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] -> [B, act_dim] in env units: the policy's mean if deterministic, else a
    sample of N(tanh μ, σ²) (or π(s) plus N(0, σ²) noise) clipped to the bounds (authors' code)."""
    mean, log_std = _policy_mean(state, state.actor_params, normalized_obs(state, obs))
    std = jnp.exp(log_std) if state.gaussian else state.exploration_noise
    sample = jnp.clip(mean + std * jax.random.normal(key, mean.shape, jnp.float32), -1.0, 1.0)
    return from_unit(jnp.where(deterministic, mean, sample), state.action_low, state.action_high)


def online_config(cfg: Config) -> Config:
    """Online, the actor's step size is constant: the offline cosine schedule has reached 0 at the switch."""
    return dataclasses.replace(cfg, lr_schedule="constant")


register(AgentSpec(
    name="iql",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="Implicit Q-Learning: expectile value, twin Q on V(s') targets, advantage-weighted policy (offline, continuous).",
    finetune=FinetuneRule(online_config=online_config,
                          source="plain fine-tuning (the IQL paper's online fine-tuning): the offline data stays in the buffer, "
                                 "online transitions are appended, IQL's update continues (actor step size constant)"),
))
