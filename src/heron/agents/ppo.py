"""PPO: Proximal Policy Optimization with the clipped surrogate objective.

Schulman, Wolski, Dhariwal, Radford & Klimov (2017), "Proximal Policy Optimization
Algorithms", arXiv:1707.06347; GAE from Schulman et al. (2016), arXiv:1506.02438.
Defaults and implementation details (orthogonal init, Adam eps 1e-5, value clipping,
per-minibatch advantage normalisation, global-norm gradient clipping, linear learning-rate
annealing) follow CleanRL's `ppo.py` (Huang et al. 2022, "The 37 Implementation Details of
PPO"), which PureJaxRL's `ppo.py` shares for CartPole. Each config field names its source.

Actions: a categorical head for `Discrete` spaces; for `Box` spaces a Gaussian whose mean
comes from the actor MLP and whose log-std is a state-independent parameter (CleanRL
`ppo_continuous_action.py`). `act` returns actions in the environment's bounds, i.e. the
Gaussian sample clipped to [low, high]. The rollout therefore stores *clipped* actions, and
`update` scores them under the clipped Gaussian they were actually drawn from: a density
inside the bounds and a probability mass at a bound, log Φ((low−μ)/σ) or log Φ((μ−high)/σ)
(the "clipped action policy gradient", Fujita & Maeda, ICML 2018). That keeps the agent
contract (`act` returns only env-valid actions, `update` sees only the rollout) and gives
exact likelihood ratios, where scoring the clipped action with the Gaussian density would
be biased at the bounds. The entropy bonus uses the unclipped Gaussian's entropy (as CleanRL).

Observation normalisation (optional): a `RunningMeanStd` in the state normalises every
observation `act` and `update` see. `update` refreshes it with the rollout's observations
only at its end, so the log-probabilities recomputed at its start are exactly those of the
behaviour policy that collected the rollout.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.scipy.special import log_ndtr

from heron.agents.registry import AgentSpec, register
from heron.core import distributions as D
from heron.core.networks import MLP, orthogonal
from heron.core.normalization import RunningMeanStd
from heron.envs.spaces import action_kind
from heron.errors import HeronError
from heron.types import Transition


@dataclasses.dataclass(frozen=True)
class Config:
    num_envs: int = 4
    """N, parallel environments per rollout (CleanRL ppo.py: 4)."""
    num_steps: int = 128
    """T, steps per environment per rollout; batch = N·T (CleanRL ppo.py: 128)."""
    total_timesteps: int = 500_000
    """Env steps of the whole run; sets the number of updates for LR annealing (CleanRL ppo.py: 500k)."""
    learning_rate: float = 2.5e-4
    """α, Adam step size (CleanRL ppo.py: 2.5e-4; paper Atari: 2.5e-4)."""
    anneal_lr: bool = True
    """Anneal α linearly to 0 over total_timesteps / (N·T) updates (CleanRL; paper Atari: α×(1−progress))."""
    adam_eps: float = 1e-5
    """Adam ε (CleanRL / OpenAI baselines: 1e-5, not PyTorch's 1e-8)."""
    gamma: float = 0.99
    """γ, discount (paper: 0.99)."""
    gae_lambda: float = 0.95
    """λ, GAE parameter (paper: 0.95)."""
    num_minibatches: int = 4
    """M, minibatches per epoch; minibatch size N·T/M (CleanRL ppo.py: 4)."""
    update_epochs: int = 4
    """K, epochs over each rollout (CleanRL ppo.py: 4; paper Atari: 3, MuJoCo: 10)."""
    clip_coef: float = 0.2
    """ε, surrogate clipping range (paper: 0.2)."""
    clip_vloss: bool = True
    """Clip the value update to ±ε around the old value (CleanRL / baselines PPO2 detail)."""
    ent_coef: float = 0.01
    """c2, entropy bonus coefficient (paper Atari / CleanRL ppo.py: 0.01)."""
    vf_coef: float = 0.5
    """c1, value-loss coefficient (CleanRL ppo.py: 0.5; paper Atari: 1 on the unhalved loss)."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip (CleanRL / baselines: 0.5)."""
    normalize_advantages: bool = True
    """Standardise Â within each minibatch (CleanRL / baselines detail)."""
    normalize_observations: bool = False
    """Normalise observations by running mean/std kept in the state (CleanRL continuous: on; ppo.py: off)."""
    normalize_rewards: bool = False
    """Divide rewards by the running std of the discounted return Σγᵗr, kept in the state
    (baselines VecNormalize / CleanRL continuous: on; ppo.py: off)."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the separate actor and critic MLPs (CleanRL ppo.py: 64×64)."""
    activation: str = "tanh"
    """Hidden activation (CleanRL ppo.py: tanh)."""
    init_log_std: float = 0.0
    """Initial state-independent log σ of the Gaussian policy, continuous actions only (CleanRL: 0)."""


class Actor(nn.Module):
    """Policy network: categorical logits, or Gaussian (mean, state-independent log σ)."""

    hidden: tuple[int, ...]
    out_dim: int
    activation: str
    continuous: bool
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array):
        out = MLP(self.hidden, self.out_dim, self.activation, kernel_init=orthogonal(np.sqrt(2)),
                  last_init=orthogonal(0.01))(obs)
        if not self.continuous:
            return out
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.out_dim,))
        return out, jnp.broadcast_to(log_std, out.shape)


