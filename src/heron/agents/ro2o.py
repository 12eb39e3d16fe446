"""RO2O (Wen, Yu, Yang, Chen, Bai & Wang 2024, "Towards Robust Offline-to-Online Reinforcement
Learning via Uncertainty and Smoothness", JAIR).

SAC-N (a tanh-Gaussian policy, an ensemble of N Q-functions as one fused `Ensemble`, learned
temperature α) made robust by uncertainty and smoothness, with the same objective offline and
online:

* uncertainty: the Bellman target takes the minimum over the N target critics (SAC-N's
  ensemble pessimism), and an OOD penalty pulls the critics down, by λ times their disagreement,
  at perturbed states s̃ near the data with the policy's actions ã ~ π(·|s̃):
  Q̂_i(s̃, ã) = Q_i(s̃, ã) − λ std_j Q_j(s̃, ã), L_ood = E[(Q̂_i − Q_i)²], Q̂ held constant;
* value smoothness: Q_i(s̃, a) stays close to Q_i(s, a) for the data action, with an asymmetric
  square (increases cost (1 − τ), decreases τ) so the critics' smoothing is conservative;
* policy smoothness: π(·|s̃) stays close to π(·|s) in Jeffrey's divergence (KL both ways).

The perturbed states are adversarial by selection, as in the authors' code: n states
s̃_k = s + δ_k with δ_k ~ U([−ε, ε]^|S|) (in standardised state units), and each smoothness loss
takes its worst case (max over k) per state; the OOD penalty averages over the n samples.

One `update` follows the authors' order (their MuJoCo scripts, after EDAC): the temperature step
(at the pre-update policy), the policy step against the pre-update critics with the new α, then
the critic step with the target r + γ (1 − d)(min_i Q̄_i(s', a') − α log π(a'|s')), a' from the
updated policy, then the Polyak target update. λ decays linearly per update from
`ood_uncertainty` to `ood_uncertainty_min`.

Fine-tuning (`FINETUNE`, the authors' ro2o_ft_mujoco.py): the offline data is dropped, updates
start once 2500 transitions of the pre-trained (stochastic) policy are stored, one update per env
step, the same losses with λ at its floor (their README: online q_ood_uncertainty_reg =
q_ood_uncertainty_reg_min, decay 0). Not reproduced: the EDAC initialisation of the networks
(biases 0.1, small uniform last layers) and the AntMaze variants (LCB policy objective, BC term).
"""

import dataclasses
from dataclasses import dataclass

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.core import FrozenDict

from heron.agents.cql import td_loss, temperature_loss
from heron.agents.registry import AgentSpec, DatasetStats, FinetuneRule, register
from heron.agents.sac import actor_loss, soft_q_target
from heron.core.actions import box_bounds, from_unit, to_unit
from heron.core.distributions import tanh_gaussian_sample
from heron.core.networks import Ensemble, GaussianHead, QNetwork
from heron.core.normalization import dataset_obs_normalizer, ema_update, normalized_obs
from heron.errors import HeronError
from heron.types import Transition


