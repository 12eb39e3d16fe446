"""H2O: the dynamics ratio from the classifiers' logits, the gap, the weighted Q penalty and the weighted
Bellman error against hand-computed numbers; the batch layout (real rows first) and the rules that
keep it; the sim/real envs; a CLI run acting in the simulator, evaluating on the real system, with exact resume."""

import json
import shutil
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from offline_data import random_dataset

from heron.agents import get_agent, h2o
from heron.cli.main import main
from heron.data.minari_io import save_dataset
from heron.data.replay import replay_add, replay_init, replay_sample_mixed
from heron.errors import HeronError
from heron.experiments.bench_report import per_seed_scores
from heron.loops import finetune
from heron.types import Transition

SMALL = ["actor_hidden=16,16", "critic_hidden=16,16", "discriminator_hidden=16,16", "batch_size=32"]


def arr(x):
    return jnp.asarray(x, jnp.float32)


def softmax(x):
    e = np.exp(np.asarray(x, np.float64))
    return e / e.sum(-1, keepdims=True)


# --------------------------------------------------------------------------------- losses


def test_dynamics_ratio_from_the_classifiers_by_bayes_rule():
    sa, sas = np.array([[0.2, -0.1], [1.0, 0.5]]), np.array([[0.5, 0.3], [-2.0, 1.0]])
    p_sa, p_sas = softmax(sa), softmax(sa + sas)  # D_sa(·|s,a), D_sas(·|s,a,s') = softmax(ℓ_sa + ℓ_sas)
    expected = (p_sas[:, 0] / p_sas[:, 1]) * (p_sa[:, 1] / p_sa[:, 0])  # P_real(s'|s,a) / P_sim(s'|s,a)
    np.testing.assert_allclose(np.exp(h2o.log_dynamics_ratio(arr(sa), arr(sas))), expected, rtol=1e-5)
    np.testing.assert_allclose(expected, np.exp([0.2, -3.0]), rtol=1e-6)  # the D_sa terms cancel: e^{ℓ_sas,0 − ℓ_sas,1}
    # clipped to [1e-5, 1] as importance weights
    np.testing.assert_allclose(h2o.importance_weights(arr([-20.0, -1.0, 0.0, 2.0]), 1e-5, 1.0),
                               [1e-5, np.exp(-1.0), 1.0, 1.0], rtol=1e-6)


def test_dynamics_gap_is_the_clipped_mean_log_ratio_of_sim_over_real():
    log_real_over_sim = arr([[-1.0, -3.0], [2.0, 2.0], [-30.0, -30.0]])  # [B, K]
    np.testing.assert_allclose(h2o.dynamics_gap(log_real_over_sim, 1e-30, 10.0), [2.0, 1e-30, 10.0], rtol=1e-6)


def test_dynamics_penalty_by_hand():
    q_sim, q_real, gap = arr([[1.0, 2.0]]), arr([[0.5, 1.5]]), arr([1.0, 3.0])  # ω = [1/4, 3/4]
    value = float(h2o.dynamics_penalty(q_sim, q_real, gap, 1.0, -1000.0, 1000.0)[0])
    assert value == pytest.approx(np.log(0.25 * np.e + 0.75 * np.e**2) - 1.0, rel=1e-6)
    t2 = float(h2o.dynamics_penalty(q_sim, q_real, gap, 2.0, -1000.0, 1000.0)[0])
    assert t2 == pytest.approx(2 * np.log(np.exp((1 + np.log(0.25)) / 2) + np.exp((2 + np.log(0.75)) / 2)) - 1.0, rel=1e-6)
    assert float(h2o.dynamics_penalty(q_sim, q_real, gap, 1.0, -1000.0, 0.5)[0]) == 0.5  # clipped
    # the gradient pushes Q down on simulated pairs in proportion to ω exp(Q) and up on the real data
    grad_sim, grad_real = jax.grad(lambda a, b: h2o.dynamics_penalty(a, b, gap, 1.0, -1e3, 1e3)[0], (0, 1))(q_sim, q_real)
    w = np.array([0.25 * np.e, 0.75 * np.e**2])
    np.testing.assert_allclose(grad_sim[0], w / w.sum(), rtol=1e-5)
    np.testing.assert_allclose(grad_real[0], [-0.5, -0.5])


