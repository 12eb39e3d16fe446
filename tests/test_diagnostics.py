"""Dataset card: TQ and SACo against hand-computed values, the discretisation, the card, and `heron data inspect`."""

import json

import gymnasium as gym
import numpy as np
import pytest

from heron.cli.main import main
from heron.data import from_episodes, save_dataset
from heron.data.diagnostics import (
    card_text,
    coverage_counts,
    dataset_card,
    discretise,
    find_suite_reference,
    grid_for,
    make_grid,
    plot_card,
    state_action_coverage,
    trajectory_quality,
    unique_rows,
    unique_state_actions,
)
from heron.errors import HeronError

INT_OBS = gym.spaces.Box(0, 100, (1,), np.int64)


def episode(obs, actions, rewards, end="terminated"):
    """One Minari-style episode; `obs` has one more row than `actions`."""
    t = len(actions)
    term, trunc = np.zeros(t, bool), np.zeros(t, bool)
    if end == "terminated":
        term[-1] = True
    elif end == "truncated":
        trunc[-1] = True
    elif end == "both":  # Gymnasium allows both flags on one step
        term[-1] = trunc[-1] = True
    return {"observations": np.asarray(obs), "actions": np.asarray(actions), "rewards": np.asarray(rewards, np.float32),
            "terminations": term, "truncations": trunc}


def discrete_pairs(pairs, name="d", chunk=None):
    """A dataset whose (state, action) pairs are exactly `pairs` (integer states, Discrete(2) actions)."""
    chunk = chunk or len(pairs)
    eps = []
    for i in range(0, len(pairs), chunk):
        part = pairs[i:i + chunk]
        obs = [[s] for s, _ in part] + [[0]]
        eps.append(episode(obs, [a for _, a in part], [1.0] * len(part)))
    return from_episodes(eps, INT_OBS, gym.spaces.Discrete(2), name=name)


def box_rows(states, actions, name="b", low=-1.0, high=1.0):
    """A dataset with one episode per (state, action) row: continuous Box states and actions."""
    states, actions = np.asarray(states, np.float32).reshape(len(states), -1), np.asarray(actions, np.float32)
    actions = actions.reshape(len(actions), -1)
    eps = [episode(np.stack([s, s]), a[None], [0.0]) for s, a in zip(states, actions)]
    return from_episodes(eps, gym.spaces.Box(-np.inf, np.inf, states.shape[1:], np.float32),
                         gym.spaces.Box(low, high, actions.shape[1:], np.float32), name=name)


def cartpole_like(n=6, seed=0, **meta):
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(n):
        t = 5 + 3 * i
        eps.append(episode(rng.normal(size=(t + 1, 4)), rng.integers(0, 2, t), np.ones(t),
                           end="terminated" if i % 2 else "truncated"))
    return from_episodes(eps, gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2),
                         name="test/cartpole-random", env_id="CartPole-v1", **meta)


def pendulum_like(n=4, t=30, seed=0, scale=1.0, **meta):
    rng = np.random.default_rng(seed)
    eps = [episode(scale * rng.normal(size=(t + 1, 3)), np.clip(rng.normal(size=(t, 1)) * 2, -2, 2), -rng.random(t) * 5,
                   end="truncated") for _ in range(n)]
    return from_episodes(eps, gym.spaces.Box(-8, 8, (3,), np.float32), gym.spaces.Box(-2, 2, (1,), np.float32),
                         name="test/pendulum", env_id="Pendulum-v1", **meta)


# ---------------------------------------------------------------- TQ
def test_tq_is_normalised_mean_return_by_hand():
    # returns 10, 20, 60 -> mean 30; between g_min=0 and g_max=100 -> 0.3
    eps = [episode([[0], [0], [0]], [0, 1], [4.0, 6.0]), episode([[0], [0]], [0], [20.0]),
           episode([[0]] * 4, [1, 1, 0], [10.0, 20.0, 30.0], end="truncated")]
    ds = from_episodes(eps, INT_OBS, gym.spaces.Discrete(2), name="tq", ref_min_score=0.0, ref_max_score=100.0)
    card = dataset_card(ds)
    assert card["tq"]["value"] == pytest.approx(0.3)
    assert card["tq"]["mean_return"] == pytest.approx(30.0)
    assert trajectory_quality([10, 20, 60], -50.0, 50.0) == pytest.approx(0.8)  # (30 + 50) / 100
    assert trajectory_quality([-100.0], -50.0, 50.0) == pytest.approx(-0.5)  # below random is not clipped
    assert card["normalized_returns"]["max"] == pytest.approx(60.0)  # 100 * (60 - 0) / 100
    assert card["returns"]["median"] == pytest.approx(20.0)