@dataclass(frozen=True)
class Config:
    """RO2O hyperparameters.

    Defaults are the authors' MuJoCo settings (github.com/BattleWen/RO2O, algorithms/offline/
    ro2o_mujoco.py and its README command; η1 and τ are constants in their code): N = 10 critics,
    3x256 ReLU networks, Adam 3e-4 for policy, critics and temperature, γ = 0.99, τ = 5e-3, batch 256,
    n = 20 perturbations, ε_Q = ε_P = ε_ood = 0.01, η1 = 1e-4, η2 = 0.1, η3 = 1, λ from 1 to 0.1 by 5e-7
    per update, log σ clipped to [−5, 2], states standardised with the dataset's mean and std + 1e-3.
    """

    batch_size: int = 256
    """Dataset (or replay) transitions per update (authors: 256)."""
    gamma: float = 0.99
    """Discount γ (authors: 0.99)."""
    tau: float = 5e-3
    """Target critic rate: Q̄ ← τ Q + (1 − τ) Q̄ after every update (authors: 5e-3)."""
    actor_lr: float = 3e-4
    """Adam step size of the policy π (authors: 3e-4)."""
    critic_lr: float = 3e-4
    """Adam step size of the Q ensemble (authors: 3e-4)."""
    alpha_lr: float = 3e-4
    """Adam step size of log α (authors' script: 3e-4)."""
    num_critics: int = 10
    """N: Q-functions in the ensemble; the target uses their minimum, the OOD penalty their std (authors: 10)."""
    actor_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of the policy (authors: 3x256)."""
    critic_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of each Q-function (authors: 3x256)."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu; authors: relu)."""
    num_perturbations: int = 20
    """n: perturbed states s̃ drawn around each state, per loss (authors' sample_size: 20)."""
    q_smooth_eps: float = 0.01
    """ε_Q: half-width of the state perturbation for value smoothness (authors' q_smooth_eps: 0.01)."""
    policy_smooth_eps: float = 0.01
    """ε_P: half-width of the state perturbation for policy smoothness (authors' policy_smooth_eps: 0.01)."""
    ood_eps: float = 0.01
    """ε_ood: half-width of the state perturbation for the OOD penalty (authors' ood_smooth_eps: 0.01)."""
    q_smooth_weight: float = 1e-4
    """η1: weight of the value smoothness loss (authors' beta_Qsmooth, a constant 1e-4 in their code)."""
    ood_weight: float = 0.1
    """η2: weight of the OOD uncertainty penalty (authors' beta_ood: 0.1)."""
    policy_smooth_weight: float = 1.0
    """η3: weight of the policy smoothness loss in the policy objective (authors' beta_policy: 1.0)."""
    q_smooth_tau: float = 0.2
    """τ_s: weight of Q decreases under perturbation in the value smoothness loss, 1 − τ_s of increases (authors: 0.2)."""
    ood_uncertainty: float = 1.0
    """λ at the first update: the OOD pseudo-target is Q − λ std (authors' q_ood_uncertainty_reg: 1.0)."""
    ood_uncertainty_min: float = 0.1
    """Floor of λ, and its value online (authors' q_ood_uncertainty_reg_min: 0.1)."""
    ood_uncertainty_decay: float = 5e-7
    """Linear decrease of λ per update (authors' q_ood_uncertainty_decay: 5e-7)."""
    initial_alpha: float = 1.0
    """Initial entropy temperature α₀ (authors: log α = 0)."""
    target_entropy: float | None = None
    """Target entropy H̄; None means −|A| (authors)."""
    log_std_min: float = -5.0
    """Lower clip of the policy's log σ (authors / EDAC: −5)."""
    log_std_max: float = 2.0
    """Upper clip of the policy's log σ (authors / EDAC: 2)."""
    normalize_obs: bool = True
    """Standardise states with the dataset's mean and std, offline and online (authors: on)."""
    obs_std_eps: float = 1e-3
    """eps added to the dataset's state std (authors: 1e-3)."""

    def __post_init__(self):
        if self.batch_size < 1 or self.num_perturbations < 1:
            raise HeronError(f"ro2o: batch_size and num_perturbations must be >= 1, got {self.batch_size}, "
                             f"{self.num_perturbations}")
        if self.num_critics < 2:
            raise HeronError(f"ro2o: num_critics must be >= 2 (the OOD penalty uses their std), got {self.num_critics}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise HeronError(f"ro2o: gamma must be in [0, 1] and tau in (0, 1], got {self.gamma}, {self.tau}")
        if min(self.q_smooth_eps, self.policy_smooth_eps, self.ood_eps) < 0:
            raise HeronError("ro2o: the perturbation radii q_smooth_eps, policy_smooth_eps and ood_eps must be >= 0")
        if min(self.q_smooth_weight, self.ood_weight, self.policy_smooth_weight) < 0:
            raise HeronError("ro2o: the loss weights q_smooth_weight, ood_weight and policy_smooth_weight must be >= 0")
        if not 0.0 <= self.q_smooth_tau <= 1.0:
            raise HeronError(f"ro2o: q_smooth_tau must be in [0, 1], got {self.q_smooth_tau}")
        if not 0.0 <= self.ood_uncertainty_min <= self.ood_uncertainty or self.ood_uncertainty_decay < 0:
            raise HeronError(f"ro2o: need 0 <= ood_uncertainty_min <= ood_uncertainty and ood_uncertainty_decay >= 0, "
                             f"got {self.ood_uncertainty_min}, {self.ood_uncertainty}, {self.ood_uncertainty_decay}")
        if self.initial_alpha <= 0 or self.log_std_min > self.log_std_max or self.obs_std_eps < 0:
            raise HeronError("ro2o: initial_alpha must be > 0, log_std_min <= log_std_max, obs_std_eps >= 0")


@struct.dataclass
class State:
    """Everything RO2O learns, as a pytree; module definitions and bounds are static."""

    actor_params: FrozenDict
    critic_params: FrozenDict
    target_critic_params: FrozenDict
    log_alpha: jax.Array
    """log of the entropy temperature α."""
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    obs_mean: jax.Array
    """[obs_dim] state normaliser mean (0 unless normalize_obs)."""
    obs_std: jax.Array
    """[obs_dim] state normaliser scale σ + eps (1 unless normalize_obs)."""
    step: jax.Array
    """Updates taken (int32); λ's schedule reads it."""
    actor: GaussianHead = struct.field(pytree_node=False)
    critic: Ensemble = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)


