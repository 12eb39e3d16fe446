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
    - offline agents: a batch of shape [batch_size, ...] sampled from a logged dataset
      (`heron.data.dataset.sample_transitions`: uniform, or by the dataset's episode weights);
    - on-policy agents: a rollout of shape [num_steps, num_envs, ...] in time order,
      collected with the `state` passed in (so the behaviour policy is `state`'s policy).
* Loop settings that are hyperparameters of the published method live in the config and
  are read by the loops by name:
    - off-policy: buffer_size, batch_size, learning_starts, train_frequency,
      gradient_steps, num_envs;
    - on-policy: num_envs, num_steps;
    - offline: batch_size.
* Offline agents (family "offline") take one more, optional, keyword argument:
  `init(key, obs_space, act_space, cfg, dataset_stats=None)`. `DatasetStats` carries what
  published offline methods derive from the whole dataset before training (observation
  mean/std for state normalisation, the spread of episode returns for reward scaling). The
  agent turns it into leaves of its State (e.g. `obs_mean`, `obs_std`, `reward_scale`), so
  `act` normalises with it, checkpoints hold it, and the tree's structure does not depend on
  it (`dataset_stats=None` gives identity normalisation: the same tree, e.g. a template to
  restore a checkpoint into). The loop computes it once with `heron.loops.offline.dataset_stats`.
* An agent whose `update` needs a per-transition quantity of the whole episode that online
  transitions must carry too (Cal-QL's Monte-Carlo return-to-go) sets `AgentSpec.label_episode`;
  its batches are then `heron.types.LabelledTransition`s with the quantity in `label`: the offline
  loop labels every dataset episode once before training; offline→online labels the offline rows
  at the switch and each online episode's rows in the replay buffer when the episode ends (or is
  cut at a checkpoint or the run's end); rows of a running episode hold `UNLABELLED` (−inf).
* An offline agent whose `update` needs a per-transition quantity derived from whole episodes
  (return-to-go, an expert flag) sets `AgentSpec.relabel(ds, cfg)`; the offline loop applies it
  to the dataset once, before moving it to the device, so the batch carries the quantity (e.g.
  in `reward`); it may also set the episode weights the loop samples by.
* Offline agents continue online (`heron train ALGO --dataset D --online-steps M`, `heron
  finetune RUN_DIR`) through the same `update`, under a `FinetuneRule`: what happens at the
  switch (keep or drop the offline data, warm-up rollouts of the pre-trained policy, updates
  per env step) and the config the agent continues with. `AgentSpec.finetune` is the
  algorithm's own rule; the default keeps the offline data (plain fine-tuning).
"""

import ast
import dataclasses
import difflib
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from heron.errors import HeronError

Family = Literal["on_policy", "off_policy", "offline"]


class DatasetStats(NamedTuple):
    """Whole-dataset statistics an offline agent's `init` may use (see the module docstring)."""

    obs_mean: np.ndarray
    """[obs_dim] mean of the flattened observations o_t of all transitions."""
    obs_std: np.ndarray
    """[obs_dim] their standard deviation (population, no epsilon added)."""
    return_min: float
    """Smallest undiscounted episode return in the dataset."""
    return_max: float
    """Largest undiscounted episode return in the dataset."""


@dataclass(frozen=True)
class FinetuneRule:
    """An offline agent's rule for continuing online (the offline→online switch)."""

    keep_offline_data: bool = True
    """Start the online replay buffer with the whole offline dataset (online transitions are
    appended, batches sample the union uniformly); False: the online buffer holds online data only."""
    warmup_steps: int = 0
    """Env steps collected with the pre-trained policy (no updates) before online updates start."""
    updates_per_step: int = 1
    """`update` calls per env step in the online phase (the update-to-data ratio, UTD, for agents whose
    update is one gradient step; RLPD takes its UTD inside one update)."""
    offline_fraction: float = 0.0
    """With keep_offline_data: share of each batch drawn from the offline data (RLPD's symmetric
    sampling: 0.5); 0: batches sample offline and online transitions uniformly together."""
    warmup_random: bool = False
    """Take the warm-up steps with uniform-random actions (RLPD's start_training) instead of the
    pre-trained policy (WSRL)."""
    offline_rows_first: bool = False
    """With offline_fraction: each batch's first round(batch_size · offline_fraction) rows are the offline
    ones, unshuffled, so an `update` that treats offline and online rows differently can tell them apart
    (H2O: real data vs simulator rollouts). Such an agent learns from both in every batch: it has no
    offline-only phase (`--steps 0`) and needs the offline data kept."""
    online_config: Callable | None = None
    """`online_config(cfg) -> cfg`: the config the agent's `update` uses online (e.g. WSRL turns
    CQL's penalty off); None: the offline config unchanged."""
    source: str = "plain fine-tuning: the offline update continues on offline plus online data"
    """Where the rule comes from (shown in reports and `heron finetune --help`)."""

    def __post_init__(self):
        if self.warmup_steps < 0 or self.updates_per_step < 1:
            raise HeronError(f"finetune rule: warmup_steps must be >= 0 and updates_per_step >= 1, got "
                             f"{self.warmup_steps}, {self.updates_per_step}")
        if not 0.0 <= self.offline_fraction < 1.0 or (self.offline_fraction and not self.keep_offline_data):
            raise HeronError(f"finetune rule: offline_fraction must be in [0, 1) and needs keep_offline_data, got "
                             f"{self.offline_fraction} with keep_offline_data={self.keep_offline_data}")
        if self.offline_rows_first and not self.offline_fraction:
            raise HeronError("finetune rule: offline_rows_first needs an offline_fraction > 0 (a share of each batch "
                             "from the offline data) and the offline data kept")


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
    relabel: Callable | None = None
    """Offline agents only, optional: `relabel(ds, cfg) -> ds`, a per-transition relabelling of the
    dataset the offline loop trains on (after `DatasetStats` are taken from the unrelabelled data),
    e.g. RCSL writes each transition's conditioning return into the reward, ReCOIL an expert flag
    (and episode weights). None: the data as is."""
    finetune: FinetuneRule = FinetuneRule()
    """Offline agents only: how the agent continues online (see FinetuneRule)."""
    label_episode: Callable | None = None
    """Optional: `label_episode(rewards, terminated, truncated, cfg) -> labels`, one float per
    transition of ONE episode from its [T] arrays in time order (the last transition may carry
    neither flag where the episode was cut: a dataset's cut, a checkpoint's reset, the run's end).
    Set: batches carry the labels (`LabelledTransition.label`, see the module docstring)."""


_REGISTRY: dict[str, AgentSpec] = {}


@dataclass(frozen=True)
class AgentInfo:
    """What `heron algos`, suite validation and error messages need to know about a shipped agent, read
    from its module's source: listing algorithms must not import them (and with them JAX, seconds)."""

    name: str
    module: str
    """The module that registers it (importing it registers the agent)."""
    family: Family
    action_kinds: frozenset[str]
    summary: str


def _literal(node: ast.expr):
    # frozenset({...}) is a call, which ast.literal_eval refuses
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "frozenset":
        return frozenset(ast.literal_eval(node.args[0]) if node.args else ())
    return ast.literal_eval(node)


@functools.cache
def catalog() -> dict[str, AgentInfo]:
    """name → AgentInfo of every agent shipped in heron.agents: each module's `register(AgentSpec(...))`
    call, whose name, family, action_kinds and summary are literals (tests/test_agent_catalog.py checks
    that they match the imported specs)."""
    found = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.stem in ("__init__", "registry"):
            continue
        for stmt in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
            # the registration is a module-level `register(AgentSpec(...))`: no need to walk every function body
            call = stmt.value if isinstance(stmt, ast.Expr) else None
            node = call.args[0] if isinstance(call, ast.Call) and call.args else None
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "AgentSpec"):
                continue
            kw = {k.arg: k.value for k in node.keywords if k.arg in ("name", "family", "action_kinds", "summary")}
            if len(kw) != 4:
                raise RuntimeError(f"{path.name}: AgentSpec(...) must give name, family, action_kinds and summary "
                                   "as keyword literals (the catalog reads them without importing the module)")
            values = {k: _literal(v) for k, v in kw.items()}
            found[values["name"]] = AgentInfo(module=f"heron.agents.{path.stem}", **values)
    return found


def _shipped_module(name: str) -> str | None:
    """heron's module for a shipped agent name (its agents live in heron/agents/NAME.py), found without
    reading the catalog; None for any other name."""
    if name.isidentifier() and (Path(__file__).parent / f"{name}.py").is_file():
        return f"heron.agents.{name}"
    return None


def register(spec: AgentSpec) -> AgentSpec:
    # a user's agent named like a shipped one would collide with it the moment heron's module is imported
    own = _shipped_module(spec.name)
    if own and spec.config.__module__ != own:
        raise ValueError(f"agent name {spec.name!r} is heron's own ({own}): register yours under another name")
    if spec.name in _REGISTRY:
        raise ValueError(f"agent {spec.name!r} registered twice")
    if not (dataclasses.is_dataclass(spec.config) and spec.config.__dataclass_params__.frozen):
        raise TypeError(f"{spec.name}: config must be a frozen dataclass")
    _REGISTRY[spec.name] = spec
    return spec


def available() -> list[str]:
    """Every algorithm's name: heron's own (without importing them) and any registered at run time."""
    return sorted(set(catalog()) | set(_REGISTRY))


def agent_info(name: str) -> AgentInfo:
    """An algorithm's family, action kinds and summary without importing it; an unknown name is a HeronError
    that lists the known ones."""
    if name in _REGISTRY:
        spec = _REGISTRY[name]
        return AgentInfo(spec.name, spec.config.__module__, spec.family, spec.action_kinds, spec.summary)
    if name in catalog():
        return catalog()[name]
    names = available()
    close = difflib.get_close_matches(name.lower(), names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise HeronError(f"unknown algorithm {name!r}: {hint}choose one of {', '.join(names)}")


def get_agent(name: str) -> AgentSpec:
    """The registered AgentSpec; a shipped agent's module is imported on first use (it registers itself)."""
    if name not in _REGISTRY:
        importlib.import_module(_shipped_module(name) or agent_info(name).module)
    return _REGISTRY[name]