def test_weighted_bellman_error_by_hand():
    q, target, w = arr([[1.0, 2.0], [3.0, 0.0]]), arr([0.0, 1.0]), arr([0.5, 1.0])
    # critic 1: (0.5·1 + 1·1)/2 = 0.75; critic 2: (0.5·9 + 1·1)/2 = 2.75
    assert float(h2o.weighted_td_loss(q, target, w)) == pytest.approx(3.5)


def test_discriminator_loss_by_hand():
    sa_real, sas_real, sa_sim, sas_sim = arr([[2.0, 0.0]]), arr([[0.0, 1.0]]), arr([[0.0, 1.0]]), arr([[1.0, 0.0]])
    total, loss_sa, loss_sas = h2o.discriminator_loss(sa_real, sas_real, sa_sim, sas_sim)
    assert float(loss_sa) == pytest.approx(-np.log(softmax([2, 0])[0]) - np.log(softmax([0, 1])[1]), rel=1e-6)
    assert float(loss_sas) == pytest.approx(-np.log(softmax([2, 1])[0]) - np.log(0.5), rel=1e-6)
    assert float(total) == pytest.approx(float(loss_sa) + float(loss_sas))


# --------------------------------------------------------------------------------- the batch layout


def test_mixed_sample_can_keep_the_offline_rows_first():
    buffer = replay_init(100, (1,), jnp.float32, (1,), jnp.float32)
    rows = lambda n, r: Transition(jnp.zeros((n, 1)), jnp.zeros((n, 1)), jnp.full((n,), r), jnp.zeros((n, 1)),
                                   jnp.zeros(n), jnp.zeros(n))
    buffer = replay_add(replay_add(buffer, rows(60, 1.0)), rows(5, 2.0))
    ordered = np.asarray(replay_sample_mixed(buffer, jax.random.PRNGKey(0), 64, 60, 0.5, shuffle=False).reward)
    assert (ordered[:32] == 1.0).all() and (ordered[32:] == 2.0).all()
    shuffled = np.asarray(replay_sample_mixed(buffer, jax.random.PRNGKey(0), 64, 60, 0.5).reward)
    np.testing.assert_array_equal(np.sort(shuffled), np.sort(ordered))  # same rows, permuted (the default)
    assert (shuffled[:32] == 1.0).sum() not in (0, 32)


def test_h2o_rule_keeps_real_rows_first_and_refuses_to_drop_them():
    spec = get_agent("h2o")
    rule = finetune.resolve_rule(spec)
    assert rule.offline_rows_first and rule.offline_fraction == h2o.REAL_FRACTION and rule.keep_offline_data
    phase = finetune.OnlinePhase(env_id="Pendulum-v1", online_steps=10, eval_episodes=1,
                                 eval_env_id="heron/Pendulum-real-v0")
    loop = finetune.make_loop(spec, spec.config(actor_hidden=(8,), critic_hidden=(8,), discriminator_hidden=(8,)),
                              rule, phase, offline_transitions=50)
    try:
        assert loop.replay.offline_first and loop.replay.offline_rows == 50 and loop.replay.offline_fraction == 0.5
        assert loop.loop_cfg.eval_env_id == "heron/Pendulum-real-v0"
    finally:
        loop.close()
    assert finetune.resolve_rule(spec, "plain").offline_rows_first
    with pytest.raises(HeronError, match="must stay"):
        finetune.resolve_rule(spec, "wsrl")
    with pytest.raises(HeronError, match="keep_offline_data"):
        finetune.resolve_rule(spec, keep_offline_data=False)
    for other in ("iql", "rlpd", "cql"):  # every other agent's batches stay shuffled
        assert not finetune.resolve_rule(get_agent(other)).offline_rows_first