def _optimizers(cfg: Config) -> tuple[optax.GradientTransformation, ...]:
    return optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.alpha_lr)


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    low, high = box_bounds(act_space, "ro2o")
    obs_dim, act_dim = int(np.prod(obs_space.shape)), len(low)
    actor = GaussianHead(cfg.actor_hidden, act_dim, cfg.activation, cfg.log_std_min, cfg.log_std_max)
    critic = Ensemble(QNetwork, cfg.num_critics, FrozenDict(hidden=cfg.critic_hidden, act=cfg.activation))
    k_actor, k_critic = jax.random.split(key)
    obs, action = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, act_dim), jnp.float32)
    actor_params = actor.init(k_actor, obs)
    critic_params = critic.init(k_critic, obs, action)
    log_alpha = jnp.asarray(np.log(cfg.initial_alpha), jnp.float32)
    actor_tx, critic_tx, alpha_tx = _optimizers(cfg)
    obs_mean, obs_std = dataset_obs_normalizer(dataset_stats, obs_dim, cfg.normalize_obs, cfg.obs_std_eps)
    return State(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=jax.tree.map(jnp.copy, critic_params),
        log_alpha=log_alpha,
        actor_opt_state=actor_tx.init(actor_params),
        critic_opt_state=critic_tx.init(critic_params),
        alpha_opt_state=alpha_tx.init(log_alpha),
        obs_mean=obs_mean,
        obs_std=obs_std,
        step=jnp.zeros((), jnp.int32),
        actor=actor,
        critic=critic,
        action_low=low,
        action_high=high,
    )


# ----------------------------------------------------------------------------- losses
# The Bellman target is SAC-N's `soft_q_target` (min over the target ensemble, minus α log π), the
# TD loss CQL's `td_loss` (Σ_i E_B[(Q_i − y)²]), the policy's SAC part `actor_loss` (min over the
# ensemble) and the temperature loss CQL's (on log α), all imported above.


def perturbed_states(key: jax.Array, obs: jax.Array, eps: float, n: int) -> jax.Array:
    """s̃_k = s + δ_k, δ_k ~ U([−ε, ε]^|S|), k = 1..n, the same n offsets for every state of the batch
    (the authors' get_noised_obs): [B, D] -> [B, n, D]."""
    delta = jax.random.uniform(key, (n, obs.shape[-1]), obs.dtype, -eps, eps)
    return obs[:, None, :] + delta[None]


def worst_case(per_sample: jax.Array) -> jax.Array:
    """max_k over the last axis, as a gather at the argmax (the authors' selection; its gradient
    reaches the selected sample only, and does not depend on `jnp.max`'s tie rule)."""
    worst = jnp.argmax(jax.lax.stop_gradient(per_sample), axis=-1)
    return jnp.take_along_axis(per_sample, worst[..., None], axis=-1)[..., 0]


def value_smoothness_loss(q: jax.Array, q_perturbed: jax.Array, tau: float) -> jax.Array:
    """L_Q-smooth = E_B max_k (1/N) Σ_i [(1 − τ) max(Δ_ik, 0)² + τ min(Δ_ik, 0)²],
    Δ_ik = Q_i(s̃_k, a) − Q_i(s, a): increases under perturbation cost more than decreases.
    q: [N, B] at (s, a); q_perturbed: [N, B, n] at (s̃_k, a). Gradients reach both."""
    diff = q_perturbed - q[..., None]
    per_sample = jnp.mean((1.0 - tau) * jnp.maximum(diff, 0.0) ** 2 + tau * jnp.minimum(diff, 0.0) ** 2, axis=0)
    return jnp.mean(worst_case(per_sample))


