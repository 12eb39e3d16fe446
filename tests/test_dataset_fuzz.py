"""Fuzz the dataset readers: hundreds of damaged files, zero hangs, zero uncaught exceptions.

Two small datasets (Box actions, Discrete actions) are written with `save_dataset`, and four D4RL-style
flat files beside them (.npz with/without next_observations, discrete .npz, .hdf5). Every mutant is a
seeded copy with one damage: bytes (flips, truncation, zeroed blocks, garbage, random content) in
main_data.hdf5 / metadata.json / heron.json / the flat file; JSON edits (missing keys, wrong types,
wrong counts, bad spaces, huge numbers, deep nesting); HDF5 edits through h5py (missing, renamed or
extra episodes, wrong shapes and dtypes, strings, links, flags inside an episode, NaN, out-of-range
discrete actions, lazily-allocated huge datasets); array edits of the flat files (missing keys, wrong
rows, strings, pickled objects, NaN, mismatched next_observations, ...).

A dataset directory is loaded three ways: verify=True, verify=False, and as a plain Minari dataset
(heron.json removed), so the structural checks run, not only the checksum. A flat file is loaded with
`load_dataset` and `import_d4rl`. Each load must either succeed with a dataset that passes
`check_layout` (a benign mutant; with verify=True it must not succeed if a data file's bytes changed
under an intact heron.json), or raise `HeronError` with a one-line message naming the file. Anything
else, or a mutant that runs past PER_MUTANT_S (the batch runs in a worker subprocess the test kills
and restarts), fails the test with the seed, index and mutation to reproduce it:

    python tests/test_dataset_fuzz.py --one SEED INDEX      # replays one mutant, traceback included

HERON_FUZZ_SEED / HERON_FUZZ_N change the seed and the number of mutants.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

SEED = int(os.environ.get("HERON_FUZZ_SEED", "20261125"))
N_MUTANTS = int(os.environ.get("HERON_FUZZ_N", "1000"))
PER_MUTANT_S = 20.0  # generous: a normal mutant takes ~10-50 ms; the machine may be shared
DATA, META, HERON = "data/main_data.hdf5", "data/metadata.json", "heron.json"
DIR_BASES = ("cont", "disc")
FLAT_BASES = ("flat_next.npz", "flat_plain.npz", "flat_disc.npz", "flat.hdf5")


# ------------------------------------------------------------------ base datasets
def make_bases(root: Path) -> None:
    import gymnasium as gym

    from heron.data import from_episodes, save_dataset

    rng = np.random.default_rng(0)

    def episodes(lengths, obs_dim, act):
        out = []
        for i, t in enumerate(lengths):
            ep = {"observations": rng.normal(size=(t + 1, obs_dim)).astype(np.float32), "actions": act(t),
                  "rewards": rng.normal(size=t).astype(np.float32), "terminations": np.zeros(t, bool),
                  "truncations": np.zeros(t, bool)}
            (ep["terminations"] if i % 2 else ep["truncations"])[-1] = True
            out.append(ep)
        return out

    obs3 = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    cont = episodes([7, 5, 9], 3, lambda t: rng.uniform(-2, 2, (t, 1)).astype(np.float32))
    cont[2]["actions"][:] = np.nan  # an action-free episode
    ds = from_episodes(cont, obs3, gym.spaces.Box(-2, 2, (1,), np.float32), name="fuzz/cont", env_id="Pendulum-v1",
                       ref_min_score=-1.0, ref_max_score=1.0, action_known=np.array([True, True, False]),
                       episode_weights=np.array([1.0, 2.0, 0.5]), provenance=({"policy": "random"},))
    save_dataset(ds, root / "cont")
    disc = episodes([6, 4, 8], 4, lambda t: rng.integers(0, 3, t))
    save_dataset(from_episodes(disc, gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(3),
                               name="fuzz/disc"), root / "disc")
    tr = ds.transitions()
    flat = {"observations": tr.obs, "actions": np.nan_to_num(tr.action), "rewards": tr.reward,
            "terminals": tr.terminated, "timeouts": tr.truncated}
    np.savez(root / "flat_next.npz", next_observations=tr.next_obs, **flat)
    np.savez(root / "flat_plain.npz", **flat)
    dtr = load_dataset_quiet(root / "disc").transitions()
    np.savez(root / "flat_disc.npz", observations=dtr.obs, actions=dtr.action.astype(np.int64), rewards=dtr.reward,
             terminals=dtr.terminated, timeouts=dtr.truncated, next_observations=dtr.next_obs)
    import h5py

    with h5py.File(root / "flat.hdf5", "w") as f:
        for k, v in flat.items():
            f.create_dataset(k, data=v)


def load_dataset_quiet(path):
    from heron.data import load_dataset

    return load_dataset(path)


# ------------------------------------------------------------------ mutations
EVIL = [None, True, False, 0, -1, 1, 2, 2**31, 2**63, -(2**63), 10**30, 1.5, -0.0, float("nan"), float("inf"),
        "", "x", "3", [], [1], [[1]], [None], ["a", "b", "c"], {}, {"a": 1}]
META_KEYS = ["dataset_id", "total_episodes", "total_steps", "observation_space", "action_space", "env_spec",
             "ref_min_score", "ref_max_score", "data_format", "minari_version"]
HERON_KEYS = ["format", "name", "env_id", "ref_min_score", "ref_max_score", "action_known", "episode_weights",
              "provenance", "sha256"]


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def mutate_bytes(rng, path: Path) -> str:
    data = bytearray(path.read_bytes())
    n = len(data)
    op = _pick(rng, ["flip", "flip_head", "truncate", "zero_block", "append", "random", "empty", "insert", "delete"])
    if op == "delete":
        path.unlink()
        return "file deleted"
    if op in ("flip", "flip_head") and n:
        k = int(rng.integers(1, 9))
        hi = min(n, 2048) if op == "flip_head" else n
        pos = rng.integers(0, hi, k)
        for p in pos:
            data[p] ^= 1 << int(rng.integers(8))
        out, desc = bytes(data), f"{op} bits at {sorted(pos.tolist())}"
    elif op == "truncate":
        cut = int(rng.integers(0, max(n, 1)))
        out, desc = bytes(data[:cut]), f"truncated to {cut}/{n} bytes"
    elif op == "zero_block" and n:
        start, size = int(rng.integers(0, n)), int(rng.integers(1, 513))
        data[start:start + size] = bytes(len(data[start:start + size]))
        out, desc = bytes(data), f"zeroed {size} bytes at {start}"
    elif op == "append":
        extra = rng.bytes(int(rng.integers(1, 4097)))
        out, desc = bytes(data) + extra, f"appended {len(extra)} garbage bytes"
    elif op == "insert" and n:
        at, extra = int(rng.integers(0, n)), rng.bytes(int(rng.integers(1, 64)))
        out, desc = bytes(data[:at]) + extra + bytes(data[at:]), f"inserted {len(extra)} bytes at {at}"
    elif op == "random":
        out, desc = rng.bytes(n), "replaced by random bytes"
    else:
        out, desc = b"", "emptied"
    path.write_bytes(out)
    return desc


def _space_mutation(rng, raw: str) -> tuple[str, str]:
    from minari.serialization import serialize_space
    import gymnasium as gym

    choice = int(rng.integers(3))
    if choice == 0:  # a different valid space
        other = _pick(rng, [gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Box(-1, 1, (3,), np.float64),
                            gym.spaces.Box(-1, 1, (1,), np.float32), gym.spaces.Box(-1, 1, (3, 1), np.float32),
                            gym.spaces.Box(0, 255, (3,), np.uint8), gym.spaces.Discrete(2), gym.spaces.Discrete(3),
                            gym.spaces.Discrete(3, start=1), gym.spaces.MultiDiscrete([2, 2]),
                            gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (3,))}),
                            gym.spaces.Tuple((gym.spaces.Discrete(2),)), gym.spaces.Text(5)])
        return serialize_space(other), f"replaced by {other}"
    obj = json.loads(raw)
    if choice == 1:
        key = _pick(rng, ["type", "shape", "low", "high", "dtype", "n", "start", "subspaces"])
        value = _pick(rng, EVIL + [[10**12], [-1], [3, 3], [2**40, 2**40], [0], "object", "complex64", "str", "Box",
                                   "Discrete", "Graph", "Dict", "Tuple", "MultiBinary", "Text", 10**40, -3])
        obj[key] = value
        return json.dumps(obj), f"{key}={value!r}"
    key = _pick(rng, list(obj))
    del obj[key]
    return json.dumps(obj), f"deleted {key}"


def mutate_json(rng, path: Path, keys: list[str]) -> str:
    text = path.read_text()
    obj = json.loads(text)
    op = _pick(rng, ["del", "set", "set", "space", "counts", "raw", "heron_lists", "sha"])
    if op == "raw":
        raw, desc = _pick(rng, [("[" * 100_000, "nested 100000 deep"), ('{"total_episodes": ' + "7" * 5000 + "}", "5000-digit int"),
                               ("[1, 2]", "a JSON array"), ('"x"', "a JSON string"), ("null", "null"),
                               (b"\xff\xfe{}".decode("latin-1"), "invalid UTF-8"), ("{" + text[1:] + "}", "extra brace"),
                               (text.replace("}", "", 1), "missing brace"), ("NaN", "bare NaN"),
                               (text.replace(":", ": 1e999, \"_\":", 1), "1e999 inserted")])
        path.write_bytes(raw.encode("latin-1") if desc == "invalid UTF-8" else raw.encode())
        return desc
    if op == "del":
        key = _pick(rng, keys)
        obj.pop(key, None)
        desc = f"deleted {key}"
    elif op == "space" and "observation_space" in obj:
        key = _pick(rng, ["observation_space", "action_space"])
        obj[key], what = _space_mutation(rng, obj[key])
        desc = f"{key}: {what}"
    elif op == "counts" and "total_episodes" in obj:
        key = _pick(rng, ["total_episodes", "total_steps"])
        obj[key] = _pick(rng, [obj[key] + 1, obj[key] - 1, 0, -1, -(10**6), 10**12, 2**63, str(obj[key]),
                               float(obj[key]), True])
        desc = f"{key}={obj[key]!r}"
    elif op == "heron_lists" and "action_known" in obj:
        key = _pick(rng, ["action_known", "episode_weights"])
        obj[key] = _pick(rng, [[1.0, 1.0], [1.0] * 4, ["a", "b", "c"], [[1], [2], [3]], [-1.0, 1.0, 1.0],
                               [0.0, 0.0, 0.0], [float("nan")] * 3, [1e400] * 3, [10**400, 1, 1], [None] * 3,
                               [2, 0, 1], {"0": 1}, "yes", [True, False], [{}, {}, {}]])
        desc = f"{key}={obj[key]!r}"[:120]
    elif op == "sha" and "sha256" in obj:
        sub = _pick(rng, ["empty", "drop_data", "drop_meta", "int", "short", "other", "list", "extra"])
        sha = obj["sha256"]
        if sub == "empty":
            obj["sha256"] = {}
        elif sub == "drop_data":
            sha.pop(DATA)
        elif sub == "drop_meta":
            sha.pop(META)
        elif sub == "int":
            sha[DATA] = 5
        elif sub == "short":
            sha[META] = sha[META][:10]
        elif sub == "other":
            sha[DATA] = "0" * 64
        elif sub == "list":
            obj["sha256"] = [sha[DATA]]
        else:
            sha["../../etc/passwd"] = "0" * 64
        desc = f"sha256 {sub}"
    else:
        key = _pick(rng, keys)
        obj[key] = _pick(rng, EVIL)
        desc = f"{key}={obj[key]!r}"
    path.write_text(json.dumps(obj))
    return f"{op}: {desc}"


def mutate_hdf5(rng, path: Path, discrete: bool, num_episodes: int) -> str:
    import h5py

    e = int(rng.integers(num_episodes))
    key = _pick(rng, ["observations", "actions", "rewards", "terminations", "truncations"])
    op = _pick(rng, ["del_group", "rename_group", "extra_episode", "del_dataset", "shape", "shape", "dtype", "dtype",
                     "group_for_dataset", "huge_lazy", "flag_middle", "nan", "inf", "big_float64", "discrete",
                     "link", "attrs", "gzip", "group_is_dataset", "obs_jump", "empty", "unwritten"])
    with h5py.File(path, "r+") as f:
        g = f[f"episode_{e}"]
        old = g[key][()]
        t = len(g["rewards"])

        def replace(value, **kw):
            del g[key]
            g.create_dataset(key, data=value, **kw)

        if op == "del_group":
            del f[f"episode_{e}"]
        elif op == "rename_group":
            new = _pick(rng, [f"episode_{num_episodes + 2}", "episode_x", f"episode_{e}_", "ep"])
            f.move(f"episode_{e}", new)
            op += f"->{new}"
        elif op == "extra_episode":
            f.copy(f"episode_{e}", f"episode_{num_episodes}")
        elif op == "del_dataset":
            del g[key]
        elif op == "shape":
            sub = _pick(rng, ["drop_row", "add_row", "2d", "scalar", "zero_rows", "transpose", "flatten"])
            value = {"drop_row": lambda: old[:-1], "add_row": lambda: np.concatenate([old, old[-1:]]),
                     "2d": lambda: old.reshape(len(old), -1, 1), "scalar": lambda: old[0],
                     "zero_rows": lambda: old[:0], "transpose": lambda: np.atleast_2d(old).T,
                     "flatten": lambda: old.reshape(-1)}[sub]()
            replace(value)
            op += f":{sub}"
        elif op == "dtype":
            sub = _pick(rng, ["int64", "float16", "float64", "bool", "uint8", "complex64", "S8", "vlen", "compound"])
            if sub == "vlen":
                replace(np.array([str(x) for x in old.reshape(-1)], dtype=object), dtype=h5py.string_dtype())
            elif sub == "compound":
                replace(np.zeros(old.shape, dtype=[("a", "f4"), ("b", "i4")]))
            else:
                replace(old.astype(sub))
            op += f":{sub}"
        elif op == "group_for_dataset":
            del g[key]
            g.create_group(key)
        elif op == "huge_lazy":
            shape = _pick(rng, [(10**9,), (2**29,), (10**9, *old.shape[1:]), (t + 1, 10**7)])
            del g[key]
            g.create_dataset(key, shape=shape, dtype=old.dtype if old.dtype.kind in "biuf" else "f4", chunks=True)
            op += f":{shape}"
        elif op == "flag_middle" and t >= 3:
            flag = _pick(rng, ["terminations", "truncations"])
            g[flag][int(rng.integers(0, t - 1))] = True
            op += f":{flag}"
        elif op in ("nan", "inf"):
            k = _pick(rng, ["observations", "rewards", "actions"])
            arr = g[k][()]
            if arr.dtype.kind == "f":
                arr.reshape(-1)[int(rng.integers(arr.size))] = np.nan if op == "nan" else -np.inf
                g[k][...] = arr
            op += f":{k}"
        elif op == "big_float64":
            k = _pick(rng, ["observations", "rewards", "actions"])
            arr = g[k][()].astype(np.float64)
            arr.reshape(-1)[int(rng.integers(arr.size))] = _pick(rng, [1e300, -1e39, 3.5e38])
            del g[k]
            g.create_dataset(k, data=arr)
            op += f":{k}"
        elif op == "discrete":
            arr = g["actions"][()]
            if discrete:
                value = _pick(rng, [-1, 3, 2**32 + 1, 2**31, -(2**32) + 1])
                arr = arr.astype(np.int64)
                arr[int(rng.integers(len(arr)))] = value
                if rng.integers(2):
                    arr = arr.astype(np.float64) + (0.5 if rng.integers(2) else 0.0)
            else:
                arr = np.round(np.nan_to_num(arr)).astype(np.int64)
            del g["actions"]
            g.create_dataset("actions", data=arr)
            op += f":{arr.dtype}"
        elif op == "link":
            del g[key]
            if rng.integers(2):
                g[key] = h5py.SoftLink("/nowhere/at/all")
            else:
                g[key] = h5py.ExternalLink("missing_file.hdf5", "/x")
        elif op == "attrs":
            g.attrs["total_steps"] = -5
            g.attrs["id"] = "not an int"
        elif op == "gzip":
            replace(old, compression="gzip", chunks=True)
        elif op == "group_is_dataset":
            del f[f"episode_{e}"]
            f.create_dataset(f"episode_{e}", data=np.zeros(3))
        elif op == "obs_jump":
            obs = g["observations"][()]
            obs[int(rng.integers(1, len(obs)))] += 100.0
            g["observations"][...] = obs
        elif op == "unwritten":  # the right shape, but the data never written (a torn file)
            del g[key]
            g.create_dataset(key, shape=old.shape, dtype=old.dtype, chunks=True if old.ndim else None)
        elif op == "empty":
            del g[key]
            g.create_dataset(key, data=h5py.Empty("f4"))
        else:
            op += " (no-op here)"
    return f"episode_{e}/{key}: {op}"


def mutate_flat(rng, path: Path) -> str:
    import h5py

    if path.suffix == ".npz":
        with np.load(path) as z:
            arrs = {k: z[k] for k in z.files}
    else:
        with h5py.File(path) as f:
            arrs = {k: f[k][()] for k in f}
    n = len(arrs["rewards"])
    key = _pick(rng, [k for k in arrs])
    op = _pick(rng, ["del", "rows", "dtype", "dtype", "nan", "scalar", "empty", "obs1d", "next_width", "discrete",
                     "all_terminal", "float_flags", "extra_key", "huge", "compressed", "obs3d", "pickled"])
    desc = f"{key}: {op}"
    if op == "del":
        del arrs[key]
    elif op == "rows":
        arrs[key] = arrs[key][:-1] if rng.integers(2) else np.concatenate([arrs[key], arrs[key][:1]])
    elif op == "dtype":
        sub = _pick(rng, ["U3", "S3", "complex64", "bool", "int8", "float16"])
        arrs[key] = arrs[key].astype(sub)
        desc += f":{sub}"
    elif op == "nan":
        a = arrs[key].astype(np.float32)
        a.reshape(-1)[int(rng.integers(a.size))] = _pick(rng, [np.nan, np.inf, -np.inf])
        arrs[key] = a
    elif op == "scalar":
        arrs[key] = np.asarray(arrs[key].reshape(-1)[0])
    elif op == "empty":
        for k in arrs:
            arrs[k] = arrs[k][:0]
    elif op == "obs1d":
        arrs["observations"] = arrs["observations"][:, 0]
        if "next_observations" in arrs and rng.integers(2):
            arrs["next_observations"] = arrs["next_observations"][:, 0]
    elif op == "next_width":
        base = arrs.get("next_observations", arrs["observations"])
        arrs["next_observations"] = base[:, :-1] if rng.integers(2) else np.concatenate([base, base[:, :1]], 1)
    elif op == "discrete":
        a = np.round(np.nan_to_num(np.asarray(arrs["actions"], np.float64))).astype(np.int64).reshape(n, -1)[:, 0]
        a[int(rng.integers(n))] = _pick(rng, [-1, -(2**40), 2**40, 2**62])
        arrs["actions"] = a
    elif op == "all_terminal":
        arrs["terminals"] = np.ones(n, bool)
        arrs.pop("next_observations", None)
    elif op == "float_flags":
        arrs["terminals"] = rng.uniform(0, 1, n).astype(np.float32)
    elif op == "extra_key":
        arrs["infos/qpos"] = np.zeros((n, 2))
    elif op == "huge":
        a = arrs[key].astype(np.float64)
        a.reshape(-1)[int(rng.integers(a.size))] = 1e300
        arrs[key] = a
    elif op == "obs3d":
        arrs["observations"] = np.repeat(arrs["observations"][:, :, None], 2, axis=2)
    if path.suffix == ".npz":
        if op == "pickled":
            arrs[key] = np.array([{"a": 1}] * n, dtype=object)
        path.unlink()
        (np.savez_compressed if op == "compressed" else np.savez)(path, **arrs)
    else:
        path.unlink()
        with h5py.File(path, "w") as f:
            for k, v in arrs.items():
                if op == "pickled" and k == key:
                    f.create_dataset(k, data=np.array(["x"] * n, dtype=object), dtype=h5py.string_dtype())
                elif v.dtype.kind == "U":
                    f.create_dataset(k, data=v.astype("S"))
                else:
                    f.create_dataset(k, data=v, **({"compression": "gzip"} if op == "compressed" and v.ndim else {}))
    return desc


def make_mutant(seed: int, i: int, bases: Path, work: Path) -> tuple[str, Path, str]:
    """Mutant i of seed: (description, path to load, "dir" or "flat")."""
    rng = np.random.default_rng([seed, i])
    if rng.uniform() < 0.72:
        base = _pick(rng, DIR_BASES)
        root = work / f"m{i}-{base}"
        shutil.copytree(bases / base, root)
        kind = _pick(rng, ["bytes", "bytes", "json", "json", "hdf5", "hdf5", "hdf5"])
        if kind == "bytes":
            target = _pick(rng, [DATA, META, HERON])
            desc = f"{base}/{target} {mutate_bytes(rng, root / target)}"
        elif kind == "json":
            target = _pick(rng, [META, HERON])
            desc = f"{base}/{target} {mutate_json(rng, root / target, META_KEYS if target == META else HERON_KEYS)}"
        else:
            desc = f"{base}/{DATA} {mutate_hdf5(rng, root / DATA, base == 'disc', 3)}"
        return desc, root, "dir"
    base = _pick(rng, FLAT_BASES)
    path = work / f"m{i}-{base}"
    shutil.copy(bases / base, path)
    desc = f"{base} " + (mutate_bytes(rng, path) if rng.uniform() < 0.4 else mutate_flat(rng, path))
    return desc, path, "flat"


# ------------------------------------------------------------------ one mutant, judged
def judge(seed: int, i: int, bases: Path, work: Path) -> dict:
    from heron.data import import_d4rl, load_dataset
    from heron.data.dataset import check_layout
    from heron.errors import HeronError

    desc, path, kind = make_mutant(seed, i, bases, work)
    problems, outcomes = [], []

    def attempt(label, fn, must_name: Path, must_fail: bool = False):
        try:
            ds = fn()
        except HeronError as err:
            msg = str(err)
            outcomes.append(f"{label}:error")
            if str(must_name) not in msg:
                problems.append(f"{label}: HeronError does not name {must_name}: {msg[:300]}")
            if "\n" in msg or "Traceback" in msg:
                problems.append(f"{label}: HeronError message is not one line: {msg[:300]!r}")
            return
        except BaseException as err:  # noqa: BLE001 - that is the point
            outcomes.append(f"{label}:crash")
            problems.append(f"{label}: uncaught {type(err).__name__}: {str(err)[:300]}\n"
                            + "".join(traceback.format_exception(err)[-6:]))
            return
        outcomes.append(f"{label}:loaded")
        try:
            check_layout(ds)
        except BaseException as err:  # noqa: BLE001
            problems.append(f"{label}: loaded a dataset that fails check_layout: {err}")
        if must_fail:
            problems.append(f"{label}: loaded although a data file changed under an intact heron.json (checksum missed)")

    if kind == "dir":
        base = bases / path.name.split("-", 1)[1]
        changed = any(_bytes(path / rel) != _bytes(base / rel) for rel in (DATA, META))
        heron_intact = _bytes(path / HERON) == _bytes(base / HERON)
        attempt("verify", lambda: load_dataset(path, verify=True), path, must_fail=changed and heron_intact)
        attempt("no-verify", lambda: load_dataset(path, verify=False), path)
        plain = path.with_name(path.name + "-plain")
        shutil.copytree(path, plain, ignore=shutil.ignore_patterns(HERON))
        attempt("minari", lambda: load_dataset(plain), plain)
    else:
        attempt("load_dataset", lambda: load_dataset(path), path)
        attempt("import_d4rl", lambda: import_d4rl(path), path)
    return {"i": i, "desc": desc, "outcomes": outcomes, "problems": problems}


def _bytes(p: Path) -> bytes | None:
    try:
        return p.read_bytes() if p.is_file() else None
    except OSError:
        return None


def worker(seed: int, start: int, stop: int, bases: Path, work: Path) -> None:
    import warnings

    warnings.simplefilter("ignore")
    import heron.data  # noqa: F401  (import cost before the first mutant's clock starts)

    for i in range(start, stop):
        print(f"BEGIN {i}", flush=True)
        result = judge(seed, i, bases, work)
        print("RESULT " + json.dumps(result), flush=True)
        for p in work.glob(f"m{i}-*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


# ------------------------------------------------------------------ the batch, with a per-mutant time limit
def run_batch(seed: int, n: int, bases: Path, work: Path, per_mutant_s: float = PER_MUTANT_S) -> tuple[list, list]:
    """Run mutants 0..n-1 in worker subprocesses; a worker silent for per_mutant_s is killed, its mutant
    recorded as a hang, and a new worker continues after it. Returns (results, failures)."""
    results, failures, nxt = [], [], 0
    while nxt < n:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(seed), str(nxt), str(n), str(bases), str(work)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        current, deadline = None, time.monotonic() + 120.0  # the first deadline includes the worker's imports
        while True:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                proc.kill()
                proc.wait()
                i = nxt if current is None else current
                failures.append({"i": i, "desc": "(worker start)" if current is None else _describe(seed, i, bases),
                                 "problems": [f"no result within {per_mutant_s:.0f} s: a hang"]})
                nxt = i + 1
                break
            line = proc.stdout.readline()
            if not line:  # the worker died (e.g. a crash in C code) or finished
                rc = proc.wait()
                if current is not None and rc != 0:
                    failures.append({"i": current, "desc": _describe(seed, current, bases),
                                     "problems": [f"worker died with status {rc}: {proc.stderr.read()[-2000:]}"]})
                    nxt = current + 1
                elif current is None and rc != 0:
                    raise RuntimeError(f"fuzz worker failed to start: {proc.stderr.read()[-3000:]}")
                else:
                    nxt = n
                break
            if line.startswith("BEGIN "):
                current = int(line.split()[1])
                deadline = time.monotonic() + per_mutant_s
            elif line.startswith("RESULT "):
                r = json.loads(line[7:])
                results.append(r)
                if r["problems"]:
                    failures.append(r)
                nxt, current = r["i"] + 1, None
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
    return results, failures


def _describe(seed: int, i: int, bases: Path) -> str:
    with tempfile.TemporaryDirectory() as d:
        try:
            return make_mutant(seed, i, bases, Path(d))[0]
        except Exception as err:  # noqa: BLE001
            return f"(could not rebuild the mutant: {err})"


# ------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-bases")
    make_bases(root)
    return root


def test_fuzz_mutated_datasets(bases, tmp_path):
    t0 = time.monotonic()
    results, failures = run_batch(SEED, N_MUTANTS, bases, tmp_path)
    elapsed = time.monotonic() - t0
    counts: dict[str, int] = {}
    for r in results:
        for o in r["outcomes"]:
            counts[o] = counts.get(o, 0) + 1
    kinds = {"dir": sum(1 for r in results if r["outcomes"] and r["outcomes"][0].startswith("verify")),
             "flat": sum(1 for r in results if r["outcomes"] and r["outcomes"][0].startswith("load_dataset"))}
    print(f"\nfuzz seed {SEED}: {len(results)} mutants ({kinds}) in {elapsed:.1f} s; outcomes {dict(sorted(counts.items()))}")
    report = "\n\n".join(f"mutant {f['i']} ({f['desc']}):\n  " + "\n  ".join(f["problems"]) for f in failures[:15])
    assert not failures, (f"{len(failures)} of {N_MUTANTS} mutants failed (seed {SEED}); reproduce one with "
                          f"`python tests/test_dataset_fuzz.py --one {SEED} INDEX`:\n\n{report}")
    assert len(results) == N_MUTANTS
    # the mutants exercise both outcomes on every path (a fuzz that only ever errors would prove little)
    for label in ("verify", "no-verify", "minari", "load_dataset", "import_d4rl"):
        assert counts.get(f"{label}:error", 0) > 10 and counts.get(f"{label}:loaded", 0) > 5, (label, counts)


def test_time_limit_catches_a_hang(bases, tmp_path, monkeypatch):
    """The harness itself: a mutant that never finishes is reported as a hang, and the batch goes on."""
    monkeypatch.setenv("HERON_FUZZ_HANG_AT", "1")
    results, failures = run_batch(SEED, 3, bases, tmp_path, per_mutant_s=3.0)
    assert [f["i"] for f in failures] == [1] and "hang" in failures[0]["problems"][0]
    assert [r["i"] for r in results] == [0, 2]


# Minimal regressions for the defects the fuzz found (each was an uncaught exception, a silent
# corruption, or an unbounded allocation before the fix in heron/data/minari_io.py).
def _edit_json(path: Path, fn):
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


def _regression_cases():
    import h5py

    def huge_int(root):
        (root / META).write_text('{"total_episodes": ' + "7" * 5000 + "}")

    def deep(root):
        (root / META).write_text("[" * 100_000)

    def weights_strings(root):
        _edit_json(root / HERON, lambda o: o.update(episode_weights=["a", "b", "c"]))

    def weights_ragged(root):
        _edit_json(root / HERON, lambda o: o.update(episode_weights=[[1], [2, 3], 4]))

    def known_wrong_count(root):
        _edit_json(root / HERON, lambda o: o.update(action_known=[True, False]))

    def huge_box(root):
        def f(o):
            space = json.loads(o["observation_space"])
            space.update(shape=[10**12], low=0.0, high=1.0)
            o["observation_space"] = json.dumps(space)
        _edit_json(root / META, f)

    def lazy_huge_obs(root):
        with h5py.File(root / DATA, "r+") as f:
            del f["episode_0/observations"]
            f.create_dataset("episode_0/observations", shape=(2 * 10**8, 4), dtype="f4", chunks=True)  # 3.2 GB if read

    def unwritten_rewards(root):
        with h5py.File(root / DATA, "r+") as f:
            shape = f["episode_1/rewards"].shape
            del f["episode_1/rewards"]
            f.create_dataset("episode_1/rewards", shape=shape, dtype="f4", chunks=True)

    def wrapped_action(root):
        with h5py.File(root / DATA, "r+") as f:
            a = f["episode_0/actions"][()].astype(np.int64)
            a[0] = 2**32 + 1  # int32 cast would make this a valid 1
            del f["episode_0/actions"]
            f.create_dataset("episode_0/actions", data=a)

    def fractional_action(root):
        with h5py.File(root / DATA, "r+") as f:
            a = f["episode_0/actions"][()].astype(np.float64) + 0.5
            del f["episode_0/actions"]
            f.create_dataset("episode_0/actions", data=a)

    return [("5000-digit integer in metadata.json", "disc", huge_int, False, "not valid JSON"),
            ("JSON nested 100000 deep", "disc", deep, False, "nested too deeply"),
            ("episode_weights of strings", "cont", weights_strings, True, "episode_weights"),
            ("ragged episode_weights", "cont", weights_ragged, True, "episode_weights"),
            ("action_known with the wrong count", "cont", known_wrong_count, True, "heron.json: action_known"),
            ("Box of 10^12 elements", "disc", huge_box, False, "more than"),
            ("lazily allocated 2e8-row observations", "disc", lazy_huge_obs, False, "observations have shape"),
            ("rewards header without data", "disc", unwritten_rewards, False, "no stored data"),
            ("discrete action 2^32+1", "disc", wrapped_action, False, "outside Discrete"),
            ("discrete action 0.5", "disc", fractional_action, False, "non-integer")]


@pytest.mark.parametrize("case", range(10))
def test_regressions_from_fuzz(bases, tmp_path, case):
    from heron.data import load_dataset
    from heron.errors import HeronError

    what, base, edit, in_heron_json, match = _regression_cases()[case]
    root = tmp_path / base
    shutil.copytree(bases / base, root)
    edit(root)
    with pytest.raises(HeronError, match=match) as err:
        load_dataset(root, verify=in_heron_json)  # verify=False: the structural check, not the checksum, must catch it
    assert str(root) in str(err.value), what


def test_heron_json_without_checksums_is_not_trusted(bases, tmp_path):
    """verify=True used to pass silently when heron.json's sha256 table lacked an entry."""
    from heron.data import load_dataset
    from heron.errors import HeronError

    root = tmp_path / "d"
    shutil.copytree(bases / "cont", root)
    _edit_json(root / HERON, lambda o: o.update(sha256={}))
    with pytest.raises(HeronError, match="no valid SHA-256 recorded for data/main_data.hdf5"):
        load_dataset(root)
    assert load_dataset(root, verify=False).num_episodes == 3


