"""FamO2O (Wang, Yang, Gao, Lin, Chen, Wu, Jia, Song & Huang 2023, "Train Once, Get a Family:
State-Adaptive Balances for Offline-to-Online Reinforcement Learning") on top of IQL.

IQL fixes one balance between policy improvement and the constraint to the data: the inverse
temperature β of its advantage weights exp(β A). FamO2O trains a whole family of policies at once
and picks a member per state:

* a universal policy π_u(a | s, β) takes the balance coefficient as an input (a sinusoidal
  encoding e(β) appended to the state) and is trained by IQL's advantage-weighted regression with
  each sample's own β:  L_u = −E_B[min(exp(β_i A_i), w_max) log π_u(a_i | s_i, β_i)];
* a balance model π_b(β | s), a tanh-Gaussian over [β_min, β_max], picks the member whose action
  has the highest value:  L_b = E_B[α_b log π_b(β|s) − min_j Q̄_j(s, ã)],  ã ~ π_u(·|s, β),
  β ~ π_b(·|s), both reparameterised (the gradient reaches β through ã), with an entropy
  temperature α_b tuned towards a target entropy (SAC's rule);
* `act` takes π_u(a | s, β(s)) with β(s) the balance model's mean (tanh of its Gaussian mean).

The value function V and the twin Q-functions are IQL's, fitted exactly as in `iql.py` (this
module calls its loss functions). One `update` follows the authors' family learner: value step,
balance-model step (with the pre-update universal policy and the target critics), temperature
step, universal-policy step (with the new V), critic step, Polyak target update. Where each
sample's β in L_u comes from is the one difference between the phases (authors' code,
`random_hierarchical_coefficients`): offline, uniform on [β_min, β_max], so every member learns;
online (`online_config`), drawn from the balance model, so the members the balance model uses
learn from the new data. The balance model trains in both phases.

The AWAC variant of the paper (λ as the balance) is not implemented here.
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

from heron.agents import iql
from heron.agents.registry import AgentSpec, DatasetStats, FinetuneRule, register
from heron.agents.sac import temperature_loss
from heron.core.actions import box_bounds, from_unit, to_unit
from heron.core.distributions import gaussian_log_prob, tanh_gaussian_sample
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
    """FamO2O (on IQL) hyperparameters.

    IQL's fields keep IQL's defaults (`iql.Config`: the paper's MuJoCo settings). The FamO2O fields
    follow the authors' code (github.com/LeapLabTHU/FamO2O, jax_iql/family_learner.py,
    family_actor.py, family_utils.py, family_train_finetune.py): β range [1, 5] (the learner's
    default; the AntMaze config uses [8, 14]), encoding e(β) of d = 6 sinusoids with base 10 000,
    balance model a 2x256 tanh-Gaussian with a state-independent log σ in [-10, 2], Adam 3e-4,
    temperature α_b from 1 with Adam 3e-4 towards entropy −0.5, the offline data kept online.
    """

    batch_size: int = 256
    """Transitions per gradient step N (IQL: 256)."""
    gamma: float = 0.99
    """Discount γ (IQL: 0.99)."""
    tau: float = 0.005
    """Target critic update rate: Q̄ ← tau Q + (1 − tau) Q̄ after every step (IQL: 0.005)."""
    expectile: float = 0.7
    """Expectile τ of IQL's value regression (IQL MuJoCo: 0.7; AntMaze: 0.9)."""
    beta_min: float = 1.0
    """β_min: smallest balance coefficient (inverse temperature of exp(β A)) in the family (authors' default 1)."""
    beta_max: float = 5.0
    """β_max: largest balance coefficient in the family (authors' default 5; AntMaze config: 8 to 14)."""
    beta_source: Literal["uniform", "balance"] = "uniform"
    """Each sample's β in L_u: uniform on [β_min, β_max] (offline) or drawn from π_b(·|s) (online) (authors' code)."""
    encoding_dim: int = 6
    """d: sinusoids in the encoding e(β) appended to the state (authors' family_sin_cos_d: 6; even)."""
    encoding_base: float = 10000.0
    """n: frequency base of e(β)_{2i} = sin(β / n^{2i/d}), e(β)_{2i+1} = cos(...) (authors' family_sin_cos_n)."""
    max_weight: float = 100.0
    """Upper clip w_max of the weights exp(β A) (IQL: 100)."""
    actor_lr: float = 3e-4
    """Adam step size of the universal policy (initial value of the cosine schedule) (IQL: 3e-4)."""
    critic_lr: float = 3e-4
    """Adam step size of the Q-functions (IQL: 3e-4)."""
    value_lr: float = 3e-4
    """Adam step size of the value function V_ψ (IQL: 3e-4)."""
    balance_lr: float = 3e-4
    """Adam step size of the balance model π_b, constant (authors' code: the actor's 3e-4)."""
    balance_alpha_lr: float = 3e-4
    """Adam step size of the balance model's temperature α_b (authors' hierarchical_temp_lr: 3e-4)."""
    balance_initial_alpha: float = 1.0
    """Initial α_b (authors' hierarchical_init_temperature: 1)."""
    balance_target_entropy: float = -0.5
    """Target entropy H̄_b of π_b (authors' default −1/2 for the one-dimensional β)."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """Universal policy's learning-rate schedule: cosine decay over total_updates (IQL MuJoCo), or constant."""
    total_updates: int = 1_000_000
    """Gradient steps the cosine schedule spans (`heron train` sets it to --steps)."""
    policy: Literal["gaussian", "deterministic"] = "gaussian"
    """Universal policy: N(tanh μ(s, e(β)), σ²) with weighted log-likelihood (IQL's, authors'), or deterministic (weighted MSE)."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the universal policy (authors: 2x256)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each Q-network (IQL: 2x256)."""
    value_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the value network (IQL: 2x256)."""
    balance_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the balance model (authors: the same hidden_dims, 2x256)."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    num_critics: int = 2
    """Number of Q-functions; targets, advantages and the balance objective use their minimum (IQL: 2)."""
    log_std_min: float = -5.0
    """Lower clip of the universal policy's log σ (IQL / authors: −5)."""
    log_std_max: float = 2.0
    """Upper clip of the universal policy's log σ (IQL / authors: 2)."""
    balance_log_std_min: float = -10.0
    """Lower clip of the balance model's log σ (authors' policy.py default: −10)."""
    balance_log_std_max: float = 2.0
    """Upper clip of the balance model's log σ (authors' policy.py default: 2)."""
    normalize_reward: bool = True
    """Scale rewards by reward_scale_target / (max − min episode return in the dataset) (IQL / authors' locomotion setting)."""
    reward_scale_target: float = 1000.0
    """The return range rewards are scaled to (IQL / authors: 1000)."""
    normalize_obs: bool = False
    """Standardise states with the dataset's mean and std (off in IQL's and the authors' code)."""
    obs_std_eps: float = 1e-3
    """eps added to the dataset's state std when normalize_obs."""
    exploration_noise: float = 0.1
    """Std σ of the noise `act` adds to a deterministic universal policy when not deterministic (TD3's 0.1)."""

    def __post_init__(self):
        if self.batch_size < 1 or self.total_updates < 1:
            raise HeronError(f"famo2o: batch_size and total_updates must be >= 1, got {self.batch_size}, "
                             f"{self.total_updates}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0 or not 0.0 < self.expectile < 1.0:
            raise HeronError("famo2o: gamma must be in [0, 1], tau in (0, 1], expectile in (0, 1)")
        if not 0.0 <= self.beta_min < self.beta_max:
            raise HeronError(f"famo2o: the balance range needs 0 <= beta_min < beta_max, got [{self.beta_min}, "
                             f"{self.beta_max}] (authors: [1, 5]; AntMaze [8, 14])")
        if self.beta_source not in ("uniform", "balance"):
            raise HeronError(f"famo2o: beta_source must be uniform or balance, got {self.beta_source!r}")
        if self.encoding_dim < 2 or self.encoding_dim % 2 or self.encoding_base <= 0:
            raise HeronError(f"famo2o: encoding_dim must be an even number >= 2 and encoding_base > 0, got "
                             f"{self.encoding_dim}, {self.encoding_base}")
        if self.max_weight <= 0 or self.balance_initial_alpha <= 0 or self.num_critics < 1:
            raise HeronError("famo2o: max_weight and balance_initial_alpha must be > 0, num_critics >= 1")
        if self.policy not in ("gaussian", "deterministic") or self.lr_schedule not in ("cosine", "constant"):
            raise HeronError("famo2o: policy must be gaussian or deterministic, lr_schedule cosine or constant")
        if self.log_std_min > self.log_std_max or self.balance_log_std_min > self.balance_log_std_max:
            raise HeronError("famo2o: log_std_min must not exceed log_std_max (universal policy and balance model)")
        if self.reward_scale_target <= 0 or min(self.obs_std_eps, self.exploration_noise) < 0:
            raise HeronError("famo2o: reward_scale_target must be > 0; obs_std_eps and exploration_noise >= 0")


@struct.dataclass
class State:
    """Everything FamO2O learns, as a pytree; module definitions, bounds and the β range are static."""

    actor_params: FrozenDict
    """The universal policy π_u(a | s, e(β))."""
    critic_params: FrozenDict
    target_critic_params: FrozenDict
    value_params: FrozenDict
    balance_params: FrozenDict
    """The balance model π_b(β | s)."""
    log_alpha: jax.Array
    """log α_b, the balance model's entropy temperature."""
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    value_opt_state: optax.OptState
    balance_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
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
    balance: StateIndependentGaussian = struct.field(pytree_node=False)
    gaussian: bool = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)
    exploration_noise: float = struct.field(pytree_node=False)
    beta_range: tuple[float, float] = struct.field(pytree_node=False)
    encoding: tuple[int, float] = struct.field(pytree_node=False)
    """(d, n) of the encoding e(β)."""