def gaussian_jeffreys(mean_p, log_std_p, mean_q, log_std_q) -> jax.Array:
    """Jeffrey's divergence KL(p‖q) + KL(q‖p) of diagonal Gaussians (the pre-tanh action), summed
    over the last axis: Σ_d [(σ_p² + Δ²) / (2σ_q²) + (σ_q² + Δ²) / (2σ_p²) − 1], Δ = μ_p − μ_q."""
    var_p, var_q = jnp.exp(2.0 * log_std_p), jnp.exp(2.0 * log_std_q)
    sq = (mean_p - mean_q) ** 2
    return jnp.sum((var_p + sq) / (2.0 * var_q) + (var_q + sq) / (2.0 * var_p) - 1.0, axis=-1)


def policy_smoothness_loss(mean, log_std, mean_perturbed, log_std_perturbed) -> jax.Array:
    """L_π-smooth = E_B max_k J(π(·|s), π(·|s̃_k)) (Jeffrey's divergence, `gaussian_jeffreys`).
    mean, log_std: [B, A] at s; *_perturbed: [B, n, A] at s̃_k. Gradients reach both."""
    divergence = gaussian_jeffreys(mean[:, None], log_std[:, None], mean_perturbed, log_std_perturbed)  # [B, n]
    return jnp.mean(worst_case(divergence))


def ood_pseudo_target(q_ood: jax.Array, uncertainty: jax.Array) -> jax.Array:
    """Q̂_i(s̃, ã) = Q_i(s̃, ã) − λ u(s̃, ã), u = std_j Q_j(s̃, ã) (unbiased, over the ensemble axis 0)."""
    return q_ood - uncertainty * jnp.std(q_ood, axis=0, ddof=1)


def ood_loss(q_ood: jax.Array, uncertainty: jax.Array) -> jax.Array:
    """L_ood = mean over critics, states and perturbations of (Q̂_i − Q_i)², Q̂ held constant
    (`ood_pseudo_target`): its gradient 2 λ u lowers Q where the ensemble disagrees. q_ood: [N, ...]."""
    return jnp.mean((jax.lax.stop_gradient(ood_pseudo_target(q_ood, uncertainty)) - q_ood) ** 2)


def ood_uncertainty_weight(step, start: float, minimum: float, decay: float) -> jax.Array:
    """λ_t = max(λ_0 − decay · t, λ_min) at update t (the authors decrease it once per update)."""
    return jnp.maximum(start - decay * jnp.asarray(step, jnp.float32), minimum)


