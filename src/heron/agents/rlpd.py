"""RLPD (Ball, Smith, Kostrikov & Levine 2023, "Efficient Online Reinforcement Learning with
Offline Data"), the learner SERL, HIL-SERL and FastRLAP build on.

Online SAC that uses the offline data from the first step, with no pre-training:

* symmetric sampling: every batch is half offline data, half online data (the `FinetuneRule`'s
  offline_fraction = 0.5; the offline rows are never overwritten);
* LayerNorm in the critics, which bounds Q on out-of-distribution actions;
* a large ensemble: E = 10 critics; backups take the minimum of M = 2 target critics drawn at
  random per update (REDQ), the policy maximises the ensemble mean;
* a high update-to-data ratio: one `update` call takes a batch of G × B rows and makes G critic
  steps on consecutive B-row slices, then one policy and one temperature step (the authors' code).

States are used as they come (optionally standardised with the offline data's statistics).
SAC's entropy backup is kept, the target entropy is −|A|/2, and the first `warmup_steps` env steps
(10 000, `start_training`) take uniform-random actions. With `heron train rlpd --dataset D --env E
--steps 0 --online-steps M` nothing is pre-trained (the paper's setting); `--steps N` first runs N
offline updates of the same learner on the offline data alone (the code's `pretrain_steps`).
"""

from dataclasses import dataclass

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.core import FrozenDict

from heron.agents.registry import AgentSpec, DatasetStats, FinetuneRule, register
from heron.agents.sac import critic_loss, temperature_loss
from heron.core.actions import box_bounds, from_unit, to_unit
from heron.core.distributions import tanh_gaussian_sample
from heron.core.networks import Ensemble, GaussianHead, QNetwork
from heron.core.normalization import dataset_obs_normalizer, ema_update, normalized_obs
from heron.errors import HeronError
from heron.types import Transition


@dataclass(frozen=True)
class Config:
    """RLPD hyperparameters.

    Defaults are the authors' (github.com/ikostrikov/rlpd: configs/rlpd_config.py on top of
    sac_config.py / td_config.py, and train_finetuning.py): E = 10 critics, M = 2, LayerNorm critics,
    2x256 ReLU, Adam 3e-4 everywhere, γ = 0.99, τ = 0.005, initial temperature 1, target entropy
    −|A|/2, entropy backup, batch B = 256, offline ratio 0.5, 10 000 random steps before training.
    G = 20 is the paper's locomotion setting (the script's default is 1).
    """

    batch_size: int = 20 * 256
    """Rows per `update` call (one call per env step): G slices of B = batch_size / G rows (20 x 256)."""
    utd_ratio: int = 20
    """G: critic steps per `update` call, each on its own B-row slice, then one policy step."""
    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Target critic rate: Q̄ ← τ Q + (1 − τ) Q̄ after every critic step."""
    actor_lr: float = 3e-4
    """Adam step size of the policy."""
    critic_lr: float = 3e-4
    """Adam step size of the critics."""
    alpha_lr: float = 3e-4
    """Adam step size of the temperature (as log α)."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each critic."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    num_critics: int = 10
    """E: critics in the ensemble."""
    critic_subsample: int = 2
    """M: target critics whose minimum forms the backup, drawn per critic step (REDQ)."""
    critic_layer_norm: bool = True
    """LayerNorm after each hidden layer of the critics (RLPD's key design choice)."""
    backup_entropy: bool = True
    """Subtract γ α log π(a'|s') in the backup (SAC's soft backup)."""
    initial_alpha: float = 1.0
    """Initial temperature α₀."""
    target_entropy: float | None = None
    """Target entropy H̄; None means −|A|/2 (the authors' default)."""
    log_std_min: float = -20.0
    """Lower clip of the policy's log σ."""
    log_std_max: float = 2.0
    """Upper clip of the policy's log σ."""
    normalize_obs: bool = False
    """Standardise states with the offline data's mean and std (off in the paper)."""
    obs_std_eps: float = 1e-3
    """eps added to the data's state std when normalize_obs."""

    def __post_init__(self):
        if self.utd_ratio < 1 or self.batch_size < self.utd_ratio or self.batch_size % self.utd_ratio:
            raise HeronError(f"rlpd: batch_size must be a positive multiple of utd_ratio (G slices of B rows), got "
                             f"batch_size={self.batch_size}, utd_ratio={self.utd_ratio}")
        if not 1 <= self.critic_subsample <= self.num_critics:
            raise HeronError(f"rlpd: critic_subsample must be in [1, num_critics={self.num_critics}], got "
                             f"{self.critic_subsample}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0 or self.initial_alpha <= 0:
            raise HeronError("rlpd: gamma must be in [0, 1], tau in (0, 1], initial_alpha > 0")


@struct.dataclass
class State:
    actor_params: FrozenDict
    critic_params: FrozenDict
    target_critic_params: FrozenDict
    log_alpha: jax.Array
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    obs_mean: jax.Array
    """[obs_dim] state normaliser mean (0 unless normalize_obs)."""
    obs_std: jax.Array
    """[obs_dim] state normaliser scale (1 unless normalize_obs)."""
    step: jax.Array
    """`update` calls made (int32)."""
    actor: GaussianHead = struct.field(pytree_node=False)
    critic: Ensemble = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)


