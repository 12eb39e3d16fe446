"""Dataset load time and peak memory for 1M transitions (heron vs minari vs d3rlpy), and sampling throughput.

Data: a synthetic, seeded dataset with Hopper-v5 shapes (obs 11, action 3 float32), 1000 episodes of
1000 steps (each ends in a timeout), written once into a temporary directory in heron's format, which
is a Minari dataset (`$MINARI_DATASETS_PATH/heron/bench-hopper-synthetic-v0`), plus d3rlpy's own dump
of the same transitions (d3rlpy's flat layout keeps no final observation per episode: 1,000,000
observations instead of 1,001,000).

Load cases, each in a fresh Python process (peak RSS = the child's `ru_maxrss`, imports included; the
table also gives the peak above the RSS right after imports, i.e. what the load itself added):
  heron load, verify        `heron.data.load_dataset(path)` (SHA-256 of both files + structural checks)
  heron load, no verify     `load_dataset(path, verify=False)`
  heron load + to_device    the above, then `.to_device()` (block_until_ready)
  minari load + arrays      `minari.load_dataset(id)`, then every episode via `iterate_episodes()` and
                            `np.concatenate` per field: the arrays a user needs for training
  d3rlpy load (own format)  `ReplayBuffer.load(f, InfiniteBuffer())` of its `dump` (HDF5)
  d3rlpy MDPDataset(arrays) constructing `MDPDataset` from in-memory arrays (array load not timed)
  d3rlpy get_minari         `d3rlpy.datasets.get_minari(id)` on the local Minari copy (no download)

Sampling (batch 256, same 1M transitions, this machine's CPU as the JAX device): heron
`sample_transitions` jitted, uniform and episode-weighted, per call (jit dispatch + block each call) and
1000 samples inside one jitted `lax.scan` (each batch reduced to a sum so nothing is optimised away);
heron `replay_sample` from a full 1M `ReplayBuffer` the same two ways; d3rlpy
`ReplayBuffer.sample_transition_batch(256)` per call (numpy, no jit to compare with).

Run (in the bench venv):  bench-venv/bin/python benchmarks/dataset_load.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPISODES, STEPS, OBS, ACT = 1000, 1000, 11, 3
DATASET_NAME = "bench/hopper-synthetic"
BATCH = 256


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _report(**kw) -> None:
    print("RESULT " + json.dumps(kw), flush=True)


# ------------------------------------------------------------------ children
def prepare(root: Path, episodes: int) -> None:
    """Write the heron/Minari dataset, the flat arrays, and d3rlpy's dump of them, once."""
    import numpy as np

    from heron.data import from_episodes, save_dataset
    from heron.data.minari_io import minari_dataset_id
    import gymnasium as gym

    rng = np.random.default_rng(0)
    eps = []
    for _ in range(episodes):
        trunc = np.zeros(STEPS, bool)
        trunc[-1] = True
        eps.append({"observations": rng.standard_normal((STEPS + 1, OBS), np.float32),
                    "actions": rng.uniform(-1, 1, (STEPS, ACT)).astype(np.float32),
                    "rewards": rng.standard_normal(STEPS, np.float32), "terminations": np.zeros(STEPS, bool),
                    "truncations": trunc})
    ds = from_episodes(eps, gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float64), gym.spaces.Box(-1, 1, (ACT,), np.float32),
                       name=DATASET_NAME, env_id="Hopper-v5", provenance=({"policy": "synthetic", "seed": 0},))
    save_dataset(ds, root / "minari" / minari_dataset_id(DATASET_NAME))
    tr = ds.transitions()
    flat = {"observations": tr.obs, "actions": tr.action, "rewards": tr.reward,
            "terminals": tr.terminated.astype(np.float32), "timeouts": tr.truncated.astype(np.float32)}
    np.savez(root / "flat.npz", **flat)
    import d3rlpy

    with open(root / "d3rlpy.h5", "w+b") as f:  # h5py reads back through the file object
        d3rlpy.dataset.MDPDataset(**flat).dump(f)
    _report(transitions=ds.num_transitions, episodes=ds.num_episodes,
            bytes={p.name: p.stat().st_size for p in [root / "d3rlpy.h5", *(root / "minari").rglob("*.hdf5")]})