def test_tq_unavailable_without_reference_scores_says_why():
    card = dataset_card(cartpole_like())
    assert card["tq"]["value"] is None and "ref_min_score" in card["tq"]["reason"]
    assert card["normalized_returns"] is None
    assert "TQ           unavailable" in card_text(card)
    with pytest.raises(HeronError, match="distinct"):
        trajectory_quality([1.0], 5.0, 5.0)


# ---------------------------------------------------------------- SACo
def test_saco_counts_unique_pairs_by_hand():
    # reference: states 0..9 x actions {0, 1} -> 20 distinct pairs
    reference = discrete_pairs([(s, a) for s in range(10) for a in (0, 1)], name="ref", chunk=7)
    # dataset: 7 rows, duplicates (0,0) x3 and (1,1) x2 -> 3 distinct pairs over 3 distinct states
    ds = discrete_pairs([(0, 0), (0, 0), (1, 1), (1, 1), (2, 0), (0, 0), (1, 0)], name="d", chunk=3)
    res = state_action_coverage(ds, reference)
    assert res["unique_state_actions"] == 4  # (0,0) (1,1) (2,0) (1,0)
    assert res["reference_unique_state_actions"] == 20
    assert res["value"] == pytest.approx(4 / 20)
    assert res["unique_states"] == 3 and res["reference_unique_states"] == 10
    assert res["state_coverage"] == pytest.approx(0.3)
    card = dataset_card(ds, reference, reference_label="ref")
    assert card["saco"]["value"] == pytest.approx(0.2) and card["saco"]["reference"] == "ref"
    assert card["saco"]["discretisation"]["exact_dims"] == ["observations", "actions (discrete)"]
    # the reference against itself covers everything
    assert state_action_coverage(reference, reference)["value"] == 1.0


def test_saco_does_not_depend_on_transition_or_episode_order():
    rng = np.random.default_rng(3)
    states, actions = rng.normal(size=(300, 2)), rng.uniform(-1, 1, (300, 1))
    states[150:], actions[150:] = states[:150], actions[:150]  # half are exact duplicates
    ref = box_rows(rng.normal(size=(400, 2)) * 1.5, rng.uniform(-1, 1, (400, 1)), name="ref")
    perm = rng.permutation(300)
    a, b = box_rows(states, actions), box_rows(states[perm], actions[perm])
    ra, rb = state_action_coverage(a, ref, bins=20), state_action_coverage(b, ref, bins=20)
    assert ra == rb
    assert ra["unique_state_actions"] <= 150
    # reordering the reference's episodes changes nothing either (its grid is min/max, its count a set size)
    ref_perm = ref.select_episodes(rng.permutation(ref.num_episodes))
    assert state_action_coverage(a, ref_perm, bins=20) == ra


def test_discretisation_grid_cells_and_overflow():
    grid = make_grid(np.array([[0.0], [1.0]]), None, bins=10)
    x = np.array([[0.0], [0.05], [0.09], [0.1], [0.55], [1.0], [-0.01], [-5.0], [1.01], [7.0]])
    np.testing.assert_array_equal(discretise(x, None, grid)[:, 0], [0, 0, 0, 1, 5, 9, -1, -1, 10, 10])
    # a constant dimension: its value is one cell, anything else is overflow on its side
    flat = make_grid(np.array([[2.0], [2.0]]), None, bins=10)
    np.testing.assert_array_equal(discretise(np.array([[2.0], [1.0], [3.0]]), None, flat)[:, 0], [0, -1, 10])
    assert unique_rows(np.array([[1, 2], [1, 2], [2, 1]], np.int16)) == 2
    with pytest.raises(HeronError, match="bins"):
        make_grid(np.zeros((2, 1)), None, bins=0)


def test_continuous_saco_on_the_reference_grid_by_hand():
    # reference spans [0, 1] in the state and [-1, 1] in the action: with 10 bins, cells are 0.1 and 0.2 wide
    ref = box_rows([[0.0], [1.0], [0.5]], [[-1.0], [1.0], [0.0]], name="ref")
    ds = box_rows([[0.01], [0.02], [0.15], [1.5], [2.5], [0.01]],
                  [[0.05], [0.1], [0.1], [0.1], [0.1], [0.5]])
    # cells: (0,5) (0,5) (1,5) (10,5) (10,5) (0,7) -> 4 distinct pairs; reference has 3
    res = state_action_coverage(ds, ref, bins=10)
    assert res["unique_state_actions"] == 4 and res["reference_unique_state_actions"] == 3
    assert res["value"] == pytest.approx(4 / 3)  # SACo above 1: more coverage than the reference
    assert res["unique_states"] == 3  # cells 0, 1 and the overflow cell 10


