"""`heron data suite make`: D4RL-style suites built with tiny budgets (the real presets take minutes).

A tiny Pendulum suite (compiled loop) checks the relations between the six datasets, the reference
scores and the manifest; a tiny Hopper suite (host Gymnasium loop) is built twice to check that the
same seed gives byte-identical datasets; CLI and API errors are one HeronError line.
"""

from pathlib import Path

import numpy as np
import pytest

from heron import _fs
from heron.cli.main import main
from heron.data import load_dataset
from heron.data.suites import (
    KINDS,
    SuitePreset,
    _pendulum,
    _task,
    choose_medium,
    make_suite,
    read_manifest,
    verify_suite,
)
from heron.errors import HeronError

TINY_PENDULUM = SuitePreset("tiny", (_pendulum(6_000, 200, 4_000, 20, 20, learning_starts=500),))
TINY_HOPPER = SuitePreset("tiny", (_task("hopper", "Hopper-v5", 2_000, 1_000, 1_000, 3, 2, learning_starts=500),))


@pytest.fixture(scope="module")
def pendulum_suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("pendulum-root")
    return make_suite("tiny", TINY_PENDULUM, seed=3, root=root)


def _load(suite: Path, kind: str, task: str = "pendulum"):
    return load_dataset(suite / f"{task}-{kind}")


# ----------------------------------------------------------------------------- the datasets
@pytest.mark.learning
def test_suite_has_all_kinds_with_names_refs_and_manifest(pendulum_suite):
    manifest = read_manifest(pendulum_suite)
    assert set(manifest["datasets"]) == {f"pendulum-{k}" for k in KINDS}
    task = manifest["tasks"]["pendulum"]
    assert task["replay_reference"] == "pendulum-full-replay"
    assert manifest["config"]["seed"] == 3 and manifest["config"]["preset"]["name"] == "tiny"
    assert manifest["provenance"]["packages"]["jax"]
    for kind in KINDS:
        ds = _load(pendulum_suite, kind)
        record = manifest["datasets"][f"pendulum-{kind}"]
        assert ds.name == f"tiny/pendulum-{kind}" and ds.env_id == "Pendulum-v1"
        assert (ds.ref_min_score, ds.ref_max_score) == (task["ref_min_score"], task["ref_max_score"])
        assert (ds.num_episodes, ds.num_transitions) == (record["episodes"], record["transitions"])
        assert ds.provenance[-1]["kind"] == kind and ds.provenance[-1]["seed"] == 3
    for kind in ("random", "medium", "expert"):
        ds = _load(pendulum_suite, kind)
        assert ds.num_transitions >= 4_000 and np.all(ds.episode_lengths == 200) and ds.truncations.sum() == ds.num_episodes


@pytest.mark.learning
def test_manifest_checksums_match_the_files(pendulum_suite):
    manifest = read_manifest(pendulum_suite)
    for rel, record in manifest["datasets"].items():
        assert set(record["sha256"]) >= {"data/main_data.hdf5", "data/metadata.json", "heron.json"}
        for file, digest in record["sha256"].items():
            assert _fs.sha256_file(pendulum_suite / rel / file) == digest
    assert verify_suite(pendulum_suite) == []


@pytest.mark.learning
def test_returns_are_ordered_and_refs_normalise_random_to_0_and_expert_to_100(pendulum_suite):
    means = {k: _load(pendulum_suite, k).episode_returns().mean() for k in ("random", "medium", "expert")}
    assert means["expert"] > means["medium"] > means["random"], means
    random, expert = _load(pendulum_suite, "random"), _load(pendulum_suite, "expert")
    # the references come from other episodes than the datasets', so this is a consistency check
    assert abs(random.normalized_score(means["random"])) < 20
    assert abs(expert.normalized_score(means["expert"]) - 100) < 20
    task = read_manifest(pendulum_suite)["tasks"]["pendulum"]
    assert 0 < task["medium"]["normalized_score"] < 90  # an early-stopped policy, not the expert


@pytest.mark.learning
def test_medium_expert_is_medium_then_expert(pendulum_suite):
    medium, expert, mixed = (_load(pendulum_suite, k) for k in ("medium", "expert", "medium-expert"))
    assert mixed.num_episodes == medium.num_episodes + expert.num_episodes
    assert medium.num_transitions == expert.num_transitions  # equal sizes, as D4RL
    for field in ("observations", "actions", "rewards", "terminations", "truncations"):
        np.testing.assert_array_equal(getattr(mixed, field),
                                      np.concatenate([getattr(medium, field), getattr(expert, field)]))


