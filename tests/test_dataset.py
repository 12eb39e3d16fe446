"""EpisodeDataset, device sampling, and the Minari / D4RL formats both ways."""

import json

import gymnasium as gym
import jax
import numpy as np
import pytest

from heron.data import (
    EpisodeDataset,
    concatenate,
    from_episodes,
    import_d4rl,
    load_dataset,
    sample_transitions,
    save_dataset,
)
from heron.errors import HeronError


def random_episodes(env_id="Pendulum-v1", n=5, seed=0, max_steps=None):
    env = gym.make(env_id, max_episode_steps=max_steps) if max_steps else gym.make(env_id)
    env.action_space.seed(seed)
    episodes = []
    for i in range(n):
        obs, _ = env.reset(seed=seed + i)
        ep = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        while True:
            a = env.action_space.sample()
            obs, r, term, trunc, _ = env.step(a)
            for k, v in (("observations", obs), ("actions", a), ("rewards", r), ("terminations", term), ("truncations", trunc)):
                ep[k].append(v)
            if term or trunc:
                break
        episodes.append({k: np.asarray(v) for k, v in ep.items()})
    return episodes, env.observation_space, env.action_space


@pytest.fixture
def pendulum():
    eps, o, a = random_episodes("Pendulum-v1", n=4, max_steps=50)
    return from_episodes(eps, o, a, name="test/pendulum-random", env_id="Pendulum-v1",
                         ref_min_score=-1200.0, ref_max_score=-150.0, provenance=({"policy": "random", "seed": 0},))


def test_layout_views_and_transitions(pendulum):
    ds = pendulum
    assert ds.num_episodes == 4 and ds.num_transitions == 200
    assert ds.observations.shape == (204, 3)
    np.testing.assert_array_equal(ds.episode_lengths, [50] * 4)
    tr = ds.transitions()
    # inside episode 1, o_{t+1} of step t is o_t of step t+1; the last next_obs is the episode's final obs
    ep1 = ds.episode(1)
    np.testing.assert_array_equal(tr.obs[50:100], ep1["observations"][:-1])
    np.testing.assert_array_equal(tr.next_obs[50:100], ep1["observations"][1:])
    assert tr.truncated.sum() == 4 and tr.terminated.sum() == 0
    np.testing.assert_allclose(ds.episode_returns()[2], ds.episode(2)["rewards"].sum(), rtol=1e-6)
    np.testing.assert_allclose(ds.normalized_score([-1200.0, -150.0]), [0.0, 100.0])


def test_select_and_split_by_episodes(pendulum):
    sub = pendulum.select_episodes([3, 1])
    np.testing.assert_array_equal(sub.episode(0)["observations"], pendulum.episode(3)["observations"])
    np.testing.assert_array_equal(sub.episode(1)["actions"], pendulum.episode(1)["actions"])
    a, b = pendulum.split(0.5, seed=1)
    assert a.num_episodes + b.num_episodes == 4 and a.num_transitions + b.num_transitions == 200
    a2, _ = pendulum.split(0.5, seed=1)
    np.testing.assert_array_equal(a.observations, a2.observations)


def test_device_sampling_uniform_and_weighted(pendulum):
    dev = pendulum.to_device()
    batch = jax.jit(sample_transitions, static_argnums=2)(dev, jax.random.PRNGKey(0), 4096)
    assert batch.obs.shape == (4096, 3) and batch.action.shape == (4096, 1)
    # every sampled (obs, next_obs) pair is a real transition of the dataset
    tr = pendulum.transitions()
    pairs = {tuple(np.r_[o, n]) for o, n in zip(tr.obs, tr.next_obs)}
    assert all(tuple(np.r_[o, n]) in pairs for o, n in zip(np.asarray(batch.obs[:200]), np.asarray(batch.next_obs[:200])))
    # episode weights: only episode 2 has weight -> every sample comes from it
    w = pendulum.with_metadata(episode_weights=np.array([0.0, 0.0, 1.0, 0.0]))
    b2 = sample_transitions(w.to_device(), jax.random.PRNGKey(1), 512)
    ep2 = {tuple(o) for o in pendulum.episode(2)["observations"][:-1]}
    assert all(tuple(o) in ep2 for o in np.asarray(b2.obs))
    # weights 3:1 -> about 75% of samples from episode 0
    w = pendulum.with_metadata(episode_weights=np.array([3.0, 1.0, 0.0, 0.0]))
    idx = np.asarray(jax.random.choice(jax.random.PRNGKey(0), 1, (1,)))  # keep jax warm; real check below
    b3 = sample_transitions(w.to_device(), jax.random.PRNGKey(2), 20_000)
    ep0 = {tuple(o) for o in pendulum.episode(0)["observations"][:-1]}
    frac = np.mean([tuple(o) in ep0 for o in np.asarray(b3.obs)])
    assert idx.shape == (1,) and abs(frac - 0.75) < 0.02


