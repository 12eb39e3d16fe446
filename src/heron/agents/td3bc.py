"""TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning").

TD3 with two changes for learning from a fixed dataset: the actor maximises
λ Q(s, π(s)) − (π(s) − a)², a behaviour-cloning term with the Q term's scale set per batch by
λ = α / mean|Q(s, π(s))|, and states are standardised with the dataset's mean and std.
Everything else is TD3 (clipped double-Q with a fused twin `Ensemble`, target policy
smoothing, delayed actor and target updates); the critic-side functions are TD3's own.

The normaliser (μ, σ + eps) comes from `init(..., dataset_stats)` and lives in the State as
leaves, so `act` standardises observations itself and a checkpoint carries it.
Networks work in normalised action units [-1, 1].
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
from heron.agents.td3 import critic_loss, first_critic, target_policy_action, td3_target
from heron.core.actions import box_bounds, from_unit, to_unit
from heron.core.networks import INITS, DeterministicActor, Ensemble, QNetwork
from heron.core.normalization import dataset_obs_normalizer, ema_update, normalized_obs
from heron.errors import HeronError
from heron.types import Transition


@dataclass(frozen=True)
class Config:
    """TD3+BC hyperparameters.

    Defaults are the paper's (Fujimoto & Gu 2021, Table 4 / §5) and the authors' code
    (github.com/sfujim/TD3_BC, main.py and TD3_BC.py): α = 2.5, states normalised with
    std + 1e-3, and TD3's own settings: 2x256 ReLU, Adam 3e-4, batch 256, γ = 0.99, τ = 0.005,
    σ̃ = 0.2, c = 0.5, d = 2, 1M gradient steps.
    """

    batch_size: int = 256
    """Dataset transitions per gradient step N."""
    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Target update rate τ: θ' ← τ θ + (1 − τ) θ' (on delayed steps)."""
    alpha: float = 2.5
    """α in λ = α / mean|Q(s, π(s))|: weight of the Q term against behaviour cloning (α → 0 is BC)."""
    actor_lr: float = 3e-4
    """Adam step size of the actor π_φ."""
    critic_lr: float = 3e-4
    """Adam step size of the critics Q_θi."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each critic."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    num_critics: int = 2
    """Number of critics whose minimum forms the target (clipped double-Q)."""
    critic_layer_norm: bool = False
    """LayerNorm after each hidden layer of the critics (off in the paper)."""
    policy_noise: float = 0.2
    """Target policy smoothing noise σ̃ (fraction of the action half-range)."""
    noise_clip: float = 0.5
    """Target policy noise clip c."""
    policy_delay: int = 2
    """Policy delay d: actor and target updates once every d critic updates."""
    normalize_obs: bool = True
    """State normalisation s ← (s − μ) / (σ + eps) with the dataset's mean μ and std σ (the paper's second change)."""
    obs_std_eps: float = 1e-3
    """eps added to the dataset's state std (authors' code: 1e-3)."""
    exploration_noise: float = 0.1
    """Std σ of the Gaussian noise `act` adds when not deterministic (TD3's 0.1; for acting online after training)."""
    weight_init: str = "torch"
    """Initialisation of every layer (heron.core.networks.INITS): "torch", PyTorch's nn.Linear default, as in the
    authors' code; "lecun" is Flax's. It matters at small budgets: after 5k updates (64x64, 5 seeds) on
    small/hopper-{medium,medium-replay} and small/halfcheetah-{medium,medium-replay} "torch" scored 81.6, 73.0,
    23.8, 32.3 and "lecun" 78.4, 42.7, 22.7, 24.1 (BENCHMARKS.md, MuJoCo tasks)."""

    def __post_init__(self):
        if self.batch_size < 1:
            raise HeronError(f"td3bc: batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.gamma <= 1.0:
            raise HeronError(f"td3bc: gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise HeronError(f"td3bc: tau must be in (0, 1], got {self.tau}")
        if self.alpha < 0:
            raise HeronError(f"td3bc: alpha must be >= 0, got {self.alpha} (alpha=0 is behaviour cloning)")
        if self.num_critics < 1:
            raise HeronError(f"td3bc: num_critics must be >= 1, got {self.num_critics}; use 2 for clipped double-Q")
        if self.policy_delay < 1:
            raise HeronError(f"td3bc: policy_delay must be >= 1, got {self.policy_delay}")
        if self.weight_init not in INITS:
            raise HeronError(f"td3bc: weight_init must be one of {', '.join(INITS)}, got {self.weight_init!r}")
        if min(self.policy_noise, self.noise_clip, self.exploration_noise, self.obs_std_eps) < 0:
            raise HeronError("td3bc: policy_noise, noise_clip, exploration_noise and obs_std_eps must be >= 0")


@struct.dataclass
class State:
    """Everything TD3+BC learns, as a pytree; module definitions, bounds and σ are static."""

    actor_params: FrozenDict
    critic_params: FrozenDict
    target_actor_params: FrozenDict
    target_critic_params: FrozenDict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    obs_mean: jax.Array
    """[obs_dim] state normaliser mean μ (dataset statistics; 0 when disabled)."""
    obs_std: jax.Array
    """[obs_dim] state normaliser scale σ + eps (1 when disabled)."""
    step: jax.Array
    """Critic updates taken (int32); the actor moves when step % d == 0."""
    last_actor_loss: jax.Array
    """Actor loss of the latest delayed step (reported between them)."""
    last_lmbda: jax.Array
    """λ of the latest delayed step."""
    last_bc_mse: jax.Array
    """Behaviour-cloning term (π(s) − a)² of the latest delayed step."""
    actor: DeterministicActor = struct.field(pytree_node=False)
    critic: Ensemble = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)
    exploration_noise: float = struct.field(pytree_node=False)


def _optimizers(cfg: Config) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    return optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr)


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    low, high = box_bounds(act_space, "td3bc")
    obs_dim, act_dim = int(np.prod(obs_space.shape)), len(low)
    actor = DeterministicActor(cfg.actor_hidden, act_dim, cfg.activation, weight_init=cfg.weight_init)
    critic = Ensemble(QNetwork, cfg.num_critics, FrozenDict(hidden=cfg.critic_hidden, act=cfg.activation,
                                                            layer_norm=cfg.critic_layer_norm, weight_init=cfg.weight_init))
    k_actor, k_critic = jax.random.split(key)
    obs, action = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, act_dim), jnp.float32)
    actor_params = actor.init(k_actor, obs)
    critic_params = critic.init(k_critic, obs, action)
    actor_tx, critic_tx = _optimizers(cfg)
    obs_mean, obs_std = dataset_obs_normalizer(dataset_stats, obs_dim, cfg.normalize_obs, cfg.obs_std_eps)
    zero = jnp.zeros((), jnp.float32)
    return State(
        actor_params=actor_params,
        critic_params=critic_params,
        target_actor_params=jax.tree.map(jnp.copy, actor_params),
        target_critic_params=jax.tree.map(jnp.copy, critic_params),
        actor_opt_state=actor_tx.init(actor_params),
        critic_opt_state=critic_tx.init(critic_params),
        obs_mean=obs_mean,
        obs_std=obs_std,
        step=jnp.zeros((), jnp.int32),
        last_actor_loss=zero,
        last_lmbda=zero,
        last_bc_mse=zero,
        actor=actor,
        critic=critic,
        action_low=low,
        action_high=high,
        exploration_noise=float(cfg.exploration_noise),
    )