def _optimizers(cfg: Config) -> tuple[optax.GradientTransformation, ...]:
    # Both are schedules (same optimiser state), so a run switches from cosine to constant online.
    actor_lr = (optax.cosine_decay_schedule(cfg.actor_lr, cfg.total_updates) if cfg.lr_schedule == "cosine"
                else optax.constant_schedule(cfg.actor_lr))
    return (optax.adam(actor_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.value_lr), optax.adam(cfg.balance_lr),
            optax.adam(cfg.balance_alpha_lr))


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    low, high = box_bounds(act_space, "famo2o")
    obs_dim, act_dim = int(np.prod(obs_space.shape)), len(low)
    gaussian = cfg.policy == "gaussian"
    actor = (StateIndependentGaussian(cfg.actor_hidden, act_dim, cfg.activation, cfg.log_std_min, cfg.log_std_max)
             if gaussian else DeterministicActor(cfg.actor_hidden, act_dim, cfg.activation))
    critic = Ensemble(QNetwork, cfg.num_critics, FrozenDict(hidden=cfg.critic_hidden, act=cfg.activation))
    value = ValueNetwork(cfg.value_hidden, cfg.activation)
    balance = StateIndependentGaussian(cfg.balance_hidden, 1, cfg.activation, cfg.balance_log_std_min,
                                       cfg.balance_log_std_max)
    k_actor, k_critic, k_value, k_balance = jax.random.split(key, 4)
    obs, action = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, act_dim), jnp.float32)
    actor_params = actor.init(k_actor, jnp.zeros((1, obs_dim + cfg.encoding_dim), jnp.float32))
    critic_params = critic.init(k_critic, obs, action)
    value_params = value.init(k_value, obs)
    balance_params = balance.init(k_balance, obs)
    log_alpha = jnp.asarray(np.log(cfg.balance_initial_alpha), jnp.float32)
    actor_tx, critic_tx, value_tx, balance_tx, alpha_tx = _optimizers(cfg)
    obs_mean, obs_std = dataset_obs_normalizer(dataset_stats, obs_dim, cfg.normalize_obs, cfg.obs_std_eps)
    return State(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=jax.tree.map(jnp.copy, critic_params),
        value_params=value_params,
        balance_params=balance_params,
        log_alpha=log_alpha,
        actor_opt_state=actor_tx.init(actor_params),
        critic_opt_state=critic_tx.init(critic_params),
        value_opt_state=value_tx.init(value_params),
        balance_opt_state=balance_tx.init(balance_params),
        alpha_opt_state=alpha_tx.init(log_alpha),
        obs_mean=obs_mean,
        obs_std=obs_std,
        reward_scale=return_range_reward_scale(dataset_stats, cfg.normalize_reward, cfg.reward_scale_target),
        step=jnp.zeros((), jnp.int32),
        actor=actor,
        critic=critic,
        value=value,
        balance=balance,
        gaussian=gaussian,
        action_low=low,
        action_high=high,
        exploration_noise=float(cfg.exploration_noise),
        beta_range=(float(cfg.beta_min), float(cfg.beta_max)),
        encoding=(int(cfg.encoding_dim), float(cfg.encoding_base)),
    )