class Critic(nn.Module):
    hidden: tuple[int, ...]
    activation: str

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden, 1, self.activation, kernel_init=orthogonal(np.sqrt(2)),
                   last_init=orthogonal(1.0))(obs).squeeze(-1)


@struct.dataclass
class State:
    params: Any  # {"actor": ..., "critic": ...}
    opt_state: Any
    obs_rms: RunningMeanStd
    return_rms: RunningMeanStd  # of the discounted return, for reward scaling
    discounted_return: jax.Array  # [num_envs] running Σγᵗr of each env's current episode
    actor: Actor = struct.field(pytree_node=False)
    critic: Critic = struct.field(pytree_node=False)
    normalize_observations: bool = struct.field(pytree_node=False)
    action_low: tuple[float, ...] | None = struct.field(pytree_node=False)  # None for discrete
    action_high: tuple[float, ...] | None = struct.field(pytree_node=False)


# ---------------------------------------------------------------------------------------------
# Pieces: optimiser, observation normalisation, policy log-probabilities
# ---------------------------------------------------------------------------------------------


def _iterations(cfg: Config) -> int:
    return max(cfg.total_timesteps // (cfg.num_envs * cfg.num_steps), 1)


def learning_rate_schedule(cfg: Config):
    """α·(1 − i/I) at update iteration i of I (constant over its K·M minibatch steps), floored at 0."""
    if not cfg.anneal_lr:
        return cfg.learning_rate
    steps_per_iteration = cfg.update_epochs * cfg.num_minibatches
    num_iterations = _iterations(cfg)

    def schedule(count):
        frac = 1.0 - (count // steps_per_iteration) / num_iterations
        return cfg.learning_rate * jnp.maximum(frac, 0.0)

    return schedule


def optimizer(cfg: Config) -> optax.GradientTransformation:
    """Global-norm clipping then Adam, one optimiser over actor and critic (CleanRL).

    `optax.flatten` runs it on one raveled vector instead of per parameter array: the same
    arithmetic in a few large ops rather than ~6 small ones per array (~10% faster minibatch
    steps on CPU for 64x64 networks)."""
    return optax.flatten(optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm),
                                     optax.adam(learning_rate_schedule(cfg), eps=cfg.adam_eps)))