def test_round_trip_through_disk(pendulum, tmp_path):
    path = save_dataset(pendulum.with_metadata(action_known=np.array([1, 1, 0, 1], bool)).with_metadata(
        actions=np.where(np.repeat([1, 1, 0, 1], 50)[:, None].astype(bool), pendulum.actions, np.nan)), tmp_path / "d")
    back = load_dataset(path)
    assert back.name == "test/pendulum-random" and back.env_id == "Pendulum-v1"
    assert back.ref_min_score == -1200.0 and back.provenance == ({"policy": "random", "seed": 0},)
    np.testing.assert_array_equal(back.observations, pendulum.observations)
    np.testing.assert_array_equal(back.rewards, pendulum.rewards)
    np.testing.assert_array_equal(back.action_known, [True, True, False, True])
    assert np.isnan(back.actions[100:150]).all() and np.isfinite(back.actions[:100]).all()


def test_never_overwrites_without_force_and_replaces_atomically(pendulum, tmp_path):
    path = save_dataset(pendulum, tmp_path / "d")
    with pytest.raises(HeronError, match="already exists.*--force"):
        save_dataset(pendulum.select_episodes([0]), path)
    assert load_dataset(path).num_episodes == 4
    save_dataset(pendulum.select_episodes([0]), path, force=True)
    assert load_dataset(path).num_episodes == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temp or old directories left


def test_written_dataset_opens_in_minari_and_passes_its_checks(pendulum, tmp_path, monkeypatch):
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    from heron.data.minari_io import minari_dataset_id

    dataset_id = minari_dataset_id(pendulum.name)
    save_dataset(pendulum, tmp_path / "minari" / dataset_id)
    md = minari.load_dataset(dataset_id)
    assert md.total_episodes == 4 and md.total_steps == 200
    assert md.observation_space == pendulum.observation_space and md.action_space == pendulum.action_space
    assert md.spec.ref_min_score if hasattr(md.spec, "ref_min_score") else True
    check_minari_integrity(md)
    for e, episode in enumerate(md.iterate_episodes()):
        np.testing.assert_array_equal(episode.observations, pendulum.episode(e)["observations"])
        np.testing.assert_array_equal(episode.actions, pendulum.episode(e)["actions"])
    env = md.recover_environment()
    assert env.spec.id == "Pendulum-v1"
    assert minari_dataset_id("small/pendulum-medium") == "heron/small-pendulum-medium-v0"
    np.testing.assert_allclose(minari.get_normalized_score(md, np.array([-150.0])), [1.0])


def check_minari_integrity(md):
    """Minari's own test-suite check (tests/common.py `check_data_integrity`), restated: step counts
    add up, each episode has T+1 observations and T of everything else, all inside the spaces."""
    total_steps = 0
    for episode in md.iterate_episodes():
        t = len(episode.rewards)
        total_steps += t
        assert episode.observations.shape[0] == t + 1
        assert len(episode.actions) == len(episode.terminations) == len(episode.truncations) == t
        assert all(md.observation_space.contains(o) for o in episode.observations)
        assert all(md.action_space.contains(np.asarray(a, md.action_space.dtype)) for a in episode.actions)
    assert total_steps == md.total_steps and len(list(md.iterate_episodes())) == md.total_episodes