# ----------------------------------------------------------------------------- update


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """Temperature step, policy step (SAC-N + η3 policy smoothness) against the pre-update critics,
    critic step (TD + η1 value smoothness + η2 OOD penalty) with the updated policy and α, then the
    Polyak target update (the authors' order)."""
    actor_tx, critic_tx, alpha_tx = _optimizers(cfg)
    k_alpha, k_pi, k_p_smooth, k_next, k_q_smooth, k_ood, k_ood_pi = jax.random.split(key, 7)
    obs, next_obs = normalized_obs(state, batch.obs), normalized_obs(state, batch.next_obs)
    batch_size, n = obs.shape[0], cfg.num_perturbations
    action = to_unit(batch.action.reshape(batch_size, -1), state.action_low, state.action_high)
    act_dim = action.shape[-1]
    reward = batch.reward.astype(jnp.float32).reshape(-1)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)
    target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy

    # Temperature, at the pre-update policy.
    mean, log_std = state.actor.apply(state.actor_params, obs)
    _, log_prob_before = tanh_gaussian_sample(k_alpha, mean, log_std)
    alpha_loss, grad = jax.value_and_grad(temperature_loss)(state.log_alpha, log_prob_before, target_entropy)
    updates, alpha_opt_state = alpha_tx.update(grad, state.alpha_opt_state, state.log_alpha)
    log_alpha = optax.apply_updates(state.log_alpha, updates)
    alpha = jnp.exp(log_alpha)

    # Policy: SAC-N against the pre-update critics, plus smoothness at perturbed states.
    policy_noisy = perturbed_states(k_p_smooth, obs, cfg.policy_smooth_eps, n)

    def actor_objective(params):
        mean, log_std = state.actor.apply(params, obs)
        pi_action, log_prob = tanh_gaussian_sample(k_pi, mean, log_std)
        q_pi = state.critic.apply(state.critic_params, obs, pi_action)
        mean_p, log_std_p = state.actor.apply(params, policy_noisy)
        smooth = policy_smoothness_loss(mean, log_std, mean_p, log_std_p)
        sac_part = actor_loss(log_prob, q_pi, alpha)
        return sac_part + cfg.policy_smooth_weight * smooth, (log_prob, smooth, q_pi)

    (pi_loss, (log_prob, pi_smooth, q_pi)), grads = jax.value_and_grad(actor_objective, has_aux=True)(
        state.actor_params)
    updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)

    # Critics: the target and the OOD actions come from the updated policy (constants here).
    next_mean, next_log_std = state.actor.apply(actor_params, next_obs)
    next_action, next_log_prob = tanh_gaussian_sample(k_next, next_mean, next_log_std)
    next_q = state.critic.apply(state.target_critic_params, next_obs, next_action)
    target = soft_q_target(reward, terminated, next_q, next_log_prob, alpha, cfg.gamma)
    value_noisy = perturbed_states(k_q_smooth, obs, cfg.q_smooth_eps, n)
    ood_obs = perturbed_states(k_ood, obs, cfg.ood_eps, n)
    ood_mean, ood_log_std = state.actor.apply(actor_params, ood_obs)
    ood_action, _ = tanh_gaussian_sample(k_ood_pi, ood_mean, ood_log_std)
    # One fused forward pass for both perturbed sets: [B, 2n, ·].
    noisy_obs = jnp.concatenate([value_noisy, ood_obs], axis=1)
    noisy_action = jnp.concatenate([jnp.broadcast_to(action[:, None], (batch_size, n, act_dim)), ood_action], axis=1)
    uncertainty = ood_uncertainty_weight(state.step, cfg.ood_uncertainty, cfg.ood_uncertainty_min,
                                         cfg.ood_uncertainty_decay)

    def critic_objective(params):
        q = state.critic.apply(params, obs, action)  # [N, B]
        q_noisy = state.critic.apply(params, noisy_obs, noisy_action)  # [N, B, 2n]
        bellman = td_loss(q, target)
        smooth = value_smoothness_loss(q, q_noisy[..., :n], cfg.q_smooth_tau)
        ood = ood_loss(q_noisy[..., n:], uncertainty)
        loss = bellman + cfg.q_smooth_weight * smooth + cfg.ood_weight * ood
        return loss, (q, bellman, smooth, ood, jnp.mean(jnp.std(q_noisy[..., n:], axis=0, ddof=1)))

    (q_loss, (q, bellman, q_smooth, ood, ood_std)), grads = jax.value_and_grad(critic_objective, has_aux=True)(
        state.critic_params)
    updates, critic_opt_state = critic_tx.update(grads, state.critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)

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
    metrics = {"critic_loss": q_loss, "td_loss": bellman, "q_smooth_loss": q_smooth, "ood_loss": ood,
               "ood_std": ood_std, "ood_uncertainty": uncertainty, "actor_loss": pi_loss,
               "policy_smooth_loss": pi_smooth, "alpha": alpha, "alpha_loss": alpha_loss,
               "entropy": -jnp.mean(log_prob), "q_mean": jnp.mean(q),
               "q_pi_std": jnp.mean(jnp.std(q_pi, axis=0, ddof=1)), "target_mean": jnp.mean(target)}
    return new_state, metrics


# ----------------------------------------------------------------------------- act


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] raw observations -> [B, act_dim] in env units: tanh(μ) if deterministic, else a sample."""
    mean, log_std = state.actor.apply(state.actor_params, normalized_obs(state, obs))
    sample, _ = tanh_gaussian_sample(key, mean, log_std)
    return from_unit(jnp.where(deterministic, jnp.tanh(mean), sample), state.action_low, state.action_high)


def online_config(cfg: Config) -> Config:
    """The config RO2O continues with online: the same losses, λ held at its floor (authors' README)."""
    return dataclasses.replace(cfg, ood_uncertainty=cfg.ood_uncertainty_min, ood_uncertainty_decay=0.0)


FINETUNE = FinetuneRule(
    keep_offline_data=False, warmup_steps=2_500, updates_per_step=1, online_config=online_config,
    source="RO2O (Wen et al. 2024): the same uncertainty and smoothness objective online with λ at its floor, "
           "an online buffer without the offline data, updates from the 2500th transition of the pre-trained policy, "
           "one update per env step (authors' ro2o_ft_mujoco.py: train_starts 2500)")

register(AgentSpec(
    name="ro2o",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="Robust offline-to-online RL: SAC-N with an OOD uncertainty penalty and value/policy smoothness at "
            "perturbed states, the same objective offline and online (continuous).",
    finetune=FINETUNE,
))