def test_classifiers_learn_the_gap_from_the_row_order():
    """Same (s, a) in both halves, s' = s + 0.5 in the real rows and s − 0.5 in the simulated ones: the
    classifiers tell them apart, so the simulated rows' dynamics ratio falls and their gap grows."""
    spec = get_agent("h2o")
    cfg = spec.config(actor_hidden=(16,), critic_hidden=(16,), discriminator_hidden=(32,), batch_size=64,
                      discriminator_lr=3e-3, next_state_noise_scale=0.05)
    obs_space, act_space = gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)
    state = spec.init(jax.random.PRNGKey(0), obs_space, act_space, cfg)
    rng = np.random.default_rng(0)
    obs = np.tile(rng.uniform(-1, 1, (32, 2)).astype(np.float32), (2, 1))
    shift = np.concatenate([np.full((32, 1), 0.5), np.full((32, 1), -0.5)]).astype(np.float32)
    batch = Transition(obs, np.tile(rng.uniform(-1, 1, (32, 1)), (2, 1)).astype(np.float32),
                       np.zeros(64, np.float32), obs + shift, np.zeros(64, np.float32), np.zeros(64, np.float32))

    @jax.jit
    def train(state, key):
        return jax.lax.scan(lambda s, k: spec.update(s, batch, k, cfg), state, jax.random.split(key, 300))

    state, metrics = train(state, jax.random.PRNGKey(1))
    assert float(metrics["dynamics_ratio_mean"][0]) > 0.5 and float(metrics["dynamics_ratio_mean"][-1]) < 0.1
    assert float(metrics["dynamics_gap_mean"][0]) < 1.0 < float(metrics["dynamics_gap_mean"][-1])
    assert float(metrics["discriminator_sas_loss"][-1]) < 0.5 * float(metrics["discriminator_sas_loss"][0])


# --------------------------------------------------------------------------------- sim/real envs


@pytest.mark.parametrize("real, sim", [("heron/Pendulum-real-v0", "Pendulum-v1"),
                                       ("heron/HalfCheetah-real-v0", "HalfCheetah-v5"),
                                       ("heron/Hopper-real-v0", "Hopper-v5")])
def test_real_systems_share_the_simulators_spaces_but_not_its_dynamics(real, sim):
    import heron.envs  # noqa: F401  (registers the ids)

    env_real, env_sim = gym.make(real), gym.make(sim)
    try:
        assert env_real.observation_space == env_sim.observation_space
        assert env_real.action_space == env_sim.action_space
        assert env_real.spec.max_episode_steps == env_sim.spec.max_episode_steps
        obs_real, _ = env_real.reset(seed=3)
        obs_sim, _ = env_sim.reset(seed=3)
        np.testing.assert_allclose(obs_real, obs_sim)
        action = np.full(env_sim.action_space.shape, 0.5, np.float32)
        for _ in range(5):
            obs_real, obs_sim = env_real.step(action)[0], env_sim.step(action)[0]
        assert np.abs(obs_real - obs_sim).max() > 1e-3
    finally:
        env_real.close(), env_sim.close()


def test_pendulum_real_jax_twin_matches_gymnasium():
    from heron.envs.sim_real import pendulum_real_jax

    env, twin = gym.make("heron/Pendulum-real-v0"), pendulum_real_jax()
    env.reset(seed=0)
    physics = np.array(env.unwrapped.state, np.float32)
    state, _ = twin.reset(jax.random.PRNGKey(0))
    state = state.replace(physics=jnp.asarray(physics))
    obs, reward = env.step(np.array([1.3], np.float32))[:2]
    _, twin_obs, twin_reward, _, _ = twin.step(jax.random.PRNGKey(0), state, jnp.array([1.3]))
    np.testing.assert_allclose(twin_obs, obs, rtol=1e-5, atol=1e-5)
    assert float(twin_reward) == pytest.approx(reward, rel=1e-5)
    env.close()


# --------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pendulum-random"
    save_dataset(random_dataset(num_episodes=4), path)
    return path


