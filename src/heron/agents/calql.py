"""Cal-QL (Nakamoto, Zhai, Singh, Sobol Mark, Ma, Finn, Kumar & Levine 2023, "Cal-QL: Calibrated
Offline RL Pre-Training for Efficient Online Fine-Tuning").

CQL (heron.agents.cql) whose conservative penalty never pushes the Q-values of policy actions
below a reference value, the behaviour policy's value V^μ(s):

    α_cql · E_s[ log Σ_a exp max(Q_i(s, a), V^μ(s)) − Q_i(s, a_data) ]      (policy actions a)

so the learned Q is conservative but calibrated: it does not fall below what the data already
achieves, and the first online updates do not have to "unlearn" an over-pessimistic Q (the dip
at the switch). V^μ(s) is the discounted Monte-Carlo return-to-go of the episode s was logged in
(`mc_return_to_go`). As in the authors' code, the bound applies to the N actions sampled from
π(·|s) and the N from π(·|s') (both evaluated at s, before their log-densities are subtracted);
the N uniform actions are not bounded. Everything else is CQL's `update`, called with the bound.

The return-to-go reaches `update` as the batch's `label` (`AgentSpec.label_episode`, see
heron/agents/registry.py): the offline loop labels every dataset episode before training; online,
each episode's rows are labelled in the replay buffer when it ends (the authors compute it for
each finished online trajectory too). Rows of an episode still running, and plain `Transition`
batches without labels, have no bound (label −inf), i.e. CQL's penalty.

Time-limit truncation: G_t sums the rewards the episode actually logged; after a timeout (or any
end that is not a termination) the tail beyond the last step is 0 by default ("zero": the plain
discounted sum of the logged rewards, as CORL's port for locomotion, whose return-to-go restarts
at every timeout), or the last reward repeated forever ("repeat_last": r_{T−1} γ/(1−γ) more, the
authors' `infinite_horizon` for Kitchen, their dense-reward task ended by timeouts). A terminated
episode has no tail. Sparse-reward tasks can set `sparse_failure_reward`: an episode whose every
reward equals it gets r/(1−γ) at every step (the authors' AntMaze and Adroit rule).

Fine-tuning (`FINETUNE`): the offline data stays and each batch is half offline, half online
(mixing_ratio 0.5), one update per env step (online_utd_ratio 1), the same objective online
(cql_min_q_weight_online unset). Deviations from the authors' code: updates run every env step
rather than after each collected trajectory; rows of the running episode are sampled unlabelled;
the policy has heron's default initialisation (the authors: orthogonal, log σ offset −1).
"""

from dataclasses import dataclass

import jax
import numpy as np

from heron.agents import cql
from heron.agents.registry import AgentSpec, FinetuneRule, register
from heron.errors import HeronError
from heron.types import Transition

TIMEOUT_TAILS = ("zero", "repeat_last")