def load_case(case: str, root: Path) -> None:
    t0 = time.perf_counter()
    if case.startswith("heron"):
        from heron.data import load_dataset
        from heron.data.minari_io import minari_dataset_id

        path = root / "minari" / minari_dataset_id(DATASET_NAME)
        if case == "heron_to_device":
            import jax  # noqa: F401
    elif case == "minari":
        import minari
        import numpy as np
    else:
        import d3rlpy
        import numpy as np
    import_s, rss0 = time.perf_counter() - t0, _rss_mib()
    extra = {}
    t = time.perf_counter()
    if case == "heron_verify":
        ds = load_dataset(path)
        n = ds.num_transitions
    elif case == "heron_noverify":
        ds = load_dataset(path, verify=False)
        n = ds.num_transitions
    elif case == "heron_to_device":
        ds = load_dataset(path)
        t1 = time.perf_counter()
        dev = ds.to_device()
        jax.block_until_ready(dev)
        extra["to_device_s"] = time.perf_counter() - t1
        n = int(dev.size)
    elif case == "minari":
        md = minari.load_dataset(minari_dataset_id_str())
        fields = {k: [] for k in ("observations", "actions", "rewards", "terminations", "truncations")}
        for ep in md.iterate_episodes():
            for k in fields:
                fields[k].append(getattr(ep, k))
        arrays = {k: np.concatenate(v) for k, v in fields.items()}
        n = len(arrays["rewards"])
    elif case == "d3rlpy_load":
        with open(root / "d3rlpy.h5", "rb") as f:
            rb = d3rlpy.dataset.ReplayBuffer.load(f, d3rlpy.dataset.InfiniteBuffer())
        n = rb.transition_count
    elif case == "d3rlpy_arrays":
        with np.load(root / "flat.npz") as z:
            flat = {k: z[k] for k in z.files}
        rss0 = _rss_mib()
        t = time.perf_counter()
        rb = d3rlpy.dataset.MDPDataset(**flat)
        n = rb.transition_count
    elif case == "d3rlpy_minari":
        os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")
        try:
            rb, _env = d3rlpy.datasets.get_minari(minari_dataset_id_str())
            n = rb.transition_count
        except Exception as err:  # noqa: BLE001 - reported in the table
            _report(case=case, error=f"{type(err).__name__}: {str(err)[:300]}", import_s=import_s)
            return
    else:
        raise SystemExit(f"unknown case {case}")
    load_s = time.perf_counter() - t
    _report(case=case, load_s=load_s, import_s=import_s, rss_after_import_mib=rss0, peak_mib=_peak_mib(),
            transitions=int(n), **extra)


def minari_dataset_id_str() -> str:
    # same rule as heron.data.minari_io.minari_dataset_id, restated so the minari/d3rlpy children never import heron
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in DATASET_NAME.replace("/", "-")).strip("-")
    return f"heron/{safe}-v0"


def sample_heron(root: Path, calls: int, scan_len: int, repeats: int) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from heron.data import load_dataset, sample_transitions
    from heron.data.minari_io import minari_dataset_id
    from heron.data.replay import replay_add, replay_init_like, replay_sample

    ds = load_dataset(root / "minari" / minari_dataset_id(DATASET_NAME), verify=False)
    weights = np.random.default_rng(1).uniform(0.1, 1.0, ds.num_episodes)
    sources = {"dataset uniform": ds.to_device(), "dataset weighted": ds.with_metadata(episode_weights=weights).to_device()}
    tr = jax.tree.map(jnp.asarray, ds.transitions())
    buf = replay_add(replay_init_like(ds.num_transitions, jax.tree.map(lambda x: x[0], tr)), tr)
    jax.block_until_ready(buf)
    del tr
    fns = {"dataset uniform": sample_transitions, "dataset weighted": sample_transitions, "replay_sample": replay_sample}
    sources["replay_sample"] = buf
    out = {}
    for name, data in sources.items():
        sample = fns[name]
        one = jax.jit(sample, static_argnums=2)

        def body(acc, key, data=data, sample=sample):
            b = sample(data, key, BATCH)
            return acc + b.obs.sum() + b.action.sum() + b.reward.sum() + b.next_obs.sum(), None

        @jax.jit
        def many(data, key):
            return jax.lax.scan(body, jnp.zeros((), jnp.float32), jax.random.split(key, scan_len))[0]

        key = jax.random.PRNGKey(0)
        jax.block_until_ready(one(data, key, BATCH))
        jax.block_until_ready(many(data, key))
        per_call, scanned = [], []
        for r in range(repeats):
            keys = list(jax.random.split(jax.random.PRNGKey(r + 1), calls))  # split before the clock starts
            jax.block_until_ready(keys)
            t = time.perf_counter()
            for k in keys:
                jax.block_until_ready(one(data, k, BATCH))
            per_call.append(calls * BATCH / (time.perf_counter() - t))
            t = time.perf_counter()
            jax.block_until_ready(many(data, jax.random.PRNGKey(100 + r)))
            scanned.append(scan_len * BATCH / (time.perf_counter() - t))
        out[name] = {"per_call": per_call, "scan": scanned}
    _report(case="sample_heron", results=out)


