"""Offline→online: an offline agent continues in a Gymnasium env under its `FinetuneRule`.

The online phase is the host loop (`online_host.HostLoop`) driving the offline agent's own
`update` with the rule's config, so it inherits the host loop's guarantees (true final
observations, no transition across episodes, checkpoints at episode boundaries, exact resume).
What the rule decides at the switch:

* keep_offline_data: the replay buffer starts holding every offline transition (capacity =
  offline transitions + online steps, so nothing is overwritten) and batches sample offline and
  online data uniformly together; otherwise it starts empty.
* warmup_steps: the first env steps are taken by the pre-trained policy (sampled, not the mean)
  and only stored; updates start after them (WSRL's warm-up).
* updates_per_step: `update` calls per env step (UTD).
* offline_fraction: the share of each batch drawn from the offline rows (RLPD's symmetric sampling).
* offline_rows_first: those rows lead each batch, unshuffled (H2O tells real data from simulator rows).
* warmup_random: warm up with uniform-random actions instead of the pre-trained policy.

The switch metrics are computed from the evaluations: the pre-switch score is the last offline
evaluation; the dip is how far the worst online evaluation before recovery falls below it (% of
the pre-switch score, on normalised scores when the dataset has references); steps to recover is
the first online evaluation at or above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import jax
import jax.numpy as jnp

from heron.agents.registry import AgentSpec, FinetuneRule
from heron.data.dataset import EpisodeDataset, label_episodes
from heron.data.replay import ReplayBuffer, replay_add, replay_init
from heron.errors import HeronError
from heron.loops.online_host import HostLoop, HostLoopConfig, ReplaySettings
from heron.types import with_label

ONLINE_KEY_SALT = 0x0F1E  # the online phase's key: fold_in(PRNGKey(seed), salt), independent of the offline phase


def check_finetunable(spec: AgentSpec) -> None:
    if spec.family != "offline":
        raise HeronError(f"{spec.name} is not an offline algorithm: only offline runs continue online "
                         "(online algorithms train online from the start with `heron train ALGO --env ID`)")
    if spec.relabel is not None:
        raise HeronError(f"{spec.name} learns from relabelled episode quantities (return-to-go) that online "
                         "transitions do not have, so it cannot continue online; pre-train IQL, CQL or WSRL instead")


def resolve_rule(spec: AgentSpec, method: str | None = None, *, keep_offline_data: bool | None = None,
                 warmup_steps: int | None = None, updates_per_step: int | None = None) -> FinetuneRule:
    """The agent's own rule, or `method`'s (`wsrl`: WSRL's switch on any offline agent; `plain`: keep
    the data, no warm-up, UTD 1), with any of its three settings overridden."""
    import dataclasses

    rule = spec.finetune
    if method is not None:
        if method == "wsrl":
            from heron.agents.wsrl import FINETUNE

            # WSRL's switch; the online update stays the agent's own (its online_config, if any).
            rule = FINETUNE if spec.finetune.source == FINETUNE.source else dataclasses.replace(
                FINETUNE, online_config=spec.finetune.online_config,
                source=f"WSRL's switch (Zhou et al. 2025) applied to {spec.name}: drop the offline data, warm up with "
                       f"rollouts of the pre-trained policy, then {spec.name}'s own update online at UTD 4 (WSRL's "
                       "own online learner, SAC with a LayerNorm critic ensemble, is `heron train wsrl`)")
        elif method == "plain":
            rule = dataclasses.replace(FinetuneRule(), online_config=spec.finetune.online_config)
            if spec.finetune.offline_fraction:
                rule = dataclasses.replace(rule, offline_fraction=spec.finetune.offline_fraction,
                                           offline_rows_first=spec.finetune.offline_rows_first)
        elif method != "own":
            raise HeronError(f"unknown fine-tuning method {method!r}: choose own (the algorithm's rule), wsrl or plain")
    changes = {k: v for k, v in dict(keep_offline_data=keep_offline_data, warmup_steps=warmup_steps,
                                     updates_per_step=updates_per_step).items() if v is not None}
    rule = dataclasses.replace(rule, **changes) if changes else rule
    if spec.finetune.offline_rows_first and not rule.offline_rows_first:
        raise HeronError(f"{spec.name} learns from offline and online rows together in every batch (offline rows "
                         f"first), so the offline data must stay: use its own rule (drop --finetune-method {method})")
    return rule


def check_warmup(rule: FinetuneRule, online_steps: int) -> None:
    """Refuse a warm-up that fills the whole online phase: no online update would run, and the
    run would report the pre-trained policy as the fine-tuned one."""
    if online_steps > 0 and rule.warmup_steps >= online_steps:
        raise HeronError(f"the switch rule's warm-up ({rule.warmup_steps} env steps, no updates) covers all "
                         f"{online_steps} online steps, so the online phase would never update: raise --online-steps "
                         f"above {rule.warmup_steps} or lower --warmup-steps (a suite block: warmup_steps = N)")


def online_config(spec: AgentSpec, cfg, rule: FinetuneRule):
    return cfg if rule.online_config is None else rule.online_config(cfg)


def rule_summary(rule: FinetuneRule) -> dict:
    return {"keep_offline_data": rule.keep_offline_data, "warmup_steps": rule.warmup_steps,
            "updates_per_step": rule.updates_per_step, "offline_fraction": rule.offline_fraction,
            "warmup_random": rule.warmup_random, "source": rule.source}


@dataclass(frozen=True)
class OnlinePhase:
    """Everything the online phase needs besides the pre-trained agent."""

    env_id: str
    online_steps: int
    seed: int = 0
    eval_every: int = 0
    eval_episodes: int = 10
    log_every: int = 1_000
    checkpoint_every: int = 0
    eval_env_id: str | None = None
    """Evaluate in this env instead of env_id (H2O: the real system; env_id is the simulator)."""


def make_loop(spec: AgentSpec, cfg, rule: FinetuneRule, phase: OnlinePhase, offline_transitions: int) -> HostLoop:
    """A host loop running `spec.update` with the rule's online config and replay settings."""
    capacity = phase.online_steps + (offline_transitions if rule.keep_offline_data else 0)
    offline_rows = offline_transitions if rule.keep_offline_data else 0
    replay = ReplaySettings(num_envs=1, buffer_size=capacity, batch_size=int(cfg.batch_size),
                            learning_starts=rule.warmup_steps, train_frequency=1,
                            gradient_steps=rule.updates_per_step, warmup_with_policy=not rule.warmup_random,
                            offline_rows=offline_rows, offline_fraction=rule.offline_fraction if offline_rows else 0.0,
                            offline_first=rule.offline_rows_first and offline_rows > 0)
    loop_cfg = HostLoopConfig(env_id=phase.env_id, total_steps=phase.online_steps, seed=phase.seed,
                              eval_every=phase.eval_every, eval_episodes=phase.eval_episodes,
                              log_every=phase.log_every, checkpoint_every=phase.checkpoint_every,
                              eval_env_id=phase.eval_env_id)
    return HostLoop(spec, online_config(spec, cfg, rule), loop_cfg, replay)


