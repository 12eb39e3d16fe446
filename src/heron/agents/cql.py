"""Conservative Q-Learning (Kumar, Zhou, Tucker & Levine 2020, "Conservative Q-Learning for
Offline Reinforcement Learning"), the continuous-action CQL(H) variant on top of SAC.

SAC (tanh-Gaussian policy, twin critics as one fused `Ensemble`, learned entropy temperature α)
whose critics also minimise a conservative penalty per critic i:

    α_cql · E_s[ log Σ_a exp Q_i(s, a) − Q_i(s, a_data) ]

which pushes Q down on actions the policy (or anything else) would pick and up on the dataset's.
The log-sum-exp over the continuous action space is estimated by importance sampling (the
paper's appendix F, as in the authors' code and CORL): N uniform actions with density
(1/2)^|A| on [-1, 1]^|A|, and N actions each from π(·|s) and π(·|s') (all evaluated at s), each
sample's Q minus its log-density, log-sum-exp over the 3N samples. The weight is fixed
(`lagrange=False`) or scaled by a learned α' ≥ 0 that grows while the gap exceeds a target τ
(dual gradient descent, `lagrange=True`).

One `update` call follows CORL's cql.py (itself a port of the young-geng/CQL PyTorch code): the
temperature, policy and critic losses are all computed from the pre-update parameters, then
α, π, α' and the critics take one Adam step each, then the Polyak target update. The backup is
y = r + γ (1 − d) min_i Q̄_i(s', a'), a' ~ π(·|s'): no entropy term (backup_entropy=False) and no
max over sampled actions (max_target_backup=False), CORL's and the authors' defaults.
Networks work in normalised action units [-1, 1]; states are standardised with the dataset's
mean and std (CORL's `normalize=True`).
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

from heron.agents.registry import AgentSpec, DatasetStats, FinetuneRule, register
from heron.core.actions import box_bounds, from_unit, to_unit
from heron.core.distributions import tanh_gaussian_sample
from heron.core.networks import INITS, Ensemble, GaussianHead, QNetwork
from heron.core.normalization import dataset_obs_normalizer, ema_update, normalized_obs
from heron.errors import HeronError
from heron.types import Transition

ALPHA_PRIME_MAX = 1e6  # clip of exp(log α') in the authors' code and CORL


@dataclass(frozen=True)
class Config:
    """CQL hyperparameters.

    Defaults are the continuous CQL(H) settings of the young-geng/CQL PyTorch code (github.com/young-
    geng/CQL, SimpleSAC/conservative_sac.py) as ported by CORL (github.com/tinkoff-ai/CORL,
    algorithms/offline/cql.py): N = 10 sampled actions, importance-sampled log-sum-exp with
    temperature 1, α_cql = 5 (the paper's Gym MuJoCo value, the `ContinuousCQL` class default and
    d3rlpy's conservative_weight; CORL's script default is 10), no Lagrange, no max / entropy
    backup, automatic entropy tuning toward −|A| with log α starting at 0, critic Adam 3e-4,
    γ = 0.99, target rate 5e-3, batch 256, states normalised with std + 1e-3, 3x256 ReLU
    networks (CORL). The policy step size is 1e-4 (d3rlpy and the paper's released code; the
    paper's appendix and CORL use 3e-5).
    """

    batch_size: int = 256
    """Dataset transitions per gradient step."""
    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Target critic update rate: Q̄ ← tau Q + (1 − tau) Q̄ after every step (CORL soft_target_update_rate)."""
    actor_lr: float = 1e-4
    """Adam step size of the policy π_φ (d3rlpy / authors' code 1e-4; paper appendix and CORL 3e-5)."""
    critic_lr: float = 3e-4
    """Adam step size of the Q-functions, and of log α' (CORL qf_lr)."""
    alpha_lr: float = 1e-4
    """Adam step size of the entropy temperature log α (CORL: the policy's step size)."""
    cql_alpha: float = 5.0
    """α_cql: weight of the conservative penalty (paper / young-geng cql_min_q_weight: 5; CORL script: 10)."""
    num_sampled_actions: int = 10
    """N: actions sampled each from Unif([-1, 1]^|A|), π(·|s) and π(·|s') per state (cql_n_actions)."""
    importance_sample: bool = True
    """Subtract each sample's log-density before the log-sum-exp (CQL(H) appendix F); False: plain
    log-sum-exp over the 3N samples and the dataset action (CORL cql_importance_sample=False)."""
    cql_temperature: float = 1.0
    """Temperature T of T · logsumexp(Q / T) (cql_temp)."""
    lagrange: bool = False
    """Learn the penalty's scale α' ≥ 0 by dual descent toward target_action_gap (CQL-Lagrange)."""
    target_action_gap: float = 10.0
    """Target τ for the gap E[logsumexp Q − Q(s, a_data)] when lagrange (paper / d3rlpy alpha_threshold: 10 for Gym)."""
    initial_log_alpha_prime: float = 1.0
    """Initial log α' of the Lagrange variant (CORL Scalar(1.0))."""
    clip_diff_min: float = -np.inf
    """Lower clip of the per-state gap logsumexp Q − Q(s, a_data) (off by default)."""
    clip_diff_max: float = np.inf
    """Upper clip of the per-state gap (off by default)."""
    backup_entropy: bool = False
    """Subtract α log π(a'|s') in the backup (soft backup; off in CORL and the authors' code)."""
    max_target_backup: bool = False
    """Back up max over N policy samples at s' of min_i Q̄_i (off in CORL and the authors' code)."""
    autotune: bool = True
    """Learn α toward the target entropy (CORL use_automatic_entropy_tuning)."""
    initial_alpha: float = 1.0
    """Initial entropy temperature α₀ (log α = 0 in CORL); fixed α when autotune is False."""
    target_entropy: float | None = None
    """Target entropy H̄; None means −|A|."""
    actor_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of the policy network (CORL: 3x256)."""
    critic_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of each Q-network (CORL q_n_hidden_layers=3)."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    num_critics: int = 2
    """Number of Q-functions; each gets its own penalty, the policy uses their minimum."""
    critic_subsample: int | None = None
    """Backup from the minimum of this many target critics drawn at random (with replacement) per
    update, REDQ-style (WSRL: 2 of 10); None: the minimum over all num_critics."""
    critic_layer_norm: bool = False
    """LayerNorm after each hidden layer of the critics (off in CQL; on in WSRL)."""
    online_cql_alpha: float | None = None
    """α_cql once the agent continues online (offline→online); None keeps cql_alpha, 0 is SAC."""
    log_std_min: float = -20.0
    """Lower clip of the policy's log σ (CORL / SAC)."""
    log_std_max: float = 2.0
    """Upper clip of the policy's log σ."""
    normalize_obs: bool = True
    """Standardise states with the dataset's mean and std (CORL normalize=True)."""
    obs_std_eps: float = 1e-3
    """eps added to the dataset's state std (CORL: 1e-3)."""
    weight_init: str = "torch"
    """Initialisation of every layer of π and the Q-functions (heron.core.networks.INITS): "torch", PyTorch's
    nn.Linear default, as in the young-geng code (orthogonal_init=False) and d3rlpy; "lecun" is Flax's. After 5k
    updates (64x64, 5 seeds) on small/halfcheetah-{medium,medium-replay} and small/hopper-{medium,medium-replay}
    "torch" scored 22.0, 27.7, 76.6, 43.9 and "lecun" 20.2, 28.4, 74.2, 26.3 (BENCHMARKS.md, MuJoCo tasks)."""

    def __post_init__(self):
        if self.batch_size < 1 or self.num_sampled_actions < 1:
            raise HeronError(f"cql: batch_size and num_sampled_actions must be >= 1, got {self.batch_size}, "
                             f"{self.num_sampled_actions}")
        if not 0.0 <= self.gamma <= 1.0:
            raise HeronError(f"cql: gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise HeronError(f"cql: tau must be in (0, 1], got {self.tau}")
        if self.cql_alpha < 0:
            raise HeronError(f"cql: cql_alpha must be >= 0, got {self.cql_alpha} (0 is plain SAC on the dataset)")
        if self.cql_temperature <= 0 or self.initial_alpha <= 0:
            raise HeronError("cql: cql_temperature and initial_alpha must be > 0")
        if self.clip_diff_min > self.clip_diff_max:
            raise HeronError(f"cql: clip_diff_min {self.clip_diff_min} exceeds clip_diff_max {self.clip_diff_max}")
        if self.num_critics < 1:
            raise HeronError(f"cql: num_critics must be >= 1, got {self.num_critics}; use 2 for clipped double-Q")
        if self.critic_subsample is not None and self.critic_subsample < 1:
            raise HeronError(f"cql: critic_subsample must be >= 1 or none, got {self.critic_subsample}")
        if self.online_cql_alpha is not None and self.online_cql_alpha < 0:
            raise HeronError(f"cql: online_cql_alpha must be >= 0 or none, got {self.online_cql_alpha}")
        if self.log_std_min > self.log_std_max or self.obs_std_eps < 0:
            raise HeronError("cql: log_std_min must not exceed log_std_max; obs_std_eps must be >= 0")
        if self.weight_init not in INITS:
            raise HeronError(f"cql: weight_init must be one of {', '.join(INITS)}, got {self.weight_init!r}")


@struct.dataclass
class State:
    """Everything CQL learns, as a pytree; module definitions and bounds are static."""

    actor_params: FrozenDict
    critic_params: FrozenDict
    target_critic_params: FrozenDict
    log_alpha: jax.Array
    """log of the entropy temperature α."""
    log_alpha_prime: jax.Array
    """log of the Lagrange multiplier α' (stays at its initial value unless lagrange)."""
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    alpha_prime_opt_state: optax.OptState
    obs_mean: jax.Array
    """[obs_dim] state normaliser mean (0 unless normalize_obs)."""
    obs_std: jax.Array
    """[obs_dim] state normaliser scale σ + eps (1 unless normalize_obs)."""
    step: jax.Array
    """Gradient steps taken (int32)."""
    actor: GaussianHead = struct.field(pytree_node=False)
    critic: Ensemble = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)


def _optimizers(cfg: Config) -> tuple[optax.GradientTransformation, ...]:
    return optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.alpha_lr), optax.adam(cfg.critic_lr)


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    low, high = box_bounds(act_space, "cql")
    obs_dim, act_dim = int(np.prod(obs_space.shape)), len(low)
    actor = GaussianHead(cfg.actor_hidden, act_dim, cfg.activation, cfg.log_std_min, cfg.log_std_max,
                         cfg.weight_init)
    critic = Ensemble(QNetwork, cfg.num_critics, FrozenDict(hidden=cfg.critic_hidden, act=cfg.activation,
                                                            layer_norm=cfg.critic_layer_norm,
                                                            weight_init=cfg.weight_init))
    k_actor, k_critic = jax.random.split(key)
    obs, action = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, act_dim), jnp.float32)
    actor_params = actor.init(k_actor, obs)
    critic_params = critic.init(k_critic, obs, action)
    log_alpha = jnp.asarray(np.log(cfg.initial_alpha), jnp.float32)
    log_alpha_prime = jnp.asarray(cfg.initial_log_alpha_prime, jnp.float32)
    actor_tx, critic_tx, alpha_tx, alpha_prime_tx = _optimizers(cfg)
    obs_mean, obs_std = dataset_obs_normalizer(dataset_stats, obs_dim, cfg.normalize_obs, cfg.obs_std_eps)
    return State(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=jax.tree.map(jnp.copy, critic_params),
        log_alpha=log_alpha,
        log_alpha_prime=log_alpha_prime,
        actor_opt_state=actor_tx.init(actor_params),
        critic_opt_state=critic_tx.init(critic_params),
        alpha_opt_state=alpha_tx.init(log_alpha),
        alpha_prime_opt_state=alpha_prime_tx.init(log_alpha_prime),
        obs_mean=obs_mean,
        obs_std=obs_std,
        step=jnp.zeros((), jnp.int32),
        actor=actor,
        critic=critic,
        action_low=low,
        action_high=high,
    )


