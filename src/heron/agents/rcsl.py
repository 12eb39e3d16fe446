"""Return-conditioned supervised learning (RCSL), the MLP variant RvS-R.

Brandfonbrener et al. 2022, "When does return-conditioned supervised learning work for offline
RL?", analyse policies π(a | s, g) fitted by supervised regression on the dataset's actions,
conditioned on the return g that followed; RvS (Emmons et al. 2021, "RvS: What is essential
for offline RL via supervised learning?") shows a plain MLP suffices. heron implements RvS-R's
conditioning: g_t is the *average* reward-to-go of the rest of the episode,

    ω_t = (1 / (T − t)) Σ_{k=t}^{T−1} r_k,

which, unlike the summed return-to-go of Decision Transformer, does not shrink as the episode
runs, so a constant target ω* at evaluation is consistent with training — heron's `act` is
stateless, so the target is NOT decremented by the rewards collected (no per-episode memory).

The offline loop samples flat transitions, so ω_t is computed once per transition from the
episode structure by `relabel` (registered as `AgentSpec.relabel`): the loop trains on a copy of
the dataset whose `reward` field holds ω_t. The policy is deterministic, a = tanh(MLP([s, ω])),
fitted by mean squared error in normalised action units (RvS's unit-variance Gaussian
likelihood up to constants). At evaluation ω* = `target_reward`, by default the best episode's
average reward, return_max / max_episode_steps (episodes that run to the time limit).
"""

import dataclasses
import itertools
from dataclasses import dataclass

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.core import FrozenDict

from heron.agents.registry import AgentSpec, DatasetStats, register
from heron.core.actions import box_bounds, from_unit, to_unit
from heron.core.networks import DeterministicActor
from heron.core.normalization import dataset_obs_normalizer, normalized_obs
from heron.data.dataset import EpisodeDataset
from heron.errors import HeronError
from heron.types import Transition


@dataclass(frozen=True)
class Config:
    """RCSL (RvS-R) hyperparameters.

    RvS-R trains an MLP conditioned on the average reward-to-go with Adam (Emmons et al. 2021);
    their appendix uses 2x1024 ReLU, lr 1e-3 and very large batches (recalled, not re-verified
    here). heron's defaults are the 2x256 / batch 256 of its other offline agents with RvS's
    lr 1e-3, and normalised states (heron's choice, as TD3+BC).
    """

    batch_size: int = 256
    """Dataset transitions per gradient step N."""
    lr: float = 1e-3
    """Adam step size of the policy (RvS: 1e-3)."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy MLP π(s, ω)."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    target_reward: float | None = None
    """ω* the policy is conditioned on at evaluation (average reward per step); None: the best
    episode's average reward, return_max / max_episode_steps."""
    max_episode_steps: int = 1000
    """T used for the default ω* (D4RL MuJoCo's time limit; Pendulum: 200)."""
    target_scale: float = 1.0
    """Multiplier on the default ω* (1: the best return seen; RvS-style 'ask for more' > 1 for positive rewards)."""
    normalize_obs: bool = True
    """Standardise states with the dataset's mean and std."""
    obs_std_eps: float = 1e-3
    """eps added to the dataset's state std when normalize_obs."""
    exploration_noise: float = 0.1
    """Std σ of the noise `act` adds when not deterministic (TD3's 0.1)."""

    def __post_init__(self):
        if self.batch_size < 1 or self.max_episode_steps < 1:
            raise HeronError(f"rcsl: batch_size and max_episode_steps must be >= 1, got {self.batch_size}, "
                             f"{self.max_episode_steps}")
        if self.lr <= 0 or self.obs_std_eps < 0 or self.exploration_noise < 0:
            raise HeronError("rcsl: lr must be > 0; obs_std_eps and exploration_noise >= 0")


@struct.dataclass
class State:
    """The policy, its optimiser, the state normaliser and the evaluation target ω*."""

    actor_params: FrozenDict
    opt_state: optax.OptState
    obs_mean: jax.Array
    """[obs_dim] state normaliser mean (0 unless normalize_obs)."""
    obs_std: jax.Array
    """[obs_dim] state normaliser scale (1 unless normalize_obs)."""
    target_reward: jax.Array
    """ω* that `act` conditions on."""
    step: jax.Array
    """Gradient steps taken (int32)."""
    actor: DeterministicActor = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)
    exploration_noise: float = struct.field(pytree_node=False)


# ----------------------------------------------------------------------------- relabelling