def sample_d3rlpy(root: Path, calls: int, repeats: int) -> None:
    import d3rlpy
    import numpy as np

    with np.load(root / "flat.npz") as z:
        rb = d3rlpy.dataset.MDPDataset(**{k: z[k] for k in z.files})
    rb.sample_transition_batch(BATCH)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            rb.sample_transition_batch(BATCH)
        rates.append(calls * BATCH / (time.perf_counter() - t))
    _report(case="sample_d3rlpy", results={"per_call": rates})


# ------------------------------------------------------------------ parent
def run_child(*args: str, timeout: float = 900) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{' '.join(args)} failed (status {proc.returncode}):\n{proc.stderr[-3000:]}")


LOAD_CASES = [
    ("heron_verify", "heron", "`load_dataset(path)` (SHA-256 verify + checks)"),
    ("heron_noverify", "heron", "`load_dataset(path, verify=False)`"),
    ("heron_to_device", "heron", "`load_dataset(path).to_device()`"),
    ("minari", "minari", "`minari.load_dataset(id)` + `iterate_episodes` + `np.concatenate`"),
    ("d3rlpy_load", "d3rlpy", "`ReplayBuffer.load` of its own `dump` (HDF5)"),
    ("d3rlpy_arrays", "d3rlpy", "`MDPDataset(**arrays)` from memory (array load not timed)"),
    ("d3rlpy_minari", "d3rlpy", "`d3rlpy.datasets.get_minari(id)` (local copy)"),
]