@pytest.mark.parametrize("arrays, match", [
    (lambda a: a.update(actions=np.array(["a"] * len(a["rewards"]))), "dtype <U1"),
    (lambda a: a.update(next_observations=a["observations"][:, :2]), "next_observations have shape"),
    (lambda a: a.update(actions=np.full(len(a["rewards"]), -3)), "integer actions range"),
    (lambda a: a.update(observations=np.repeat(a["observations"][:, :, None], 2, axis=2)), "next_observations have shape"),
    (lambda a: a["actions"].__setitem__((0, 0), np.nan), "actions contain NaN"),  # was gymnasium's ValueError (Box bound)
    (lambda a: a.update(actions=a["actions"].astype(np.float64) * 1e300), "beyond float32"),
    (lambda a: a["rewards"].__setitem__(0, np.nan), "rewards contain NaN"),  # named only the stem 'x' before
    (lambda a: a.update(observations=a["observations"][:, 0], next_observations=a["next_observations"][:, 0]), None),
])
def test_d4rl_regressions_from_fuzz(bases, tmp_path, arrays, match):
    from heron.data import load_dataset
    from heron.errors import HeronError

    with np.load(bases / "flat_next.npz") as z:
        a = {k: z[k] for k in z.files}
    arrays(a)
    np.savez(tmp_path / "x.npz", **a)
    if match is None:  # 1-D observations with next_observations: compared row by row, not broadcast n x n
        assert load_dataset(tmp_path / "x.npz").observations.shape[1] == 1
        return
    with pytest.raises(HeronError, match=match) as err:
        load_dataset(tmp_path / "x.npz")
    assert str(tmp_path / "x.npz") in str(err.value)