def _optimizers(cfg: Config):
    return optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.alpha_lr)


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    low, high = box_bounds(act_space, "rlpd")
    obs_dim, act_dim = int(np.prod(obs_space.shape)), len(low)
    actor = GaussianHead(cfg.actor_hidden, act_dim, cfg.activation, cfg.log_std_min, cfg.log_std_max)
    critic = Ensemble(QNetwork, cfg.num_critics,
                      FrozenDict(hidden=cfg.critic_hidden, act=cfg.activation, layer_norm=cfg.critic_layer_norm))
    k_actor, k_critic = jax.random.split(key)
    obs, action = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, act_dim), jnp.float32)
    actor_params, critic_params = actor.init(k_actor, obs), critic.init(k_critic, obs, action)
    log_alpha = jnp.asarray(np.log(cfg.initial_alpha), jnp.float32)
    actor_tx, critic_tx, alpha_tx = _optimizers(cfg)
    obs_mean, obs_std = dataset_obs_normalizer(dataset_stats, obs_dim, cfg.normalize_obs, cfg.obs_std_eps)
    return State(actor_params=actor_params, critic_params=critic_params, obs_mean=obs_mean, obs_std=obs_std,
                 target_critic_params=jax.tree.map(jnp.copy, critic_params), log_alpha=log_alpha,
                 actor_opt_state=actor_tx.init(actor_params), critic_opt_state=critic_tx.init(critic_params),
                 alpha_opt_state=alpha_tx.init(log_alpha), step=jnp.zeros((), jnp.int32), actor=actor, critic=critic,
                 action_low=low, action_high=high)


def redq_target(reward, terminated, next_q, next_log_prob, alpha, gamma, backup_entropy: bool):
    """y = r + γ (1 − d) (min_{i ∈ M} Q̄_i(s', a') − [α log π(a'|s')]); next_q: [M, B] (already subsampled)."""
    value = jnp.min(next_q, axis=0)
    if backup_entropy:
        value = value - alpha * next_log_prob
    return reward + gamma * (1.0 - terminated) * value


