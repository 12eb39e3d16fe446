"""Deep Q-Network (Mnih et al. 2015) with the double-DQN target (van Hasselt, Guez & Silver 2016).

Q_θ(s, ·) is an MLP over the discrete actions; a target network θ⁻ is copied (τ = 1) or
Polyak-moved toward θ every `target_network_frequency` env steps; the target evaluates
with θ⁻ the action that θ picks (double DQN; `double_q=False` gives the 2015 max target).
Exploration is ε-greedy with a linear schedule over env steps.

Env-step clock: `act` takes no step argument, so the state carries `updates` (the number
of `update` calls). The loop calls `update` `gradient_steps` times every `train_frequency`
vector steps once `learning_starts` env steps have passed, so after k calls the run is at

    env_steps = learning_starts + k · train_frequency · num_envs / gradient_steps

env steps (integer division). `act` reads ε(env_steps) from that and `update` uses it for
the target-network period. Before the first update ε = ε(learning_starts); with SB3-style
uniform random warm-up actions that does not matter, and with CleanRL's ε = 1 → 0.05 over
250k steps it is 0.962 instead of 1.0 at worst.
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
from heron.core.validation import check_loop_settings
from heron.core.networks import MLP
from heron.core.normalization import ema_update
from heron.errors import HeronError
from heron.types import Transition


@dataclass(frozen=True)
class Config:
    """DQN hyperparameters.

    Defaults are CleanRL's dqn.py (CartPole-v1 settings): Adam 2.5e-4, buffer 1e4, γ=0.99,
    hard target copy every 500 env steps, batch 128, ε 1 → 0.05 over half of 500k steps,
    10k warm-up steps, one update every 10 env steps, 120-84 ReLU MLP, MSE loss. The
    double-DQN target (van Hasselt et al. 2016) is on by default.
    """

    num_envs: int = 1
    """Parallel environments the loop steps (each vector step adds num_envs transitions)."""
    buffer_size: int = 10_000
    """Replay memory capacity N."""
    batch_size: int = 128
    """Transitions per gradient step (minibatch size)."""
    learning_starts: int = 10_000
    """Env steps before the first update."""
    train_frequency: int = 10
    """Vector env steps between rounds of updates."""
    gradient_steps: int = 1
    """`update` calls per round."""
    total_timesteps: int = 500_000
    """Env steps T of the run the ε schedule is laid out over."""
    gamma: float = 0.99
    """Discount γ."""
    learning_rate: float = 2.5e-4
    """Adam step size α."""
    tau: float = 1.0
    """Target update rate τ: θ⁻ ← τ θ + (1 − τ) θ⁻ (1 = hard copy)."""
    target_network_frequency: int = 500
    """Env steps C between target-network updates."""
    start_e: float = 1.0
    """Initial exploration rate ε_start."""
    end_e: float = 0.05
    """Final exploration rate ε_end."""
    exploration_fraction: float = 0.5
    """Fraction of total_timesteps over which ε decays linearly from ε_start to ε_end."""
    hidden: tuple[int, ...] = (120, 84)
    """Hidden layer widths of the Q-network."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    double_q: bool = True
    """Double-DQN target (online argmax, target value); False: max over the target network."""
    huber: bool = False
    """Huber loss (δ = 1, Mnih et al. 2015's error clipping) instead of the squared error."""

    def __post_init__(self):
        check_loop_settings(self)
        if self.target_network_frequency < 1:
            raise HeronError(f"dqn: target_network_frequency must be >= 1, got {self.target_network_frequency}")
        if not (0.0 <= self.end_e <= 1.0 and 0.0 <= self.start_e <= 1.0):
            raise HeronError(f"dqn: start_e and end_e must be in [0, 1], got {self.start_e}, {self.end_e}")
        if not 0.0 < self.exploration_fraction <= 1.0 or self.total_timesteps < 1:
            raise HeronError("dqn: exploration_fraction must be in (0, 1] and total_timesteps >= 1")


@struct.dataclass
class State:
    """Everything DQN learns, as a pytree; the network, ε schedule and step clock constants are static."""

    params: FrozenDict
    target_params: FrozenDict
    opt_state: optax.OptState
    updates: jax.Array
    """`update` calls so far (int32); see `env_steps`."""
    q_network: MLP = struct.field(pytree_node=False)
    num_actions: int = struct.field(pytree_node=False)
    start_e: float = struct.field(pytree_node=False)
    end_e: float = struct.field(pytree_node=False)
    exploration_steps: int = struct.field(pytree_node=False)
    learning_starts: int = struct.field(pytree_node=False)
    env_steps_per_round: int = struct.field(pytree_node=False)
    gradient_steps: int = struct.field(pytree_node=False)


def env_steps(state: State, updates: jax.Array | None = None) -> jax.Array:
    """Env steps after `updates` calls: learning_starts + updates · train_frequency · num_envs // gradient_steps."""
    updates = state.updates if updates is None else updates
    return state.learning_starts + (updates * state.env_steps_per_round) // state.gradient_steps


def linear_epsilon(step, start_e, end_e, duration):
    """ε(t) = max(ε_end, ε_start + (ε_end − ε_start) t / T_ε) (CleanRL's linear_schedule)."""
    return jnp.maximum(start_e + (end_e - start_e) * step / duration, end_e)


