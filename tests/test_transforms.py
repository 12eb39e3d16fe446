"""Dataset transforms: RW/AW weights, RIQL corruption, SS-ORL action-free labelling, reward relabelling,
subsample/mix, and the `heron data` verbs. Tiny hand-made datasets; every check is a number that can fail."""

import json

import gymnasium as gym
import jax
import numpy as np
import pytest
from flax import serialization

from heron.cli.main import main
from heron.data import from_episodes, load_dataset, sample_indices, save_dataset
from heron.data.transforms import (
    IDMConfig,
    corrupt,
    fit_q_function,
    fit_reward_model,
    hide_actions,
    label_actions,
    load_reward_model,
    mix,
    relabel_rewards,
    reweight,
    save_reward_model,
    subsample,
    trajectory_weights,
)
from heron.errors import HeronError

BOX2 = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)


def hand_made(lengths=(2, 3, 1, 4), returns=(0.0, 1.0, 2.0, 4.0), s0=(0.0, 1.0, 2.0, 3.0)):
    """1-D states; the return of episode e is spread evenly over its steps; s_0 as given."""
    eps = []
    for T, G, s in zip(lengths, returns, s0):
        eps.append({"observations": np.full((T + 1, 1), s, np.float32), "actions": np.zeros((T, 1), np.float32),
                    "rewards": np.full(T, G / T), "terminations": np.eye(T)[-1].astype(bool), "truncations": np.zeros(T)})
    space = gym.spaces.Box(-10, 10, (1,), np.float32)
    return from_episodes(eps, space, space, name="hand", provenance=({"policy": "hand"},))


def integrator(n_eps=24, T=25, seed=0, discrete=False):
    """s' = s + a (Box) or s' = s + V[a] (Discrete, 4 distinct moves): actions are recoverable from (s, s')."""
    rng = np.random.default_rng(seed)
    moves = np.array([[1, 0], [0, 1], [-1, 0], [0.5, -0.5]], np.float32)
    eps = []
    for _ in range(n_eps):
        s = rng.normal(size=2).astype(np.float32)
        obs, acts, rews = [s], [], []
        for _ in range(T):
            a = rng.integers(4) if discrete else rng.uniform(-1, 1, 2).astype(np.float32)
            s = s + (moves[a] if discrete else a)
            obs.append(s)
            acts.append(a)
            rews.append(-float(np.sum(s ** 2)))
        eps.append({"observations": np.array(obs), "actions": np.array(acts), "rewards": np.array(rews),
                    "terminations": np.zeros(T, bool), "truncations": np.eye(T)[-1].astype(bool)})
    act_space = gym.spaces.Discrete(4) if discrete else gym.spaces.Box(-1, 1, (2,), np.float32)
    return from_episodes(eps, BOX2, act_space, name="integrator", provenance=({"policy": "uniform", "seed": seed},))


def snapshot(ds):
    return {f: np.array(getattr(ds, f), copy=True) for f in ("observations", "actions", "rewards", "terminations",
                                                             "truncations", "episode_starts")}


def assert_unchanged(ds, snap):
    for f, v in snap.items():
        np.testing.assert_array_equal(getattr(ds, f), v, err_msg=f"source {f} was modified")


# -------------------------------------------------------------------- RW / AW
def test_rw_weights_match_the_formula_by_hand():
    ds = hand_made()
    alpha, lengths = 0.5, np.array([2, 3, 1, 4])
    g_hat = np.array([0.0, 0.25, 0.5, 1.0])  # min-max normalised returns 0,1,2,4
    expected = np.exp(g_hat / alpha) / np.sum(lengths * np.exp(g_hat / alpha))
    np.testing.assert_allclose(trajectory_weights(ds, "return", alpha), expected, rtol=1e-6)  # rewards are float32
    # λ mixes with uniform over the 10 transitions
    np.testing.assert_allclose(trajectory_weights(ds, "return", alpha, uniform_mix=0.25),
                               0.25 * expected + 0.75 / 10, rtol=1e-6)
    assert np.isclose(np.sum(expected * lengths), 1.0)