def test_h2o_needs_online_steps_and_no_offline_phase(real_dir, tmp_path, capsys):
    cases = [(["train", "h2o", "--dataset", str(real_dir), "--steps", "100", "--online-steps", "10"], "--steps 0"),
             (["train", "h2o", "--dataset", str(real_dir), "--steps", "100"], "--steps 0"),
             (["train", "iql", "--dataset", str(real_dir), "--eval-env", "heron/Pendulum-real-v0"], "--online-steps"),
             (["train", "h2o", "--dataset", str(real_dir), "--steps", "0", "--online-steps", "10", "--eval-env",
               "Pendulum-v9"], "Pendulum-v9"),
             (["train", "h2o", "--dataset", str(real_dir), "--steps", "0", "--online-steps", "10", "--eval-env",
               "CartPole-v1"], "does not fit")]
    for argv, message in cases:
        assert main([*argv, "--runs-dir", str(tmp_path)]) == 2
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


def test_h2o_run_acts_in_the_simulator_evaluates_on_the_real_system_and_resumes_exactly(real_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["train", "h2o", "--dataset", str(real_dir), "--env", "Pendulum-v1", "--eval-env", "heron/Pendulum-real-v0",
            "--steps", "0", "--online-steps", "200", "--warmup-steps", "50", "--checkpoint-every", "100",
            "--eval-episodes", "2", "--no-progress", "--runs-dir", str(runs), *SMALL]
    assert main(argv) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["env"] == "Pendulum-v1" and config["finetune"]["eval_env"] == "heron/Pendulum-real-v0"
    assert config["finetune"]["switch_step"] == 0
    metrics = (run_dir / "metrics.csv").read_text()
    assert "train/dynamics_ratio_mean" in metrics and "train/penalty" in metrics
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0
    assert "mean return" in capsys.readouterr().out
    assert main(["eval", str(run_dir), "--episodes", "2", "--env", "Pendulum-v1"]) == 0  # in the simulator
    assert "over 2 episodes" in capsys.readouterr().out

    copy = runs / (run_dir.name + "-copy")
    shutil.copytree(run_dir, copy)
    last = (copy / "checkpoints" / "latest").read_text().strip()
    shutil.rmtree(copy / "checkpoints" / last)
    remaining = sorted(p.name for p in (copy / "checkpoints").iterdir() if p.name.startswith("step_"))
    (copy / "checkpoints" / "latest").write_text(remaining[-1])
    assert main(["train", "--resume", str(copy), "--no-progress"]) == 0
    assert _final_tree_bytes(copy) == _final_tree_bytes(run_dir)
    assert _rows(copy, "eval.csv") == _rows(run_dir, "eval.csv")
    assert _rows(copy, "metrics.csv") == _rows(run_dir, "metrics.csv")


def test_tune_h2o_scores_trials_on_the_real_system(real_dir, tmp_path, capsys):
    """`heron tune h2o`: no offline phase (--steps 0), acting in the simulator, each trial scored by its
    evaluations on the real system (--eval-env), the switch rule's warm-up overridden."""
    root = tmp_path / "tune"
    argv = ["tune", "h2o", "--dataset", str(real_dir), "--env", "Pendulum-v1", "--eval-env", "heron/Pendulum-real-v0",
            "--steps", "0", "--online-steps", "200", "--warmup-steps", "50", "--trials", "1", "--seeds", "1",
            "--evaluations", "1", "--eval-episodes", "2", "--param", "penalty_weight=float:0.001:1:log",
            "--root", str(root), *SMALL]
    assert main(argv) == 0
    out = Path(capsys.readouterr().out.strip().splitlines()[-1])
    (trial,) = json.loads((out / "best.json").read_text())["best"]
    (run_dir,) = [p for cell in (out / "runs").iterdir() for p in cell.iterdir()]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["finetune"]["eval_env"] == "heron/Pendulum-real-v0" and config["env"] == "Pendulum-v1"
    assert config["request"]["warmup_steps"] == 50 and config["finetune"]["switch_step"] == 0
    _, curve, normalised = per_seed_scores(run_dir, 1)  # its evaluations, all on the real system
    assert normalised and trial["values"]["final"] == pytest.approx(curve[-1][0])


def test_tune_stops_when_every_trial_fails_and_says_why(real_dir, tmp_path, capsys):
    """A setting every trial fails on (here an eval env with other spaces) stops the study after a few trials."""
    argv = ["tune", "h2o", "--dataset", str(real_dir), "--env", "Pendulum-v1", "--eval-env", "CartPole-v1",
            "--steps", "0", "--online-steps", "200", "--warmup-steps", "50", "--trials", "10", "--seeds", "1",
            "--evaluations", "1", "--root", str(tmp_path), *SMALL]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "first 3 trials failed and none finished" in err and "does not fit" in err, err
    (study,) = tmp_path.iterdir()
    assert json.loads((study / "best.json").read_text())["failed"] == 3


def test_online_run_trains_in_the_simulator_and_evaluates_on_the_real_system(tmp_path, capsys):
    """`heron train sac --env SIM --eval-env REAL`: every evaluation of the compiled loop runs on the real system
    (checked by redoing the last one there with the loop's key), and `heron eval` defaults to it."""
    runs = tmp_path / "runs"
    argv = ["train", "sac", "--env", "Pendulum-v1", "--eval-env", "heron/Pendulum-real-v0", "--steps", "600",
            "--seeds", "2", "--eval-every", "300", "--eval-episodes", "2", "--no-progress", "--runs-dir", str(runs),
            "learning_starts=200", "actor_hidden=16,16", "critic_hidden=16,16", "batch_size=32"]
    assert main(argv) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["loop"] == "compiled" and config["eval_env"] == "heron/Pendulum-real-v0"
    assert "evaluated in `heron/Pendulum-real-v0`" in (run_dir / "report.md").read_text()

    from heron.envs.jax_envs import make_jax_env
    from heron.experiments.train import load_request
    from heron.loops import online_jax
    from heron.loops.offline import PolicyEvaluator
    from heron.tracking.run import Run

    run = Run.open(run_dir)
    req, spec, cfg = load_request(run)
    template = online_jax.init_loop_seeds(req.seed, req.seeds, spec, cfg, make_jax_env("Pendulum-v1"), req.steps)
    tree = run.load_latest_checkpoint(template).tree
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), 0xE7A1), 600)
    logged = np.full((2, 2), np.nan)  # [seed, episode] returns of the evaluation at step 600
    for step, seed, episode, ret in (line.split(",") for line in (run_dir / "eval.csv").read_text().splitlines()[1:]):
        if int(step) == 600:
            logged[int(seed), int(episode)] = float(ret)
    for env_id, same in (("heron/Pendulum-real-v0", True), ("Pendulum-v1", False)):
        redone = np.asarray(PolicyEvaluator(spec, env_id, 2)(tree, key))
        assert np.allclose(redone, logged, rtol=1e-5) == same, (env_id, redone, logged)

    outputs = {}
    for extra in ([], ["--env", "heron/Pendulum-real-v0"], ["--env", "Pendulum-v1"]):
        assert main(["eval", str(run_dir), "--episodes", "2", *extra]) == 0
        outputs[tuple(extra)] = capsys.readouterr().out
    assert outputs[()] == outputs[("--env", "heron/Pendulum-real-v0")] != outputs[("--env", "Pendulum-v1")]


@pytest.mark.parametrize("eval_env, message", [("CartPole-v1", "does not fit --env Pendulum-v1"),
                                               ("Pendulum-v9", "Pendulum-v9")])
def test_online_run_refuses_a_bad_eval_env(tmp_path, capsys, eval_env, message):
    argv = ["train", "sac", "--env", "Pendulum-v1", "--eval-env", eval_env, "--steps", "600", "--runs-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("heron: error: ") and message in err and "\n" not in err, err
    assert not any(tmp_path.iterdir())
