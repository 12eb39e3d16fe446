"""Datasets on disk: the Minari format both ways, D4RL-style imports, integrity checks.

A heron dataset directory is a Minari dataset (it opens with `minari.load_dataset` when it sits
under `$MINARI_DATASETS_PATH/<dataset_id>`) plus one heron file:

    PATH/data/main_data.hdf5   Minari's HDF5 layout: group `episode_<i>` with observations [T+1],
                               actions, rewards, terminations, truncations [T]; attrs id, total_steps
    PATH/data/metadata.json    Minari's metadata (spaces serialised as JSON, ref scores, dataset_id)
    PATH/heron.json            name, env, per-episode action_known / weights, provenance, and the
                               SHA-256 of both data files (checked on load)

Reading goes through h5py and JSON only (nothing is unpickled). Every defect in a file becomes one
HeronError naming the file and the defect. Writes go to a temporary sibling directory that is
renamed into place, so a reader never sees half a dataset; an existing dataset is replaced only with
`force=True`.

What a load checks, in order (tests/test_dataset_fuzz.py throws hundreds of damaged files at it):
- heron.json (when present): a JSON object of the expected types; with `verify=True` the SHA-256 of both
  data files must match it, and a table missing either entry is itself an error (nothing unverified loads).
- metadata.json: valid JSON; both spaces deserialise, are Box observations / Box or Discrete actions, and
  their serialised shapes are checked *before* gymnasium allocates them (no 10^12-element Box).
- main_data.hdf5: exactly `total_episodes` groups episode_0..E-1; every array present, numeric, of the
  shape the spaces and T imply (T <= 2^28), and with stored data, all checked from HDF5 headers *before*
  any data is read, so a damaged header cannot make the reader allocate gigabytes for data that is not
  there; discrete actions integral and inside the space (checked before the int32 cast that would wrap
  them); flags 0/1; step total equal to `total_steps`.
- the assembled dataset: `check_layout` (finite observations/rewards/known actions, termination or
  truncation only at an episode's last step, per-episode fields of one entry per episode).
Box bounds are not enforced: logged data legitimately leaves declared bounds (unbounded MuJoCo spaces,
D4RL actions a hair outside [-1, 1]).

Episode boundaries / "no jump inside an episode": in the Minari layout an episode stores one observation
array of T+1 rows and transition t is (row t, row t+1), so consecutive observations are chained by
construction: there is no separate next_observation that could disagree. What remains checkable is
that episodes end where the flags say (a termination/truncation flag only on an episode's last step,
checked) and that each group holds exactly T+1 observations (checked). A physically implausible jump
between rows t and t+1 cannot be told from a legitimate fast transition without the environment's
dynamics, so it is not checked here. In D4RL-style flat files with next_observations, an unflagged
next_observations[t] != observations[t+1] is split into an episode boundary and counted in provenance
(`unflagged_jumps_split`); without next_observations no jump is detectable, and the file's
terminals/timeouts are trusted.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np

from heron import _fs
from heron.data.dataset import EpisodeDataset, check_layout, from_episodes
from heron.errors import HeronError

MINARI_VERSION = "0.5.4"  # the Minari release whose format we write (pinned in pyproject)
HERON_FORMAT = 1
DATA_FILE = "data/main_data.hdf5"
METADATA_FILE = "data/metadata.json"
HERON_FILE = "heron.json"


def default_datasets_root() -> Path:
    """Where named datasets live: $HERON_DATASETS_DIR, else ./datasets."""
    return Path(os.environ.get("HERON_DATASETS_DIR") or "datasets")


def resolve_dataset_path(path_or_name: str | os.PathLike) -> Path:
    """A dataset directory from a path, or from a name under the datasets root (e.g. `small/pendulum-medium`)."""
    p = Path(path_or_name)
    if p.is_dir() or p.suffix in (".npz", ".hdf5", ".h5"):
        return p
    named = default_datasets_root() / p
    if named.is_dir():
        return named
    raise HeronError(f"no dataset at {str(path_or_name)!r} (not a directory, nor a name under "
                     f"{default_datasets_root()}/): give a dataset directory, or make one with `heron data suite make small`")


# -------------------------------------------------------------------- write
def save_dataset(ds: EpisodeDataset, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write `ds` as a Minari dataset directory at `path`, atomically."""
    import h5py

    path = Path(path)
    if path.exists() and not force:
        raise HeronError(f"{path} already exists: choose another output path, or pass --force to replace it")
    check_layout(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(3).hex()}")
    try:
        (tmp / "data").mkdir(parents=True)
        with h5py.File(tmp / DATA_FILE, "w", track_order=True) as f:
            for e in range(ds.num_episodes):
                ep = ds.episode(e)
                g = f.create_group(f"episode_{e}")
                g.attrs["id"] = e
                g.attrs["total_steps"] = len(ep["rewards"])
                actions = ep["actions"].astype(np.int64) if ds.discrete_actions else ep["actions"]
                for key, value in (("observations", ep["observations"]), ("actions", actions),
                                   ("rewards", ep["rewards"]), ("terminations", ep["terminations"]),
                                   ("truncations", ep["truncations"])):
                    g.create_dataset(key, data=value)
        _fs.fsync_file(tmp / DATA_FILE)
        _fs.atomic_write_json(tmp / METADATA_FILE, _minari_metadata(ds, path))
        heron_meta = {
            "format": HERON_FORMAT, "name": ds.name, "env_id": ds.env_id,
            "ref_min_score": ds.ref_min_score, "ref_max_score": ds.ref_max_score,
            "action_known": None if ds.action_known is None else np.asarray(ds.action_known, bool).tolist(),
            "episode_weights": None if ds.episode_weights is None else np.asarray(ds.episode_weights, float).tolist(),
            "provenance": list(ds.provenance),
            "sha256": {rel: _fs.sha256_file(tmp / rel) for rel in (DATA_FILE, METADATA_FILE)},
        }
        _fs.atomic_write_json(tmp / HERON_FILE, heron_meta)
        _fs.fsync_dir(tmp / "data")
        _fs.fsync_dir(tmp)
        if path.exists():  # force: move the old one aside first, delete it only once the new one is in place
            old = path.with_name(f".{path.name}.old-{os.getpid()}-{os.urandom(3).hex()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fs.fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _minari_metadata(ds: EpisodeDataset, path: Path) -> dict:
    from minari.serialization import serialize_space

    meta = {
        "dataset_id": minari_dataset_id(ds.name),
        "total_episodes": ds.num_episodes,
        "total_steps": ds.num_transitions,
        "data_format": "hdf5",
        "jpeg_encoding": False,
        "observation_space": serialize_space(ds.observation_space),
        "action_space": serialize_space(ds.action_space),
        "minari_version": MINARI_VERSION,
        "algorithm_name": _algorithm_name(ds),
        "author": ["heron"],
        "description": f"{ds.name}: written by heron ({ds.num_episodes} episodes); provenance in heron.json",
    }
    if ds.env_id is not None:
        try:
            meta["env_spec"] = gym.spec(ds.env_id).to_json()
        except Exception:  # unregistered or unserialisable spec: Minari then cannot recover the env, data still loads
            pass
    if ds.ref_min_score is not None and ds.ref_max_score is not None:
        meta["ref_min_score"] = float(ds.ref_min_score)
        meta["ref_max_score"] = float(ds.ref_max_score)
    return meta


def minari_dataset_id(name: str) -> str:
    """Minari id for a heron dataset name: `heron/<name with / as ->-v0`."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.replace("/", "-")).strip("-") or "dataset"
    return f"heron/{safe}-v0"


def _algorithm_name(ds: EpisodeDataset) -> str:
    for step in ds.provenance:
        if isinstance(step, dict) and isinstance(step.get("policy"), str):
            return step["policy"]
    return "unknown"


# -------------------------------------------------------------------- read
def load_dataset(path_or_name: str | os.PathLike, *, verify: bool = True) -> EpisodeDataset:
    """Load a heron or Minari dataset directory (or a D4RL-style .npz/.hdf5 file), checking its integrity.

    `verify=False` skips the SHA-256 comparison with heron.json (structure is still checked).
    """
    path = resolve_dataset_path(path_or_name)
    if path.is_file():
        return import_d4rl(path)
    data_file, meta_file, heron_file = path / DATA_FILE, path / METADATA_FILE, path / HERON_FILE
    if not data_file.is_file() or not meta_file.is_file():
        # minari.load_dataset's layout is ROOT/<id>/data/...: accept the id directory or its data/ folder
        if (path / "main_data.hdf5").is_file() and (path / "metadata.json").is_file():
            return load_dataset(path.parent, verify=verify)
        missing = DATA_FILE if not data_file.is_file() else METADATA_FILE
        raise HeronError(f"{path} is not a dataset directory: {path / missing} is missing "
                         "(expected a Minari dataset: data/main_data.hdf5 and data/metadata.json)")
    heron_meta = _read_heron_meta(heron_file) if heron_file.exists() or heron_file.is_symlink() else None
    if heron_meta is not None and verify:
        for rel in (DATA_FILE, METADATA_FILE):
            digest = heron_meta["sha256"].get(rel)
            if not isinstance(digest, str) or len(digest) != 64:
                raise HeronError(f"{heron_file}: no valid SHA-256 recorded for {rel}, so {path / rel} cannot be verified; "
                                 "re-create the dataset (or load with verify=False)")
            try:
                actual = _fs.sha256_file(path / rel)
            except OSError as err:
                raise HeronError(f"{path / rel} cannot be read ({err})") from None
            if actual != digest:
                raise HeronError(f"{path / rel} does not match the SHA-256 recorded in {heron_file}: the file was "
                                 "modified or corrupted after it was written; re-create the dataset (or load with verify=False)")
    meta = _read_json_object(meta_file)
    obs_space, act_space = read_spaces(meta, meta_file)
    episodes = _read_episodes(data_file, meta, obs_space, act_space)
    fields = {}
    if heron_meta is not None:
        fields = {k: heron_meta.get(k) for k in ("name", "env_id", "ref_min_score", "ref_max_score")}
        fields["provenance"] = tuple(heron_meta.get("provenance") or ())
        fields.update(_per_episode_fields(heron_meta, heron_file, len(episodes)))
    else:
        fields["name"] = str(meta.get("dataset_id", path.name))
        fields["env_id"] = _env_id_from_spec(meta.get("env_spec"))
        for key in ("ref_min_score", "ref_max_score"):
            fields[key] = float(meta[key]) if isinstance(meta.get(key), (int, float)) else None
        fields["provenance"] = ({"imported_from": "minari", "path": str(path), "dataset_id": meta.get("dataset_id"),
                                 "minari_version": meta.get("minari_version")},)
    fields = {k: v for k, v in fields.items() if v is not None or k in ("env_id", "ref_min_score", "ref_max_score")}
    try:
        ds = from_episodes(episodes, obs_space, act_space, **fields)
    except HeronError as err:
        raise HeronError(f"{data_file}: {err}") from None
    except (ValueError, TypeError, OverflowError) as err:
        raise HeronError(f"{data_file}: episodes do not fit together ({err})") from None
    return ds


def _per_episode_fields(heron_meta: dict, heron_file: Path, num_episodes: int) -> dict:
    """heron.json's action_known / episode_weights as arrays of one entry per episode (or absent)."""
    out = {}
    for key, dtype in (("action_known", bool), ("episode_weights", np.float64)):
        value = heron_meta.get(key)
        if value is None:
            continue
        if len(value) != num_episodes or not all(isinstance(v, (bool, int, float)) for v in value):
            raise HeronError(f"{heron_file}: {key} should hold {num_episodes} numbers (one per episode of the data file), "
                             f"found {len(value)} entries; heron.json and the data disagree; re-create the dataset")
        if key == "action_known" and not all(isinstance(v, bool) or v in (0, 1) for v in value):
            raise HeronError(f"{heron_file}: action_known should hold true/false per episode; re-create the dataset")
        try:
            out[key] = np.asarray(value, dtype)
        except OverflowError:  # a JSON integer beyond float range
            raise HeronError(f"{heron_file}: {key} holds a number out of range; re-create the dataset") from None
        if key == "episode_weights" and (not np.all(np.isfinite(out[key])) or np.any(out[key] < 0) or not np.any(out[key] > 0)):
            raise HeronError(f"{heron_file}: episode_weights must be finite, non-negative and not all zero; re-create the dataset")
    return out


def _read_json_object(path: Path) -> dict:
    try:
        obj = json.loads(path.read_bytes())
    except OSError as err:
        raise HeronError(f"{path} cannot be read ({err})") from None
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, over-long integers, deep nesting
        defect = str(err).splitlines()[0][:200] if not isinstance(err, RecursionError) else "nested too deeply"
        raise HeronError(f"{path} is not valid JSON ({defect}): the file is truncated or corrupt; re-create the dataset") from None
    if not isinstance(obj, dict):
        raise HeronError(f"{path} should hold a JSON object, found {type(obj).__name__}; re-create the dataset")
    return obj


def _read_heron_meta(path: Path) -> dict:
    meta = _read_json_object(path)
    problems = []
    if meta.get("format") != HERON_FORMAT:
        problems.append(f"format {meta.get('format')!r} (this heron reads format {HERON_FORMAT})")
    if not isinstance(meta.get("sha256"), dict):
        problems.append("no sha256 table")
    for key in ("action_known", "episode_weights", "provenance"):
        if meta.get(key) is not None and not isinstance(meta[key], list):
            problems.append(f"{key} is not a list")
    for key in ("ref_min_score", "ref_max_score"):
        if meta.get(key) is not None and (not isinstance(meta[key], (int, float)) or isinstance(meta[key], bool)
                                          or not np.isfinite(float(meta[key]))):
            problems.append(f"{key} is not a finite number")
    for key in ("name", "env_id"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            problems.append(f"{key} is not a string")
    if problems:
        raise HeronError(f"{path}: {problems[0]}; re-create the dataset")
    return meta


def read_spaces(meta: dict, source, fix: str = "re-create the dataset"):
    """(observation space, action space) from their Minari JSON under meta's "observation_space" and
    "action_space"; anything unreadable or unsupported is one HeronError naming `source` and `fix`."""
    from minari.serialization import deserialize_space

    spaces = []
    for key in ("observation_space", "action_space"):
        raw = meta.get(key)
        if not isinstance(raw, str):
            raise HeronError(f"{source}: {key} is missing or not a serialised space; {fix}")
        defect = _space_json_defect(raw)
        if defect:
            raise HeronError(f"{source}: {key} cannot be read ({defect}); {fix}")
        try:
            spaces.append(deserialize_space(raw))
        except Exception as err:  # minari raises KeyError/ValueError/NotImplementedError/JSONDecodeError
            raise HeronError(f"{source}: {key} cannot be read ({type(err).__name__}: {err}); {fix}") from None
    obs_space, act_space = spaces
    if not isinstance(obs_space, gym.spaces.Box):
        raise HeronError(f"{source}: observation space {obs_space} is not supported (heron reads Box observations)")
    if not isinstance(act_space, (gym.spaces.Box, gym.spaces.Discrete)):
        raise HeronError(f"{source}: action space {act_space} is not supported (heron reads Box or Discrete actions)")
    return obs_space, act_space


MAX_SPACE_ELEMENTS = 1 << 24  # a Box larger than this per step is not a dataset heron can hold anyway


def _space_json_defect(raw: str) -> str | None:
    """Why a serialised Box/Discrete cannot be trusted to deserialise cheaply (huge or negative shapes), or None."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return "not valid JSON"
    if not isinstance(obj, dict):
        return "not a JSON object"
    if obj.get("type") == "Box":
        shape = obj.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape):
            return f"Box shape {shape!r} is not a list of non-negative integers"
        if int(np.prod([float(d) for d in shape])) > MAX_SPACE_ELEMENTS:
            return f"Box shape {shape} has more than {MAX_SPACE_ELEMENTS} elements"
    if obj.get("type") == "Discrete":
        for k in ("n", "start"):
            v = obj.get(k, 0)
            if not isinstance(v, int) or isinstance(v, bool) or abs(v) >= 1 << 31 or (k == "n" and v < 1):
                return f"Discrete {k}={v!r} is not a usable integer"
    return None


def _read_episodes(data_file: Path, meta: dict, obs_space, act_space) -> list[dict]:
    import h5py

    total = meta.get("total_episodes")
    if not isinstance(total, int) or isinstance(total, bool) or total < 1:
        raise HeronError(f"{data_file.parent / 'metadata.json'}: total_episodes is {total!r}, expected a positive integer")
    episodes = []
    try:
        with h5py.File(data_file, "r") as f:
            for e in range(total):
                group = f.get(f"episode_{e}")
                if not isinstance(group, h5py.Group):
                    raise HeronError(f"{data_file}: episode_{e} is missing (metadata says {total} episodes); "
                                     "the file is truncated or was not fully written; re-create the dataset")
                episodes.append(_read_episode(group, data_file, e, obs_space, act_space))
            extra = sum(1 for k in f.keys() if k.startswith("episode_")) - total
            if extra:
                raise HeronError(f"{data_file}: {extra} more episode groups than metadata's total_episodes={total}; "
                                 "metadata and data disagree; re-create the dataset")
    except HeronError:
        raise
    except Exception as err:  # h5py raises OSError/KeyError/ValueError/RuntimeError on damaged files
        raise HeronError(f"{data_file} cannot be read as HDF5 ({type(err).__name__}: {err}): the file is truncated "
                         "or corrupt; re-create the dataset") from None
    steps = meta.get("total_steps")
    if isinstance(steps, int) and steps != sum(len(ep["rewards"]) for ep in episodes):
        raise HeronError(f"{data_file}: episodes hold {sum(len(ep['rewards']) for ep in episodes)} steps but metadata "
                         f"says total_steps={steps}; metadata and data disagree; re-create the dataset")
    return episodes


MAX_EPISODE_STEPS = 1 << 28  # per episode; beyond this a header is corrupt, not a real episode


def _read_episode(group, data_file: Path, e: int, obs_space, act_space) -> dict:
    import h5py

    where = f"{data_file}: episode_{e}"
    items = {}
    for key in ("observations", "actions", "rewards", "terminations", "truncations"):
        item = group.get(key)
        if not isinstance(item, h5py.Dataset):
            raise HeronError(f"{where}/{key} is missing or not an array (Dict/Tuple spaces are not supported)")
        if item.shape is None or item.dtype.kind not in "biuf":
            raise HeronError(f"{where}/{key} has non-numeric dtype {item.dtype} (or no data)")
        items[key] = item
    # shapes first (HDF5 metadata only): a damaged header must not make us allocate what it claims
    rshape = items["rewards"].shape
    t = rshape[0] if len(rshape) == 1 else -1
    if t < 1:
        raise HeronError(f"{where}: rewards have shape {rshape}, expected (T,) with T >= 1")
    if t > MAX_EPISODE_STEPS:
        raise HeronError(f"{where}: rewards claim {t} steps (more than {MAX_EPISODE_STEPS}); the file is corrupt")
    if items["observations"].shape != (t + 1, *obs_space.shape):
        raise HeronError(f"{where}: observations have shape {items['observations'].shape}, expected {(t + 1, *obs_space.shape)} "
                         f"(T={t} steps plus the final observation, observation space {obs_space})")
    discrete = isinstance(act_space, gym.spaces.Discrete)
    act_shape = () if discrete else act_space.shape
    if items["actions"].shape != (t, *act_shape):
        raise HeronError(f"{where}: actions have shape {items['actions'].shape}, expected {(t, *act_shape)} (action space {act_space})")
    for key in ("terminations", "truncations"):
        if items[key].shape != (t,):
            raise HeronError(f"{where}: {key} have shape {items[key].shape}, expected ({t},)")
    for key, item in items.items():
        if item.id.get_storage_size() == 0:  # a header whose data was never written (a torn or forged file)
            raise HeronError(f"{where}/{key} has no stored data (shape {item.shape} but nothing written); "
                             "the file was not fully written; re-create the dataset")
    ep = {key: item[()] for key, item in items.items()}
    if discrete:
        # checked before the cast to int32, which would wrap out-of-range integers and truncate fractions silently
        a = ep["actions"]
        if a.dtype.kind == "f" and not np.all(np.isfinite(a) & (a == np.round(a))):
            raise HeronError(f"{where}/actions holds non-integer values for the discrete action space {act_space}")
        lo, hi = int(act_space.start), int(act_space.start) + int(act_space.n)
        if a.size and (a.min() < lo or a.max() >= hi):
            raise HeronError(f"{where}/actions holds values outside {act_space} (min {a.min()}, max {a.max()})")
    for key in ("terminations", "truncations"):
        if ep[key].dtype.kind != "b" and not np.all((ep[key] == 0) | (ep[key] == 1)):
            raise HeronError(f"{where}/{key} holds values other than 0/1")
    return ep


def _env_id_from_spec(spec_json) -> str | None:
    if not isinstance(spec_json, str):
        return None
    try:
        spec = json.loads(spec_json)
    except json.JSONDecodeError:
        return None
    env_id = spec.get("id") if isinstance(spec, dict) else None
    return env_id if isinstance(env_id, str) else None


# -------------------------------------------------------------------- D4RL-style import
D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def import_d4rl(source, *, name: str | None = None, env_id: str | None = None,
                observation_space: gym.Space | None = None, action_space: gym.Space | None = None,
                ref_min_score: float | None = None, ref_max_score: float | None = None) -> EpisodeDataset:
    """A D4RL-style flat dict (or .npz / .hdf5 file of one) as an EpisodeDataset.

    Keys: observations [N, ...], actions, rewards, terminals, timeouts (optional), next_observations
    (optional). Episodes end at terminals | timeouts. With next_observations, an unflagged jump
    (next_observations[t] != observations[t+1]) also ends an episode there as a truncation, and the
    final observation of every episode is next_observations at its last step. Without them, a
    terminal step keeps o_{T-1} as a placeholder final observation (never bootstrapped from) and a
    timeout step, whose successor is unknown, is dropped. Both counts are kept in provenance.
    """
    label = str(source) if isinstance(source, (str, os.PathLike)) else "D4RL-style dict"
    data = _read_flat(source) if isinstance(source, (str, os.PathLike)) else dict(source)
    missing = [k for k in ("observations", "actions", "rewards", "terminals") if k not in data]
    if missing:
        raise HeronError(f"{label}: missing key {missing[0]!r} (a D4RL-style dataset has {', '.join(D4RL_KEYS)}, "
                         "and optionally next_observations)")
    for key in (*D4RL_KEYS, "next_observations"):
        if key in data and np.asarray(data[key]).dtype.kind not in "biuf":
            raise HeronError(f"{label}: {key} has dtype {np.asarray(data[key]).dtype}; every array must be numeric "
                             "(bool, integer or float)")
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range -> inf, refused below
            obs = np.asarray(data["observations"], np.float32)
            actions = np.asarray(data["actions"])
            rewards = np.asarray(data["rewards"], np.float32).reshape(-1)
            terminals = np.asarray(data["terminals"]).astype(bool).reshape(-1)
            timeouts = np.asarray(data.get("timeouts", np.zeros_like(terminals))).astype(bool).reshape(-1)
            next_obs = np.asarray(data["next_observations"], np.float32) if "next_observations" in data else None
    except (ValueError, TypeError) as err:
        raise HeronError(f"{label}: arrays are not numeric ({err})") from None
    n = len(rewards)
    shapes = {"observations": obs.shape[:1], "actions": actions.shape[:1], "terminals": terminals.shape,
              "timeouts": timeouts.shape}
    if next_obs is not None:
        shapes["next_observations"] = next_obs.shape[:1]
    bad = [k for k, s in shapes.items() if s != (n,)]
    if bad or n == 0:
        raise HeronError(f"{label}: {bad[0] if bad else 'rewards'} has {shapes.get(bad[0], (0,)) if bad else 0} rows, "
                         f"rewards has {n}; every array needs one row per step")
    if obs.ndim < 2:
        obs = obs.reshape(n, -1)
    if next_obs is not None:
        if next_obs.ndim < 2:
            next_obs = next_obs.reshape(n, -1)
        if next_obs.shape != obs.shape:
            raise HeronError(f"{label}: next_observations have shape {next_obs.shape}, observations {obs.shape}; they must match")
    discrete = np.issubdtype(actions.dtype, np.integer) and actions.ndim == 1
    if discrete and (actions.min() < 0 or actions.max() >= 1 << 31):
        raise HeronError(f"{label}: integer actions range over [{actions.min()}, {actions.max()}]; discrete actions must "
                         "be 0..n-1 (pass action_space for another range)")
    if observation_space is None and not np.all(np.isfinite(obs)):
        raise HeronError(f"{label}: observations contain NaN or infinity")
    if not discrete:
        with np.errstate(over="ignore", invalid="ignore"):
            actions = actions.astype(np.float32)  # values beyond float32's range become inf and are refused below
    if action_space is None and not discrete and not np.all(np.isfinite(actions)):
        raise HeronError(f"{label}: actions contain NaN or infinity (or values beyond float32's range)")
    if observation_space is None:
        observation_space = gym.spaces.Box(-np.inf, np.inf, obs.shape[1:], np.float32)
    if action_space is None:
        if discrete:
            action_space = gym.spaces.Discrete(int(actions.max()) + 1)
        else:
            bound = float(np.max(np.abs(actions))) if actions.size else 1.0
            action_space = gym.spaces.Box(-max(bound, 1.0), max(bound, 1.0), actions.shape[1:], np.float32)
    ends = terminals | timeouts
    jumps = 0
    if next_obs is not None:
        jump = np.zeros(n, bool)
        jump[:-1] = np.any(next_obs[:-1] != obs[1:], axis=tuple(range(1, obs.ndim))) & ~ends[:-1]
        jumps = int(jump.sum())
        ends_all = ends | jump
    else:
        ends_all = ends.copy()
    ends_all[-1] = True
    boundaries = np.flatnonzero(ends_all) + 1
    starts = np.concatenate([[0], boundaries[:-1]])
    episodes, dropped = [], 0
    for s, t in zip(starts, boundaries):
        last = t - 1
        if next_obs is not None:
            ep_obs, sl = np.concatenate([obs[s:t], next_obs[last:t]]), slice(s, t)
        elif terminals[last]:
            # o_{T} after a termination is never bootstrapped from: repeat o_{T-1} as its placeholder
            ep_obs, sl = np.concatenate([obs[s:t], obs[last:t]]), slice(s, t)
        elif t - s >= 2:
            ep_obs, sl = obs[s:t], slice(s, t - 1)  # a timeout's successor is unknown: drop that one step
            dropped += 1
        else:
            dropped += t - s
            continue
        steps = sl.stop - sl.start
        term, trunc = np.zeros(steps, bool), np.zeros(steps, bool)
        term[-1] = terminals[last]
        trunc[-1] = not terminals[last]
        episodes.append({"observations": ep_obs, "actions": actions[sl], "rewards": rewards[sl],
                         "terminations": term, "truncations": trunc})
    if not episodes:
        raise HeronError(f"{label}: no episode has two or more steps; without next_observations nothing can be imported")
    step = {"imported_from": "d4rl", "source": label, "steps": n, "unflagged_jumps_split": jumps,
            "steps_dropped_without_successor": dropped}
    try:
        return from_episodes(episodes, observation_space, action_space, name=name or Path(label).stem,
                             env_id=env_id, ref_min_score=ref_min_score, ref_max_score=ref_max_score, provenance=(step,))
    except HeronError as err:
        raise HeronError(f"{label}: {err}") from None


def _read_flat(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise HeronError(f"{path} does not exist")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except ValueError as err:
            raise HeronError(f"{path}: holds pickled objects or is damaged ({err}); heron never unpickles files — "
                             "save plain numeric arrays") from None
        except Exception as err:
            raise HeronError(f"{path} cannot be read as .npz ({type(err).__name__}: {err}): the file is truncated or corrupt") from None
    if path.suffix in (".hdf5", ".h5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
        except Exception as err:
            raise HeronError(f"{path} cannot be read as HDF5 ({type(err).__name__}: {err}): the file is truncated or corrupt") from None
    raise HeronError(f"{path}: unknown file type {path.suffix!r}; import .npz or .hdf5 D4RL-style files, or a Minari directory")