def shuffled_indices(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of range(n) for minibatching, by ONE sort of a uint32 array whose
    high bits are random and low bits the index. XLA's CPU sort of a single array is ~4x faster
    than the key/value sort in `jax.random.permutation` (24 vs 84-114 µs for n = 512, about a
    tenth of a PPO iteration). Equal random high bits (>= 20 of them for n <= 4096) keep their
    indices' order: a negligible bias. Larger n use `jax.random.permutation`."""
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > 12:
        return jax.random.permutation(key, n)
    random_high = jax.random.bits(key, (n,), jnp.uint32) >> index_bits << index_bits
    packed = jnp.sort(random_high | jnp.arange(n, dtype=jnp.uint32))
    return (packed & ((1 << index_bits) - 1)).astype(jnp.int32)


def _normalize(state: State, obs: jax.Array) -> jax.Array:
    obs = obs.astype(jnp.float32)
    return state.obs_rms.normalize(obs) if state.normalize_observations else obs


def log_prob_and_entropy(state: State, actor_params, obs: jax.Array, action: jax.Array):
    """log π(a|s) and the entropy of π(·|s) for normalised `obs`.

    Continuous: a was clipped to [low, high]; inside it is scored with the Gaussian density,
    at a bound with the Gaussian's mass beyond it (Fujita & Maeda 2018).
    """
    out = state.actor.apply(actor_params, obs)
    if state.action_low is None:
        log_p = jax.nn.log_softmax(out, axis=-1)
        log_prob = jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
        return log_prob, -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)
    mean, log_std = out
    low, high = jnp.asarray(state.action_low, jnp.float32), jnp.asarray(state.action_high, jnp.float32)
    return clipped_gaussian_log_prob(mean, log_std, action, low, high), D.gaussian_entropy(log_std)


def clipped_gaussian_log_prob(mean, log_std, action, low, high) -> jax.Array:
    """Σ_i log p(a_i) for a = clip(u, low, high), u ~ N(mean, σ²):
    p = Φ((low−μ)/σ) if a_i ≤ low, 1−Φ((high−μ)/σ) = Φ((μ−high)/σ) if a_i ≥ high, else N(a_i; μ, σ²)."""
    inv_std = jnp.exp(-log_std)
    z = (action - mean) * inv_std
    density = -0.5 * z**2 - log_std - 0.5 * D.LOG_2PI
    below = log_ndtr((low - mean) * inv_std)
    above = log_ndtr((mean - high) * inv_std)
    per_dim = jnp.where(action <= low, below, jnp.where(action >= high, above, density))
    return jnp.sum(per_dim, axis=-1)


# ---------------------------------------------------------------------------------------------
# Losses (each testable alone)
# ---------------------------------------------------------------------------------------------


def scale_rewards(state: State, rewards: jax.Array, done: jax.Array, gamma: float):
    """Reward scaling of baselines' VecNormalize: R_t = γ R_{t-1} (1 − done_{t-1}) + r_t per env,
    Var[R] tracked by a running estimate, rewards divided by √Var[R] (no mean subtracted).

    The statistics are updated with this rollout's returns first, then applied (as VecNormalize
    does step by step). Returns (scaled rewards [T, N], new return_rms, new discounted_return)."""
    def step(ret, inputs):
        reward, episode_done = inputs
        ret = ret * gamma + reward
        return ret * (1.0 - episode_done), ret

    last, returns = jax.lax.scan(step, state.discounted_return, (rewards, done))
    return_rms = state.return_rms.update(returns)
    return rewards / jnp.sqrt(return_rms.var + 1e-8), return_rms, last


def gae(values, next_values, rewards, terminated, truncated, gamma: float, gae_lambda: float):
    """Generalised advantage estimation over a time-ordered rollout [T, N].

        δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t)      (s'_t: the TRUE next obs)
        Â_t = δ_t + γ λ (1 − done_t) Â_{t+1},   done_t = terminated_t ∨ truncated_t,  Â_T = 0

    A truncated step bootstraps from the value of its true final observation; a terminated
    one does not; neither lets advantages flow across the episode boundary.
    Returns (advantages Â, value targets Â + V).
    """
    terminated = terminated.astype(jnp.float32)
    not_done = 1.0 - jnp.maximum(terminated, truncated.astype(jnp.float32))
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values

    def backward(next_advantage, xs):
        delta, nd = xs
        advantage = delta + gamma * gae_lambda * nd * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True)
    return advantages, advantages + values