def test_datacollector_dataset_loads_in_heron(tmp_path, monkeypatch):
    from minari import DataCollector

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = DataCollector(gym.make("CartPole-v1"))
    for i in range(3):
        env.reset(seed=i)
        while True:
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                break
    md = env.create_dataset(dataset_id="test/cartpole-random-v0", algorithm_name="random", author="t",
                            author_email="t@t", code_permalink="x", description="d")
    ds = load_dataset(tmp_path / "test" / "cartpole-random-v0")
    assert ds.num_episodes == 3 and ds.num_transitions == md.total_steps
    assert ds.discrete_actions and ds.actions.dtype == np.int32 and ds.env_id == "CartPole-v1"
    for e, episode in enumerate(md.iterate_episodes()):
        np.testing.assert_array_equal(ds.episode(e)["observations"], episode.observations.astype(np.float32))
        np.testing.assert_array_equal(ds.episode(e)["actions"], episode.actions)
        assert bool(ds.episode(e)["terminations"][-1]) == bool(episode.terminations[-1])
    assert ds.provenance[0]["imported_from"] == "minari"


def test_d4rl_dict_with_next_observations_splits_at_flags_and_jumps(pendulum):
    tr = pendulum.transitions()
    data = {"observations": tr.obs, "actions": tr.action, "rewards": tr.reward, "next_observations": tr.next_obs,
            "terminals": tr.terminated, "timeouts": np.zeros_like(tr.truncated)}
    data["timeouts"][49] = True  # the ends at steps 99 and 149 are boundaries only by the jump
    ds = import_d4rl(data, name="d4rl")
    assert ds.num_episodes == 4 and ds.provenance[0]["unflagged_jumps_split"] == 2
    np.testing.assert_array_equal(ds.observations, pendulum.observations)


def test_d4rl_without_next_observations(tmp_path):
    obs = np.arange(10, dtype=np.float32)[:, None]
    terminals = np.zeros(10, bool)
    timeouts = np.zeros(10, bool)
    terminals[3], timeouts[7] = True, True
    np.savez(tmp_path / "d.npz", observations=obs, actions=np.zeros((10, 1), np.float32), rewards=np.ones(10),
             terminals=terminals, timeouts=timeouts)
    ds = load_dataset(tmp_path / "d.npz")
    # [0..3] terminal: kept whole; [4..7] timeout: last step dropped; [8, 9] end of data: last step dropped
    np.testing.assert_array_equal(ds.episode_lengths, [4, 3, 1])
    assert ds.episode(0)["terminations"][-1] and ds.episode(1)["truncations"][-1]
    np.testing.assert_array_equal(ds.episode(1)["observations"][:, 0], [4, 5, 6, 7])
    assert ds.provenance[0]["steps_dropped_without_successor"] == 2


def test_pickled_npz_is_refused(tmp_path):
    np.savez(tmp_path / "p.npz", observations=np.array([{"a": 1}], dtype=object))
    with pytest.raises(HeronError, match="never unpickles"):
        load_dataset(tmp_path / "p.npz")


def test_concatenate_keeps_sources(pendulum):
    mixed = concatenate([pendulum, pendulum.select_episodes([0])], name="mix")
    assert mixed.num_episodes == 5 and mixed.provenance[0]["sources"][1]["name"] == "test/pendulum-random"
    np.testing.assert_array_equal(mixed.episode(4)["observations"], pendulum.episode(0)["observations"])


@pytest.mark.parametrize("defect, match", [
    (lambda d: d.update(terminations=np.r_[True, np.zeros(199, bool)]), "not the last of its episode"),
    (lambda d: d.update(rewards=np.r_[np.nan, np.zeros(199, np.float32)]), "NaN"),
    (lambda d: d.update(observations=d["observations"][:-1]), "observations have shape"),
    (lambda d: d.update(episode_starts=np.array([0, 100, 100, 200])), "malformed"),
])
def test_layout_defects_are_named(pendulum, defect, match):
    fields = {k: getattr(pendulum, k) for k in ("observations", "actions", "rewards", "terminations", "truncations",
                                                   "episode_starts")}
    defect(fields)
    with pytest.raises(HeronError, match=match):
        EpisodeDataset(**fields, observation_space=pendulum.observation_space, action_space=pendulum.action_space)


def test_checksum_mismatch_names_the_file(pendulum, tmp_path):
    path = save_dataset(pendulum, tmp_path / "d")
    meta = json.loads((path / "data/metadata.json").read_text())
    meta["description"] = "edited"
    (path / "data/metadata.json").write_text(json.dumps(meta))
    with pytest.raises(HeronError, match="metadata.json does not match the SHA-256"):
        load_dataset(path)
    assert load_dataset(path, verify=False).num_episodes == 4
