"""H2O (Niu, Sharma, Qiu, Li, Zhou, Hu & Zhan 2022, "When to Trust Your Simulator: Dynamics-Aware
Hybrid Offline-and-Online Reinforcement Learning").

Learns from a fixed dataset collected on the real system and from online rollouts in an imperfect
simulator of it, together, from the first step (no pre-training). Every batch holds both: its
first half is real data, its second half simulator transitions (the `FinetuneRule` keeps the
offline rows first, see `REAL_FRACTION`). The learner is SAC with twin critics (one fused
`Ensemble`), whose critic loss per critic i is

    L_Q = E_real[(Q_i − y)²] + E_sim[w(s, a, s') (Q_i − y)²]
          + β [ T log Σ_{(s,a) ∈ sim} ω(s, a) exp(Q_i(s, a) / T) − E_real[Q_i] ]


* real data: the ordinary Bellman error, y = r + γ (1 − d) min_j Q̄_j(s', a'), a' ~ π(·|s');
* simulator data: the Bellman error importance-weighted by the dynamics ratio
  w = P_real(s'|s, a) / P_sim(s'|s, a), clipped to [1e-5, 1];
* the dynamics-aware penalty: Q is pushed down on simulated pairs in proportion to ω ∝ u(s, a), an
  estimate of the dynamics gap D_KL(P_sim(·|s, a) ‖ P_real(·|s, a)), and up on the real data.

The dynamics ratio comes from two classifiers of real vs simulated, as in DARC (Eysenbach et al.
2021): D_sa(real | s, a) and D_sas(real | s, a, s'), whose logits are D_sa's plus its own; by Bayes'
rule P_real(s'|s,a) / P_sim(s'|s,a) = [D_sas(real)/D_sas(sim)] · [D_sa(sim)/D_sa(real)]. The
gap u(s, a) averages −log w over K next states s' + σ ε around the simulator's s'. The classifiers
are trained by cross-entropy (inputs with Gaussian noise) on the batch's real and simulated halves.

One `update` follows the authors' code (github.com/t6-thu/H2O, SimpleSAC/sim2real_sac.py):
classifier step, then the ratio and gap from the updated classifiers; temperature, policy (on the
states of both halves) and critic losses at the current parameters; one Adam step each; Polyak
target update. `heron train h2o --dataset REAL_DATA --env SIM_ENV --eval-env REAL_ENV --steps 0
--online-steps M`: acts in the simulator, evaluates on the real system.

Where this differs from the authors' code: the classifiers train on the update's own batch halves
(the authors draw a second batch of 256 real + 256 simulated rows for them); the gap's next-state
noise is a fraction of the real data's state std (see `next_state_noise_scale`); the gap's lower
clip is 1e-30 (theirs, 1e-45, is not a normal float32); the policy's log σ has no −1 offset.
"""

from dataclasses import dataclass

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.core import FrozenDict

from heron.agents.cql import actor_loss, cql_target, td_loss, temperature_loss
from heron.agents.registry import AgentSpec, DatasetStats, FinetuneRule, register
from heron.core.actions import box_bounds, from_unit, to_unit
from heron.core.distributions import tanh_gaussian_sample
from heron.core.networks import MLP, Ensemble, GaussianHead, QNetwork
from heron.core.normalization import dataset_obs_normalizer, ema_update, normalized_obs
from heron.errors import HeronError
from heron.types import Transition

REAL_FRACTION = 0.5
"""Share of each batch that is real data, its first rows (the authors' batch_ratio 0.5: 128 real and
128 simulated of 256); the `FinetuneRule`'s offline_fraction, so `update` knows where the halves meet."""