def test_aw_uses_return_minus_linear_baseline_of_the_initial_state():
    ds = hand_made(returns=(0.0, 3.0, 1.0, 5.0), s0=(0.0, 1.0, 2.0, 3.0))
    slope, intercept = np.polyfit([0, 1, 2, 3], [0, 3, 1, 5], 1)
    adv = np.array([0, 3, 1, 5]) - (slope * np.arange(4) + intercept)
    a_hat = (adv - adv.min()) / (adv.max() - adv.min())
    lengths = np.array([2, 3, 1, 4])
    expected = np.exp(a_hat / 0.1) / np.sum(lengths * np.exp(a_hat / 0.1))
    np.testing.assert_allclose(trajectory_weights(ds, "advantage", 0.1), expected, rtol=1e-6)
    # AW differs from RW here: episode 1 has the best advantage, episode 3 the best return
    assert np.argmax(expected) == 1 and np.argmax(trajectory_weights(ds, "return", 0.1)) == 3


def test_sampling_frequencies_follow_the_weights():
    ds = reweight(hand_made(), by="return", temperature=0.5, uniform_mix=0.5)
    idx = np.asarray(sample_indices(ds.to_device(), jax.random.PRNGKey(1), 200_000))
    per_episode = np.bincount(ds.episode_of_transition()[idx], minlength=4) / idx.size
    np.testing.assert_allclose(per_episode, ds.episode_weights * ds.episode_lengths, atol=0.005)


def test_reweight_leaves_the_source_untouched_and_records_provenance():
    ds = hand_made()
    snap = snapshot(ds)
    out = reweight(ds, by="advantage", temperature=0.1)
    assert_unchanged(ds, snap)
    assert ds.episode_weights is None and out.episode_weights is not None
    with pytest.raises(ValueError):  # shared arrays are read-only: the output cannot write into the source
        out.observations[0, 0] = 99.0
    step = out.provenance[-1]
    assert out.provenance[0] == {"policy": "hand"}
    assert step["transform"] == "reweight" and step["method"] == "AW" and step["temperature"] == 0.1
    assert 1.0 <= step["effective_sample_size"] <= ds.num_transitions
    json.dumps(out.provenance)


# -------------------------------------------------------------------- corruption (RIQL)
@pytest.mark.parametrize("target", ["obs", "actions", "dynamics"])
def test_random_corruption_touches_exactly_round_ratio_n_with_bounded_uniform_noise(target):
    ds = integrator()
    snap = snapshot(ds)
    ratio, scale = 0.3, 0.5
    out = corrupt(ds, target, "random", ratio=ratio, scale=scale, seed=3)
    assert_unchanged(ds, snap)
    a, b = ds.transitions(), out.transitions()
    field = {"obs": "obs", "actions": "action", "dynamics": "next_obs"}[target]
    x, y = getattr(a, field), getattr(b, field)
    changed = np.any(x != y, axis=1)
    n = ds.num_transitions
    assert changed.sum() == round(ratio * n) == out.provenance[-1]["corrupted_transitions"]
    for other in {"obs", "action", "next_obs", "reward"} - {field}:  # everything else is the benchmark's tuple
        np.testing.assert_array_equal(getattr(a, other), getattr(b, other))
    np.testing.assert_array_equal(a.terminated, b.terminated)
    std = x.std(0)
    units = (y[changed] - x[changed]) / std
    assert np.abs(units).max() <= scale + 1e-5
    assert abs(np.abs(units).mean() - scale / 2) < 0.03  # U[-s, s] has mean |x| = s/2
    assert out.num_episodes == ds.num_episodes + out.provenance[-1]["episodes_split"]


def test_reward_corruption_random_range_and_adversarial_sign_flip():
    ds = integrator()
    n, k = ds.num_transitions, round(0.2 * ds.num_transitions)
    rnd = corrupt(ds, "rewards", "random", ratio=0.2, scale=0.5, seed=0)
    changed = rnd.rewards != ds.rewards
    assert changed.sum() == k and np.all(np.abs(rnd.rewards[changed]) <= 15.0)  # U[-30·0.5, 30·0.5]
    assert rnd.rewards[changed].std() > 5.0  # spread over the range, not a constant
    adv = corrupt(ds, "rewards", "adversarial", ratio=0.2, scale=2.0, seed=0)
    changed = adv.rewards != ds.rewards
    assert changed.sum() == k and adv.num_episodes == ds.num_episodes
    np.testing.assert_allclose(adv.rewards[changed], -2.0 * ds.rewards[changed], rtol=1e-6)
    assert adv.provenance[-1]["corrupted_transitions"] == k and n == adv.num_transitions