# ----------------------------------------------------------------------------- losses
# The critic's target and loss are TD3's (`td3_target`, `critic_loss`, `target_policy_action`).


def bc_lambda(q, alpha):
    """λ = α / ((1/N) Σ_i |Q(s_i, π(s_i))|), held constant (no gradient flows through λ)."""
    return alpha / jnp.mean(jnp.abs(jax.lax.stop_gradient(q)))


def actor_loss(q1, pi_action, action, alpha):
    """π = argmax E_B[λ Q_θ1(s, π(s)) − (π(s) − a)²], as a loss −λ mean(Q) + mean((π(s) − a)²).

    The squared error is averaged over batch and action dimensions (the authors' F.mse_loss).
    Returns (loss, λ, behaviour-cloning term).
    """
    lmbda = bc_lambda(q1, alpha)
    bc = jnp.mean((pi_action - action) ** 2)
    return -lmbda * jnp.mean(q1) + bc, (lmbda, bc)


# ----------------------------------------------------------------------------- update


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """One critic step; on every d-th call also one actor step and the Polyak target updates."""
    actor_tx, critic_tx = _optimizers(cfg)
    obs, next_obs = normalized_obs(state, batch.obs), normalized_obs(state, batch.next_obs)
    action = to_unit(batch.action.reshape(obs.shape[0], -1), state.action_low, state.action_high)
    reward = batch.reward.astype(jnp.float32).reshape(-1)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)

    # Critic (TD3's).
    noise = cfg.policy_noise * jax.random.normal(key, action.shape, jnp.float32)
    next_action = target_policy_action(state.actor.apply(state.target_actor_params, next_obs), noise, cfg.noise_clip)
    next_q = state.critic.apply(state.target_critic_params, next_obs, next_action)
    target = td3_target(reward, terminated, next_q, cfg.gamma)

    def critic_objective(params):
        q = state.critic.apply(params, obs, action)
        return critic_loss(q, target), q

    (q_loss, q), grads = jax.value_and_grad(critic_objective, has_aux=True)(state.critic_params)
    updates, critic_opt_state = critic_tx.update(grads, state.critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)
    step = state.step + 1

    # Delayed actor (against the updated first critic, as the authors' code) and targets.
    q1_module, q1_params = first_critic(state.critic, critic_params)

    def actor_objective(params):
        pi_action = state.actor.apply(params, obs)
        return actor_loss(q1_module.apply(q1_params, obs, pi_action), pi_action, action, cfg.alpha)

    def delayed_step(_):
        (pi_loss, (lmbda, bc)), grads = jax.value_and_grad(actor_objective, has_aux=True)(state.actor_params)
        updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, updates)
        return (actor_params, actor_opt_state,
                ema_update(state.target_actor_params, actor_params, cfg.tau),
                ema_update(state.target_critic_params, critic_params, cfg.tau), pi_loss, lmbda, bc)

    def skip(_):
        return (state.actor_params, state.actor_opt_state, state.target_actor_params, state.target_critic_params,
                state.last_actor_loss, state.last_lmbda, state.last_bc_mse)

    if cfg.policy_delay == 1:
        delayed = delayed_step(None)
    else:
        delayed = jax.lax.cond(step % cfg.policy_delay == 0, delayed_step, skip, None)
    actor_params, actor_opt_state, target_actor_params, target_critic_params, pi_loss, lmbda, bc = delayed

    new_state = state.replace(
        actor_params=actor_params,
        critic_params=critic_params,
        target_actor_params=target_actor_params,
        target_critic_params=target_critic_params,
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        step=step,
        last_actor_loss=pi_loss,
        last_lmbda=lmbda,
        last_bc_mse=bc,
    )
    metrics = dict(critic_loss=q_loss, actor_loss=pi_loss, lmbda=lmbda, bc_mse=bc, q_mean=jnp.mean(q),
                   target_mean=jnp.mean(target))
    return new_state, metrics


# ----------------------------------------------------------------------------- act


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] raw observations -> [B, act_dim] in env units: π((s − μ)/σ), plus N(0, σ²)
    exploration noise unless deterministic."""
    mean = state.actor.apply(state.actor_params, normalized_obs(state, obs))
    noise = state.exploration_noise * jax.random.normal(key, mean.shape, jnp.float32)
    action = jnp.where(deterministic, mean, jnp.clip(mean + noise, -1.0, 1.0))
    return from_unit(action, state.action_low, state.action_high)


register(AgentSpec(
    name="td3bc",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="TD3+BC: TD3 plus a behaviour-cloning term weighted by α/mean|Q|, normalised states (offline, continuous).",
))