@pytest.mark.learning
def test_replay_datasets_are_the_training_buffer_up_to_medium_and_whole(pendulum_suite):
    task = read_manifest(pendulum_suite)["tasks"]["pendulum"]
    medium_step = task["medium"]["env_step"]
    replay, full = _load(pendulum_suite, "medium-replay"), _load(pendulum_suite, "full-replay")
    assert full.num_transitions == task["expert_env_steps"] == 6_000
    assert replay.num_transitions == medium_step < full.num_transitions
    a, b = replay.transitions(), full.transitions()
    for field in ("obs", "action", "reward", "next_obs", "terminated"):  # the run's first medium_step, in order
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field)[:medium_step])
    np.testing.assert_array_equal(a.truncated[:-1], b.truncated[:medium_step - 1])
    assert a.truncated[-1]  # the buffer stops there: the last episode ends as truncated
    # episodes chain: each transition's next observation is the following one's observation
    for ds in (replay, full):
        t = ds.transitions()
        inside = ~(t.terminated | t.truncated)
        np.testing.assert_array_equal(t.next_obs[:-1][inside[:-1]], t.obs[1:][inside[:-1]])


def test_choose_medium_picks_the_crossing_or_the_closer_neighbour():
    assert choose_medium([(1, 5.0), (2, 20.0), (3, 60.0)], 33.3) == 1
    assert choose_medium([(1, 5.0), (2, 30.0), (3, 34.0)], 33.3) == 2
    assert choose_medium([(1, 5.0), (2, 10.0)], 33.3) == 1  # never reached: the closest


# ----------------------------------------------------------------------------- reproducibility
@pytest.mark.learning
def test_same_seed_gives_byte_identical_datasets_host_loop(tmp_path):
    digests = []
    for root in ("a", "b"):
        suite = make_suite("tiny", TINY_HOPPER, seed=1, root=tmp_path / root)
        manifest = read_manifest(suite)
        digests.append({rel: r["sha256"] for rel, r in manifest["datasets"].items()})
        for kind in KINDS:
            assert load_dataset(suite / f"hopper-{kind}").num_transitions > 0
    assert digests[0] == digests[1]
    assert len(digests[0]) == len(KINDS)


# ----------------------------------------------------------------------------- overwrite and failure
@pytest.mark.learning
def test_existing_suite_is_not_overwritten_without_force(pendulum_suite):
    root = pendulum_suite.parent
    with pytest.raises(HeronError, match="already has task"):
        make_suite("tiny", TINY_PENDULUM, seed=3, root=root)
    with pytest.raises(HeronError, match="was made with preset 'tiny' seed 3"):
        make_suite("tiny", TINY_PENDULUM, seed=4, root=root)


def test_failure_midway_leaves_no_partial_dataset(tmp_path, monkeypatch):
    from heron.data import suites

    def fail_after_one(task, preset, suite, seed, out_dir, log):
        (out_dir / f"{task.slug}-random" / "data").mkdir(parents=True)
        raise RuntimeError("simulated crash while collecting")

    monkeypatch.setattr(suites, "build_task", fail_after_one)
    with pytest.raises(RuntimeError, match="simulated crash"):
        make_suite("tiny", TINY_PENDULUM, root=tmp_path)
    assert list((tmp_path / "tiny").iterdir()) == []  # no staging dir, no dataset, no manifest


def test_a_preset_that_gained_a_task_extends_a_suite_without_rebuilding_it(tmp_path, monkeypatch):
    """Adding a task to a preset (as `small` gained HalfCheetah) must not make older suites foreign: the new task
    is added beside the built ones; a built task whose budget changed still needs --force."""
    from heron.data import suites

    built = []

    def fake_build(task, preset, suite, seed, out_dir, log):  # stands in for minutes of SAC training
        built.append(task.slug)
        (out_dir / f"{task.slug}-random").mkdir(parents=True)
        return {"datasets": {f"{task.slug}-random": {"sha256": task.slug}}, "task": {"env_id": task.env_id}}

    monkeypatch.setattr(suites, "build_task", fake_build)
    one = _pendulum(6_000, 200, 4_000, 20, 20, learning_starts=500)
    other = _task("second", "Pendulum-v1", 6_000, 200, 4_000, 20, 20, learning_starts=500)
    suite = make_suite("tiny", SuitePreset("tiny", (one,)), root=tmp_path)
    make_suite("tiny", SuitePreset("tiny", (one, other)), tasks="second", root=tmp_path)
    assert built == ["pendulum", "second"]
    manifest = read_manifest(suite)
    assert set(manifest["tasks"]) == {"pendulum", "second"} and (suite / "pendulum-random").is_dir()
    assert [t["slug"] for t in manifest["config"]["preset"]["tasks"]] == ["pendulum", "second"]

    changed = _pendulum(7_000, 200, 4_000, 20, 20, learning_starts=500)
    with pytest.raises(HeronError, match="other budgets"):
        make_suite("tiny", SuitePreset("tiny", (changed, other, _task("third", "Pendulum-v1", 6_000, 200, 4_000, 20,
                                                                     20))), tasks="third", root=tmp_path)
    assert built == ["pendulum", "second"] and set(read_manifest(suite)["tasks"]) == {"pendulum", "second"}