@dataclass(frozen=True)
class Config:
    """H2O hyperparameters.

    Defaults are the authors' (github.com/t6-thu/H2O: SimpleSAC/sim2real_sac.py `get_default_config`
    and sim2real_sac_main.py): batch 256 = 128 real + 128 simulated, 2x256 ReLU networks, Adam 3e-4
    for policy, critics, temperature and both classifiers, γ = 0.99, target rate 5e-3, automatic
    entropy tuning towards −|A| from α = 1, no entropy backup, penalty weight β = 0.01 with
    temperature 1 and the gap clipped to [·, 10], dynamics ratio clipped to [1e-5, 1], K = 10 next-state
    samples, classifier input noise 0.1 and logits bounded by 2 tanh(·), no state normalisation.
    """

    batch_size: int = 256
    """Rows per update: the first REAL_FRACTION real data, the rest simulator transitions (authors: 256)."""
    gamma: float = 0.99
    """Discount γ (authors: 0.99)."""
    tau: float = 0.005
    """Target critic update rate: Q̄ ← tau Q + (1 − tau) Q̄ after every step (authors: 5e-3)."""
    penalty_weight: float = 0.01
    """β: weight of the dynamics-aware Q penalty (authors' cql_min_q_weight: 0.01)."""
    penalty_temperature: float = 1.0
    """T in T log Σ ω exp(Q / T) (authors' cql_temp: 1)."""
    penalty_clip_min: float = -1000.0
    """Lower clip of each critic's penalty gap before weighting (authors' cql_clip_diff_min)."""
    penalty_clip_max: float = 1000.0
    """Upper clip of each critic's penalty gap (authors' cql_clip_diff_max)."""
    ratio_clip_min: float = 1e-5
    """Lower clip of the dynamics ratio w = P_real/P_sim weighting simulated Bellman errors (authors: 1e-5)."""
    ratio_clip_max: float = 1.0
    """Upper clip of w (authors: 1, so simulated data never outweighs real data)."""
    gap_clip_min: float = 1e-30
    """Lower clip of the gap u(s, a) (authors: 1e-45, below float32's normal range; 1e-30 keeps log ω finite)."""
    gap_clip_max: float = 10.0
    """Upper clip of the gap u(s, a) (authors' sim_q_coeff_max: 10)."""
    gap_samples: int = 10
    """K: next states s' + σ ε averaged in the gap estimate u(s, a) (authors' sampling_n_next_states: 10)."""
    next_state_noise_scale: float = 0.3
    """σ = this × the real data's state std (authors: 1 × their buffer's std, ≈ 0.3 × the data's: 10x zero padding)."""
    discriminator_noise: float = 0.1
    """Std of the Gaussian noise added to the classifiers' training inputs s, a, s' (authors: 0.1)."""
    discriminator_logit_bound: float = 2.0
    """Classifier logits are bound·tanh(MLP output) (authors: 2 tanh)."""
    actor_lr: float = 3e-4
    """Adam step size of the policy (authors' policy_lr)."""
    critic_lr: float = 3e-4
    """Adam step size of the critics (authors' qf_lr)."""
    alpha_lr: float = 3e-4
    """Adam step size of log α (authors: the policy's)."""
    discriminator_lr: float = 3e-4
    """Adam step size of both classifiers (authors' d_sa_lr, d_sas_lr)."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy (authors: 256-256)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each critic (authors: 256-256)."""
    discriminator_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each classifier D_sa, D_sas (authors: 256-256)."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    num_critics: int = 2
    """Number of critics; backups and the policy use their minimum (authors: 2)."""
    backup_entropy: bool = False
    """Subtract γ α log π(a'|s') in the backup (authors: off)."""
    initial_alpha: float = 1.0
    """Initial entropy temperature α (authors: log α = 0)."""
    target_entropy: float | None = None
    """Target entropy H̄; None means −|A| (authors)."""
    log_std_min: float = -20.0
    """Lower clip of the policy's log σ (authors' TanhGaussianPolicy: −20)."""
    log_std_max: float = 2.0
    """Upper clip of the policy's log σ (authors: 2)."""
    normalize_obs: bool = False
    """Standardise states with the real data's mean and std (authors: off)."""
    obs_std_eps: float = 1e-3
    """eps added to the real data's state std when normalize_obs (authors: 1e-3)."""

    def __post_init__(self):
        if self.batch_size < 2:
            raise HeronError(f"h2o: batch_size must be >= 2 (a real and a simulated half), got {self.batch_size}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0 or self.initial_alpha <= 0:
            raise HeronError("h2o: gamma must be in [0, 1], tau in (0, 1], initial_alpha > 0")
        if self.penalty_weight < 0 or self.penalty_temperature <= 0 or self.penalty_clip_min > self.penalty_clip_max:
            raise HeronError("h2o: penalty_weight must be >= 0, penalty_temperature > 0, penalty_clip_min <= max")
        if not 0.0 < self.ratio_clip_min <= self.ratio_clip_max or not 0.0 < self.gap_clip_min <= self.gap_clip_max:
            raise HeronError("h2o: the ratio and gap clips need 0 < min <= max (log ω and the weights stay finite)")
        if self.gap_samples < 1 or min(self.next_state_noise_scale, self.discriminator_noise) < 0:
            raise HeronError("h2o: gap_samples must be >= 1; next_state_noise_scale and discriminator_noise >= 0")
        if self.discriminator_logit_bound <= 0 or self.num_critics < 1 or self.log_std_min > self.log_std_max:
            raise HeronError("h2o: discriminator_logit_bound > 0, num_critics >= 1, log_std_min <= log_std_max")


@struct.dataclass
class State:
    """Everything H2O learns, as a pytree; module definitions and bounds are static."""

    actor_params: FrozenDict
    critic_params: FrozenDict
    target_critic_params: FrozenDict
    discriminator_params: dict
    """{"sa": D_sa's, "sas": D_sas's} (one Adam over both: the authors' two Adams, elementwise the same)."""
    log_alpha: jax.Array
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    discriminator_opt_state: optax.OptState
    obs_mean: jax.Array
    """[obs_dim] state normaliser mean (0 unless normalize_obs)."""
    obs_std: jax.Array
    """[obs_dim] state normaliser scale (1 unless normalize_obs)."""
    next_obs_noise_std: jax.Array
    """[obs_dim] σ of the gap's next-state samples, in network input units (1 without dataset statistics)."""
    step: jax.Array
    """Gradient steps taken (int32)."""
    actor: GaussianHead = struct.field(pytree_node=False)
    critic: Ensemble = struct.field(pytree_node=False)
    discriminator_sa: MLP = struct.field(pytree_node=False)
    discriminator_sas: MLP = struct.field(pytree_node=False)
    logit_bound: float = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)


