"""Dataset transforms: pure functions `EpisodeDataset -> EpisodeDataset`.

Each takes an explicit seed (or JAX key) where it is random, never modifies its input (arrays it
changes are new; arrays it keeps are shared read-only), and appends one provenance step naming
the transform, its parameters, the seed and what it measured. They compose:

    ds = corrupt(ds, "obs", "random", ratio=0.3, scale=1.0, seed=0)
    ds = reweight(ds, by="advantage", temperature=0.1)

- `reweight`: RW / AW trajectory weights (Hong et al. 2023)                   weighting.py
- `corrupt`: random / adversarial state, action, reward, dynamics corruption (RIQL)  corruption.py
- `hide_actions`, `label_actions`: action-free episodes, IDM proxy labels (SS-ORL)    action_free.py
- `relabel_rewards` (the hook), `RewardModel`, `fit_reward_model`, save/load         rewards.py
- `subsample`, `mix`: whole-episode subsets and D5RL-style mixed sources             mixing.py
"""

from heron.data.transforms.action_free import (
    IDMConfig,
    InverseDynamics,
    fit_inverse_dynamics,
    hide_actions,
    idm_inputs,
    label_actions,
)
from heron.data.transforms.corruption import QModel, corrupt, fit_q_function
from heron.data.transforms.mixing import mix, subsample
from heron.data.transforms.rewards import (
    RewardModel,
    fit_reward_model,
    load_reward_model,
    relabel_rewards,
    save_reward_model,
)
from heron.data.transforms.weighting import reweight, trajectory_weights

__all__ = [
    "IDMConfig",
    "InverseDynamics",
    "QModel",
    "RewardModel",
    "corrupt",
    "fit_inverse_dynamics",
    "fit_q_function",
    "fit_reward_model",
    "hide_actions",
    "idm_inputs",
    "label_actions",
    "load_reward_model",
    "mix",
    "relabel_rewards",
    "reweight",
    "save_reward_model",
    "subsample",
    "trajectory_weights",
]