# ----------------------------------------------------------------------------- losses


def uniform_log_density(act_dim: int) -> float:
    """log μ(a) of Unif([-1, 1]^|A|): log (1/2)^|A| = −|A| log 2 (the authors' `random_density`)."""
    return float(act_dim * np.log(0.5))


def cql_logsumexp(q_rand, q_next_pi, q_cur_pi, log_pi_next, log_pi_cur, act_dim, temperature, q_data=None,
                  lower_bound=None):
    """Importance-sampled estimate of log ∫ exp Q(s, a) da, per critic and state (CQL(H), app. F):

        T · logsumexp_j( [Q(s, a_j^unif) − log μ(a_j^unif),
                          Q(s, a_j^{π(s')}) − log π(a_j|s'),
                          Q(s, a_j^{π(s)}) − log π(a_j|s)] / T )      over the 3N samples j.

    q_*: [..., N] values at s; log_pi_*: [..., N] (held constant). With `q_data` ([...]) the
    samples are used without density correction and the dataset action joins them (the
    non-importance-sampled variant of the authors' code). With `lower_bound` (broadcastable to
    q_*, held constant) the policy samples' values are calibrated first (Cal-QL):
    Q(s, a^π) ← max(Q(s, a^π), V(s)); the uniform samples are not bounded.
    """
    if lower_bound is not None:
        bound = jax.lax.stop_gradient(lower_bound)
        q_next_pi, q_cur_pi = jnp.maximum(q_next_pi, bound), jnp.maximum(q_cur_pi, bound)
    if q_data is None:
        cat = jnp.concatenate([q_rand - uniform_log_density(act_dim),
                               q_next_pi - jax.lax.stop_gradient(log_pi_next),
                               q_cur_pi - jax.lax.stop_gradient(log_pi_cur)], axis=-1)
    else:
        cat = jnp.concatenate([q_rand, q_data[..., None], q_next_pi, q_cur_pi], axis=-1)
    return temperature * jax.nn.logsumexp(cat / temperature, axis=-1)


