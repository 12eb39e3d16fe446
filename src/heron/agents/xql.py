"""Extreme Q-Learning, offline (Garg, Hejna, Geist & Ermon 2023, "Extreme Q-Learning: MaxEnt RL
without Entropy").

IQL's structure with the expectile replaced by Gumbel regression: the state value V_ψ is fitted
to the target critics' min_i Q̄_i(s, a) at dataset actions by the loss E[e^z − z − 1],
z = (Q̄ − V)/β, whose minimiser is the soft maximum β log E_μ[e^{Q̄/β}] over the behaviour
policy's actions (the KL-regularised optimal value). The twin Q-functions regress onto
r + γ V_ψ(s') (Huber, δ = 20, as the authors' code), and the policy is extracted by IQL's
advantage-weighted regression, weights exp(β_π (Q̄ − V)) clipped at 100.

Stability, as the authors' offline code (github.com/Div99/XQL, offline/critic.py
`gumbel_rescale_loss`): z is clipped from above at `max_clip`, and each batch's loss is
multiplied by e^{−max(max_B z, −1)} (held constant), i.e. gradients are rescaled by the
batch's largest exponent — an adaptive step size that keeps e^z from exploding.

Everything but the value and critic losses is IQL's: the State, `act`, the policy (Gaussian
with tanh mean, state-independent log σ), the cosine actor schedule, the reward scaling
(1000 / return range) and one update's order (value, actor, critic, Polyak targets) are the
functions of `heron.agents.iql`. `dual_value_update` is shared with f-DVL (`heron.agents.fdvl`),
which only swaps the value loss.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax

from heron.agents import iql
from heron.agents.registry import AgentSpec, DatasetStats, register
from heron.core.actions import box_bounds, to_unit
from heron.core.distributions import gaussian_log_prob
from heron.core.networks import ValueNetwork
from heron.core.normalization import ema_update, normalized_obs
from heron.errors import HeronError
from heron.types import Transition

State = iql.State
act = iql.act


@dataclass(frozen=True)
class Config:
    """XQL (offline) hyperparameters.

    Defaults are the authors' single "consistent" MuJoCo setting (github.com/Div99/XQL,
    offline/reproduce/mujoco/mujoco_consistent.sh: --temp=2 --max_clip=7 --batch_size=256
    --double=True; configs/mujoco_config.py: AWR temperature 3, LayerNorm value network, Adam
    3e-4, 2x256, γ = 0.99, target rate 0.005, cosine actor schedule; critic.py: Gumbel loss
    rescaled by the batch max, Huber critic loss δ = 20; train_offline.py: rewards × 1000 /
    return range). The paper tunes β per task (its appendix tables); 2 is the shared value.
    """

    batch_size: int = 256
    """Dataset transitions per gradient step N (mujoco_consistent.sh)."""
    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Target critic update rate: Q̄ ← tau Q + (1 − tau) Q̄ after every step."""
    beta: float = 2.0
    """Gumbel scale β of the value loss, z = (Q̄ − V)/β (authors' --temp; 2 in their consistent MuJoCo runs)."""
    max_clip: float = 7.0
    """Upper clip of z in the Gumbel loss (authors' --max_clip, default 7)."""
    awr_beta: float = 3.0
    """Inverse temperature of the policy's weights exp(awr_beta (Q̄ − V)) (configs/mujoco_config.py temperature)."""
    max_weight: float = 100.0
    """Upper clip of the exponentiated advantage weights (authors' actor.py: 100)."""
    huber_delta: float = 20.0
    """δ of the Huber critic loss (authors' critic.py; quadratic within ±δ, linear beyond)."""
    random_actions: int = 0
    """Uniform random actions per state added to the value batch (authors' --sample_random_times; 0 for XQL)."""
    actor_lr: float = 3e-4
    """Adam step size of the policy (initial value of the cosine schedule)."""
    critic_lr: float = 3e-4
    """Adam step size of the Q-functions."""
    value_lr: float = 3e-4
    """Adam step size of the value function V_ψ."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """Actor learning-rate schedule: cosine decay to 0 over total_updates (authors' default), or constant."""
    total_updates: int = 1_000_000
    """Gradient steps the cosine schedule spans (`heron train` sets it to --steps)."""
    policy: Literal["gaussian", "deterministic"] = "gaussian"
    """gaussian: weighted log-likelihood of N(tanh μ(s), σ²) (authors'); deterministic: weighted MSE."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy network."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each Q-network."""
    value_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the value network."""
    value_layer_norm: bool = True
    """LayerNorm after each hidden layer of V (configs/mujoco_config.py layernorm=True)."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    num_critics: int = 2
    """Number of Q-functions; the value target and the advantages use their minimum (--double=True)."""
    log_std_min: float = -5.0
    """Lower clip of the policy's log σ (authors' policy.py)."""
    log_std_max: float = 2.0
    """Upper clip of the policy's log σ."""
    normalize_reward: bool = True
    """Scale rewards by reward_scale_target / (max − min episode return) (authors' locomotion setting)."""
    reward_scale_target: float = 1000.0
    """The return range rewards are scaled to (authors' code: 1000)."""
    normalize_obs: bool = False
    """Standardise states with the dataset's mean and std (off in the authors' code)."""
    obs_std_eps: float = 1e-3
    """eps added to the dataset's state std when normalize_obs."""
    exploration_noise: float = 0.1
    """Std σ of the noise `act` adds to a deterministic policy when not deterministic."""

    def __post_init__(self):
        check_shared_config("xql", self)
        if self.beta <= 0 or self.max_clip <= 0:
            raise HeronError(f"xql: beta and max_clip must be > 0, got {self.beta}, {self.max_clip}; "
                             "the authors use beta 2 and max_clip 7 on MuJoCo")


def check_shared_config(name: str, cfg) -> None:
    """Checks of the fields XQL and f-DVL share with IQL (raises HeronError naming the agent)."""
    if cfg.batch_size < 1 or cfg.total_updates < 1:
        raise HeronError(f"{name}: batch_size and total_updates must be >= 1, got {cfg.batch_size}, {cfg.total_updates}")
    if not 0.0 <= cfg.gamma <= 1.0 or not 0.0 < cfg.tau <= 1.0:
        raise HeronError(f"{name}: gamma must be in [0, 1] and tau in (0, 1], got {cfg.gamma}, {cfg.tau}")
    if cfg.awr_beta < 0 or cfg.max_weight <= 0 or cfg.huber_delta <= 0:
        raise HeronError(f"{name}: awr_beta must be >= 0, max_weight and huber_delta > 0")
    if cfg.num_critics < 1 or cfg.random_actions < 0:
        raise HeronError(f"{name}: num_critics must be >= 1 and random_actions >= 0")
    if cfg.policy not in ("gaussian", "deterministic") or cfg.lr_schedule not in ("cosine", "constant"):
        raise HeronError(f"{name}: policy must be gaussian or deterministic, lr_schedule cosine or constant")
    if cfg.log_std_min > cfg.log_std_max:
        raise HeronError(f"{name}: log_std_min {cfg.log_std_min} exceeds log_std_max {cfg.log_std_max}")
    if cfg.reward_scale_target <= 0 or min(cfg.obs_std_eps, cfg.exploration_noise) < 0:
        raise HeronError(f"{name}: reward_scale_target must be > 0; obs_std_eps and exploration_noise >= 0")


def init_dual(name: str, key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg,
              dataset_stats: DatasetStats | None = None) -> State:
    """IQL's state (same keys, networks, optimisers, normalisers), with a LayerNorm value network
    when `cfg.value_layer_norm` (the authors' V)."""
    box_bounds(act_space, name)  # the error names this agent, not IQL
    state = iql.init(key, obs_space, act_space, cfg, dataset_stats=dataset_stats)
    if cfg.value_layer_norm:
        value = ValueNetwork(cfg.value_hidden, cfg.activation, layer_norm=True)
        value_key = jax.random.split(key, 3)[2]  # the key iql.init gives V
        params = value.init(value_key, jnp.zeros((1, int(np.prod(obs_space.shape))), jnp.float32))
        state = state.replace(value=value, value_params=params, value_opt_state=iql._optimizers(cfg)[2].init(params))
    return state


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    return init_dual("xql", key, obs_space, act_space, cfg, dataset_stats)


# ----------------------------------------------------------------------------- losses


def gumbel_loss(diff, beta, max_clip):
    """L_V(ψ) = E_B[e^z − z − 1], z = min((Q̄(s, a) − V_ψ(s))/β, max_clip) (plain Gumbel regression).

    Its minimiser is V = β log E[e^{Q̄/β}], a soft maximum of Q̄ over the dataset's actions. The
    gradient in V, −(e^z − 1)/β, grows exponentially in Q̄ − V; the clip bounds it (zero
    gradient where clipped).
    """
    z = jnp.minimum(diff / beta, max_clip)
    return jnp.mean(jnp.exp(z) - z - 1.0)


def gumbel_rescale_loss(diff, beta, max_clip):
    """The authors' Gumbel loss: E_B[(e^z − z − 1) e^{−m}], m = sg(max(max_B z, −1)), z clipped as `gumbel_loss`.

    Multiplying by e^{−m} (no gradient through m) scales the batch's gradient by its largest
    exponent, computed as e^{z − m} − (z + 1) e^{−m} so that e^z never overflows; the
    minimiser is unchanged. m ≥ −1 keeps the factor at most e.
    """
    z = jnp.minimum(diff / beta, max_clip)
    m = jax.lax.stop_gradient(jnp.maximum(jnp.max(z, axis=0), -1.0))
    return jnp.mean(jnp.exp(z - m) - z * jnp.exp(-m) - jnp.exp(-m))


def huber_critic_loss(q, target, delta):
    """L_Q(θ) = Σ_i E_B[H_δ(Q_θi(s, a) − y)], H_δ(x) = ½x² for |x| ≤ δ, δ(|x| − ½δ) beyond; q: [N, B], y: [B]."""
    x = jnp.abs(q - jax.lax.stop_gradient(target))
    quadratic = jnp.minimum(x, delta)
    return jnp.sum(jnp.mean(0.5 * quadratic**2 + delta * (x - quadratic), axis=-1))


# ----------------------------------------------------------------------------- update


def dual_value_update(state: State, batch: Transition, key: jax.Array, cfg,
                      value_loss: Callable[[jax.Array], jax.Array]) -> tuple[State, dict]:
    """One step of the implicit-value family (XQL, f-DVL), in the authors' order: value step
    with `value_loss(Q̄ − V)`, actor step (new V, target critics), critic step onto
    r + γ V(s') with the new V, Polyak target update. `key` draws the random value actions."""
    actor_tx, critic_tx, value_tx = iql._optimizers(cfg)
    obs, next_obs = normalized_obs(state, batch.obs), normalized_obs(state, batch.next_obs)
    batch_size = obs.shape[0]
    action = to_unit(batch.action.reshape(batch_size, -1), state.action_low, state.action_high)
    reward = state.reward_scale * batch.reward.astype(jnp.float32).reshape(-1)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)

    # Value inputs: the dataset pairs, plus `random_actions` uniform actions per state (the authors'
    # smoothing of the value loss toward ½(μ + uniform)).
    v_obs, v_action = obs, action
    if cfg.random_actions:
        random_action = jax.random.uniform(key, (cfg.random_actions * batch_size, action.shape[-1]),
                                           jnp.float32, -1.0, 1.0)
        v_obs = jnp.concatenate([obs, jnp.tile(obs, (cfg.random_actions, 1))])
        v_action = jnp.concatenate([action, random_action])
    target_q = jnp.min(state.critic.apply(state.target_critic_params, v_obs, v_action), axis=0)

    def value_objective(params):
        v = state.value.apply(params, v_obs)
        return value_loss(target_q - v), v

    (v_loss, v), grads = jax.value_and_grad(value_objective, has_aux=True)(state.value_params)
    updates, value_opt_state = value_tx.update(grads, state.value_opt_state, state.value_params)
    value_params = optax.apply_updates(state.value_params, updates)

    new_v = state.value.apply(value_params, jnp.concatenate([obs, next_obs]))
    v_now, v_next = new_v[:batch_size], new_v[batch_size:]

    # Actor: IQL's advantage-weighted regression at the dataset actions.
    advantage = target_q[:batch_size] - v_now
    weights = iql.awr_weights(advantage, cfg.awr_beta, cfg.max_weight)

    def actor_objective(params):
        mean, log_std = iql._policy_mean(state, params, obs)
        if state.gaussian:
            return iql.awr_actor_loss(weights, gaussian_log_prob(mean, log_std, action))
        return iql.weighted_mse_actor_loss(weights, mean, action)

    pi_loss, grads = jax.value_and_grad(actor_objective)(state.actor_params)
    updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)

    target = iql.iql_q_target(reward, terminated, v_next, cfg.gamma)

    def critic_objective(params):
        q = state.critic.apply(params, obs, action)
        return huber_critic_loss(q, target, cfg.huber_delta), q

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
    metrics = {"value_loss": v_loss, "critic_loss": q_loss, "actor_loss": pi_loss, "v_mean": jnp.mean(v),
               "q_mean": jnp.mean(q), "advantage_mean": jnp.mean(advantage), "weight_mean": jnp.mean(weights),
               "weight_clipped": jnp.mean((weights >= cfg.max_weight).astype(jnp.float32))}
    return new_state, metrics


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """Gumbel value step, AWR actor step, Huber critic step, target update (authors' order)."""
    return dual_value_update(state, batch, key, cfg, lambda diff: gumbel_rescale_loss(diff, cfg.beta, cfg.max_clip))


register(AgentSpec(
    name="xql",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="Extreme Q-Learning: Gumbel-regression value, twin Q on V(s') targets, advantage-weighted policy (offline, continuous).",
))
