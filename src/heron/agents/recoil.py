"""ReCOIL, RElaxed Coverage for Off-policy Imitation Learning (Sikchi, Zheng, Zhang & Niekum,
ICLR 2024, "Dual RL: Unification and New Methods for Reinforcement and Imitation Learning").

Offline imitation from a few expert demonstrations D^E plus arbitrary (suboptimal) data D^S,
with no rewards. Prior dual IL methods match d^π to d^E and need D^S to cover the expert's
visitations; ReCOIL instead matches two *mixtures*, min_π D_f(β d^π + (1 − β) d^S ‖ β d^E + (1 − β) d^S),
which is defined whatever the coverage. Its dual (Lagrange multiplier Q of the Bellman flow
constraint, f*_p the conjugate of f restricted to non-negative ratios) — derived here from the
abstract's mixture-matching idea; the paper's own equation could not be checked — is

    min_Q  β (1 − γ) E_{d0,π}[Q(s, a)] + E_{d^E_mix}[f*_p(γ Q(s', π) − Q(s, a))] − (1 − β) E_{d^S}[γ Q(s', π) − Q(s, a)],

d^E_mix = β d^E + (1 − β) d^S: no discriminator, only samples of d^E and of the mixture.
With the Pearson χ² divergence (f*(y) = y + y²/4) the objective is a least-squares regression
of Q: expert pairs are pulled toward an upper value, every mixture pair toward a Bellman
target with a negative reward. The authors' code uses exactly that bounded least-squares form
(the "LS-IQ stability trick", github.com/hari-sikchi/DualRL, offline/critic_imitate.py
`update_q_imitate` / `ls_iq_loss`):

    L_Q = Σ_i  E_{d^E}[½ (Q_i(s, a) − r̄/(1 − γ))²] + E_{d^E_mix}[½ (Q_i(s, a) − y)²],
    y   = −r̄ + γ (1 − d) V(s') + γ d (−r̄/(1 − γ))          (r̄ = 2: targets 200, −2, −200 at γ = 0.99)

and, as XQL / f-DVL, an implicit maximiser V(s) ≈ max_a Q(s, a) fitted by Gumbel regression to
the target critics on mixture samples (`rkl_loss_imitate`: XQL's batch-max-rescaled loss, here
`heron.agents.xql.gumbel_rescale_loss`), and the policy extracted by IQL's advantage-weighted
regression exp(3 (Q̄ − V)) clipped at 100. One update: value step, actor step, critic step onto
the new V, Polyak target (XQL's order, `xql.dual_value_update`; only the critic loss differs).

Where the expert data comes from (heron's offline loop samples batches from ONE dataset):
the dataset holds D^S and D^E together, and `relabel(ds, cfg)` (`AgentSpec.relabel`, applied
once by the loop before the data moves to the device) does two things, so nothing in the dataset
format or the loop's sampler changes:

* it writes each transition's expert indicator (1 for D^E, 0 for D^S) into the `reward` field —
  ReCOIL needs no rewards, so the field is free (RCSL writes its conditioning return there too);
* it sets the episode weights so that expert transitions make up β of the sampling mass:
  each batch is a sample of d^E_mix = β d^E + (1 − β) d^S, and its expert-flagged rows are a
  sample of d^E. (The authors draw two equal batches, one from D^E and one from D^S ∪ D^E —
  train_offline_imitate.py; β = ½ gives the same expert share up to D^E's own share of D^S ∪ D^E.)
  Weights already on the dataset are replaced.

Which episodes are the demonstrations: the last `expert_episodes` episodes when set, else the
episodes of the source named `expert_source` in the dataset's `heron data mix` provenance (the
mix records every source's episode count, in order), e.g.
`heron data mix OUT random.hdf5 expert.hdf5:0.01` with the expert file named "expert".

Differences from the authors' code, all from sampling one batch: the value and actor losses
average over the whole batch (d^E_mix) rather than over the D^S ∪ D^E half only, and the
Gumbel loss's rescaling maximum is taken over that batch.
"""

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax

from heron.agents import iql, xql
from heron.agents.registry import AgentSpec, DatasetStats, FinetuneRule, register
from heron.core.actions import to_unit
from heron.core.distributions import gaussian_log_prob
from heron.core.normalization import ema_update, normalized_obs
from heron.data.dataset import EpisodeDataset
from heron.errors import HeronError
from heron.types import Transition

State = iql.State
act = iql.act