def cql_gap(ood, q_data, clip_min=-np.inf, clip_max=np.inf):
    """Δ_i = E_B[clip(logsumexp_i(s) − Q_i(s, a_data))]: [N_critics, B] -> [N_critics]."""
    return jnp.mean(jnp.clip(ood - q_data, clip_min, clip_max), axis=-1)


def cql_penalty(gap, cql_alpha, alpha_prime=None, target_action_gap=0.0):
    """Σ_i α_cql Δ_i (fixed weight), or Σ_i α' α_cql (Δ_i − τ) with α' held constant (Lagrange)."""
    if alpha_prime is None:
        return cql_alpha * jnp.sum(gap)
    return jnp.sum(jax.lax.stop_gradient(alpha_prime) * cql_alpha * (gap - target_action_gap))


def alpha_prime_value(log_alpha_prime):
    """α' = clip(exp(log α'), 0, 1e6)."""
    return jnp.clip(jnp.exp(log_alpha_prime), 0.0, ALPHA_PRIME_MAX)


def alpha_prime_loss(log_alpha_prime, gap, cql_alpha, target_action_gap):
    """J(α') = −mean_i α' α_cql (Δ_i − τ), Δ held constant: descent raises α' while the gap
    exceeds τ and lowers it below (the dual step of CQL-Lagrange)."""
    alpha_prime = alpha_prime_value(log_alpha_prime)
    return -jnp.mean(alpha_prime * cql_alpha * (jax.lax.stop_gradient(gap) - target_action_gap))


