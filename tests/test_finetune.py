"""Offline→online: switch rules, switch metrics, the buffer at the switch, the warm-up, the CLI
(`heron train ALGO --dataset D --online-steps M`, `heron finetune RUN_DIR`) and exact resume."""

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from offline_data import random_dataset

from heron.agents import get_agent
from heron.agents.registry import FinetuneRule
from heron.cli.main import main
from heron.data.minari_io import save_dataset
from heron.errors import HeronError
from heron.loops import finetune, offline

SMALL = ["actor_hidden=16,16", "critic_hidden=16,16", "batch_size=32"]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pendulum-random"
    save_dataset(random_dataset(num_episodes=10), path)
    return path


# --------------------------------------------------------------------------------- metrics


def test_switch_metrics_by_hand():
    m = finetune.switch_metrics([(0, 10.0), (1000, 50.0)], [(100, 40.0), (200, 30.0), (300, 55.0), (400, 60.0)])
    assert m["pre_switch_score"] == 50.0
    assert m["dip_percent"] == pytest.approx(40.0)  # (50 − 30) / 50
    assert m["steps_to_recover"] == 300
    assert m["final_score"] == 60.0 and m["improvement"] == pytest.approx(10.0) and m["best_online_score"] == 60.0


def test_switch_metrics_without_a_dip_or_without_recovery():
    no_dip = finetune.switch_metrics([(10, 50.0)], [(100, 55.0), (200, 52.0)])
    assert no_dip["dip_percent"] == 0.0 and no_dip["steps_to_recover"] == 100
    never = finetune.switch_metrics([(10, 50.0)], [(100, 45.0), (200, 25.0)])
    assert never["steps_to_recover"] is None and never["dip_percent"] == pytest.approx(50.0)
    assert finetune.switch_metrics([], [(1, 1.0)]) == {}


# --------------------------------------------------------------------------------- rules


def test_rules_own_wsrl_plain_and_overrides():
    iql, wsrl, cql = get_agent("iql"), get_agent("wsrl"), get_agent("cql")
    own_iql = finetune.resolve_rule(iql)  # plain fine-tuning: keep the data, no warm-up, UTD 1
    assert (own_iql.keep_offline_data, own_iql.warmup_steps, own_iql.updates_per_step) == (True, 0, 1)
    assert finetune.online_config(iql, iql.config(), own_iql).lr_schedule == "constant"  # cosine reached 0
    own = finetune.resolve_rule(wsrl)
    assert (own.keep_offline_data, own.warmup_steps, own.updates_per_step) == (False, 5000, 4)
    cfg = wsrl.config()
    assert finetune.online_config(wsrl, cfg, own).cql_alpha == 0.0 and cfg.cql_alpha == 5.0
    # the WSRL switch on IQL keeps IQL's own update; on CQL the penalty stays unless online_cql_alpha says so
    on_iql = finetune.resolve_rule(iql, "wsrl")
    assert not on_iql.keep_offline_data and on_iql.online_config is own_iql.online_config and "iql" in on_iql.source
    assert finetune.online_config(cql, cql.config(), finetune.resolve_rule(cql, "wsrl")).cql_alpha == 5.0
    plain = finetune.resolve_rule(wsrl, "plain", warmup_steps=7, updates_per_step=2)
    assert (plain.keep_offline_data, plain.warmup_steps, plain.updates_per_step) == (True, 7, 2)
    with pytest.raises(HeronError, match="unknown fine-tuning method"):
        finetune.resolve_rule(iql, "magic")
    with pytest.raises(HeronError, match="cannot continue online"):
        finetune.check_finetunable(get_agent("rcsl"))
    with pytest.raises(HeronError, match="not an offline algorithm"):
        finetune.check_finetunable(get_agent("sac"))