@dataclass(frozen=True)
class Config(cql.Config):
    """Cal-QL hyperparameters: CQL's fields (heron.agents.cql.Config) with the Cal-QL defaults
    where they differ, plus the return-to-go settings.

    Sources: the authors' code (github.com/nakamotoo/Cal-QL: JaxCQL/conservative_sac.py defaults,
    conservative_sac_main.py flags, scripts/run_{antmaze,adroit,kitchen}.sh): α_cql = 5 (AntMaze,
    Kitchen; Adroit 1), N = 10, importance sampling, max-backup over N policy actions at s', no
    entropy backup, policy Adam 1e-4 (temperature too), critics 3e-4, γ = 0.99, τ = 5e-3, batch 256,
    2x256 networks (the flags' default; AntMaze uses 4x256 critics), no state normalisation.
    """

    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy π (authors' policy_arch default '256-256')."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each Q-network (authors' qf_arch default '256-256'; AntMaze script 4x256)."""
    max_target_backup: bool = True
    """Back up max over N policy samples at s' of min_i Q̄_i (authors' cql_max_target_backup=True)."""
    target_action_gap: float = 0.8
    """τ of CQL-Lagrange, used only with lagrange=True (authors' AntMaze script, their only Lagrange setting: 0.8)."""
    normalize_obs: bool = False
    """Standardise states with the dataset's mean and std (off in the authors' code)."""
    weight_init: str = "lecun"
    """Initialisation of every layer: Flax's default (the authors' code is JAX; CQL's "torch" follows PyTorch code)."""
    timeout_tail: str = "zero"
    """Return-to-go tail after an episode's last step when it was not terminated: 'zero' (the logged
    rewards only; CORL's locomotion port) or 'repeat_last' (r_{T−1} forever; authors' Kitchen infinite_horizon)."""
    sparse_failure_reward: float | None = None
    """r_f: an episode whose every reward equals r_f gets V^μ = r_f / (1 − γ) at every step (authors'
    AntMaze/Adroit rule for failed sparse-reward episodes); None: off (dense rewards)."""

    def __post_init__(self):
        super().__post_init__()
        if self.timeout_tail not in TIMEOUT_TAILS:
            raise HeronError(f"calql: timeout_tail must be one of {', '.join(TIMEOUT_TAILS)}, got {self.timeout_tail!r}")
        if self.sparse_failure_reward is not None and self.gamma >= 1.0:
            raise HeronError("calql: sparse_failure_reward needs gamma < 1 (its return is r_f / (1 − γ))")
        if self.timeout_tail == "repeat_last" and self.gamma >= 1.0:
            raise HeronError("calql: timeout_tail='repeat_last' needs gamma < 1 (its tail is r / (1 − γ))")


# ----------------------------------------------------------------------------- the reference value


def mc_return_to_go(rewards, terminated, gamma: float, timeout_tail: str = "zero",
                    sparse_failure_reward: float | None = None) -> np.ndarray:
    """V^μ(s_t) of one episode's T transitions (time order), the discounted Monte-Carlo return-to-go:

        G_t = r_t + γ (1 − d_t) G_{t+1},   G_T = 0                    (timeout_tail 'zero')
                                           G_T = r_{T−1} / (1 − γ)    (timeout_tail 'repeat_last')

    d_t: `terminated`; a terminated last step cuts the tail either way, so the tail only counts after
    a timeout or a cut. With `sparse_failure_reward` r_f, an episode whose every reward is r_f gets
    G_t = r_f / (1 − γ) for all t (the failure reward forever). Returns float32 [T].
    """
    rewards = np.asarray(rewards, np.float64).reshape(-1)
    terminated = np.asarray(terminated, np.float64).reshape(-1)
    if rewards.size == 0:
        return np.zeros(0, np.float32)
    if sparse_failure_reward is not None and np.all(rewards == sparse_failure_reward):
        return np.full(rewards.shape, sparse_failure_reward / (1.0 - gamma), np.float32)
    out = np.empty_like(rewards)
    following = rewards[-1] / (1.0 - gamma) if timeout_tail == "repeat_last" else 0.0
    for t in range(rewards.size - 1, -1, -1):
        following = rewards[t] + gamma * (1.0 - terminated[t]) * following
        out[t] = following
    return out.astype(np.float32)


def label_episode(rewards, terminated, truncated, cfg: Config) -> np.ndarray:
    """The batch label of each transition of one episode: V^μ(s_t) = `mc_return_to_go` with the
    config's γ, timeout tail and sparse failure reward (`truncated` is implied: any end that is not
    a termination gets the tail)."""
    del truncated
    return mc_return_to_go(rewards, terminated, cfg.gamma, cfg.timeout_tail, cfg.sparse_failure_reward)


# ----------------------------------------------------------------------------- update


def update(state: cql.State, batch: Transition, key: jax.Array, cfg: Config) -> tuple[cql.State, dict]:
    """CQL's update with the penalty's policy-action values bounded below by V^μ = `batch.label`
    (a batch without labels, or a label of −inf, gets no bound). Metrics add `bound_rate`: the
    share of policy-action values below V^μ (the ones the bound lifted)."""
    return cql.update(state, batch, key, cfg, lower_bound=getattr(batch, "label", None))


FINETUNE = FinetuneRule(
    keep_offline_data=True, offline_fraction=0.5, updates_per_step=1, online_config=cql.online_config,
    source="Cal-QL (Nakamoto et al. 2023): keep the offline data and draw half of each batch from it "
           "(mixing_ratio 0.5), one update per env step (online_utd_ratio 1), the same calibrated CQL objective "
           "online; online episodes get their Monte-Carlo return-to-go when they end (authors' code)")

register(AgentSpec(
    name="calql",
    config=Config,
    init=cql.init,
    update=update,
    act=cql.act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="Calibrated Q-Learning: CQL whose penalty keeps policy-action Q above the data's Monte-Carlo "
            "return-to-go (offline→online, continuous).",
    finetune=FINETUNE,
    label_episode=label_episode,
))