def td_loss(q, target):
    """Σ_i E_B[(Q_i(s, a) − y)²]; q: [N, B], y: [B] (no gradient through y; CORL's summed MSEs)."""
    return jnp.sum(jnp.mean((q - jax.lax.stop_gradient(target)) ** 2, axis=-1))


def cql_target(reward, terminated, next_q, gamma, next_log_prob=None, alpha=0.0):
    """y = r + γ (1 − d) (min_i Q̄_i(s', a') [− α log π(a'|s') if backup_entropy]); next_q: [N, B]."""
    value = jnp.min(next_q, axis=0)
    if next_log_prob is not None:
        value = value - alpha * next_log_prob
    return reward + gamma * (1.0 - terminated) * value


def actor_loss(log_prob, q, alpha):
    """J_π = E_B[α log π(ã|s) − min_i Q_i(s, ã)], ã ~ π(·|s) reparameterised (SAC's)."""
    return jnp.mean(alpha * log_prob - jnp.min(q, axis=0))


def temperature_loss(log_alpha, log_prob, target_entropy):
    """J(α) = −E_B[log α (log π(ã|s) + H̄)] (CORL / authors' code: on log α, log π held fixed)."""
    return -jnp.mean(log_alpha * (jax.lax.stop_gradient(log_prob) + target_entropy))


# ----------------------------------------------------------------------------- update


def _sample(key, mean, log_std, n):
    """n tanh-Gaussian samples per state: [B, A] -> ([B, n, A], [B, n])."""
    shape = (mean.shape[0], n, mean.shape[-1])
    return tanh_gaussian_sample(key, jnp.broadcast_to(mean[:, None], shape), jnp.broadcast_to(log_std[:, None], shape))