def clipped_surrogate_loss(log_prob, old_log_prob, advantages, clip_coef: float):
    """L^CLIP as a loss: mean_t max(−Â_t r_t, −Â_t clip(r_t, 1−ε, 1+ε)), r_t = π/π_old."""
    ratio = jnp.exp(log_prob - old_log_prob)
    return jnp.mean(jnp.maximum(-advantages * ratio, -advantages * jnp.clip(ratio, 1.0 - clip_coef, 1.0 + clip_coef)))


def value_loss(values, old_values, returns, clip_coef: float, clip: bool):
    """½ mean (V − R)², or with clipping ½ mean max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²)."""
    unclipped = (values - returns) ** 2
    if not clip:
        return 0.5 * jnp.mean(unclipped)
    clipped = (old_values + jnp.clip(values - old_values, -clip_coef, clip_coef) - returns) ** 2
    return 0.5 * jnp.mean(jnp.maximum(unclipped, clipped))


def ppo_loss(params, state: State, batch: dict, cfg: Config):
    """c1·L^VF − L^CLIP − c2·entropy on one minibatch; returns (loss, metrics)."""
    log_prob, entropy = log_prob_and_entropy(state, params["actor"], batch["obs"], batch["action"])
    values = state.critic.apply(params["critic"], batch["obs"])
    advantages = batch["advantages"]
    if cfg.normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg_loss = clipped_surrogate_loss(log_prob, batch["old_log_prob"], advantages, cfg.clip_coef)
    v_loss = value_loss(values, batch["old_values"], batch["returns"], cfg.clip_coef, cfg.clip_vloss)
    entropy = jnp.mean(entropy)
    loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
    log_ratio = log_prob - batch["old_log_prob"]
    ratio = jnp.exp(log_ratio)
    metrics = {
        "loss": loss,
        "policy_loss": pg_loss,
        "value_loss": v_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),  # Schulman's k3 estimator (CleanRL)
        "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > cfg.clip_coef).astype(jnp.float32)),
    }
    return loss, metrics


# ---------------------------------------------------------------------------------------------
# The contract: init, update, act
# ---------------------------------------------------------------------------------------------


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config) -> State:
    kind = action_kind(act_space)
    if kind not in ("discrete", "continuous"):
        raise HeronError(f"ppo cannot handle a {kind} action space: it needs a Discrete or a bounded 1-D Box action space")
    if (cfg.num_envs * cfg.num_steps) % cfg.num_minibatches:
        raise HeronError(f"ppo: num_envs*num_steps = {cfg.num_envs * cfg.num_steps} must be divisible by "
                         f"num_minibatches = {cfg.num_minibatches}; change one of them")
    continuous = kind == "continuous"
    out_dim = int(act_space.shape[0]) if continuous else int(act_space.n)
    if not continuous and int(act_space.start) != 0:
        raise HeronError("ppo needs a Discrete action space starting at 0")
    actor = Actor(tuple(cfg.hidden), out_dim, cfg.activation, continuous, cfg.init_log_std)
    critic = Critic(tuple(cfg.hidden), cfg.activation)
    dummy = jnp.zeros((1, *obs_space.shape), jnp.float32)
    actor_key, critic_key = jax.random.split(key)
    params = {"actor": actor.init(actor_key, dummy), "critic": critic.init(critic_key, dummy)}
    return State(
        params=params,
        opt_state=optimizer(cfg).init(params),
        obs_rms=RunningMeanStd.create(tuple(obs_space.shape)),
        return_rms=RunningMeanStd.create(()),
        discounted_return=jnp.zeros((cfg.num_envs,), jnp.float32),
        actor=actor,
        critic=critic,
        normalize_observations=bool(cfg.normalize_observations),
        action_low=tuple(float(x) for x in act_space.low) if continuous else None,
        action_high=tuple(float(x) for x in act_space.high) if continuous else None,
    )