@pytest.mark.parametrize("argv, message", [
    (["data", "suite", "make", "small", "--preset", "huge"], "unknown suite preset 'huge': choose one of small, full, sim-real"),
    (["data", "suite", "make", "mine"], "pass --preset (small, full, sim-real)"),
    (["data", "suite", "make", "small", "--tasks", "ant"], "unknown task 'ant' for preset small: choose from pendulum"),
    (["data", "suite", "make", "a/b", "--preset", "small"], "bad suite name 'a/b'"),
    (["data", "suite", "make", "small", "--seed", "-1"], "--seed must be a non-negative integer"),
])
def test_cli_bad_input_is_one_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("heron: error: ") and message in err, err
    assert "\n" not in err
    assert not any(tmp_path.iterdir())


def test_cli_refuses_a_foreign_directory_and_lists_presets(tmp_path, capsys):
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "notes.txt").write_text("mine")
    assert main(["data", "suite", "make", "small", "--root", str(tmp_path)]) == 2
    assert "is not a suite" in capsys.readouterr().err
    assert (tmp_path / "small" / "notes.txt").read_text() == "mine"
    assert main(["data", "suite", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "small: pendulum (Pendulum-v1" in out and "walker2d (Walker2d-v5" in out


@pytest.mark.learning  # trains SAC for 3000 steps (the builder refuses an expert no better than random)
def test_sim_real_preset_collects_on_the_real_systems(tmp_path):
    """The sim-real preset's data comes from the changed physics: every Pendulum transition of a tiny build
    follows g = 15, not the simulator's g = 10."""
    from heron.data.suites import SIM_REAL
    from heron.envs.sim_real import REAL_PENDULUM_G

    assert {t.env_id for t in SIM_REAL.tasks} == {"heron/Pendulum-real-v0", "heron/Hopper-real-v0"}
    budget = next(t for t in SIM_REAL.tasks if t.slug == "pendulum-real")
    tiny = SuitePreset("tiny", (_task("pendulum-real", budget.env_id, 3_000, 500, 400, 5, 2, learning_starts=500),))
    ds = load_dataset(make_suite("tiny", tiny, root=tmp_path) / "pendulum-real-random")
    assert ds.env_id == "heron/Pendulum-real-v0"
    t = ds.transitions()
    obs, act, nxt = (np.asarray(x) for x in (t.obs, t.action, t.next_obs))
    theta, dt = np.arctan2(obs[:, 1], obs[:, 0]), 0.05

    def next_velocity(g):  # Gymnasium's Pendulum step (m = l = 1)
        return np.clip(obs[:, 2] + (3 * g / 2 * np.sin(theta) + 3.0 * np.clip(act[:, 0], -2, 2)) * dt, -8, 8)

    np.testing.assert_allclose(nxt[:, 2], next_velocity(REAL_PENDULUM_G), atol=1e-4)
    assert np.abs(nxt[:, 2] - next_velocity(10.0)).max() > 0.1


def test_full_preset_covers_the_d4rl_tasks():
    from heron.data.suites import FULL, SMALL

    assert {t.env_id for t in FULL.tasks} >= {"Pendulum-v1", "Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"}
    assert all(t.dataset_transitions == 1_000_000 for t in FULL.tasks)
    assert {t.env_id for t in SMALL.tasks} == {"Pendulum-v1", "Hopper-v5", "HalfCheetah-v5"}
    from heron.agents import sac
    from heron.data.suites import TaskBudget

    with pytest.raises(HeronError, match="buffer_size=10 is smaller than expert_steps=2000"):
        TaskBudget("hopper", "Hopper-v5", 2_000, 1_000, 1_000, 3, 2, sac.Config(buffer_size=10))