def update(state: State, batch: Transition, key: jax.Array, cfg: Config, lower_bound=None) -> tuple[State, dict]:
    """Temperature, policy and critic (with α') losses at the current parameters, one Adam step
    each, then the Polyak target update (CORL's order). `lower_bound` ([B], Cal-QL's V(s); None for
    CQL) bounds the penalty's policy-action values from below (see `cql_logsumexp`)."""
    actor_tx, critic_tx, alpha_tx, alpha_prime_tx = _optimizers(cfg)
    k_pi, k_next, k_rand, k_cur_n, k_next_n = jax.random.split(key, 5)
    k_sub = jax.random.fold_in(key, 1)  # REDQ subsample draw (leaves the other streams as they were)
    obs, next_obs = normalized_obs(state, batch.obs), normalized_obs(state, batch.next_obs)
    batch_size = obs.shape[0]
    action = to_unit(batch.action.reshape(batch_size, -1), state.action_low, state.action_high)
    act_dim = action.shape[-1]
    reward = batch.reward.astype(jnp.float32).reshape(-1)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)
    target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
    alpha = jnp.exp(state.log_alpha) if cfg.autotune else jnp.float32(cfg.initial_alpha)
    n = cfg.num_sampled_actions

    # Policy and temperature (critic parameters are constants here).
    def actor_objective(params):
        mean, log_std = state.actor.apply(params, obs)
        pi_action, log_prob = tanh_gaussian_sample(k_pi, mean, log_std)
        return actor_loss(log_prob, state.critic.apply(state.critic_params, obs, pi_action), alpha), log_prob

    (pi_loss, log_prob), grads = jax.value_and_grad(actor_objective, has_aux=True)(state.actor_params)
    updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)

    log_alpha, alpha_opt_state = state.log_alpha, state.alpha_opt_state
    if cfg.autotune:
        grad = jax.grad(temperature_loss)(state.log_alpha, log_prob, target_entropy)
        updates, alpha_opt_state = alpha_tx.update(grad, state.alpha_opt_state, state.log_alpha)
        log_alpha = optax.apply_updates(state.log_alpha, updates)

    # Policy samples for the backup and the penalty, from the pre-update policy (no gradient).
    mean, log_std = state.actor.apply(state.actor_params, jnp.concatenate([obs, next_obs]))
    mean, log_std = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(log_std)
    cur_mean, cur_log_std, next_mean, next_log_std = mean[:batch_size], log_std[:batch_size], mean[batch_size:], log_std[batch_size:]

    # Backup: min of the twin target critics at a' ~ π(·|s') (or the max over N such a').
    if cfg.max_target_backup:
        next_action, next_log_prob = _sample(k_next, next_mean, next_log_std, n)  # [B, n, A], [B, n]
        next_obs_rep = jnp.broadcast_to(next_obs[:, None], (batch_size, n, next_obs.shape[-1]))
        next_q_all = state.critic.apply(state.target_critic_params, next_obs_rep, next_action)  # [N, B, n]
        if cfg.critic_subsample is not None:
            next_q_all = next_q_all[jax.random.randint(k_sub, (cfg.critic_subsample,), 0, cfg.num_critics)]
        next_q_all = jnp.min(next_q_all, axis=0)
        best = jnp.argmax(next_q_all, axis=-1)
        next_q = jnp.take_along_axis(next_q_all, best[:, None], axis=-1)[None, :, 0]
        next_log_prob = jnp.take_along_axis(next_log_prob, best[:, None], axis=-1)[:, 0]
    else:
        next_action, next_log_prob = tanh_gaussian_sample(k_next, next_mean, next_log_std)
        next_q = state.critic.apply(state.target_critic_params, next_obs, next_action)
        if cfg.critic_subsample is not None:
            next_q = next_q[jax.random.randint(k_sub, (cfg.critic_subsample,), 0, cfg.num_critics)]
    target = cql_target(reward, terminated, next_q, cfg.gamma,
                        next_log_prob if cfg.backup_entropy else None, alpha)

    # Penalty samples, all evaluated at s: uniform, π(·|s'), π(·|s) — one fused forward pass.
    rand_action = jax.random.uniform(k_rand, (batch_size, n, act_dim), jnp.float32, -1.0, 1.0)
    cur_action, cur_log_pi = _sample(k_cur_n, cur_mean, cur_log_std, n)
    next_action_n, next_log_pi = _sample(k_next_n, next_mean, next_log_std, n)
    sampled = jnp.concatenate([rand_action, next_action_n, cur_action], axis=1)  # [B, 3n, A]
    obs_rep = jnp.broadcast_to(obs[:, None], (batch_size, 3 * n, obs.shape[-1]))
    alpha_prime = alpha_prime_value(state.log_alpha_prime) if cfg.lagrange else None
    bound = None if lower_bound is None else jnp.asarray(lower_bound, jnp.float32).reshape(1, batch_size, 1)

    def critic_objective(params):
        q = state.critic.apply(params, obs, action)  # [N, B]
        if cfg.cql_alpha == 0:  # SAC: no penalty, no sampled actions to evaluate (WSRL's online phase)
            bellman = td_loss(q, target)
            zero = jnp.zeros((), jnp.float32)
            return bellman, (q, jnp.zeros((q.shape[0],), jnp.float32), bellman, zero, zero, zero)
        q_sampled = state.critic.apply(params, obs_rep, sampled)  # [N, B, 3n]
        q_rand, q_next_pi, q_cur_pi = q_sampled[..., :n], q_sampled[..., n:2 * n], q_sampled[..., 2 * n:]
        ood = cql_logsumexp(q_rand, q_next_pi, q_cur_pi, next_log_pi, cur_log_pi, act_dim, cfg.cql_temperature,
                            q_data=None if cfg.importance_sample else q, lower_bound=bound)
        gap = cql_gap(ood, q, cfg.clip_diff_min, cfg.clip_diff_max)
        bellman = td_loss(q, target)
        penalty = cql_penalty(gap, cfg.cql_alpha, alpha_prime, cfg.target_action_gap)
        # Cal-QL's bound rate: the share of policy-action values the bound lifted
        bound_rate = jnp.zeros((), jnp.float32) if bound is None else jnp.mean(q_sampled[..., n:] < bound)
        return bellman + penalty, (q, gap, bellman, penalty, jnp.mean(q_rand), bound_rate)

    (q_loss, (q, gap, bellman, penalty, q_rand_mean, bound_rate)), grads = jax.value_and_grad(
        critic_objective, has_aux=True)(state.critic_params)
    updates, critic_opt_state = critic_tx.update(grads, state.critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)

    log_alpha_prime, alpha_prime_opt_state = state.log_alpha_prime, state.alpha_prime_opt_state
    metrics = {} if lower_bound is None else {"bound_rate": bound_rate}
    if cfg.lagrange:
        ap_loss, grad = jax.value_and_grad(alpha_prime_loss)(state.log_alpha_prime, gap, cfg.cql_alpha,
                                                             cfg.target_action_gap)
        updates, alpha_prime_opt_state = alpha_prime_tx.update(grad, state.alpha_prime_opt_state, state.log_alpha_prime)
        log_alpha_prime = optax.apply_updates(state.log_alpha_prime, updates)
        metrics.update(alpha_prime=alpha_prime, alpha_prime_loss=ap_loss)

    new_state = state.replace(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=ema_update(state.target_critic_params, critic_params, cfg.tau),
        log_alpha=log_alpha,
        log_alpha_prime=log_alpha_prime,
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        alpha_opt_state=alpha_opt_state,
        alpha_prime_opt_state=alpha_prime_opt_state,
        step=state.step + 1,
    )
    metrics.update(critic_loss=q_loss, td_loss=bellman, cql_penalty=penalty, cql_gap=jnp.mean(gap),
                   actor_loss=pi_loss, alpha=alpha, entropy=-jnp.mean(log_prob), q_mean=jnp.mean(q),
                   q_random_mean=q_rand_mean, target_mean=jnp.mean(target))
    return new_state, metrics


# ----------------------------------------------------------------------------- act


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] raw observations -> [B, act_dim] in env units: tanh(μ) if deterministic, else a sample."""
    mean, log_std = state.actor.apply(state.actor_params, normalized_obs(state, obs))
    sample, _ = tanh_gaussian_sample(key, mean, log_std)
    return from_unit(jnp.where(deterministic, jnp.tanh(mean), sample), state.action_low, state.action_high)


def online_config(cfg: Config) -> Config:
    """The config CQL continues with online: α_cql ← online_cql_alpha unless that is None."""
    return cfg if cfg.online_cql_alpha is None else dataclasses.replace(cfg, cql_alpha=cfg.online_cql_alpha)


register(AgentSpec(
    name="cql",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="Conservative Q-Learning: SAC plus an importance-sampled log-sum-exp penalty on Q (offline, continuous).",
    finetune=FinetuneRule(online_config=online_config),
))