def test_state_corruption_mid_episode_splits_without_losing_a_transition():
    ds = integrator(n_eps=2, T=10)
    out = corrupt(ds, "obs", "random", ratio=0.5, scale=1.0, seed=0)
    a, b = ds.transitions(), out.transitions()
    np.testing.assert_array_equal(a.next_obs, b.next_obs)  # the clean s' of every transition is kept
    assert out.truncations.sum() == ds.truncations.sum() + out.provenance[-1]["episodes_split"]
    assert out.provenance[-1]["episodes_split"] > 0


@pytest.mark.learning  # trains a small network; thresholds on what it learned
@pytest.mark.parametrize("target", ["obs", "actions", "dynamics"])
def test_adversarial_attack_lowers_the_learned_q_more_than_random_noise_of_the_same_scale(target):
    ds = integrator()
    q = fit_q_function(ds, 0, steps=600, hidden=(64, 64))
    adv = corrupt(ds, target, "adversarial", ratio=0.3, scale=1.0, seed=5, q_model=q)
    rnd = corrupt(ds, target, "random", ratio=0.3, scale=1.0, seed=5, q_model=q)
    pa, pr = adv.provenance[-1], rnd.provenance[-1]
    assert pa["q_mean_clean"] == pytest.approx(pr["q_mean_clean"])  # the same transitions, the same Q
    assert pa["q_mean_corrupted"] < pr["q_mean_corrupted"] - 0.05 * abs(pr["q_mean_clean"])
    assert pa["q_mean_corrupted"] < pa["q_mean_clean"]
    # recompute independently from the data: Q (or V for dynamics) on the corrupted transitions
    tr, tc = ds.transitions(), adv.transitions()
    if target == "dynamics":
        hit = np.any(tr.next_obs != tc.next_obs, axis=1)
        val = np.mean(np.asarray(q.v(tc.next_obs[hit])))
    else:
        hit = np.any((tr.obs != tc.obs) if target == "obs" else (tr.action != tc.action), axis=1)
        val = np.mean(np.asarray(q.q(tc.obs[hit], tc.action[hit])))
    assert hit.sum() == pa["corrupted_transitions"] and val == pytest.approx(pa["q_mean_corrupted"], rel=1e-3)
    field = {"obs": "obs", "actions": "action", "dynamics": "next_obs"}[target]
    units = (getattr(tc, field) - getattr(tr, field)) / getattr(tr, field).std(0)
    assert np.abs(units).max() <= 1.0 + 1e-5  # the attack stays in the scaled ball


def test_discrete_action_corruption():
    ds = integrator(discrete=True)
    out = corrupt(ds, "actions", "random", ratio=0.25, seed=0)
    assert out.provenance[-1]["corrupted_transitions"] == round(0.25 * ds.num_transitions)
    assert set(np.unique(out.actions)) <= {0, 1, 2, 3}
    q = fit_q_function(ds, 0, steps=300, hidden=(64, 64))
    adv = corrupt(ds, "actions", "adversarial", ratio=0.25, seed=0, q_model=q)
    hit = adv.actions != ds.actions
    tr = ds.transitions()
    np.testing.assert_array_equal(adv.actions[hit], np.asarray(q.q_all(tr.obs[hit])).argmin(-1))


@pytest.mark.parametrize("kwargs, message", [
    ({"target": "obs", "ratio": 1.5}, "ratio ε must lie in [0, 1]"),
    ({"target": "obs", "ratio": -0.1}, "ratio ε must lie in [0, 1]"),
    ({"target": "velocity"}, "unknown corruption target 'velocity'"),
    ({"target": "obs", "mode": "evil"}, "unknown corruption mode 'evil'"),
    ({"target": "obs", "scale": -1.0}, "scale must be >= 0"),
])
def test_corrupt_bad_input(kwargs, message):
    with pytest.raises(HeronError, match=message.replace("[", r"\[").replace("]", r"\]")):
        corrupt(integrator(n_eps=2, T=5), **kwargs)