def _optimizers(cfg: Config):
    return (optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.alpha_lr),
            optax.adam(cfg.discriminator_lr))


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    low, high = box_bounds(act_space, "h2o")
    obs_dim, act_dim = int(np.prod(obs_space.shape)), len(low)
    actor = GaussianHead(cfg.actor_hidden, act_dim, cfg.activation, cfg.log_std_min, cfg.log_std_max)
    critic = Ensemble(QNetwork, cfg.num_critics, FrozenDict(hidden=cfg.critic_hidden, act=cfg.activation))
    d_sa = MLP(cfg.discriminator_hidden, 2, cfg.activation)
    d_sas = MLP(cfg.discriminator_hidden, 2, cfg.activation)
    k_actor, k_critic, k_sa, k_sas = jax.random.split(key, 4)
    obs, action = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, act_dim), jnp.float32)
    actor_params, critic_params = actor.init(k_actor, obs), critic.init(k_critic, obs, action)
    disc_params = {"sa": d_sa.init(k_sa, jnp.zeros((1, obs_dim + act_dim))),
                   "sas": d_sas.init(k_sas, jnp.zeros((1, 2 * obs_dim + act_dim)))}
    log_alpha = jnp.asarray(np.log(cfg.initial_alpha), jnp.float32)
    actor_tx, critic_tx, alpha_tx, disc_tx = _optimizers(cfg)
    obs_mean, obs_std = dataset_obs_normalizer(dataset_stats, obs_dim, cfg.normalize_obs, cfg.obs_std_eps)
    data_std = (jnp.ones((obs_dim,), jnp.float32) if dataset_stats is None
                else jnp.asarray(dataset_stats.obs_std, jnp.float32).reshape(obs_dim) / obs_std)
    return State(actor_params=actor_params, critic_params=critic_params,
                 target_critic_params=jax.tree.map(jnp.copy, critic_params), discriminator_params=disc_params,
                 log_alpha=log_alpha, actor_opt_state=actor_tx.init(actor_params),
                 critic_opt_state=critic_tx.init(critic_params), alpha_opt_state=alpha_tx.init(log_alpha),
                 discriminator_opt_state=disc_tx.init(disc_params), obs_mean=obs_mean, obs_std=obs_std,
                 next_obs_noise_std=cfg.next_state_noise_scale * data_std, step=jnp.zeros((), jnp.int32),
                 actor=actor, critic=critic, discriminator_sa=d_sa, discriminator_sas=d_sas,
                 logit_bound=float(cfg.discriminator_logit_bound), action_low=low, action_high=high)


