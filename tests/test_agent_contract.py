"""Every registered agent through the agent contract (see heron/agents/registry.py).

Parametrised over `heron.agents.available()` and each action kind the agent supports, so a
new agent is covered as soon as it registers. Networks and batches are shrunk through
config overrides so the module stays fast.
"""

import dataclasses
from types import SimpleNamespace

import flax.serialization
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heron.agents import available, get_agent
from heron.config import field_docs
from heron.types import Transition

SPACES = {
    "discrete": (gym.spaces.Box(-1.0, 1.0, (4,), np.float32), gym.spaces.Discrete(2)),
    "continuous": (gym.spaces.Box(-1.0, 1.0, (3,), np.float32), gym.spaces.Box(-2.0, 2.0, (1,), np.float32)),
}

# Applied to whichever of these fields an agent's config has; any *hidden tuple becomes (16,).
TINY = dict(batch_size=8, buffer_size=64, learning_starts=0, num_envs=2, num_steps=8, num_minibatches=2, utd_ratio=2,
            update_epochs=1)

# Helper programs (init, act, the vmapped init+update) compile without LLVM optimisation, which
# is several times faster; `update` itself, the function under test, compiles as in production.
QUICK = {"xla_backend_optimization_level": 0}

CASES = [(name, kind) for name in available() for kind in sorted(get_agent(name).action_kinds)]
N_UPDATES = 3


def tiny_config(spec):
    cfg = spec.config()
    overrides = {}
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if field.name in TINY:
            overrides[field.name] = TINY[field.name]
        elif field.name.endswith("hidden") and isinstance(value, tuple):
            overrides[field.name] = (16,)
    return dataclasses.replace(cfg, **overrides)


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}-{k}" for n, k in CASES])
def agent(request):
    """One agent on one space, with a jitted `update` that counts its traces."""
    name, kind = request.param
    spec = get_agent(name)
    cfg = tiny_config(spec)
    obs_space, act_space = SPACES[kind]
    traces = [0]

    def counted_update(state, batch, key):
        traces[0] += 1  # runs only while tracing
        return spec.update(state, batch, key, cfg)

    def init_and_update(key, batch):
        init_key, update_key = jax.random.split(key)
        return spec.update(spec.init(init_key, obs_space, act_space, cfg), batch, update_key, cfg)

    ns = SimpleNamespace(
        spec=spec, cfg=cfg, kind=kind, obs_space=obs_space, act_space=act_space, traces=traces,
        init=jax.jit(lambda key: spec.init(key, obs_space, act_space, cfg), compiler_options=QUICK),
        update=jax.jit(counted_update),
        act=jax.jit(spec.act, static_argnames="deterministic", compiler_options=QUICK),
        init_and_update_seeds=jax.jit(jax.vmap(init_and_update, in_axes=(0, None)), compiler_options=QUICK),
    )
    lead = (cfg.num_steps, cfg.num_envs) if spec.family == "on_policy" else (cfg.batch_size,)
    ns.lead, ns.num_obs = lead, int(np.prod(lead))  # act always sees num_obs rows: one compile per mode
    ns.behaviour = ns.init(jax.random.key(12345))
    return ns


def make_batch(agent, seed: int) -> Transition:
    """A batch of the shape the agent's family expects, actions from the agent's own `act`."""
    rng = np.random.default_rng(seed)
    lead, obs_shape = agent.lead, agent.obs_space.shape
    obs = rng.uniform(-1, 1, lead + obs_shape).astype(np.float32)
    next_obs = rng.uniform(-1, 1, lead + obs_shape).astype(np.float32)
    flat_action = agent.act(agent.behaviour, obs.reshape(-1, *obs_shape), jax.random.key(seed), deterministic=False)
    action = np.asarray(flat_action).reshape(lead + flat_action.shape[1:])
    return Transition(
        obs=obs,
        action=action,
        reward=rng.normal(size=lead).astype(np.float32),
        next_obs=next_obs,
        terminated=rng.random(lead) < 0.1,
        truncated=rng.random(lead) < 0.05,
    )


def train(agent, seed: int, n: int = N_UPDATES):
    key = jax.random.key(seed)
    key, init_key = jax.random.split(key)
    state, metrics = agent.init(init_key), None
    for i in range(n):
        key, update_key = jax.random.split(key)
        state, metrics = agent.update(state, make_batch(agent, 100 * seed + i), update_key)
    return state, metrics


def leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y) for x, y in zip(la, lb))


def float_leaves(tree):
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


# ----------------------------------------------------------------------------- tests


LOOP_FIELDS = {
    "off_policy": {"num_envs", "buffer_size", "batch_size", "learning_starts", "train_frequency", "gradient_steps"},
    "on_policy": {"num_envs", "num_steps"},
    "offline": {"batch_size"},  # offline agents get [batch_size] transitions sampled from a dataset
}


def test_config_is_hashable_documented_and_has_loop_fields(agent):
    hash(agent.cfg)  # passed to jax.jit as a static argument
    wanted = LOOP_FIELDS[agent.spec.family]
    names = {f.name for f in dataclasses.fields(agent.cfg)}
    assert wanted <= names
    undocumented = names - set(field_docs(agent.spec.config))
    assert not undocumented, f"{agent.spec.name}.Config fields without a docstring: {sorted(undocumented)}"