# -------------------------------------------------------------------- action-free (SS-ORL)
def test_hide_actions_exact_count_and_placeholders():
    ds = integrator()
    snap = snapshot(ds)
    out = hide_actions(ds, 0.25, seed=1)
    assert_unchanged(ds, snap)
    hidden = ~out.action_known
    assert hidden.sum() == round(0.25 * ds.num_episodes) == out.provenance[-1]["hidden_episodes"]
    hidden_t = np.repeat(hidden, out.episode_lengths)
    assert np.isnan(out.actions[hidden_t]).all() and np.isfinite(out.actions[~hidden_t]).all()
    np.testing.assert_array_equal(out.actions[~hidden_t], ds.actions[~hidden_t])
    d = hide_actions(integrator(discrete=True), 0.5, seed=0)
    assert (d.actions[np.repeat(~d.action_known, d.episode_lengths)] == -1).all()
    with pytest.raises(HeronError, match="fraction must lie in"):
        hide_actions(ds, 1.2)
    with pytest.raises(HeronError, match="no action-free episodes to label"):
        label_actions(ds)


@pytest.mark.learning  # trains a small network; thresholds on what it learned
def test_idm_recovers_actions_of_an_integrator_and_reports_the_error():
    ds = integrator()
    out = hide_actions(ds, 0.5, seed=0, label=True, config=IDMConfig(steps=3000, hidden=(128, 128)))  # 1500: 0.22 on an AMD EPYC
    step = out.provenance[-1]
    assert [s["transform"] for s in out.provenance[1:]] == ["hide_actions", "label_actions"]
    assert out.action_known.all() and np.isfinite(out.actions).all()
    true, held = step["true_error"], step["heldout_error"]
    # s' − s = a exactly: the proxy labels are near the truth, far better than the mean action
    assert true["mse"] < 0.01 and true["baseline_mse"] > 0.3, true
    assert held["mse"] < 0.01 and held["transitions"] == step["heldout_episodes"] * 25
    proxy = np.repeat(~hide_actions(ds, 0.5, seed=0).action_known, ds.episode_lengths)
    assert np.mean((out.actions[proxy] - ds.actions[proxy]) ** 2) == pytest.approx(true["mse"], rel=1e-4)
    assert len(step["proxy_labelled_episodes"]) == round(0.5 * ds.num_episodes)


@pytest.mark.learning  # trains a small network; thresholds on what it learned
def test_idm_discrete_accuracy_with_a_window():
    ds = integrator(discrete=True)
    out = hide_actions(ds, 0.5, seed=0, label=True, config=IDMConfig(steps=1000, hidden=(64, 64), window=1))
    step = out.provenance[-1]
    assert step["true_error"]["accuracy"] > 0.97 and step["true_error"]["baseline_accuracy"] < 0.5
    assert step["idm"]["distribution"] == "categorical" and step["idm"]["window"] == 1


# -------------------------------------------------------------------- rewards
def test_relabel_with_a_known_reward_function_reproduces_it():
    ds = integrator()
    snap = snapshot(ds)

    def reward_fn(obs, action, next_obs):
        return -np.sum(next_obs ** 2, axis=1) + 0.5 * np.sum(action, axis=1) - obs[:, 0]

    out = relabel_rewards(ds, reward_fn, batch_size=37)  # chunks that do not divide N
    tr = ds.transitions()
    np.testing.assert_allclose(out.rewards, reward_fn(tr.obs, tr.action, tr.next_obs), rtol=1e-6)
    assert_unchanged(ds, snap)
    assert out.provenance[-1]["transform"] == "relabel_rewards"
    with pytest.raises(HeronError, match="non-finite rewards"):
        relabel_rewards(hide_actions(ds, 0.5), reward_fn)
    with pytest.raises(HeronError, match="returned 1 rewards"):
        relabel_rewards(ds, lambda o, a, o2: np.zeros(1), batch_size=10_000)