def test_cli_import_of_damaged_files(bases, tmp_path):
    """`heron data import SRC OUT`: status 2, one line on stderr, no traceback, OUT not created."""
    import h5py

    cases = {}
    trunc = tmp_path / "trunc"
    shutil.copytree(bases / "cont", trunc)
    (trunc / DATA).write_bytes((trunc / DATA).read_bytes()[:700])
    cases["truncated hdf5"] = trunc
    badjson = tmp_path / "badjson"
    shutil.copytree(bases / "disc", badjson)
    (badjson / META).write_text('{"total_episodes": 3, ')
    cases["bad metadata.json"] = badjson
    plain = tmp_path / "plain"  # a Minari dataset (no heron.json): the structural check must catch it
    shutil.copytree(bases / "disc", plain, ignore=shutil.ignore_patterns(HERON))
    with h5py.File(plain / DATA, "r+") as f:
        del f["episode_1"]
    cases["missing episode"] = plain
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, observations=np.array([{"a": 1}], dtype=object), actions=np.zeros(1), rewards=np.zeros(1),
             terminals=np.ones(1))
    cases["pickled npz"] = pickled
    procs = {}
    existing = tmp_path / "existing"  # a valid source onto an existing OUT: refused without --force, OUT untouched
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    procs["OUT exists, no --force"] = (existing, existing, subprocess.Popen(
        [sys.executable, "-m", "heron.cli.main", "data", "import", str(bases / "cont"), str(existing)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    procs |= {what: (src, tmp_path / f"out-{i}", subprocess.Popen(
        [sys.executable, "-m", "heron.cli.main", "data", "import", str(src), str(tmp_path / f"out-{i}")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)) for i, (what, src) in enumerate(cases.items())}
    for what, (src, out, proc) in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        lines = stderr.strip().splitlines()
        assert proc.returncode == 2, (what, stdout, stderr)
        assert len(lines) == 1 and lines[0].startswith("heron: error:") and str(src) in lines[0], (what, stderr)
        assert "Traceback" not in stderr, what
        if out == existing:
            assert sorted(p.name for p in out.iterdir()) == ["keep.txt"] and "--force" in stderr
        else:
            assert not out.exists() and not list(tmp_path.glob(f".{out.name}*")), what  # nor a temp directory


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        seed, start, stop = map(int, sys.argv[2:5])
        hang_at = os.environ.get("HERON_FUZZ_HANG_AT")
        if hang_at is not None:  # for test_time_limit_catches_a_hang only
            _judge = judge

            def judge(seed, i, bases, work):  # noqa: F811
                if i == int(hang_at):
                    time.sleep(3600)
                return _judge(seed, i, bases, work)
        worker(seed, start, stop, Path(sys.argv[5]), Path(sys.argv[6]))
    elif sys.argv[1] == "--one":  # replay one mutant with full tracebacks
        seed, i = int(sys.argv[2]), int(sys.argv[3])
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "bases").mkdir()
            make_bases(Path(d) / "bases")
            (Path(d) / "work").mkdir()
            print(json.dumps(judge(seed, i, Path(d) / "bases", Path(d) / "work"), indent=1))