# ----------------------------------------------------------------------------- losses


def discriminator_loss(sa_real, sas_real, sa_sim, sas_sim):
    """Cross-entropy of both classifiers, class 0 = real, class 1 = simulated; logits [B, 2]:

        L_D = E_real[−log softmax(ℓ_sa)_0] + E_sim[−log softmax(ℓ_sa)_1]
            + E_real[−log softmax(ℓ_sa + ℓ_sas)_0] + E_sim[−log softmax(ℓ_sa + ℓ_sas)_1]

    D_sas(·|s, a, s') = softmax(ℓ_sa + ℓ_sas) (DARC): its second pair of terms trains D_sa too, as the
    authors' accumulated gradients do. Returns (L_D, the D_sa part, the D_sas part)."""
    def ce(logits, cls):
        return -jnp.mean(jax.nn.log_softmax(logits, axis=-1)[:, cls])

    loss_sa = ce(sa_real, 0) + ce(sa_sim, 1)
    loss_sas = ce(sa_real + sas_real, 0) + ce(sa_sim + sas_sim, 1)
    return loss_sa + loss_sas, loss_sa, loss_sas


def log_dynamics_ratio(sa_logits, sas_logits):
    """log P_real(s'|s, a) / P_sim(s'|s, a) = log [D_sas(real|s,a,s') / D_sas(sim|s,a,s')] −
    log [D_sa(real|s,a) / D_sa(sim|s,a)] (Bayes' rule), D_sas = softmax(ℓ_sa + ℓ_sas), D_sa = softmax(ℓ_sa);
    logits [..., 2] -> [...] (held constant)."""
    log_sas = jax.nn.log_softmax(sa_logits + sas_logits, axis=-1)
    log_sa = jax.nn.log_softmax(sa_logits, axis=-1)
    return jax.lax.stop_gradient((log_sas[..., 0] - log_sas[..., 1]) - (log_sa[..., 0] - log_sa[..., 1]))


def importance_weights(log_ratio, clip_min, clip_max):
    """w(s, a, s') = clip(P_real(s'|s,a) / P_sim(s'|s,a), clip_min, clip_max) for simulated Bellman errors."""
    return jnp.clip(jnp.exp(log_ratio), clip_min, clip_max)


def dynamics_gap(log_ratio_samples, clip_min, clip_max):
    """u(s, a) = clip(E_k[log P_sim(s'_k|s,a) / P_real(s'_k|s,a)], clip_min, clip_max) ≈ D_KL(P_sim ‖ P_real)
    at (s, a), from K next-state samples; log_ratio_samples: [B, K] of log P_real/P_sim -> [B]."""
    return jnp.clip(jnp.mean(-log_ratio_samples, axis=-1), clip_min, clip_max)


def dynamics_penalty(q_sim, q_real, gap, temperature, clip_min, clip_max):
    """Per critic i: clip(T log Σ_j ω_j exp(Q_i(s_j, a_j) / T) − E_real[Q_i], clip_min, clip_max), ω = u / Σ u
    over the simulated rows j (a softmax of Q over simulated pairs tilted towards large dynamics gaps, minus
    the real data's Q); q_sim: [N, B_sim], q_real: [N, B_real], gap u: [B_sim] -> [N] (authors' ω inside the exp as
    exp(Q + log ω), both divided by T)."""
    log_omega = jnp.log(gap) - jnp.log(jnp.sum(gap))
    soft_max = temperature * jax.nn.logsumexp((q_sim + log_omega) / temperature, axis=-1)
    return jnp.clip(soft_max - jnp.mean(q_real, axis=-1), clip_min, clip_max)


