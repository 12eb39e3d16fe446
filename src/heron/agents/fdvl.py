"""f-DVL, f-divergence Dual V-Learning (Sikchi, Zheng, Zhang & Niekum 2023, "Dual RL: Unification
and New Methods for Reinforcement and Imitation Learning").

The dual of f-divergence-regularised RL, restricted to V and with Q fitted by TD, gives the value
objective min_V (1 − λ) E_{s∼d^D}[V(s)] + λ E_{(s,a)∼d^D}[f*_p(Q̄(s, a) − V(s))], f*_p the convex
conjugate of f under the constraint that visitation ratios stay ≥ 0. With u = Q̄ − V the first
term is −(1 − λ) u up to a constant in V, so the per-sample loss is λ f*_p(u) − (1 − λ) u:
V is pushed up by f*_p wherever Q̄ exceeds it, and λ < 1 lets it settle below the maximum.
The paper shows XQL is the reverse-KL instance (f*_p(u) = e^u − u − 1 up to scale) and proposes
the Pearson χ² and total-variation instances, whose conjugates grow at most quadratically, to
fix the Gumbel loss's instability. The losses are those of the authors' code
(github.com/hari-sikchi/DVL, offline/critic.py):

    chi_square:      λ max(u + u²/4, 0) − (1 − λ) u
    total_variation: λ max(u, 0) − (1 − λ) u
    reverse_kl:      XQL's rescaled Gumbel loss with β = temperature (no λ term)

Q, the policy (AWR with exp(3 (Q̄ − V)) clipped at 100), the Huber critic loss and the update
order are XQL's (`heron.agents.xql.dual_value_update`), as in the authors' code, which is
built on the XQL code base.
"""

from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import jax
import jax.numpy as jnp

from heron.agents import iql, xql
from heron.agents.registry import AgentSpec, DatasetStats, register
from heron.errors import HeronError
from heron.types import Transition

State = iql.State
act = iql.act

DIVERGENCES = ("chi_square", "total_variation", "reverse_kl")


@dataclass(frozen=True)
class Config:
    """f-DVL hyperparameters.

    Defaults are the authors' locomotion command (github.com/hari-sikchi/DVL, offline/README.md:
    `--f=chi-square --config=configs/mujoco_config.py --max_clip=5 --sample_random_times=1
    --temp=1`; train_offline.py defaults: batch 1024, twin Q, 1M steps; the MuJoCo config is the
    XQL one: AWR temperature 3, LayerNorm V, Adam 3e-4, 2x256, γ = 0.99, target rate 0.005,
    cosine actor schedule; rewards × 1000 / return range). AntMaze: total_variation,
    temperature 0.8; Kitchen/Adroit: reverse_kl, temperature 8 (same README).
    """

    f: Literal["chi_square", "total_variation", "reverse_kl"] = "chi_square"
    """The f-divergence whose conjugate f*_p is the value loss (authors' --f)."""
    temperature: float = 1.0
    """λ in λ f*_p(u) − (1 − λ) u for chi_square / total_variation; Gumbel β for reverse_kl (authors' --temp)."""
    max_clip: float = 5.0
    """Upper clip of z in the reverse_kl (Gumbel) loss (authors' --max_clip 5; unused by the others)."""
    batch_size: int = 1024
    """Dataset transitions per gradient step N (train_offline.py default, not overridden in the README)."""
    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Target critic update rate: Q̄ ← tau Q + (1 − tau) Q̄ after every step."""
    awr_beta: float = 3.0
    """Inverse temperature of the policy's weights exp(awr_beta (Q̄ − V)) (mujoco_config.py temperature)."""
    max_weight: float = 100.0
    """Upper clip of the exponentiated advantage weights (authors' actor.py: 100)."""
    huber_delta: float = 20.0
    """δ of the Huber critic loss (authors' critic.py)."""
    random_actions: int = 1
    """Uniform random actions per state added to the value batch (authors' --sample_random_times=1, locomotion)."""
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
    """LayerNorm after each hidden layer of V (mujoco_config.py layernorm=True)."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, gelu, silu, elu)."""
    num_critics: int = 2
    """Number of Q-functions; the value target and the advantages use their minimum (--double=True)."""
    log_std_min: float = -5.0
    """Lower clip of the policy's log σ."""
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
        xql.check_shared_config("fdvl", self)
        if self.f not in DIVERGENCES:
            raise HeronError(f"fdvl: f must be one of {', '.join(DIVERGENCES)}, got {self.f!r}")
        if self.f == "reverse_kl" and not (self.temperature > 0 and self.max_clip > 0):
            raise HeronError("fdvl: reverse_kl needs temperature (β) > 0 and max_clip > 0")
        low = 0.5 if self.f == "total_variation" else 0.0  # TV's pinball loss has no minimum for λ ≤ ½
        if self.f != "reverse_kl" and not low < self.temperature <= 1.0:
            raise HeronError(f"fdvl: temperature λ must be in ({low}, 1] for {self.f}, got {self.temperature}; "
                             "the authors use 1 (chi_square, locomotion) and 0.8 (total_variation, AntMaze)")


def init(key: jax.Array, obs_space: gym.Space, act_space: gym.Space, cfg: Config,
         dataset_stats: DatasetStats | None = None) -> State:
    return xql.init_dual("fdvl", key, obs_space, act_space, cfg, dataset_stats)


# ----------------------------------------------------------------------------- losses


def chi_square_loss(diff, lam):
    """L_V = E_B[λ max(u + u²/4, 0) − (1 − λ) u], u = Q̄(s, a) − V(s) (Pearson χ², f(x) = (x − 1)²).

    u + u²/4 is the conjugate f*(u) of (x − 1)²; the authors' code floors it at 0, so samples
    with −4 < u < 0 (V a little above Q̄) exert no force and those far below pull V down.
    """
    return jnp.mean(lam * jnp.maximum(diff + diff**2 / 4.0, 0.0) - (1.0 - lam) * diff)


def total_variation_loss(diff, lam):
    """L_V = E_B[λ max(u, 0) − (1 − λ) u], u = Q̄(s, a) − V(s) (total variation).

    A pinball loss: its minimiser is the quantile of Q̄ at level 1 − (1 − λ)/λ over the
    dataset's actions (the maximum for λ = 1); for λ ≤ ½ it has none (V falls without bound)."""
    return jnp.mean(lam * jnp.maximum(diff, 0.0) - (1.0 - lam) * diff)


def value_loss(diff, cfg: Config):
    """The configured f-DVL value loss of u = Q̄ − V."""
    if cfg.f == "chi_square":
        return chi_square_loss(diff, cfg.temperature)
    if cfg.f == "total_variation":
        return total_variation_loss(diff, cfg.temperature)
    return xql.gumbel_rescale_loss(diff, cfg.temperature, cfg.max_clip)


def update(state: State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[State, dict]:
    """f-DVL value step, AWR actor step, Huber critic step, target update (authors' order)."""
    return xql.dual_value_update(state, batch, key, cfg, lambda diff: value_loss(diff, cfg))


register(AgentSpec(
    name="fdvl",
    config=Config,
    init=init,
    update=update,
    act=act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="f-DVL (Dual RL): f-divergence dual value loss (chi-square / TV), Q on V(s') targets, AWR policy (offline, continuous).",
))