@pytest.mark.learning  # trains a small network; thresholds on what it learned
def test_reward_model_fits_saves_loads_and_relabels(tmp_path):
    ds = integrator()  # r = −|s'|², a smooth function of s'
    model = fit_reward_model(ds, 0, steps=1500, hidden=(64, 64))
    assert model.meta["heldout_mse"] < 0.05 * model.meta["reward_var"], model.meta
    path = save_reward_model(model, tmp_path / "r.msgpack")
    raw = path.read_bytes()
    assert raw[:2] not in (b"\x80\x04", b"\x80\x05")  # not a pickle stream: a msgpack map with our header
    assert serialization.msgpack_restore(raw)["format"] == "heron-reward-model"
    back = load_reward_model(path)
    tr = ds.transitions()
    np.testing.assert_allclose(back(tr.obs, tr.action, tr.next_obs), model(tr.obs, tr.action, tr.next_obs), rtol=1e-6)
    out = relabel_rewards(ds, back, description=back.meta)
    assert out.provenance[-1]["corr_with_previous"] > 0.99
    with pytest.raises(HeronError, match="already exists"):
        save_reward_model(model, path)
    with pytest.raises(HeronError, match="no reward model at"):
        load_reward_model(tmp_path / "missing.msgpack")
    (tmp_path / "bad.msgpack").write_bytes(path.read_bytes()[:200])
    with pytest.raises(HeronError, match="not a usable heron reward model"):
        load_reward_model(tmp_path / "bad.msgpack")
    with pytest.raises(HeronError, match="was fitted for observations"):
        relabel_rewards(hand_made(), back)


# -------------------------------------------------------------------- subsample / mix
def test_subsample_sizes_and_provenance():
    ds = integrator(n_eps=10, T=25)
    assert subsample(ds, 0, episodes=3).num_episodes == 3
    assert subsample(ds, 0, fraction=0.5).num_episodes == 5
    out = subsample(ds, 0, transitions=60)  # 60 / 25 = 2.4 -> 2 whole episodes (50 is nearer than 75)
    assert out.num_transitions == 50 and out.provenance[-1]["requested"] == {"transitions": 60}
    assert out.provenance[0] == ds.provenance[0]
    with pytest.raises(HeronError, match="exactly one of"):
        subsample(ds, 0, episodes=2, fraction=0.5)
    with pytest.raises(HeronError, match="cannot take 11 episodes"):
        subsample(ds, 0, episodes=11)


def test_mix_sizes_provenance_and_space_check():
    a = integrator(n_eps=10, seed=0)
    b = corrupt(integrator(n_eps=4, seed=1), "rewards", "adversarial", ratio=0.5, seed=0)
    m = mix([(a, 0.3), (b, 1.0)], seed=2, name="mixed")
    assert m.num_episodes == 3 + 4 and m.name == "mixed"
    sources = m.provenance[0]["sources"]
    assert [s["provenance"][-1].get("transform") for s in sources] == ["subsample", "corrupt"]
    assert sources[0]["provenance"][0] == {"policy": "uniform", "seed": 0}
    assert m.provenance[-1]["transform"] == "mix" and m.provenance[-1]["sources"][0]["episodes"] == 3
    with pytest.raises(HeronError, match="their spaces differ"):
        mix([(a, 1.0), (integrator(discrete=True), 1.0)])
    with pytest.raises(HeronError, match="must lie in"):
        mix([(a, 0.0)])