@dataclass(frozen=True)
class Config:
    """ReCOIL hyperparameters.

    Defaults are the authors' (github.com/hari-sikchi/DualRL, offline/train_offline_imitate.py
    flags: batch 1024, --temp 1, --max_clip 7, --double, no random actions; critic_imitate.py:
    LS-IQ targets ±2 / ±200, MSE critic loss ("Huber loss didnt work well here"); the IQL
    MuJoCo config the code is built on: 2x256, Adam 3e-4, γ = 0.99, target rate 0.005, AWR
    temperature 3, cosine actor schedule; README: LayerNorm off by default, raise --temp
    (2.5, 5, 10, 20) until Q stops diverging — their hopper-random example uses 5).
    """

    expert_source: str = "expert"
    """Name of the `heron data mix` source whose episodes are the demonstrations D^E (used when expert_episodes is 0)."""
    expert_episodes: int = 0
    """If > 0: the dataset's last `expert_episodes` episodes are D^E (overrides expert_source)."""
    beta: float = 0.5
    """β, the expert share of d^E_mix = β d^E + (1 − β) d^S: the sampling mass of D^E (authors: equal expert and mixed batches)."""
    temperature: float = 1.0
    """Gumbel scale of the value loss, z = (Q̄ − V)/temperature (authors' --temp, default 1)."""
    max_clip: float = 7.0
    """Upper clip of z in the Gumbel loss (authors' --max_clip, default 7)."""
    expert_reward: float = 2.0
    """r̄: expert Q target r̄/(1 − γ), mixture reward −r̄, absorbing value −r̄/(1 − γ) (critic_imitate.py: 200, −2, −200; χ²'s y + y²/4 gives 2)."""
    batch_size: int = 1024
    """Transitions per gradient step (authors' --batch_size default 1024)."""
    gamma: float = 0.99
    """Discount γ (< 1: the expert target is r̄/(1 − γ))."""
    tau: float = 0.005
    """Target critic update rate: Q̄ ← tau Q + (1 − tau) Q̄ after every step (IQL config)."""
    awr_beta: float = 3.0
    """Inverse temperature of the policy's weights exp(awr_beta (Q̄ − V)) (IQL MuJoCo config temperature 3)."""
    max_weight: float = 100.0
    """Upper clip of the exponentiated advantage weights (authors' actor.py: 100)."""
    random_actions: int = 0
    """Uniform random actions per state added to the value batch (authors' --sample_random_times, default 0)."""
    actor_lr: float = 3e-4
    """Adam step size of the policy (initial value of the cosine schedule)."""
    critic_lr: float = 3e-4
    """Adam step size of the Q-functions."""
    value_lr: float = 3e-4
    """Adam step size of the value function V."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """Actor learning-rate schedule: cosine decay to 0 over total_updates (IQL code base), or constant."""
    total_updates: int = 1_000_000
    """Gradient steps the cosine schedule spans (`heron train` sets it to --steps; authors' --max_steps 1M)."""
    policy: Literal["gaussian", "deterministic"] = "gaussian"
    """gaussian: weighted log-likelihood of N(tanh μ(s), σ²) (authors'); deterministic: weighted MSE."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy network."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each Q-network."""
    value_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the value network."""
    value_layer_norm: bool = False
    """LayerNorm after each hidden layer of V (off in the authors' config; their README: can help if Q diverges)."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    num_critics: int = 2
    """Number of Q-functions; the value target and the advantages use their minimum (--double=True)."""
    log_std_min: float = -5.0
    """Lower clip of the policy's log σ."""
    log_std_max: float = 2.0
    """Upper clip of the policy's log σ."""
    normalize_obs: bool = False
    """Standardise states with the dataset's mean and std (off in the authors' locomotion code)."""
    obs_std_eps: float = 1e-3
    """eps added to the dataset's state std when normalize_obs."""
    exploration_noise: float = 0.1
    """Std σ of the noise `act` adds to a deterministic policy when not deterministic."""

    # Read by the shared IQL init; ReCOIL learns from no rewards, so they are never scaled.
    normalize_reward: ClassVar[bool] = False
    reward_scale_target: ClassVar[float] = 1.0

    def __post_init__(self):
        if self.batch_size < 1 or self.total_updates < 1 or self.expert_episodes < 0:
            raise HeronError(f"recoil: batch_size and total_updates must be >= 1 and expert_episodes >= 0, got "
                             f"{self.batch_size}, {self.total_updates}, {self.expert_episodes}")
        if not 0.0 < self.beta < 1.0:
            raise HeronError(f"recoil: beta (the expert share of each batch) must be in (0, 1), got {self.beta}; "
                             "the authors' sampling corresponds to about 0.5")
        if not 0.0 <= self.gamma < 1.0 or not 0.0 < self.tau <= 1.0:
            raise HeronError(f"recoil: gamma must be in [0, 1) (the expert target is r̄/(1 − γ)) and tau in (0, 1], "
                             f"got {self.gamma}, {self.tau}")
        if self.temperature <= 0 or self.max_clip <= 0 or self.expert_reward <= 0:
            raise HeronError(f"recoil: temperature, max_clip and expert_reward must be > 0, got {self.temperature}, "
                             f"{self.max_clip}, {self.expert_reward}; the authors use 1 (up to 20), 7 and 2")
        if self.awr_beta < 0 or self.max_weight <= 0 or self.num_critics < 1 or self.random_actions < 0:
            raise HeronError("recoil: awr_beta and random_actions must be >= 0, max_weight > 0 and num_critics >= 1")
        if self.policy not in ("gaussian", "deterministic") or self.lr_schedule not in ("cosine", "constant"):
            raise HeronError("recoil: policy must be gaussian or deterministic, lr_schedule cosine or constant")
        if self.log_std_min > self.log_std_max or min(self.obs_std_eps, self.exploration_noise) < 0:
            raise HeronError("recoil: log_std_min must not exceed log_std_max; obs_std_eps and exploration_noise >= 0")
        if not self.expert_episodes and not self.expert_source:
            raise HeronError("recoil: name the demonstrations: expert_source (a `heron data mix` source) or expert_episodes")


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    """IQL's state (twin Q, V, Gaussian policy, normalisers); the reward scale stays 1 (unused)."""
    return xql.init_dual("recoil", key, obs_space, act_space, cfg, dataset_stats)


# ----------------------------------------------------------------------------- expert data


def expert_episode_mask(ds: EpisodeDataset, cfg: Config) -> np.ndarray:
    """[E] True for the episodes that are expert demonstrations (see the module docstring)."""
    mask = np.zeros(ds.num_episodes, bool)
    if cfg.expert_episodes:
        if cfg.expert_episodes >= ds.num_episodes:
            raise HeronError(f"recoil: expert_episodes={cfg.expert_episodes} leaves no other data in dataset "
                             f"{ds.name!r} ({ds.num_episodes} episodes); ReCOIL needs demonstrations and other data")
        mask[ds.num_episodes - cfg.expert_episodes:] = True
        return mask
    mix = ds.provenance[-1] if ds.provenance else {}
    sources = mix.get("sources") if mix.get("transform") == "mix" else None
    if not sources or cfg.expert_source not in [s.get("name") for s in sources]:
        raise HeronError(f"recoil: cannot tell the demonstrations in dataset {ds.name!r}: its last provenance step is "
                         f"not a `heron data mix` with a source named {cfg.expert_source!r}; mix the expert data in "
                         "(`heron data mix OUT REPLAY EXPERT`, then expert_source=<its name>) or set expert_episodes=N "
                         "(the last N episodes)")
    counts = [int(s["episodes"]) for s in sources]
    if sum(counts) != ds.num_episodes:
        raise HeronError(f"recoil: dataset {ds.name!r} has {ds.num_episodes} episodes but its mix recorded "
                         f"{sum(counts)} (episodes were removed after mixing, e.g. action-free ones); set expert_episodes")
    start = 0
    for source, n in zip(sources, counts):
        if source.get("name") == cfg.expert_source:
            mask[start:start + n] = True
        start += n
    if mask.all():
        raise HeronError(f"recoil: every episode of dataset {ds.name!r} is from {cfg.expert_source!r}; ReCOIL needs "
                         "other (suboptimal) data besides the demonstrations")
    return mask


def relabel(ds: EpisodeDataset, cfg: Config) -> EpisodeDataset:
    """The dataset the loop trains on: reward ← expert indicator (1 on D^E, 0 elsewhere), episode
    weights ← β / |D^E| per expert transition and (1 − β) / |D^S| per other one."""
    expert = expert_episode_mask(ds, cfg)
    lengths = ds.episode_lengths
    n_expert, n_other = int(lengths[expert].sum()), int(lengths[~expert].sum())
    weights = np.where(expert, cfg.beta / max(n_expert, 1), (1.0 - cfg.beta) / max(n_other, 1))
    flags = np.repeat(expert, lengths).astype(np.float32)
    return dataclasses.replace(ds, rewards=flags, episode_weights=weights.astype(np.float64))


# ----------------------------------------------------------------------------- losses


def masked_mean(x, mask):
    """Σ m x / max(Σ m, 1) over the last axis: the mean over the rows with m = 1 (0 when there are none)."""
    return jnp.sum(x * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


def recoil_q_target(terminated, next_v, gamma, expert_reward):
    """y = −r̄ + γ (1 − d) V(s') + γ d (−r̄ / (1 − γ)): the mixture's Bellman target, reward −r̄,
    a terminal state's value that of absorbing at −r̄ forever (authors' `update_q_imitate`)."""
    absorbing = -expert_reward / (1.0 - gamma)
    return -expert_reward + gamma * (1.0 - terminated) * next_v + gamma * terminated * absorbing


def recoil_critic_loss(q, target, expert, expert_target):
    """L_Q = Σ_i E_{d^E}[½ (Q_i − r̄/(1 − γ))²] + E_{d^E_mix}[½ (Q_i − y)²]; q: [N, B], y, expert: [B].

    The batch samples d^E_mix; its rows with expert = 1 sample d^E (they enter both terms, as the
    authors' expert transitions, which are also in their mixed data). No gradient through y.
    """
    bellman = 0.5 * (q - jax.lax.stop_gradient(target)) ** 2
    pull_up = 0.5 * (q - expert_target) ** 2
    return jnp.sum(masked_mean(pull_up, expert) + jnp.mean(bellman, axis=-1))


# ----------------------------------------------------------------------------- update


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """Gumbel value step, AWR actor step, ReCOIL critic step onto the new V, target update.

    `batch.reward` holds the expert indicator written by `relabel` (> ½: a demonstration)."""
    actor_tx, critic_tx, value_tx = iql._optimizers(cfg)
    obs, next_obs = normalized_obs(state, batch.obs), normalized_obs(state, batch.next_obs)
    batch_size = obs.shape[0]
    action = to_unit(batch.action.reshape(batch_size, -1), state.action_low, state.action_high)
    expert = (batch.reward.reshape(-1) > 0.5).astype(jnp.float32)
    terminated = batch.terminated.astype(jnp.float32).reshape(-1)

    v_obs, v_action = obs, action
    if cfg.random_actions:
        random_action = jax.random.uniform(key, (cfg.random_actions * batch_size, action.shape[-1]),
                                           jnp.float32, -1.0, 1.0)
        v_obs = jnp.concatenate([obs, jnp.tile(obs, (cfg.random_actions, 1))])
        v_action = jnp.concatenate([action, random_action])
    target_q = jnp.min(state.critic.apply(state.target_critic_params, v_obs, v_action), axis=0)

    def value_objective(params):
        v = state.value.apply(params, v_obs)
        return xql.gumbel_rescale_loss(target_q - v, cfg.temperature, cfg.max_clip), v

    (v_loss, v), grads = jax.value_and_grad(value_objective, has_aux=True)(state.value_params)
    updates, value_opt_state = value_tx.update(grads, state.value_opt_state, state.value_params)
    value_params = optax.apply_updates(state.value_params, updates)

    new_v = state.value.apply(value_params, jnp.concatenate([obs, next_obs]))
    v_now, v_next = new_v[:batch_size], new_v[batch_size:]

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

    target = recoil_q_target(terminated, v_next, cfg.gamma, cfg.expert_reward)
    expert_target = cfg.expert_reward / (1.0 - cfg.gamma)

    def critic_objective(params):
        q = state.critic.apply(params, obs, action)
        return recoil_critic_loss(q, target, expert, expert_target), q

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
    q_min = jnp.min(q, axis=0)
    metrics = {"value_loss": v_loss, "critic_loss": q_loss, "actor_loss": pi_loss, "v_mean": jnp.mean(v),
               "q_expert": masked_mean(q_min, expert), "q_other": masked_mean(q_min, 1.0 - expert),
               "expert_fraction": jnp.mean(expert), "advantage_mean": jnp.mean(advantage),
               "weight_mean": jnp.mean(weights),
               "weight_clipped": jnp.mean((weights >= cfg.max_weight).astype(jnp.float32))}
    return new_state, metrics


register(AgentSpec(
    name="recoil",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="ReCOIL (Dual RL): offline imitation from a few demonstrations plus arbitrary data, no rewards "
            "(χ² dual Q on expert/mixture, Gumbel V, AWR policy; offline, continuous).",
    relabel=relabel,
    finetune=FinetuneRule(source="ReCOIL has no online rule (online data carries no expert flag)"),
))