def return_to_go(rewards: np.ndarray, episode_starts: np.ndarray) -> np.ndarray:
    """G_t = Σ_{k=t}^{T−1} r_k within each episode (undiscounted), [N] for flat rewards [N]."""
    rewards = np.asarray(rewards, np.float64)
    out = np.empty_like(rewards)
    for a, b in itertools.pairwise(episode_starts):
        out[a:b] = np.cumsum(rewards[a:b][::-1])[::-1]
    return out


def average_reward_to_go(rewards: np.ndarray, episode_starts: np.ndarray) -> np.ndarray:
    """ω_t = G_t / (T − t), the mean reward over the rest of the episode (RvS-R's conditioning)."""
    starts = np.asarray(episode_starts)
    remaining = np.concatenate([np.arange(b - a, 0, -1) for a, b in itertools.pairwise(starts)])
    return return_to_go(rewards, starts) / remaining


def relabel(ds: EpisodeDataset, cfg: Config | None = None) -> EpisodeDataset:
    """The dataset with each transition's reward replaced by its ω_t (what `update` regresses on; `cfg` unused)."""
    omega = average_reward_to_go(ds.rewards, ds.episode_starts).astype(np.float32)
    return dataclasses.replace(ds, rewards=omega)


# ----------------------------------------------------------------------------- init


def _inputs(state: State, obs, omega) -> jax.Array:
    """[s_normalised, ω]: the conditioning return enters as one more input feature."""
    return jnp.concatenate([normalized_obs(state, obs), jnp.reshape(omega, (-1, 1))], axis=-1)


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    low, high = box_bounds(act_space, "rcsl")
    obs_dim, act_dim = int(np.prod(obs_space.shape)), len(low)
    actor = DeterministicActor(cfg.actor_hidden, act_dim, cfg.activation)
    actor_params = actor.init(key, jnp.zeros((1, obs_dim + 1), jnp.float32))
    obs_mean, obs_std = dataset_obs_normalizer(dataset_stats, obs_dim, cfg.normalize_obs, cfg.obs_std_eps)
    if cfg.target_reward is not None:
        target = cfg.target_reward
    elif dataset_stats is not None:
        target = cfg.target_scale * float(dataset_stats.return_max) / cfg.max_episode_steps
    else:
        target = 0.0  # a template (checkpoint restore): the leaf is overwritten
    return State(actor_params=actor_params, opt_state=optax.adam(cfg.lr).init(actor_params), obs_mean=obs_mean,
                 obs_std=obs_std, target_reward=jnp.asarray(target, jnp.float32), step=jnp.zeros((), jnp.int32),
                 actor=actor, action_low=low, action_high=high, exploration_noise=float(cfg.exploration_noise))


# ----------------------------------------------------------------------------- loss and update


def rcsl_loss(pred_action, action):
    """L(φ) = E_B[Σ_j (π_φ(s, ω)_j − a_j)²] (supervised regression onto the dataset action)."""
    return jnp.mean(jnp.sum((pred_action - action) ** 2, axis=-1))


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """One regression step; `batch.reward` holds ω_t (the loop trains on `relabel(ds)`; `key` unused)."""
    del key
    tx = optax.adam(cfg.lr)
    inputs = _inputs(state, batch.obs, batch.reward.astype(jnp.float32))
    action = to_unit(batch.action.reshape(inputs.shape[0], -1), state.action_low, state.action_high)

    def objective(params):
        return rcsl_loss(state.actor.apply(params, inputs), action)

    loss, grads = jax.value_and_grad(objective)(state.actor_params)
    updates, opt_state = tx.update(grads, state.opt_state, state.actor_params)
    new_state = state.replace(actor_params=optax.apply_updates(state.actor_params, updates), opt_state=opt_state,
                              step=state.step + 1)
    return new_state, {"actor_loss": loss, "omega_mean": jnp.mean(batch.reward.astype(jnp.float32))}


# ----------------------------------------------------------------------------- act


def act(state: State, obs: jax.Array, key: jax.Array, deterministic=False) -> jax.Array:
    """[B, obs_dim] raw observations -> [B, act_dim] in env units: π(s, ω*), plus N(0, σ²) noise
    unless deterministic."""
    omega = jnp.full((obs.shape[0],), state.target_reward, jnp.float32)
    mean = state.actor.apply(state.actor_params, _inputs(state, obs, omega))
    noise = state.exploration_noise * jax.random.normal(key, mean.shape, jnp.float32)
    action = jnp.where(deterministic, mean, jnp.clip(mean + noise, -1.0, 1.0))
    return from_unit(action, state.action_low, state.action_high)


register(AgentSpec(
    name="rcsl",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="Return-conditioned supervised learning (RvS-R): MLP π(a | s, average reward-to-go) (offline, continuous).",
    relabel=relabel,
))
