"""The agent contract and the registry of algorithms.

Every algorithm is one module exporting a frozen config dataclass and three pure functions:

    init(key, obs_space, act_space, cfg) -> State         # State is a pytree
    update(state, batch, key, cfg) -> (State, metrics)     # jittable, no side effects
    act(state, obs, key, deterministic) -> action          # jittable

and registering an `AgentSpec` at the bottom of its file. Loops, tracking, checkpoints and
benchmarks touch nothing else.

* `State` is a `flax.struct.dataclass`; network definitions (linen modules) and other
  constants `act` needs live in it as static (`pytree_node=False`) fields, so `act` needs
  no config. Everything that changes (params, optimiser, normalisers, counters) is a leaf.
* `act` returns actions in the environment's own units (e.g. scaled to the Box bounds),
  with a leading batch axis matching `obs`.
* `update` receives a `heron.types.Transition` batch:
    - off-policy agents: a uniformly sampled batch of shape [batch_size, ...];
    - on-policy agents: a rollout of shape [num_steps, num_envs, ...] in time order,
      collected with the `state` passed in (so the behaviour policy is `state`'s policy).
* Loop settings that are hyperparameters of the published method live in the config and
  are read by the loops by name:
    - off-policy: buffer_size, batch_size, learning_starts, train_frequency,
      gradient_steps, num_envs;
    - on-policy: num_envs, num_steps.
"""

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from heron.errors import HeronError

Family = Literal["on_policy", "off_policy"]


@dataclass(frozen=True)
class AgentSpec:
    name: str
    config: type
    init: Callable
    update: Callable
    act: Callable
    family: Family
    action_kinds: frozenset[str]  # subset of {"discrete", "continuous"}
    summary: str


_REGISTRY: dict[str, AgentSpec] = {}


def register(spec: AgentSpec) -> AgentSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"agent {spec.name!r} registered twice")
    if not (dataclasses.is_dataclass(spec.config) and spec.config.__dataclass_params__.frozen):
        raise TypeError(f"{spec.name}: config must be a frozen dataclass")
    _REGISTRY[spec.name] = spec
    return spec


def available() -> list[str]:
    import heron.agents  # noqa: F401  (imports every agent module, which registers it)

    return sorted(_REGISTRY)


def get_agent(name: str) -> AgentSpec:
    names = available()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name.lower(), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise HeronError(f"unknown algorithm {name!r}: {hint}choose one of {', '.join(names)}")
    return _REGISTRY[name]