# ----------------------------------------------------------------------------- losses


def balance_encoding(beta, dim: int, base: float):
    """e(β) ∈ R^d: e_{2i} = sin(β / n^{2i/d}), e_{2i+1} = cos(β / n^{2i/d}), i = 0 … d/2 − 1
    (the transformer's positional encoding of the scalar β); beta: [...] -> [..., d]."""
    freq = 1.0 / base ** (2.0 * jnp.arange(dim // 2, dtype=jnp.float32) / dim)
    angle = jnp.asarray(beta, jnp.float32)[..., None] * freq
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(*angle.shape[:-1], dim)


def balance_to_beta(u, beta_min: float, beta_max: float):
    """β = β_min + (u + 1)/2 · (β_max − β_min): the balance model's tanh output u ∈ [-1, 1] onto the range."""
    return beta_min + (u + 1.0) * 0.5 * (beta_max - beta_min)


def universal_actor_loss(advantage, beta, log_prob, max_weight):
    """L_u(φ) = −E_B[w_i log π_u(a_i | s_i, β_i)],  w_i = min(exp(β_i A_i), w_max), A = min_j Q̄_j(s, a) − V(s):
    IQL's advantage-weighted regression with each sample's own β (iql.awr_weights, iql.awr_actor_loss);
    advantage, beta, log_prob: [B]. Returns (loss, w)."""
    weights = iql.awr_weights(advantage, beta, max_weight)
    return iql.awr_actor_loss(weights, log_prob), weights


def balance_model_loss(log_prob_beta, q_family, alpha):
    """L_b(ξ) = E_B[α_b log π_b(β|s) − min_j Q̄_j(s, ã)],  β ~ π_b(·|s), ã ~ π_u(·|s, β), both
    reparameterised: the balance whose policy action has the highest value, with an entropy bonus
    (authors' hierarchical actor loss); log_prob_beta: [B], q_family: [N, B]."""
    return jnp.mean(alpha * log_prob_beta - jnp.min(q_family, axis=0))


# ----------------------------------------------------------------------------- update


def _universal(state: State, params, obs, beta):
    """(tanh μ(s, e(β)), log σ) of the Gaussian universal policy, or (π_u(s, e(β)), None)."""
    x = jnp.concatenate([obs, balance_encoding(beta, *state.encoding)], axis=-1)
    if state.gaussian:
        mean, log_std = state.actor.apply(params, x)
        return jnp.tanh(mean), log_std
    return state.actor.apply(params, x), None


def _balance_sample(state: State, params, obs, key):
    """(β, log π_b(β|s)) with β = map(tanh u), u ~ N(μ_b(s), σ_b²) (reparameterised); log-density of u's tanh."""
    mean, log_std = state.balance.apply(params, obs)
    u, log_prob = tanh_gaussian_sample(key, mean, log_std)
    return balance_to_beta(u[:, 0], *state.beta_range), log_prob


def balance_beta(state: State, obs: jax.Array) -> jax.Array:
    """β(s) = map(tanh μ_b(s)): the balance model's deterministic choice per state ([B] normalised states)."""
    mean, _ = state.balance.apply(state.balance_params, obs)
    return balance_to_beta(jnp.tanh(mean[:, 0]), *state.beta_range)


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """Value step, balance-model step, temperature step, universal-policy step, critic step, target
    update (the authors' order)."""
    actor_tx, critic_tx, value_tx, balance_tx, alpha_tx = _optimizers(cfg)
    k_balance, k_action, k_beta = jax.random.split(key, 3)
    obs, next_obs = normalized_obs(state, batch.obs), normalized_obs(state, batch.next_obs)
    batch_size = obs.shape[0]
    action = to_unit(batch.action.reshape(batch_size, -1), state.action_low, state.action_high)
    reward = state.reward_scale * batch.reward.astype(jnp.float32).reshape(-1)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)

    # Value: IQL's expectile of the target critics' min at the dataset actions.
    target_q = jnp.min(state.critic.apply(state.target_critic_params, obs, action), axis=0)

    def value_objective(params):
        v = state.value.apply(params, obs)
        return iql.expectile_loss(target_q - v, cfg.expectile), v

    (v_loss, v), grads = jax.value_and_grad(value_objective, has_aux=True)(state.value_params)
    updates, value_opt_state = value_tx.update(grads, state.value_opt_state, state.value_params)
    value_params = optax.apply_updates(state.value_params, updates)

    # Balance model: the β whose (pre-update) universal policy action the target critics value most.
    alpha = jnp.exp(state.log_alpha)

    def balance_objective(params):
        beta, log_prob = _balance_sample(state, params, obs, k_balance)
        mean, log_std = _universal(state, state.actor_params, obs, beta)
        pi_action = mean if log_std is None else mean + jnp.exp(log_std) * jax.random.normal(k_action, mean.shape)
        q_family = state.critic.apply(state.target_critic_params, obs, pi_action)
        return balance_model_loss(log_prob, q_family, alpha), (log_prob, beta)

    (b_loss, (log_prob_beta, beta_sampled)), grads = jax.value_and_grad(balance_objective, has_aux=True)(
        state.balance_params)
    updates, balance_opt_state = balance_tx.update(grads, state.balance_opt_state, state.balance_params)
    balance_params = optax.apply_updates(state.balance_params, updates)
    grad = jax.grad(temperature_loss)(state.log_alpha, log_prob_beta, cfg.balance_target_entropy)
    updates, alpha_opt_state = alpha_tx.update(grad, state.alpha_opt_state, state.log_alpha)
    log_alpha = optax.apply_updates(state.log_alpha, updates)

    # Universal policy: advantage-weighted regression at each sample's own β (uniform offline, the
    # pre-update balance model's draw online), with the new V and the target critics.
    new_v = state.value.apply(value_params, jnp.concatenate([obs, next_obs]))
    v_obs, v_next = new_v[:batch_size], new_v[batch_size:]
    advantage = target_q - v_obs
    if cfg.beta_source == "uniform":
        beta = jax.random.uniform(k_beta, (batch_size,), jnp.float32, cfg.beta_min, cfg.beta_max)
    else:
        beta, _ = _balance_sample(state, state.balance_params, obs, k_beta)
    beta = jax.lax.stop_gradient(beta)

    def actor_objective(params):
        mean, log_std = _universal(state, params, obs, beta)
        if state.gaussian:
            return universal_actor_loss(advantage, beta, gaussian_log_prob(mean, log_std, action), cfg.max_weight)
        weights = iql.awr_weights(advantage, beta, cfg.max_weight)
        return iql.weighted_mse_actor_loss(weights, mean, action), weights

    (pi_loss, weights), grads = jax.value_and_grad(actor_objective, has_aux=True)(state.actor_params)
    updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)

    # Critic: IQL's regression onto r + γ V(s') with the new V.
    target = iql.iql_q_target(reward, terminated, v_next, cfg.gamma)

    def critic_objective(params):
        q = state.critic.apply(params, obs, action)
        return iql.critic_loss(q, target), q

    (q_loss, q), grads = jax.value_and_grad(critic_objective, has_aux=True)(state.critic_params)
    updates, critic_opt_state = critic_tx.update(grads, state.critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)

    new_state = state.replace(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=ema_update(state.target_critic_params, critic_params, cfg.tau),
        value_params=value_params,
        balance_params=balance_params,
        log_alpha=log_alpha,
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        value_opt_state=value_opt_state,
        balance_opt_state=balance_opt_state,
        alpha_opt_state=alpha_opt_state,
        step=state.step + 1,
    )
    beta_state = balance_beta(state, obs)  # the balance model's choice β(s) per state (what `act` uses)
    metrics = {"value_loss": v_loss, "critic_loss": q_loss, "actor_loss": pi_loss, "balance_loss": b_loss,
               "balance_alpha": alpha, "balance_entropy": -jnp.mean(log_prob_beta),
               "beta_balance_mean": jnp.mean(beta_sampled), "beta_balance_std": jnp.std(beta_sampled),
               "beta_actor_mean": jnp.mean(beta), "beta_state_mean": jnp.mean(beta_state),
               "beta_state_std": jnp.std(beta_state), "v_mean": jnp.mean(v), "q_mean": jnp.mean(q),
               "advantage_mean": jnp.mean(advantage), "weight_mean": jnp.mean(weights),
               "weight_clipped": jnp.mean((weights >= cfg.max_weight).astype(jnp.float32))}
    return new_state, metrics