def test_resolution_effect_is_as_documented():
    rng = np.random.default_rng(0)
    ds = box_rows(rng.normal(size=(500, 3)), rng.uniform(-1, 1, (500, 1)))
    counts = [unique_state_actions(ds, bins=b) for b in (1, 4, 8, 1000)]
    assert counts[0] == 1  # one cell per dimension: everything is the same pair
    assert counts[1] <= counts[2] <= counts[3]  # 8 bins refine 4 bins; finer grids never merge cells
    assert counts[3] == 500  # fine grid in 4 dims: every distinct continuous row is its own pair


def test_action_free_episodes_are_not_state_action_pairs():
    ds = discrete_pairs([(0, 0), (1, 1), (2, 0), (3, 1)], chunk=2)
    ds = ds.with_metadata(action_known=np.array([True, False]))
    assert coverage_counts(ds) == (2, 2)  # only the first episode's (0,0) (1,1)
    card = dataset_card(ds)
    assert card["action_free_episodes"] == {"count": 1, "fraction": 0.5}
    assert card["actions"]["transitions_with_actions"] == 2


def test_reference_with_other_spaces_is_one_clear_error():
    with pytest.raises(HeronError, match="same task"):
        state_action_coverage(pendulum_like(), cartpole_like())


# ---------------------------------------------------------------- the card
def test_card_of_a_discrete_action_dataset(tmp_path):
    ds = cartpole_like(provenance=({"policy": "random", "seed": 0}, {"transform": "subsample", "fraction": 0.5}))
    card = dataset_card(ds)
    json.dumps(card, allow_nan=False)  # strict JSON
    assert card["episodes"] == 6 and card["transitions"] == sum(5 + 3 * i for i in range(6))
    assert card["endings"] == {"terminated": 3, "truncated": 3, "unfinished": 0}
    counts = card["actions"]["counts"]
    assert set(counts) == {"0", "1"} and sum(counts.values()) == ds.num_transitions
    assert counts["1"] == int((ds.actions == 1).sum())
    assert card["provenance"]["source"] == "policy=random" and card["provenance"]["transforms"] == ["subsample"]
    assert card["saco"]["value"] is None and card["saco"]["unique_state_actions"] == ds.num_transitions
    text = card_text(card)
    assert "0: " in text and "terminated 3" in text
    png = plot_card(ds, card, tmp_path / "c.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "c.png").read_bytes() == png


def test_card_box_actions_bounds_endings_and_weights(tmp_path):
    eps = [episode([[0.0, 1.0]] * 5, [[-1.0], [1.0], [1.0], [0.0]], [1, 1, 1, 1], end="terminated"),
           episode([[0.5, 0.5]] * 3, [[0.5], [-1.0]], [2, 2], end="none"),
           episode([[0.0, 0.0]] * 2, [[0.0]], [0], end="both")]
    ds = from_episodes(eps, gym.spaces.Box(-np.inf, np.inf, (2,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32),
                       name="box", episode_weights=np.array([1.0, 3.0, 1.0]))
    card = dataset_card(ds)
    assert card["endings"] == {"terminated": 2, "truncated": 0, "unfinished": 1}  # termination wins over truncation
    assert card["actions"]["at_low"] == [pytest.approx(2 / 7)] and card["actions"]["at_high"] == [pytest.approx(2 / 7)]
    assert card["actions"]["mean"] == [pytest.approx(0.5 / 7)]
    assert card["episode_weights"]["set"] and card["episode_weights"]["max"] == 3.0
    assert card["episode_lengths"]["min"] == 1 and card["episode_lengths"]["max"] == 4
    assert card["observations"]["dims"] == 2 and card["observations"]["max"] == [0.5, 1.0]
    plot_card(ds, card, tmp_path / "b.png", reference=ds)


# ---------------------------------------------------------------- suites and the CLI
@pytest.fixture
def suite(tmp_path):
    root = tmp_path / "datasets" / "small"
    refs = {"ref_min_score": -150.0, "ref_max_score": 0.0}
    save_dataset(pendulum_like(seed=1, **refs).with_metadata(name="small/pendulum-medium"), root / "pendulum-medium")
    save_dataset(pendulum_like(n=8, seed=2, scale=2.0, **refs).with_metadata(name="small/pendulum-full-replay"),
                 root / "pendulum-full-replay")
    (root / "manifest.json").write_text(json.dumps({"suite": "small", "datasets": [
        {"name": "pendulum-medium", "task": "pendulum"}, {"name": "pendulum-full-replay", "task": "pendulum"}]}))
    return root


def test_suite_reference_found_by_manifest_or_naming(suite, tmp_path):
    path, note = find_suite_reference(suite / "pendulum-medium")
    assert path == suite / "pendulum-full-replay" and "pendulum" in note
    # an explicit record in the manifest wins
    save_dataset(pendulum_like(seed=5).with_metadata(name="alt"), suite / "alt-replay")
    (suite / "manifest.json").write_text(json.dumps({"tasks": [{"name": "pendulum", "saco_reference": "alt-replay"}],
                                                     "datasets": {"pendulum-medium": {"task": "pendulum"}}}))
    assert find_suite_reference(suite / "pendulum-medium")[0] == suite / "alt-replay"
    lone = tmp_path / "lone"
    save_dataset(pendulum_like(), lone)
    path, reason = find_suite_reference(lone)
    assert path is None and "--reference" in reason


def test_cli_text_json_and_out(suite, tmp_path, capsys):
    ds_path = suite / "pendulum-medium"
    assert main(["data", "inspect", str(ds_path)]) == 0
    text = capsys.readouterr().out
    assert "SACo" in text and "pendulum-full-replay" in text and "TQ" in text and "unavailable" not in text

    assert main(["data", "inspect", str(ds_path), "--json", "--bins", "10"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["saco"]["discretisation"]["bins_per_float_dim"] == 10
    assert 0 < card["saco"]["value"] and card["tq"]["value"] is not None
    # the same SACo by hand from the library
    from heron.data import load_dataset

    ref = load_dataset(suite / "pendulum-full-replay")
    ds = load_dataset(ds_path)
    assert card["saco"]["value"] == state_action_coverage(ds, ref, bins=10)["value"]
    assert card["saco"]["unique_state_actions"] == coverage_counts(ds, grid_for(ref, 10))[0]

    out = tmp_path / "cards" / "medium"
    before = sorted(p.name for p in ds_path.rglob("*"))
    assert main(["data", "inspect", str(ds_path), "--out", str(out), "--reference", str(ds_path)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "card.md", "card.png"]
    written = json.loads((out / "card.json").read_text())
    assert written["saco"]["value"] == 1.0  # against itself
    assert "![dataset card](card.png)" in (out / "card.md").read_text()
    assert (out / "card.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in ds_path.rglob("*")) == before  # nothing written into the dataset


@pytest.mark.parametrize("case", ["missing", "corrupt", "out_inside", "bad_reference"])
def test_cli_bad_input_is_one_line_and_exit_2(case, suite, tmp_path, capsys):
    ds_path = suite / "pendulum-medium"
    if case == "missing":
        argv, match = ["data", "inspect", str(tmp_path / "nope")], "no dataset at"
    elif case == "corrupt":
        bad = tmp_path / "bad"
        save_dataset(pendulum_like(), bad)
        (bad / "data" / "main_data.hdf5").write_bytes(b"not hdf5 at all")
        argv, match = ["data", "inspect", str(bad)], "SHA-256"
    elif case == "out_inside":
        argv, match = ["data", "inspect", str(ds_path), "--out", str(ds_path / "card")], "inside the dataset"
    else:
        save_dataset(cartpole_like(), tmp_path / "cp")
        argv, match = ["data", "inspect", str(ds_path), "--reference", str(tmp_path / "cp")], "same task"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err and err.startswith("heron: error:")
    assert not (ds_path / "card").exists()


def test_cli_unusable_suite_reference_leaves_saco_unavailable(suite, capsys):
    import shutil

    shutil.rmtree(suite / "pendulum-full-replay")
    save_dataset(cartpole_like().with_metadata(name="wrong"), suite / "pendulum-full-replay")
    assert main(["data", "inspect", str(suite / "pendulum-medium"), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["saco"]["value"] is None and "unusable" in card["saco"]["reason"]
    assert card["saco"]["unique_state_actions"] == 4 * 30 and card["tq"]["value"] is not None