def observations(agent, seed: int) -> jax.Array:
    shape = (agent.num_obs,) + agent.obs_space.shape
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


def test_act_shapes_dtypes_and_bounds(agent):
    state = agent.init(jax.random.key(0))
    obs = observations(agent, 0)
    n = agent.num_obs
    for deterministic in (False, True):
        action = np.asarray(agent.act(state, obs, jax.random.key(1), deterministic=deterministic))
        if agent.kind == "discrete":
            assert action.shape == (n,) and action.dtype == np.int32
            assert np.all((action >= 0) & (action < agent.act_space.n))
        else:
            assert action.shape == (n,) + agent.act_space.shape and action.dtype == np.float32
            assert np.all((action >= agent.act_space.low) & (action <= agent.act_space.high))
    # the stochastic action depends on the key, the deterministic one does not
    assert not np.array_equal(agent.act(state, obs, jax.random.key(1), deterministic=False),
                              agent.act(state, obs, jax.random.key(2), deterministic=False))
    np.testing.assert_array_equal(agent.act(state, obs, jax.random.key(1), deterministic=True),
                                  agent.act(state, obs, jax.random.key(2), deterministic=True))
    # a batch of one works too
    assert agent.act(state, obs[:1], jax.random.key(1), deterministic=False).shape[0] == 1


def test_update_compiles_once(agent):
    state, metrics = train(agent, seed=0, n=N_UPDATES)
    state, metrics = train(agent, seed=1, n=N_UPDATES)
    assert agent.traces[0] == 1, f"update traced {agent.traces[0]} times"
    assert metrics and all(jnp.shape(v) == () for v in metrics.values()), metrics
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics


def test_same_seed_same_params_different_seed_differs(agent):
    a, _ = train(agent, seed=3)
    b, _ = train(agent, seed=3)
    c, _ = train(agent, seed=4)
    assert leaves_equal(a, b)
    assert not all(np.array_equal(x, y) for x, y in zip(float_leaves(a), float_leaves(c)))


def test_save_load_round_trip_and_resume(agent):
    state, _ = train(agent, seed=5)
    data = flax.serialization.to_bytes(state)
    restored = flax.serialization.from_bytes(agent.init(jax.random.key(999)), data)
    assert leaves_equal(state, restored)
    obs = observations(agent, 1)
    for deterministic in (False, True):
        np.testing.assert_array_equal(agent.act(state, obs, jax.random.key(7), deterministic=deterministic),
                                      agent.act(restored, obs, jax.random.key(7), deterministic=deterministic))
    batch = make_batch(agent, 77)
    after, _ = agent.update(state, batch, jax.random.key(8))
    after_restored, _ = agent.update(restored, batch, jax.random.key(8))
    assert leaves_equal(after, after_restored)  # resume continues exactly
    assert agent.traces[0] == 1, "a restored state must reuse the compiled update (same tree, dtypes, weak types)"


def test_vmap_over_seeds(agent):
    batch = make_batch(agent, 11)
    keys = jax.random.split(jax.random.key(0), 4)
    states, metrics = agent.init_and_update_seeds(keys, batch)
    assert all(jnp.shape(v) == (4,) for v in metrics.values())
    rows = np.concatenate([np.asarray(x).reshape(4, -1) for x in float_leaves(states)], axis=1)
    assert len({row.tobytes() for row in rows}) == 4
    # each seed's slice equals the unbatched computation
    init_key, update_key = jax.random.split(keys[2])
    single, _ = agent.update(agent.init(init_key), batch, update_key)
    for x, y in zip(float_leaves(single), float_leaves(jax.tree.map(lambda x: x[2], states))):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_offline_init_takes_dataset_stats_into_the_state(agent):
    """Offline agents: `init(..., dataset_stats)` changes leaves only (same tree, so a checkpoint
    template needs no dataset), and the statistics reach `act` (raw observations in)."""
    if agent.spec.family != "offline":
        pytest.skip("dataset_stats is part of the offline contract only")
    from heron.agents.registry import DatasetStats

    dim = int(np.prod(agent.obs_space.shape))
    stats = DatasetStats(obs_mean=np.full(dim, 5.0, np.float32), obs_std=np.full(dim, 0.1, np.float32),
                         return_min=-100.0, return_max=0.0)
    # state normalisation on (IQL's paper setting has it off)
    cfg = dataclasses.replace(agent.cfg, normalize_obs=True) if hasattr(agent.cfg, "normalize_obs") else agent.cfg
    init = lambda s: agent.spec.init(jax.random.key(0), agent.obs_space, agent.act_space, cfg, dataset_stats=s)
    plain, with_stats = jax.jit(lambda: init(None))(), jax.jit(lambda: init(stats))()
    assert jax.tree.structure(plain) == jax.tree.structure(with_stats)
    assert all(x.shape == y.shape and x.dtype == y.dtype
               for x, y in zip(jax.tree.leaves(plain), jax.tree.leaves(with_stats)))
    # Same weights (same key), different normaliser: the deterministic actions differ.
    obs = observations(agent, 3)
    assert not np.array_equal(agent.act(plain, obs, jax.random.key(1), deterministic=True),
                              agent.act(with_stats, obs, jax.random.key(1), deterministic=True))