def ensemble_actor_loss(log_prob, q, alpha):
    """J_π = E_B[α log π(ã|s) − mean_i Q_i(s, ã)] (RLPD: the ensemble mean, not the minimum)."""
    return jnp.mean(alpha * log_prob - jnp.mean(q, axis=0))


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """G critic steps on consecutive B-row slices of the G×B batch, then one policy and one
    temperature step on the last slice."""
    actor_tx, critic_tx, alpha_tx = _optimizers(cfg)
    g, b = cfg.utd_ratio, cfg.batch_size // cfg.utd_ratio
    obs = normalized_obs(state, batch.obs).reshape(g, b, -1)
    next_obs = normalized_obs(state, batch.next_obs).reshape(g, b, -1)
    action = to_unit(batch.action.reshape(g * b, -1), state.action_low, state.action_high).reshape(g, b, -1)
    reward = batch.reward.astype(jnp.float32).reshape(g, b)
    terminated = batch.terminated.astype(jnp.float32).reshape(g, b)
    alpha = jnp.exp(state.log_alpha)
    target_entropy = -0.5 * action.shape[-1] if cfg.target_entropy is None else cfg.target_entropy
    k_critic, k_pi = jax.random.split(key)

    def critic_step(carry, xs):
        params, target_params, opt_state = carry
        o, a, r, d, o2, k = xs
        k_next, k_sub = jax.random.split(k)
        mean, log_std = state.actor.apply(state.actor_params, o2)
        a2, log_p2 = tanh_gaussian_sample(k_next, mean, log_std)
        idx = jax.random.choice(k_sub, cfg.num_critics, (cfg.critic_subsample,), replace=False)
        next_q = state.critic.apply(target_params, o2, a2)[idx]
        y = redq_target(r, d, next_q, log_p2, alpha, cfg.gamma, cfg.backup_entropy)

        def objective(p):
            q = state.critic.apply(p, o, a)
            return critic_loss(q, y), q

        (loss, q), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = critic_tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, ema_update(target_params, params, cfg.tau), opt_state), (loss, jnp.mean(q), jnp.mean(y))

    (critic_params, target_params, critic_opt_state), (losses, q_means, y_means) = jax.lax.scan(
        critic_step, (state.critic_params, state.target_critic_params, state.critic_opt_state),
        (obs, action, reward, terminated, next_obs, jax.random.split(k_critic, g)))

    def actor_objective(params):
        mean, log_std = state.actor.apply(params, obs[-1])
        pi_action, log_prob = tanh_gaussian_sample(k_pi, mean, log_std)
        return ensemble_actor_loss(log_prob, state.critic.apply(critic_params, obs[-1], pi_action), alpha), log_prob

    (pi_loss, log_prob), grads = jax.value_and_grad(actor_objective, has_aux=True)(state.actor_params)
    updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)
    grad = jax.grad(temperature_loss)(state.log_alpha, log_prob, target_entropy)
    updates, alpha_opt_state = alpha_tx.update(grad, state.alpha_opt_state, state.log_alpha)
    log_alpha = optax.apply_updates(state.log_alpha, updates)

    new_state = state.replace(actor_params=actor_params, critic_params=critic_params,
                              target_critic_params=target_params, log_alpha=log_alpha,
                              actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state,
                              alpha_opt_state=alpha_opt_state, step=state.step + 1)
    return new_state, {"critic_loss": losses[-1], "actor_loss": pi_loss, "alpha": alpha,
                       "entropy": -jnp.mean(log_prob), "q_mean": q_means[-1], "target_mean": y_means[-1]}


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] -> [B, act_dim] in env units: tanh(μ) if deterministic, else a sample."""
    mean, log_std = state.actor.apply(state.actor_params, normalized_obs(state, obs))
    sample, _ = tanh_gaussian_sample(key, mean, log_std)
    return from_unit(jnp.where(deterministic, jnp.tanh(mean), sample), state.action_low, state.action_high)


register(AgentSpec(
    name="rlpd",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="RLPD: online SAC on 50/50 offline/online batches, LayerNorm critic ensemble, high UTD (offline→online).",
    finetune=FinetuneRule(keep_offline_data=True, offline_fraction=0.5, warmup_steps=10_000, warmup_random=True,
                          updates_per_step=1,
                          source="RLPD (Ball et al. 2023): offline data kept, 50/50 symmetric batches, 10 000 random "
                                 "warm-up steps, G critic steps per env step inside each update (authors' code)"),
))
