"""Warm-start RL (Zhou, Peng, Li, Levine & Kumar 2025, "Efficient Online Reinforcement Learning
Fine-Tuning Need Not Retain Offline Data").

Offline: CQL pre-training (heron.agents.cql) of a tanh-Gaussian policy and an ensemble of
LayerNorm Q-functions. At the switch to online: the offline data is dropped; a warm-up phase of
`warmup_steps` env steps with the pre-trained policy (no updates) seeds the online buffer, which
re-calibrates the Q-functions to the online state distribution before they are trained; then
online RL at a high update-to-data ratio with no offline data: CQL's update with the
conservative penalty off (α_cql = `online_cql_alpha` = 0), i.e. SAC with a REDQ-style ensemble
(backups from the minimum of `critic_subsample` = 2 target critics drawn from `num_critics` = 10).

Pre-training here is CQL, which the WSRL code uses for its locomotion tasks; the paper's default
pre-training for sparse-reward tasks, Cal-QL, is `heron.agents.calql` (`heron train calql ...
--finetune-method wsrl online_cql_alpha=0` gives Cal-QL pre-training with WSRL's switch). The policy network has no
LayerNorm (the authors' code puts one in both networks).
"""

from dataclasses import dataclass

from heron.agents import cql
from heron.agents.registry import AgentSpec, FinetuneRule, register


@dataclass(frozen=True)
class Config(cql.Config):
    """WSRL hyperparameters: CQL's fields, with WSRL's defaults where they differ.

    Sources: the authors' code (github.com/zhouzypaul/wsrl; configs `locomotion_wsrl`, the SAC
    config, and the fine-tuning launch scripts): 2x256 ReLU networks with LayerNorm, an ensemble
    of 10 critics with 2 subsampled for backups (`critic_ensemble_size=10`,
    `critic_subsample_size=2`), α_cql = 5 offline and 0 online (SAC), policy Adam 1e-4, critic 3e-4,
    temperature 1e-4, no entropy backup, batch 256; the switch (warm-up 5000 env steps, UTD 4, no
    offline data) is `FINETUNE` below.
    """

    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy network (WSRL: 2x256)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each Q-network (WSRL: 2x256)."""
    num_critics: int = 10
    """Size of the Q ensemble (WSRL / REDQ: 10)."""
    critic_subsample: int | None = 2
    """Target critics whose minimum forms the backup, drawn per update (WSRL / REDQ: 2)."""
    critic_layer_norm: bool = True
    """LayerNorm after each hidden layer of the critics (WSRL: on; it keeps Q stable online)."""
    online_cql_alpha: float | None = 0.0
    """α_cql online: 0, so the online phase is SAC with the ensemble (WSRL's online learner)."""
    weight_init: str = "lecun"
    """Initialisation of every layer: Flax's default (the authors' code is JAX; CQL's "torch" follows PyTorch code)."""


FINETUNE = FinetuneRule(
    keep_offline_data=False, warmup_steps=5_000, updates_per_step=4, online_config=cql.online_config,
    source="WSRL (Zhou et al. 2025): drop the offline data, warm up with rollouts of the pre-trained policy, then "
           "online RL at a high update-to-data ratio (defaults from the authors' launch scripts: 5000 warm-up steps, "
           "UTD 4)")

register(AgentSpec(
    name="wsrl",
    config=Config,
    init=cql.init,
    update=cql.update,
    act=cql.act,
    family="offline",
    action_kinds=frozenset({"continuous"}),
    summary="Warm-start RL: CQL pre-training, then warm-up rollouts and SAC fine-tuning without the offline data.",
    finetune=FINETUNE,
))