def test_wsrl_online_update_is_sac_with_a_subsampled_ensemble():
    """α_cql = 0 online: no penalty term; backups use the minimum of 2 of the 10 target critics."""
    ds = random_dataset(num_episodes=2)
    spec = get_agent("wsrl")
    cfg = dataclasses.replace(spec.config(), actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=8)
    agent = spec.init(jax.random.PRNGKey(0), ds.observation_space, ds.action_space, cfg)
    assert jax.tree.leaves(agent.critic_params)[0].shape[0] == 10
    batch = jax.tree.map(lambda x: x[:8], ds.transitions())
    _, off = spec.update(agent, batch, jax.random.PRNGKey(1), cfg)
    _, on = spec.update(agent, batch, jax.random.PRNGKey(1), finetune.online_config(spec, cfg, spec.finetune))
    assert float(off["cql_penalty"]) != 0.0 and float(on["cql_penalty"]) == 0.0
    assert float(on["critic_loss"]) == pytest.approx(float(on["td_loss"]))


# --------------------------------------------------------------------------------- the switch


@pytest.mark.parametrize("keep", [True, False])
def test_switch_buffer_holds_the_offline_data_only_when_kept(keep):
    ds = random_dataset(num_episodes=2)
    spec = get_agent("iql")
    cfg = dataclasses.replace(spec.config(), actor_hidden=(16, 16), critic_hidden=(16, 16))
    rule = dataclasses.replace(FinetuneRule(), keep_offline_data=keep)
    phase = finetune.OnlinePhase(env_id="Pendulum-v1", online_steps=50, eval_episodes=0)
    loop = finetune.make_loop(spec, cfg, rule, phase, ds.num_transitions)
    try:
        agent = offline.seed_slice(offline.init_offline(0, 1, spec, cfg, ds.observation_space, ds.action_space,
                                                        offline.dataset_stats(ds)), 0)
        state = finetune.switch_state(loop, agent, ds, rule, seed=0)
        buffer = state["tree"]["buffer"]
        assert buffer.capacity == 50 + (ds.num_transitions if keep else 0)
        assert int(buffer.size) == (ds.num_transitions if keep else 0)
        if keep:
            np.testing.assert_allclose(np.asarray(buffer.data.obs[:ds.num_transitions]), ds.transitions().obs, rtol=1e-6)
    finally:
        loop.close()


def test_warmup_steps_act_with_the_policy_and_do_not_update():
    ds = random_dataset(num_episodes=2)
    spec = get_agent("iql")
    cfg = dataclasses.replace(spec.config(), actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=16)
    rule = FinetuneRule(keep_offline_data=False, warmup_steps=30, updates_per_step=3)
    phase = finetune.OnlinePhase(env_id="Pendulum-v1", online_steps=50, eval_episodes=0, log_every=10)
    loop = finetune.make_loop(spec, cfg, rule, phase, ds.num_transitions)
    try:
        agent = offline.seed_slice(offline.init_offline(0, 1, spec, cfg, ds.observation_space, ds.action_space,
                                                        offline.dataset_stats(ds)), 0)
        # a nearly deterministic policy (σ = e^-5 in unit actions), so its actions are told from uniform ones
        params = jax.tree_util.tree_map(lambda x: x, agent.actor_params)
        params["params"]["log_std"] = params["params"]["log_std"] * 0 - 5.0
        agent = agent.replace(actor_params=params)
        state = finetune.switch_state(loop, agent, ds, rule, seed=0)
        final = loop.run(state)
    finally:
        loop.close()
    # updates start with the step that completes the warm-up (the host loop's learning_starts rule)
    assert final["meta"]["updates"] == (50 - 30 + 1) * 3
    assert int(final["tree"]["buffer"].size) == 50
    # the warm-up actions are the pre-trained policy's (within 5σ of its mean), not uniform on [-2, 2]
    obs = final["tree"]["buffer"].data.obs[:30]
    mean = np.asarray(spec.act(agent, obs, jax.random.PRNGKey(0), True)).reshape(-1)
    taken = np.asarray(final["tree"]["buffer"].data.action[:30]).reshape(-1)
    assert np.all(np.abs(taken - mean) <= 5 * 2.0 * np.exp(-5.0) + 1e-6), np.abs(taken - mean).max()


