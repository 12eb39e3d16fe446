"""Twin Delayed DDPG (Fujimoto, van Hoof & Meger 2018, "Addressing Function Approximation
Error in Actor-Critic Methods").

Deterministic actor μ(s) = tanh(MLP(s)) with three fixes over DDPG: clipped double-Q
learning (N=2 critics, one fused `Ensemble`, target = their minimum), target policy
smoothing (clipped Gaussian noise on the target action), and delayed policy updates (the
actor and all target networks move once every d critic steps). The delay is a `lax.cond`
on the step counter in the state, so `update` stays one compiled program.

Networks work in normalised action units [-1, 1]: noise scales (σ, σ̃, c) are fractions
of the half-range of the Box, as in the authors' code and CleanRL.
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
from heron.core.validation import check_loop_settings
from heron.core.networks import DeterministicActor, Ensemble, QNetwork
from heron.core.normalization import ema_update
from heron.errors import HeronError
from heron.types import Transition


@dataclass(frozen=True)
class Config:
    """TD3 hyperparameters.

    Defaults follow the authors' reference implementation (github.com/sfujim/TD3, main.py
    and TD3.py, also CleanRL's td3_continuous_action.py): 2x256 ReLU, Adam 3e-4, batch 256,
    τ=0.005, γ=0.99, σ̃=0.2, c=0.5, d=2, exploration σ=0.1, 25e3 initial random steps (the
    paper's MuJoCo setting; the 2018 paper used 400-300 layers, lr 1e-3 and batch 100).
    """

    num_envs: int = 1
    """Parallel environments the loop steps (each vector step adds num_envs transitions)."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity |B|."""
    batch_size: int = 256
    """Transitions per gradient step N."""
    learning_starts: int = 25_000
    """Env steps of uniform-random actions before the first update (paper: 25e3 on MuJoCo)."""
    train_frequency: int = 1
    """Vector env steps between rounds of updates."""
    gradient_steps: int = 1
    """`update` calls per round."""
    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Target update rate τ: θ' ← τ θ + (1 − τ) θ' (on delayed steps)."""
    actor_lr: float = 3e-4
    """Adam step size of the actor μ_φ."""
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
    exploration_noise: float = 0.1
    """Std σ of the Gaussian exploration noise added by `act` (fraction of the half-range)."""

    def __post_init__(self):
        check_loop_settings(self)
        if self.num_critics < 1:
            raise HeronError(f"td3: num_critics must be >= 1, got {self.num_critics}; use 2 for clipped double-Q")
        if self.policy_delay < 1:
            raise HeronError(f"td3: policy_delay must be >= 1, got {self.policy_delay}")
        if self.policy_noise < 0 or self.noise_clip < 0 or self.exploration_noise < 0:
            raise HeronError("td3: policy_noise, noise_clip and exploration_noise must be >= 0")


@struct.dataclass
class State:
    """Everything TD3 learns, as a pytree; module definitions, bounds and σ are static."""

    actor_params: FrozenDict
    critic_params: FrozenDict
    target_actor_params: FrozenDict
    target_critic_params: FrozenDict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    step: jax.Array
    """Critic updates taken (int32); the actor moves when step % d == 0."""
    last_actor_loss: jax.Array
    """Actor loss of the latest delayed step (reported as a metric between them)."""
    actor: DeterministicActor = struct.field(pytree_node=False)
    critic: Ensemble = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)
    exploration_noise: float = struct.field(pytree_node=False)


def _flat_obs(obs: jax.Array) -> jax.Array:
    return jnp.asarray(obs, jnp.float32).reshape(obs.shape[0], -1)


def _optimizers(cfg: Config) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    return optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr)


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config) -> State:
    low, high = box_bounds(act_space, "td3")
    obs_dim, act_dim = int(np.prod(obs_space.shape)), len(low)
    actor = DeterministicActor(cfg.actor_hidden, act_dim, cfg.activation)
    critic = Ensemble(QNetwork, cfg.num_critics,
                      FrozenDict(hidden=cfg.critic_hidden, act=cfg.activation, layer_norm=cfg.critic_layer_norm))
    k_actor, k_critic = jax.random.split(key)
    obs, action = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, act_dim), jnp.float32)
    actor_params = actor.init(k_actor, obs)
    critic_params = critic.init(k_critic, obs, action)
    actor_tx, critic_tx = _optimizers(cfg)
    return State(
        actor_params=actor_params,
        critic_params=critic_params,
        target_actor_params=jax.tree.map(jnp.copy, actor_params),
        target_critic_params=jax.tree.map(jnp.copy, critic_params),
        actor_opt_state=actor_tx.init(actor_params),
        critic_opt_state=critic_tx.init(critic_params),
        step=jnp.zeros((), jnp.int32),
        last_actor_loss=jnp.zeros((), jnp.float32),
        actor=actor,
        critic=critic,
        action_low=low,
        action_high=high,
        exploration_noise=float(cfg.exploration_noise),
    )


# ----------------------------------------------------------------------------- losses


def target_policy_action(next_action, noise, noise_clip):
    """Target policy smoothing: ã' = clip(μ'(s') + clip(ε, −c, c), −1, 1), ε ~ N(0, σ̃²)."""
    return jnp.clip(next_action + jnp.clip(noise, -noise_clip, noise_clip), -1.0, 1.0)


def td3_target(reward, terminated, next_q, gamma):
    """Clipped double-Q target y = r + γ (1 − d) min_i Q_θ'i(s', ã'); next_q: [N, B]."""
    return reward + gamma * (1.0 - terminated) * jnp.min(next_q, axis=0)


def critic_loss(q, target):
    """Σ_i E_B[(Q_θi(s, a) − y)²] (sum of per-critic MSEs, as in the authors' code); q: [N, B]."""
    return jnp.sum(jnp.mean((q - jax.lax.stop_gradient(target)) ** 2, axis=-1))


def actor_loss(q1):
    """Deterministic policy gradient objective −E_B[Q_θ1(s, μ_φ(s))] (first critic only)."""
    return -jnp.mean(q1)


def first_critic(critic: Ensemble, params):
    """The first member of an `Ensemble` as a plain module and its (unstacked) parameters."""
    (inner,) = params["params"].values()  # the one vmapped child of the Ensemble
    return critic.module_cls(**critic.kwargs), {"params": jax.tree.map(lambda x: x[0], inner)}


# ----------------------------------------------------------------------------- update


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """One critic step; on every d-th call also one actor step and the Polyak target updates."""
    actor_tx, critic_tx = _optimizers(cfg)
    obs, next_obs = _flat_obs(batch.obs), _flat_obs(batch.next_obs)
    action = to_unit(batch.action.reshape(obs.shape[0], -1), state.action_low, state.action_high)
    reward = batch.reward.astype(jnp.float32).reshape(-1)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)

    # Critic.
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

    # Delayed actor and target updates.
    q1_module, q1_params = first_critic(state.critic, critic_params)

    def actor_objective(params):
        return actor_loss(q1_module.apply(q1_params, obs, state.actor.apply(params, obs)))

    def delayed_step(_):
        pi_loss, grads = jax.value_and_grad(actor_objective)(state.actor_params)
        updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, updates)
        return (actor_params, actor_opt_state,
                ema_update(state.target_actor_params, actor_params, cfg.tau),
                ema_update(state.target_critic_params, critic_params, cfg.tau), pi_loss)

    def skip(_):
        return (state.actor_params, state.actor_opt_state, state.target_actor_params,
                state.target_critic_params, state.last_actor_loss)

    if cfg.policy_delay == 1:
        delayed = delayed_step(None)
    else:
        delayed = jax.lax.cond(step % cfg.policy_delay == 0, delayed_step, skip, None)
    actor_params, actor_opt_state, target_actor_params, target_critic_params, pi_loss = delayed

    new_state = state.replace(
        actor_params=actor_params,
        critic_params=critic_params,
        target_actor_params=target_actor_params,
        target_critic_params=target_critic_params,
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        step=step,
        last_actor_loss=pi_loss,
    )
    metrics = dict(critic_loss=q_loss, actor_loss=pi_loss, q_mean=jnp.mean(q), target_mean=jnp.mean(target))
    return new_state, metrics


# ----------------------------------------------------------------------------- act


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] -> [B, act_dim] float32 in env units: μ(s), plus N(0, σ²) noise unless deterministic."""
    mean = state.actor.apply(state.actor_params, _flat_obs(obs))
    noise = state.exploration_noise * jax.random.normal(key, mean.shape, jnp.float32)
    action = jnp.where(deterministic, mean, jnp.clip(mean + noise, -1.0, 1.0))
    return from_unit(action, state.action_low, state.action_high)


register(AgentSpec(
    name="td3",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="off_policy",
    action_kinds=frozenset({"continuous"}),
    summary="TD3: deterministic actor-critic, clipped double-Q, target smoothing, delayed policy (continuous actions).",
))