# -------------------------------------------------------------------- CLI
def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_corrupt_then_reweight_compose_through_disk(tmp_path, capsys):
    save_dataset(integrator(), tmp_path / "src")
    code, _, err = run(["data", "corrupt", str(tmp_path / "src"), str(tmp_path / "c"), "--target", "rewards",
                        "--mode", "random", "--ratio", "0.2", "--scale", "0.5", "--seed", "1"], capsys)
    assert code == 0, err
    code, _, err = run(["data", "reweight", str(tmp_path / "c"), str(tmp_path / "w"), "--by", "return"], capsys)
    assert code == 0, err
    w = load_dataset(tmp_path / "w")
    steps = [s.get("transform") for s in w.provenance]
    assert steps == [None, "corrupt", "reweight"] and w.provenance[1]["seed"] == 1
    assert w.episode_weights is not None and np.isclose(np.sum(w.episode_weights * w.episode_lengths), 1.0)
    src = load_dataset(tmp_path / "src")  # the source on disk is untouched (and still passes its checksums)
    assert src.provenance == integrator().provenance and np.array_equal(src.rewards, integrator().rewards)
    assert not np.array_equal(load_dataset(tmp_path / "c").rewards, src.rewards)
    # OUT exists without --force: one clear error, nothing replaced
    code, _, err = run(["data", "reweight", str(tmp_path / "c"), str(tmp_path / "w"), "--by", "advantage"], capsys)
    assert code == 2 and "already exists" in err and "--force" in err and "\n" not in err.strip()
    assert load_dataset(tmp_path / "w").provenance[-1]["method"] == "RW"
    code, _, err = run(["data", "reweight", str(tmp_path / "c"), str(tmp_path / "w"), "--by", "advantage", "--force"],
                       capsys)
    assert code == 0, err
    assert load_dataset(tmp_path / "w").provenance[-1]["method"] == "AW"


@pytest.mark.parametrize("argv, message", [
    (["data", "corrupt", "SRC", "OUT", "--target", "wind"], "unknown corruption target 'wind'"),
    (["data", "corrupt", "SRC", "OUT", "--target", "obs", "--ratio", "2"], "ratio ε must lie in [0, 1]"),
    (["data", "hide-actions", "SRC", "OUT", "--fraction", "-0.5"], "fraction must lie in [0, 1]"),
    (["data", "relabel-rewards", "SRC", "OUT", "--reward-model", "nope.msgpack"], "no reward model at nope.msgpack"),
    (["data", "reweight", "SRC", "SRC", "--by", "return", "--force"], "is the source dataset"),
    (["data", "subsample", "SRC", "OUT"], "one of the arguments --episodes --fraction --transitions is required"),
])
def test_cli_bad_input_is_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_dataset(integrator(n_eps=4, T=5), tmp_path / "SRC")
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err, err
    assert "\n" not in err.strip() and not (tmp_path / "OUT").exists()


def test_cli_reward_model_hide_label_subsample_mix(tmp_path, capsys):
    save_dataset(integrator(n_eps=12), tmp_path / "src")
    src = str(tmp_path / "src")
    assert run(["data", "fit-reward-model", src, str(tmp_path / "r.msgpack"), "--steps", "300", "--hidden", "32"],
               capsys)[0] == 0
    assert run(["data", "relabel-rewards", src, str(tmp_path / "rl"), "--reward-model", str(tmp_path / "r.msgpack")],
               capsys)[0] == 0
    assert load_dataset(tmp_path / "rl").provenance[-1]["reward_model"]["file"] == str(tmp_path / "r.msgpack")
    (tmp_path / "junk.msgpack").write_bytes(b"\x93not a model")
    code, _, err = run(["data", "relabel-rewards", src, str(tmp_path / "rl2"), "--reward-model",
                        str(tmp_path / "junk.msgpack")], capsys)
    assert code == 2 and "not a usable heron reward model" in err
    code, out, err = run(["data", "hide-actions", src, str(tmp_path / "h"), "--fraction", "0.5", "--label",
                          "--idm-steps", "300"], capsys)
    assert code == 0 and "true_error" in out, err
    assert run(["data", "hide-actions", src, str(tmp_path / "h2"), "--fraction", "0.5"], capsys)[0] == 0
    assert run(["data", "label-actions", str(tmp_path / "h2"), str(tmp_path / "l"), "--idm-steps", "300"], capsys)[0] == 0
    assert load_dataset(tmp_path / "l").action_known.all()
    assert run(["data", "subsample", src, str(tmp_path / "s"), "--transitions", "100"], capsys)[0] == 0
    assert load_dataset(tmp_path / "s").num_transitions == 100
    code, out, err = run(["data", "mix", str(tmp_path / "m"), f"{src}:0.5", str(tmp_path / "s"), "--seed", "3"], capsys)
    assert code == 0, err
    m = load_dataset(tmp_path / "m")
    assert m.num_episodes == 6 + 4 and len(m.provenance[0]["sources"]) == 2
    assert m.provenance[0]["sources"][1]["provenance"][-1]["transform"] == "subsample"