NOTES = """Notes:
- d3rlpy's flat layout has no final observation per episode, and its `transition_count` is 999,000 (one
  fewer per episode) for the same 1,000,000 steps; heron and minari keep all 1,001,000 observations.
- `d3rlpy.datasets.get_minari` (2.8.1) concatenates each Minari episode's T+1 observations but slices
  episodes by action index (`EpisodeGenerator`), so from the second episode on its observations are
  shifted by one row per preceding episode: timed here because it runs, but its result is misaligned
  (read off its source, `d3rlpy/datasets.py` and `dataset/episode_generator.py`).
- heron's load holds the per-episode arrays and the concatenated dataset at once (about 2-3x the 62 MiB
  of data at peak); minari's row does the same concatenation without heron's checks or its conversion
  to the flat layout. Ratios below 1.00x are faster than heron's verified load."""


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, root = sys.argv[2], Path(sys.argv[3])
        if kind == "prepare":
            prepare(root, int(sys.argv[4]))
        elif kind == "sample_heron":
            sample_heron(root, int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
        elif kind == "sample_d3rlpy":
            sample_d3rlpy(root, int(sys.argv[4]), int(sys.argv[6]))
        else:
            if kind.startswith(("minari", "d3rlpy")):
                os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")
            load_case(kind, root)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as C

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per load case; sampling repeats")
    ap.add_argument("--quick", action="store_true", help="100 episodes, 1 repeat, no BENCHMARKS.md write")
    args = ap.parse_args()
    episodes, repeats = (100, 1) if args.quick else (EPISODES, args.repeats)
    calls, scan_len = (200, 200) if args.quick else (2000, 1000)
    load_before = C.loadavg()
    with tempfile.TemporaryDirectory(prefix="heron-bench-data-") as d:
        root = Path(d)
        t = time.perf_counter()
        prep = run_child("prepare", str(root), str(episodes))
        print(f"prepared {prep} in {time.perf_counter() - t:.1f} s", flush=True)
        loads = {case: [] for case, _, _ in LOAD_CASES}
        for r in range(repeats):  # interleaved, so load drifts hit every case alike
            for case, _, _ in LOAD_CASES:
                res = run_child(case, str(root))
                print(r, res, flush=True)
                loads[case].append(res)
        heron_sampling = run_child("sample_heron", str(root), str(calls), str(scan_len), str(repeats))["results"]
        d3_sampling = run_child("sample_d3rlpy", str(root), str(calls), str(scan_len), str(repeats))["results"]
    load_after = C.loadavg()

    med = C.median
    ref = med([x["load_s"] for x in loads["heron_verify"]])
    ref_min = min(x["load_s"] for x in loads["heron_verify"])
    rows = []
    for case, lib, what in LOAD_CASES:
        rs = loads[case]
        if "error" in rs[0]:
            rows.append([lib, what, "failed: " + rs[0]["error"].replace("|", "/")[:160], "", "", "", "", "", "", ""])
            continue
        load_s = [x["load_s"] for x in rs]
        extra = f" (to_device {med([x['to_device_s'] for x in rs]):.2f})" if case == "heron_to_device" else ""
        rows.append([lib, what, f"{med(load_s):.2f}{extra}", f"{min(load_s):.2f}", " / ".join(f"{x:.2f}" for x in load_s),
                     f"{med([x['peak_mib'] for x in rs]):,.0f}",
                     f"{med([x['peak_mib'] - x['rss_after_import_mib'] for x in rs]):,.0f}",
                     f"{med([x['import_s'] for x in rs]):.1f}",
                     f"{med(load_s) / ref:.2f}x", f"{min(load_s) / ref_min:.2f}x"])
    load_table = C.md_table(["library", "operation", "load s (median)", "fastest s", "repeats s", "peak RSS MiB (median)",
                             "peak RSS above post-import MiB", "import s", "time / heron verify (medians)",
                             "time / heron verify (fastest)"], rows)

    srows = []
    d3 = med(d3_sampling["per_call"])
    for name, res in heron_sampling.items():
        pc, sc = med(res["per_call"]), med(res["scan"])
        srows.append([f"heron {name}", C.fmt(pc), C.fmt(sc), f"{pc / d3:.2f}x", f"{sc / d3:.2f}x"])
    srows.append(["d3rlpy `sample_transition_batch(256)`", C.fmt(d3), "-", "1.00x", ""])
    sample_table = C.md_table(["sampler (batch 256)", "samples/s per call (median)",
                               f"samples/s in a jitted lax.scan of {scan_len} (median)", "per call / d3rlpy",
                               "scan / d3rlpy"], srows)
    print(load_table)
    print(sample_table)
    if args.quick:
        return
    sizes = ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in prep["bytes"].items())
    body = "\n\n".join([
        C.header("dataset_load", load_before, load_after,
                 ("jax", "jaxlib", "heron", "minari", "h5py", "numpy", "d3rlpy", "torch")),
        f"{prep['transitions']:,} transitions ({prep['episodes']} episodes x {STEPS} steps, Hopper-v5 shapes: obs "
        f"{OBS}, action {ACT}, float32; synthetic, seeded). Files: {sizes}. Each load is a fresh process, "
        f"{repeats} repeats interleaved across cases; peak RSS is the child's `ru_maxrss` (imports included: "
        "jax for heron, torch for d3rlpy). See the script's docstring for what each row does.",
        load_table,
        NOTES,
        f"Sampling: {BATCH} transitions per batch from the 1M transitions; per call = one jitted call (heron) or "
        f"one Python call (d3rlpy), {calls} calls, median of {repeats} repeats; scan = {scan_len} batches inside "
        "one jitted `lax.scan`. The JAX device is this machine's CPU.",
        sample_table])
    C.write_section("dataset_load", "Dataset load (1M transitions) and sampling throughput", body)


if __name__ == "__main__":
    main()