def _empty_buffer(capacity: int, obs_space: gym.Space, act_space: gym.Space, labelled: bool = False) -> ReplayBuffer:
    discrete = isinstance(act_space, gym.spaces.Discrete)
    return replay_init(capacity, obs_space.shape, jnp.float32, () if discrete else act_space.shape,
                       jnp.int32 if discrete else jnp.float32, labelled=labelled)


def switch_state(loop: HostLoop, agent, dataset: EpisodeDataset | None, rule: FinetuneRule, seed: int) -> dict:
    """The online loop's starting state: the pre-trained agent, a buffer holding the offline data
    if the rule keeps it, and the online phase's key."""
    capacity = loop.replay.buffer_size
    buffer = _empty_buffer(capacity, loop.obs_space, loop.act_space, loop.labelled)
    if rule.keep_offline_data:
        if dataset is None:
            raise HeronError("this fine-tuning rule keeps the offline data, but the dataset is not available: "
                             "pass --drop-offline-data or make the dataset available again")
        rows = dataset.transitions()
        if loop.labelled:  # the agent's episode labels of the offline rows (Cal-QL's return-to-go)
            rows = with_label(rows, label_episodes(dataset, lambda r, term, trunc: loop.spec.label_episode(
                r, term, trunc, loop.cfg)))
        buffer = replay_add(buffer, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32) if x.dtype.kind == "f" else x,
                                                 rows))
    key = jax.random.fold_in(jax.random.PRNGKey(seed), ONLINE_KEY_SALT)
    tree = {"agent": agent, "key": key, "buffer": buffer}
    return {"tree": tree, "meta": {"env_steps": 0, "vector_steps": 0, "updates": 0, "episodes": 0}}


def template_state(loop: HostLoop, agent_template) -> dict:
    """A tree with a checkpoint's structure (to restore an online-phase checkpoint into)."""
    buffer = _empty_buffer(loop.replay.buffer_size, loop.obs_space, loop.act_space, loop.labelled)
    return {"agent": agent_template, "key": jax.random.PRNGKey(0), "buffer": buffer}


# ---------------------------------------------------------------------------------------------
# Switch metrics
# ---------------------------------------------------------------------------------------------


def switch_metrics(offline_scores: list[tuple[int, float]], online_scores: list[tuple[int, float]]) -> dict:
    """Pre-switch score, dip (% of the pre-switch score) and steps to recover from evaluation
    scores [(step, score)], offline steps in updates, online steps in env steps from the switch.

    dip_percent = 100 (pre − min(online scores before recovery)) / |pre|, 0 when the online curve
    never falls below pre; steps_to_recover = the first online step scoring ≥ pre (None if never)."""
    if not offline_scores or not online_scores:
        return {}
    pre = float(offline_scores[-1][1])
    recover = next((int(step) for step, score in online_scores if score >= pre), None)
    before = [score for step, score in online_scores if recover is None or step < recover]
    low = min(before) if before else pre
    dip = max(pre - low, 0.0) / max(abs(pre), 1e-8) * 100.0
    final = float(online_scores[-1][1])
    best = max(float(s) for _, s in online_scores)
    return {"pre_switch_score": pre, "min_online_score": float(min(s for _, s in online_scores)),
            "dip_percent": float(dip), "steps_to_recover": recover, "final_score": final, "best_online_score": best,
            "improvement": final - pre}