# --------------------------------------------------------------------------------- CLI


def test_bad_finetune_input_is_one_line(dataset_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HERON_RUNS_DIR", str(tmp_path))
    cases = [
        (["train", "sac", "--env", "Pendulum-v1", "--online-steps", "10"], "apply to offline runs"),
        (["train", "iql", "--dataset", str(dataset_dir), "--warmup-steps", "10"], "need --online-steps"),
        (["train", "rcsl", "--dataset", str(dataset_dir), "--online-steps", "10"], "cannot continue online"),
        (["train", "iql", "--dataset", str(dataset_dir), "--online-steps", "10", "--seeds", "2"], "one seed"),
        # WSRL's rule warms up for 5000 steps: over a 10-step online phase nothing would ever update
        (["train", "iql", "--dataset", str(dataset_dir), "--online-steps", "10", "--finetune-method", "wsrl"],
         "covers all 10 online steps"),
        (["finetune", str(tmp_path / "nope")], "nope"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("heron: error: ") and message in err and "\n" not in err, err
    assert not any(tmp_path.iterdir())


def _final_tree_bytes(run_dir: Path) -> bytes:
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    return (run_dir / "checkpoints" / latest / "state.msgpack").read_bytes() + \
        (run_dir / "checkpoints" / latest / "arrays.npz").read_bytes()


def _rows(run_dir: Path, name: str) -> list[str]:
    lines = (run_dir / name).read_text().splitlines()
    return [",".join(line.split(",")[:3]) for line in lines if "time/" not in line]


def test_offline_to_online_run_report_eval_and_exact_resume(dataset_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["train", "iql", "--dataset", str(dataset_dir), "--offline-steps", "200", "--online-steps", "400",
            "--finetune-method", "wsrl", "--warmup-steps", "100", "--checkpoint-every", "100", "--eval-episodes", "2",
            "--no-progress", "--runs-dir", str(runs), *SMALL]
    assert main(argv) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["loop"] == "offline_to_online" and config["finetune"]["rule"]["warmup_steps"] == 100
    summary = json.loads((run_dir / "finetune.json").read_text())
    assert summary["switch_step"] == 200 and summary["score"] == "normalised" and "dip_percent" in summary
    steps = sorted({int(r.split(",")[0]) for r in _rows(run_dir, "eval.csv")[1:]})
    assert steps[0] <= 200 < steps[-1] == 600  # offline evaluations, then online ones on the same axis
    report = (run_dir / "report.md").read_text()
    assert "switch_curve.png" in report and (run_dir / "switch_curve.png").stat().st_size > 0
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0

    # Resume from the online phase's last checkpoint before the end: the same bytes as uninterrupted.
    copy = runs / (run_dir.name + "-copy")
    shutil.copytree(run_dir, copy)
    last = (copy / "checkpoints" / "latest").read_text().strip()
    shutil.rmtree(copy / "checkpoints" / last)
    remaining = sorted(p.name for p in (copy / "checkpoints").iterdir() if p.name.startswith("step_"))
    (copy / "checkpoints" / "latest").write_text(remaining[-1])
    assert int(remaining[-1].split("_")[1]) > 200, remaining  # an online-phase checkpoint
    assert main(["train", "--resume", str(copy), "--no-progress"]) == 0
    assert _final_tree_bytes(copy) == _final_tree_bytes(run_dir)
    assert _rows(copy, "eval.csv") == _rows(run_dir, "eval.csv")
    assert _rows(copy, "metrics.csv") == _rows(run_dir, "metrics.csv")


def test_finetune_continues_an_offline_run_with_its_history(dataset_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "iql", "--dataset", str(dataset_dir), "--steps", "200", "--eval-episodes", "2",
                 "--no-progress", "--runs-dir", str(runs), *SMALL]) == 0
    parent = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["finetune", str(parent), "--online-steps", "300", "--eval-episodes", "2", "--no-progress",
                 "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr()
    child = Path(out.out.strip().splitlines()[-1])
    assert child != parent and "switch:" in out.err
    assert main(["finetune", str(parent), "--method", "wsrl", "--online-steps", "300", "--no-progress",
                 "--runs-dir", str(runs)]) == 2
    assert "covers all 300 online steps" in capsys.readouterr().err
    assert sorted(runs.iterdir()) == sorted([parent, child])  # the refusal made no run
    config = json.loads((child / "config.json").read_text())
    assert config["loop"] == "finetune" and config["finetune"]["parent"] == str(parent)
    assert config["finetune"]["rule"]["keep_offline_data"] is True  # IQL's own rule: plain fine-tuning
    parent_evals = _rows(parent, "eval.csv")[1:]
    assert _rows(child, "eval.csv")[1:len(parent_evals) + 1] == parent_evals
    assert max(int(r.split(",")[0]) for r in _rows(child, "eval.csv")[1:]) == 200 + 300


def test_finetune_run_resumes_exactly_from_an_online_checkpoint_or_the_switch(dataset_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "iql", "--dataset", str(dataset_dir), "--steps", "200", "--eval-episodes", "2",
                 "--no-progress", "--runs-dir", str(runs), *SMALL]) == 0
    parent = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["finetune", str(parent), "--online-steps", "400", "--checkpoint-every", "100", "--eval-episodes", "2",
                 "--no-progress", "--runs-dir", str(runs)]) == 0
    child = Path(capsys.readouterr().out.strip().splitlines()[-1])
    steps = sorted(p.name for p in (child / "checkpoints").iterdir() if p.name.startswith("step_"))

    # killed after one online checkpoint; before the first one; while the parent's history was being copied
    for keep, marker in ((1, True), (0, True), (0, False)):
        copy = runs / f"{child.name}-copy{keep}{marker}"
        shutil.copytree(child, copy)
        for name in steps[keep:]:
            shutil.rmtree(copy / "checkpoints" / name)
        if keep:
            (copy / "checkpoints" / "latest").write_text(steps[keep - 1])
        else:
            (copy / "checkpoints" / "latest").unlink()
        if not marker:
            (copy / "finetune_start.json").unlink()
        (copy / "finetune.json").unlink()
        assert main(["train", "--resume", str(copy), "--no-progress"]) == 0
        assert _final_tree_bytes(copy) == _final_tree_bytes(child)
        assert _rows(copy, "eval.csv") == _rows(child, "eval.csv")
        assert _rows(copy, "metrics.csv") == _rows(child, "metrics.csv")
        assert json.loads((copy / "finetune.json").read_text()) == json.loads((child / "finetune.json").read_text())
        assert json.loads((copy / "status.json").read_text())["resumed"] == 1

    # without an online checkpoint the pre-trained agent is needed: its run gone, one clear error, nothing changed
    copy = runs / f"{child.name}-orphan"
    shutil.copytree(child, copy)
    shutil.rmtree(copy / "checkpoints")
    shutil.rmtree(parent)
    before = (copy / "eval.csv").read_bytes()
    assert main(["train", "--resume", str(copy)]) == 2
    assert "which is gone" in capsys.readouterr().err
    assert (copy / "eval.csv").read_bytes() == before
    # with one, the parent is not needed
    copy = runs / f"{child.name}-online"
    shutil.copytree(child, copy)
    (copy / "checkpoints" / "latest").write_text(steps[0])
    for name in steps[1:]:
        shutil.rmtree(copy / "checkpoints" / name)
    assert main(["train", "--resume", str(copy), "--no-progress"]) == 0
    assert _final_tree_bytes(copy) == _final_tree_bytes(child)


def test_resume_from_the_switch_uses_the_parents_switch_checkpoint_after_it_trained_on(dataset_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "iql", "--dataset", str(dataset_dir), "--steps", "200", "--checkpoint-every", "100",
                 "--eval-episodes", "2", "--no-progress", "--runs-dir", str(runs), *SMALL]) == 0
    parent = Path(capsys.readouterr().out.strip().splitlines()[-1])
    ckpts = parent / "checkpoints"
    # fine-tune from the parent as it was at step 100, then let it have trained on to 200
    shutil.move(ckpts / "step_000000000200", tmp_path / "step_000000000200")
    (ckpts / "latest").write_text("step_000000000100")
    assert main(["finetune", str(parent), "--online-steps", "200", "--checkpoint-every", "100", "--eval-episodes",
                 "2", "--no-progress", "--runs-dir", str(runs)]) == 0
    child = Path(capsys.readouterr().out.strip().splitlines()[-1])
    shutil.move(tmp_path / "step_000000000200", ckpts / "step_000000000200")
    (ckpts / "latest").write_text("step_000000000200")

    killed = runs / f"{child.name}-killed"  # before its first online checkpoint
    shutil.copytree(child, killed)
    shutil.rmtree(killed / "checkpoints")
    (killed / "finetune.json").unlink()
    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    assert _final_tree_bytes(killed) == _final_tree_bytes(child)
    assert _rows(killed, "eval.csv") == _rows(child, "eval.csv")

    # the switch checkpoint pruned away: one clear error, nothing changed
    shutil.rmtree(ckpts / "step_000000000100")
    killed = runs / f"{child.name}-pruned"
    shutil.copytree(child, killed)
    shutil.rmtree(killed / "checkpoints")
    before = (killed / "eval.csv").read_bytes()
    assert main(["train", "--resume", str(killed)]) == 2
    assert "no longer has its checkpoint at the switch step 100" in capsys.readouterr().err
    assert (killed / "eval.csv").read_bytes() == before


def test_bench_report_separates_switch_rules_and_shows_the_switch(dataset_dir, tmp_path):
    from heron.experiments.bench import cell_runs, load_suite, suite_dir

    hidden = '["actor_hidden=16,16", "critic_hidden=16,16", "batch_size=32"]'
    grid = f'algos = ["iql"]\ndatasets = ["{dataset_dir}"]\nsteps = 200\nonline_steps = 300\noverrides = {{ iql = {hidden} }}\n'
    toml = tmp_path / "o2o.toml"
    toml.write_text(f'name = "o2o"\nseeds = 1\neval_episodes = 2\n[[grid]]\n{grid}[[grid]]\n{grid}finetune_method = "wsrl"\nwarmup_steps = 50\n')
    suite = load_suite(toml)
    assert [c.label for c in suite.cells] == ["iql", "iql+wsrl"] and suite.algos == ["iql", "iql+wsrl"]
    assert main(["bench", "run", str(toml), "--root", str(tmp_path / "bench"), "--reps", "200"]) == 0
    root = suite_dir(suite, tmp_path / "bench")
    scores = json.loads((root / "report" / "scores.json").read_text())
    task = str(dataset_dir)
    assert set(scores["final"]) == {f"iql|{task}", f"iql+wsrl|{task}"}  # two methods, not one "iql" of 2 runs
    rows = {r["algo"]: r for r in scores["switch"]}
    for cell in suite.cells:
        summary = json.loads((cell_runs(root, cell)[0] / "finetune.json").read_text())
        row = rows[cell.label]
        assert row["runs"] == 1 and row["pre_switch"] == pytest.approx(summary["pre_switch_score"])
        assert row["dip_percent"] == pytest.approx(summary["dip_percent"])
        rule = json.loads((cell_runs(root, cell)[0] / "config.json").read_text())["finetune"]["rule"]
        assert rule["warmup_steps"] == (50 if cell.finetune_method else 0)  # the block's warm-up reached the run
        assert row["final"] == pytest.approx(summary["final_score"])
        assert row["recovered"] == (summary["steps_to_recover"] is not None)
    report = (root / "report" / "report.md").read_text()
    assert "## The switch" in report
    for row in rows.values():  # env steps to recover print as a whole number
        line = next(line for line in report.splitlines() if line.startswith(f"| {row['algo']} | ") and "%" in line)
        steps = row["steps_to_recover_median"]
        assert (f"| {steps:.0f} |" if steps is not None else "| — |") in line, line