# ----------------------------------------------------------------------------- act


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] -> [B, act_dim] in env units: π_u(a | s, β(s)) with the balance model's β(s); the
    policy's mean if deterministic, else a sample of N(tanh μ, σ²) (or π_u plus N(0, σ²) noise),
    clipped to the bounds (authors' code: deterministic balance, sampled action online)."""
    obs = normalized_obs(state, obs)
    mean, log_std = _universal(state, state.actor_params, obs, balance_beta(state, obs))
    std = jnp.exp(log_std) if state.gaussian else state.exploration_noise
    sample = jnp.clip(mean + std * jax.random.normal(key, mean.shape, jnp.float32), -1.0, 1.0)
    return from_unit(jnp.where(deterministic, mean, sample), state.action_low, state.action_high)


def online_config(cfg: Config) -> Config:
    """Online: each sample's β comes from the balance model (authors' code), and the universal policy's
    step size is constant (the offline cosine schedule has reached 0 at the switch, as IQL's)."""
    return dataclasses.replace(cfg, beta_source="balance", lr_schedule="constant")


register(AgentSpec(
    name="famo2o",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="FamO2O on IQL: a β-conditioned universal policy and a balance model choosing β per state "
            "(offline→online, continuous).",
    finetune=FinetuneRule(online_config=online_config,
                          source="FamO2O (Wang et al. 2023, authors' code): the offline data stays in the buffer, online "
                                 "transitions are appended, one update per env step; the same losses online, with each "
                                 "sample's β drawn from the balance model instead of uniformly"),
))