def _flat_obs(obs: jax.Array) -> jax.Array:
    return jnp.asarray(obs, jnp.float32).reshape(obs.shape[0], -1)


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config) -> State:
    if not isinstance(act_space, gym.spaces.Discrete):
        raise HeronError(f"dqn needs a Discrete action space, got {act_space}; pick an env with discrete actions")
    if int(act_space.start) != 0:
        raise HeronError(f"dqn needs a Discrete space starting at 0, got start={act_space.start}")
    num_actions = int(act_space.n)
    q_network = MLP(cfg.hidden, num_actions, cfg.activation)
    params = q_network.init(key, jnp.zeros((1, int(np.prod(obs_space.shape))), jnp.float32))
    return State(
        params=params,
        target_params=jax.tree.map(jnp.copy, params),
        opt_state=optax.adam(cfg.learning_rate).init(params),
        updates=jnp.zeros((), jnp.int32),
        q_network=q_network,
        num_actions=num_actions,
        start_e=float(cfg.start_e),
        end_e=float(cfg.end_e),
        exploration_steps=max(1, int(cfg.exploration_fraction * cfg.total_timesteps)),
        learning_starts=int(cfg.learning_starts),
        env_steps_per_round=int(cfg.train_frequency * cfg.num_envs),
        gradient_steps=int(cfg.gradient_steps),
    )


# ----------------------------------------------------------------------------- losses


def dqn_target(reward, terminated, next_q_target, gamma):
    """y = r + γ (1 − d) max_a Q_θ⁻(s', a); next_q_target: [B, |A|]."""
    return reward + gamma * (1.0 - terminated) * jnp.max(next_q_target, axis=-1)


def double_dqn_target(reward, terminated, next_q_online, next_q_target, gamma):
    """y = r + γ (1 − d) Q_θ⁻(s', argmax_a Q_θ(s', a)); both q's: [B, |A|]."""
    best = jnp.argmax(next_q_online, axis=-1)
    next_value = jnp.take_along_axis(next_q_target, best[:, None], axis=-1).squeeze(-1)
    return reward + gamma * (1.0 - terminated) * next_value


def q_loss(q_taken, target, huber: bool = False):
    """L(θ) = E_B[ℓ(Q_θ(s, a) − y)], y held fixed.

    ℓ(x) = x² (CleanRL), or with `huber` ℓ(x) = ½x² if |x| ≤ 1 else |x| − ½ (Mnih et al. 2015).
    """
    error = q_taken - jax.lax.stop_gradient(target)
    return jnp.mean(optax.huber_loss(error, delta=1.0) if huber else error**2)


# ----------------------------------------------------------------------------- update


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """One gradient step on the TD loss; the target network moves when the env-step clock crosses a multiple of C."""
    del key  # DQN's update is deterministic
    tx = optax.adam(cfg.learning_rate)
    obs, next_obs = _flat_obs(batch.obs), _flat_obs(batch.next_obs)
    action = batch.action.reshape(-1).astype(jnp.int32)
    reward = batch.reward.astype(jnp.float32).reshape(-1)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)

    next_q_target = state.q_network.apply(state.target_params, next_obs)
    if cfg.double_q:
        next_q_online = state.q_network.apply(state.params, next_obs)
        target = double_dqn_target(reward, terminated, next_q_online, next_q_target, cfg.gamma)
    else:
        target = dqn_target(reward, terminated, next_q_target, cfg.gamma)

    def objective(params):
        q = state.q_network.apply(params, obs)
        q_taken = jnp.take_along_axis(q, action[:, None], axis=-1).squeeze(-1)
        return q_loss(q_taken, target, cfg.huber), q_taken

    (loss, q_taken), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    # Target network: once per C env steps, on the update that carries the clock past a multiple of C.
    before, after = env_steps(state), env_steps(state, state.updates + 1)
    sync = after // cfg.target_network_frequency > before // cfg.target_network_frequency
    if cfg.tau == 1.0:
        target_params = jax.tree.map(lambda t, o: jnp.where(sync, o, t), state.target_params, params)
    else:
        moved = ema_update(state.target_params, params, cfg.tau)
        target_params = jax.tree.map(lambda t, m: jnp.where(sync, m, t), state.target_params, moved)

    new_state = state.replace(params=params, target_params=target_params, opt_state=opt_state,
                              updates=state.updates + 1)
    metrics = dict(td_loss=loss, q_mean=jnp.mean(q_taken), target_mean=jnp.mean(target),
                   epsilon=epsilon(new_state), target_synced=sync.astype(jnp.float32))
    return new_state, metrics


# ----------------------------------------------------------------------------- act


def epsilon(state: State) -> jax.Array:
    """Current exploration rate ε(env_steps(state))."""
    step = env_steps(state).astype(jnp.float32)
    return linear_epsilon(step, state.start_e, state.end_e, float(state.exploration_steps))


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] -> [B] int32: argmax_a Q(s, a), or ε-greedy unless deterministic."""
    greedy = jnp.argmax(state.q_network.apply(state.params, _flat_obs(obs)), axis=-1).astype(jnp.int32)
    k_explore, k_action = jax.random.split(key)
    explore = jax.random.uniform(k_explore, greedy.shape) < epsilon(state)
    random_action = jax.random.randint(k_action, greedy.shape, 0, state.num_actions, jnp.int32)
    return jnp.where(jnp.logical_and(explore, jnp.logical_not(deterministic)), random_action, greedy)


register(AgentSpec(
    name="dqn",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="off_policy",
    action_kinds=frozenset({"discrete"}),
    summary="DQN with double-DQN target, target network and linear ε-greedy exploration (discrete actions).",
))