def act(state: State, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
    """Sample (or, deterministic, take the mode of) π(·|s); continuous actions clipped to the bounds."""
    out = state.actor.apply(state.params["actor"], _normalize(state, obs))
    if state.action_low is None:
        return jnp.argmax(out, axis=-1) if deterministic else D.categorical_sample(key, out)
    mean, log_std = out
    action = mean if deterministic else mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    return jnp.clip(action, jnp.asarray(state.action_low, jnp.float32), jnp.asarray(state.action_high, jnp.float32))


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """One PPO iteration on a rollout [T, N] collected with `state`'s policy.

    1. Recompute the behaviour log π_old(a|s), V(s) and V(s') (s' the true next obs).
    2. GAE (γ, λ) with bootstrap on truncation, none on termination.
    3. K epochs × M shuffled minibatches of Adam steps on the clipped PPO loss.
    4. Refresh the observation normaliser with the rollout's observations (reward scaling,
       if on, is applied before step 2).
    """
    num_steps, num_envs = batch.reward.shape[:2]
    batch_size = num_steps * num_envs
    minibatch_size = batch_size // cfg.num_minibatches
    obs = _normalize(state, batch.obs)
    next_obs = _normalize(state, batch.next_obs)

    old_log_prob, _ = log_prob_and_entropy(state, state.params["actor"], obs, batch.action)
    both_values = state.critic.apply(state.params["critic"], jnp.concatenate([obs, next_obs], axis=0))
    values, next_values = both_values[:num_steps], both_values[num_steps:]
    rewards, return_rms, discounted_return = batch.reward.astype(jnp.float32), state.return_rms, state.discounted_return
    if cfg.normalize_rewards:
        done = jnp.maximum(batch.terminated, batch.truncated).astype(jnp.float32)
        rewards, return_rms, discounted_return = scale_rewards(state, rewards, done, cfg.gamma)
    advantages, returns = gae(values, next_values, rewards, batch.terminated, batch.truncated, cfg.gamma, cfg.gae_lambda)

    flat = jax.tree.map(lambda x: x.reshape((batch_size, *x.shape[2:])), {
        "obs": obs, "action": batch.action, "old_log_prob": old_log_prob, "old_values": values,
        "advantages": advantages, "returns": returns,
    })
    tx = optimizer(cfg)
    grad_fn = jax.grad(ppo_loss, has_aux=True)

    def minibatch_step(carry, minibatch):
        params, opt_state = carry
        grads, metrics = grad_fn(params, state, minibatch, cfg)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), metrics

    def epoch(carry, epoch_key):
        perm = shuffled_indices(epoch_key, batch_size)
        shuffled = jax.tree.map(
            lambda x: jnp.take(x, perm, axis=0, mode="clip").reshape((cfg.num_minibatches, minibatch_size, *x.shape[1:])), flat)
        return jax.lax.scan(minibatch_step, carry, shuffled)

    (params, opt_state), metrics = jax.lax.scan(epoch, (state.params, state.opt_state),
                                                jax.random.split(key, cfg.update_epochs))
    metrics = jax.tree.map(jnp.mean, metrics)
    metrics["explained_variance"] = 1.0 - jnp.var(returns - values) / (jnp.var(returns) + 1e-8)
    metrics["value_mean"] = jnp.mean(values)
    schedule = learning_rate_schedule(cfg)
    adam_count = state.opt_state[1][0].count  # minibatch steps taken before this update
    metrics["learning_rate"] = jnp.asarray(schedule(adam_count) if callable(schedule) else schedule, jnp.float32)
    obs_rms = state.obs_rms.update(batch.obs) if state.normalize_observations else state.obs_rms
    return state.replace(params=params, opt_state=opt_state, obs_rms=obs_rms, return_rms=return_rms,
                         discounted_return=discounted_return), metrics


register(AgentSpec(
    name="ppo",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="on_policy",
    action_kinds=frozenset({"discrete", "continuous"}),
    summary="Proximal Policy Optimization, clipped surrogate + GAE (Schulman et al. 2017)",
))