def weighted_td_loss(q, target, weights):
    """Σ_i E_B[w (Q_i(s, a) − y)²]; q: [N, B], y and w: [B] (no gradient through y or w)."""
    return jnp.sum(jnp.mean(jax.lax.stop_gradient(weights) * (q - jax.lax.stop_gradient(target)) ** 2, axis=-1))


# ----------------------------------------------------------------------------- update


def _logits(state: State, params, obs, action, next_obs=None):
    """Bounded logits of D_sa (s, a), or of D_sas (s, a, s') when next_obs is given."""
    if next_obs is None:
        raw = state.discriminator_sa.apply(params["sa"], jnp.concatenate([obs, action], axis=-1))
    else:
        raw = state.discriminator_sas.apply(params["sas"], jnp.concatenate([obs, action, next_obs], axis=-1))
    return state.logit_bound * jnp.tanh(raw)


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """Classifier step; then temperature, policy and critic losses at the current parameters with the
    updated classifiers' ratio and gap, one Adam step each; Polyak target update (authors' order)."""
    actor_tx, critic_tx, alpha_tx, disc_tx = _optimizers(cfg)
    k_noise, k_gap, k_pi, k_next = jax.random.split(key, 4)
    obs, next_obs = normalized_obs(state, batch.obs), normalized_obs(state, batch.next_obs)
    batch_size, obs_dim = obs.shape
    n_real = round(batch_size * REAL_FRACTION)
    action = to_unit(batch.action.reshape(batch_size, -1), state.action_low, state.action_high)
    reward = batch.reward.astype(jnp.float32).reshape(-1)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)
    act_dim = action.shape[-1]
    target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
    alpha = jnp.exp(state.log_alpha)
    real, sim = slice(0, n_real), slice(n_real, batch_size)

    # Classifiers: real rows (class 0) vs simulated rows (class 1), inputs with Gaussian noise.
    k_o, k_a, k_o2 = jax.random.split(k_noise, 3)
    noisy_obs = obs + cfg.discriminator_noise * jax.random.normal(k_o, obs.shape)
    noisy_action = action + cfg.discriminator_noise * jax.random.normal(k_a, action.shape)
    noisy_next = next_obs + cfg.discriminator_noise * jax.random.normal(k_o2, next_obs.shape)

    def disc_objective(params):
        sa = _logits(state, params, noisy_obs, noisy_action)
        sas = _logits(state, params, noisy_obs, noisy_action, noisy_next)
        loss, loss_sa, loss_sas = discriminator_loss(sa[real], sas[real], sa[sim], sas[sim])
        return loss, (loss_sa, loss_sas)

    (_, (d_sa_loss, d_sas_loss)), grads = jax.value_and_grad(disc_objective, has_aux=True)(state.discriminator_params)
    updates, disc_opt_state = disc_tx.update(grads, state.discriminator_opt_state, state.discriminator_params)
    disc_params = optax.apply_updates(state.discriminator_params, updates)

    # Dynamics ratio at the simulated transitions and the gap u(s, a) from K perturbed next states.
    s_sim, a_sim, s2_sim = obs[sim], action[sim], next_obs[sim]
    n_sim, k = batch_size - n_real, cfg.gap_samples
    sa_sim = _logits(state, disc_params, s_sim, a_sim)
    ratio_w = importance_weights(log_dynamics_ratio(sa_sim, _logits(state, disc_params, s_sim, a_sim, s2_sim)),
                                 cfg.ratio_clip_min, cfg.ratio_clip_max)
    s2_samples = s2_sim[:, None] + state.next_obs_noise_std * jax.random.normal(k_gap, (n_sim, k, obs_dim))
    rep = lambda x: jnp.broadcast_to(x[:, None], (n_sim, k, x.shape[-1]))
    sas_samples = _logits(state, disc_params, rep(s_sim), rep(a_sim), s2_samples)
    gap = dynamics_gap(log_dynamics_ratio(jnp.broadcast_to(sa_sim[:, None], sas_samples.shape), sas_samples),
                       cfg.gap_clip_min, cfg.gap_clip_max)

    # Policy and temperature on the states of both halves (critic parameters are constants here).
    def actor_objective(params):
        mean, log_std = state.actor.apply(params, obs)
        pi_action, log_prob = tanh_gaussian_sample(k_pi, mean, log_std)
        return actor_loss(log_prob, state.critic.apply(state.critic_params, obs, pi_action), alpha), log_prob

    (pi_loss, log_prob), grads = jax.value_and_grad(actor_objective, has_aux=True)(state.actor_params)
    updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)
    grad = jax.grad(temperature_loss)(state.log_alpha, log_prob, target_entropy)
    updates, alpha_opt_state = alpha_tx.update(grad, state.alpha_opt_state, state.log_alpha)
    log_alpha = optax.apply_updates(state.log_alpha, updates)

    # Backup from the pre-update policy: y = r + γ (1 − d) min_j Q̄_j(s', a') [− α log π(a'|s')].
    mean, log_std = state.actor.apply(state.actor_params, next_obs)
    next_action, next_log_prob = tanh_gaussian_sample(k_next, mean, log_std)
    next_q = state.critic.apply(state.target_critic_params, next_obs, next_action)
    target = cql_target(reward, terminated, next_q, cfg.gamma, next_log_prob if cfg.backup_entropy else None, alpha)

    def critic_objective(params):
        q = state.critic.apply(params, obs, action)  # [N, B]
        real_td = td_loss(q[:, real], target[real])
        sim_td = weighted_td_loss(q[:, sim], target[sim], ratio_w)
        gaps = dynamics_penalty(q[:, sim], q[:, real], gap, cfg.penalty_temperature, cfg.penalty_clip_min,
                                cfg.penalty_clip_max)
        penalty = cfg.penalty_weight * jnp.sum(gaps)
        return real_td + sim_td + penalty, (q, real_td, sim_td, penalty)

    (q_loss, (q, real_td, sim_td, penalty)), grads = jax.value_and_grad(critic_objective, has_aux=True)(
        state.critic_params)
    updates, critic_opt_state = critic_tx.update(grads, state.critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)

    new_state = state.replace(
        actor_params=actor_params, critic_params=critic_params,
        target_critic_params=ema_update(state.target_critic_params, critic_params, cfg.tau),
        discriminator_params=disc_params, log_alpha=log_alpha, actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state, alpha_opt_state=alpha_opt_state, discriminator_opt_state=disc_opt_state,
        step=state.step + 1)
    metrics = {"critic_loss": q_loss, "real_td_loss": real_td, "sim_td_loss": sim_td, "penalty": penalty,
               "actor_loss": pi_loss, "alpha": alpha, "entropy": -jnp.mean(log_prob),
               "q_real_mean": jnp.mean(q[:, real]), "q_sim_mean": jnp.mean(q[:, sim]), "target_mean": jnp.mean(target),
               "dynamics_ratio_mean": jnp.mean(ratio_w), "dynamics_gap_mean": jnp.mean(gap),
               "discriminator_sa_loss": d_sa_loss, "discriminator_sas_loss": d_sas_loss}
    return new_state, metrics


# ----------------------------------------------------------------------------- act


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] raw observations -> [B, act_dim] in env units: tanh(μ) if deterministic, else a sample."""
    mean, log_std = state.actor.apply(state.actor_params, normalized_obs(state, obs))
    sample, _ = tanh_gaussian_sample(key, mean, log_std)
    return from_unit(jnp.where(deterministic, jnp.tanh(mean), sample), state.action_low, state.action_high)


register(AgentSpec(
    name="h2o",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="H2O: SAC on real data plus simulator rollouts, with a dynamics-gap-weighted Q penalty and "
            "importance-weighted simulated Bellman errors (hybrid offline+online, continuous).",
    finetune=FinetuneRule(keep_offline_data=True, offline_fraction=REAL_FRACTION, offline_rows_first=True,
                          warmup_steps=1000, updates_per_step=1,
                          source="H2O (Niu et al. 2022, authors' code): no pre-training (--steps 0); the real data "
                                 "stays, every batch is half real (first rows) and half simulator rollouts; 1000 "
                                 "simulator steps of the initial policy before the first update, then one update per "
                                 "simulator step"),
))
