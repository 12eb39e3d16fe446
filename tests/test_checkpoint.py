"""Checkpoints: bit-exact round trip, typed PRNG keys, atomicity, torn/corrupt fallbacks."""

import json
import os
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from heron.errors import HeronError
from heron.tracking.checkpoint import (
    Checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)


@struct.dataclass
class AgentState:
    params: dict
    opt_state: optax.OptState
    key: jax.Array
    raw_key: jax.Array
    step: jax.Array
    counters: tuple
    tx: optax.GradientTransformation = struct.field(pytree_node=False)


TX = optax.adam(1e-3)


def make_state(seed: int) -> AgentState:
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = {
        "dense": {"kernel": jax.random.normal(k1, (4, 8)), "bias": jnp.full((8,), jnp.nan)},
        "half": jax.random.normal(k2, (3,)).astype(jnp.bfloat16),
        "host": np.random.default_rng(seed).standard_normal(5),  # float64 numpy leaf
    }
    return AgentState(
        params=params,
        opt_state=TX.init(params),
        key=k3,
        raw_key=jax.random.PRNGKey(seed + 100),
        step=jnp.asarray(seed, jnp.int32),
        counters=(seed, 0.5 * seed),
        tx=TX,
    )


def arrays_of(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.standard_normal((1000, 3)).astype(np.float32),
        "actions": rng.integers(0, 5, size=1000),
        "dones": rng.random(1000) < 0.1,
        "pixels": rng.integers(0, 256, size=(10, 8, 8), dtype=np.uint8),
    }


def assert_bitwise_equal(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        if hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.random.key_impl(x) == jax.random.key_impl(y)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array))
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_round_trip_is_bit_exact_with_typed_keys(tmp_path):
    state = make_state(3)
    arrays = arrays_of(3)
    path = save_checkpoint(tmp_path, 1234, state, arrays, {"buffer_position": 17, "note": "x"})
    assert path == tmp_path / "checkpoints" / "step_000000001234"
    assert sorted(os.listdir(path)) == ["arrays.npz", "manifest.json", "meta.json", "state.msgpack"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == path.name

    ckpt = load_latest_checkpoint(tmp_path, make_state(0))
    assert isinstance(ckpt, Checkpoint)
    step, tree, loaded_arrays, meta = ckpt  # unpacks as a 4-tuple
    assert step == 1234 and meta == {"buffer_position": 17, "note": "x"}
    assert_bitwise_equal(tree, state)
    assert tree.tx is TX  # static fields come from the template
    assert isinstance(tree.params["dense"]["kernel"], jax.Array)
    assert isinstance(tree.params["host"], np.ndarray)
    assert set(loaded_arrays) == set(arrays)
    for name in arrays:
        assert loaded_arrays[name].dtype == arrays[name].dtype
        assert loaded_arrays[name].tobytes() == arrays[name].tobytes()
    # the restored typed key is usable and gives the same numbers
    np.testing.assert_array_equal(jax.random.normal(tree.key, (4,)), jax.random.normal(state.key, (4,)))


def test_typed_key_with_another_impl_round_trips(tmp_path):
    key = jax.random.key(5, impl="rbg")
    save_checkpoint(tmp_path, 1, {"key": key}, {}, {})
    ckpt = load_latest_checkpoint(tmp_path, {"key": jax.random.key(0, impl="rbg")})
    assert jax.random.key_impl(ckpt.tree["key"]) == jax.random.key_impl(key)
    np.testing.assert_array_equal(jax.random.key_data(ckpt.tree["key"]), jax.random.key_data(key))


def test_files_hold_no_pickle(tmp_path):
    path = save_checkpoint(tmp_path, 1, make_state(1), arrays_of(1), {})
    data = (path / "state.msgpack").read_bytes()
    import msgpack

    msgpack.unpackb(data, raw=False, strict_map_key=False)  # plain msgpack, ext types for arrays
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"obs", "actions", "dones", "pixels"}
    with pytest.raises(TypeError, match="object"):
        save_checkpoint(tmp_path, 2, {}, {"bad": np.array([{"a": 1}], dtype=object)}, {})
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1]


def test_keeps_last_k_and_latest_pointer(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step * 10, {"x": np.full(2, step)}, {}, {}, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [50, 40]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_000000000050"
    save_checkpoint(tmp_path, 60, {"x": np.full(2, 6)}, {}, {}, keep=3)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [60, 50, 40]


def test_saving_an_earlier_step_drops_the_abandoned_timeline(tmp_path):
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, {"x": np.full(1, step)}, {}, {}, keep=5)
    # resumed from 10 (say 20 and 30 were unusable); the next save supersedes them
    save_checkpoint(tmp_path, 15, {"x": np.full(1, 15)}, {}, {}, keep=5)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [15, 10]
    # saving the same step again replaces it
    save_checkpoint(tmp_path, 15, {"x": np.full(1, 99)}, {}, {}, keep=5)
    assert load_latest_checkpoint(tmp_path, {"x": np.zeros(1, np.int64)}).tree["x"].tolist() == [99]


def _corrupt_truncate(path: Path):
    f = path / "state.msgpack"
    f.write_bytes(f.read_bytes()[:-7])


def _corrupt_no_manifest(path: Path):
    (path / "manifest.json").unlink()


def _corrupt_flip_byte(path: Path):
    f = path / "arrays.npz"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))


def _corrupt_missing_file(path: Path):
    (path / "meta.json").unlink()


def _corrupt_garbled_manifest(path: Path):
    (path / "manifest.json").write_text('{"format": "heron-check')


@pytest.mark.parametrize(
    "corrupt, defect",
    [
        (_corrupt_truncate, "size mismatch in state.msgpack"),
        (_corrupt_no_manifest, "no manifest.json"),
        (_corrupt_flip_byte, "sha256 mismatch in arrays.npz"),
        (_corrupt_missing_file, "missing meta.json"),
        (_corrupt_garbled_manifest, "unreadable manifest.json"),
    ],
)
def test_torn_checkpoint_is_skipped_for_the_previous_one(tmp_path, corrupt, defect):
    template = make_state(0)
    save_checkpoint(tmp_path, 100, make_state(1), arrays_of(1), {"n": 1})
    newest = save_checkpoint(tmp_path, 200, make_state(2), arrays_of(2), {"n": 2})
    corrupt(newest)
    with pytest.warns(UserWarning, match=f"step_000000000200 \\({defect}.*resuming from step_000000000100"):
        ckpt = load_latest_checkpoint(tmp_path, template)
    assert ckpt.step == 100 and ckpt.meta == {"n": 1}
    assert_bitwise_equal(ckpt.tree, make_state(1))
    with pytest.raises(HeronError, match=f"is corrupt \\({defect}"):
        load_checkpoint(newest, template)


def test_no_valid_checkpoint_raises_naming_dir_and_defect(tmp_path):
    path = save_checkpoint(tmp_path, 7, make_state(1), {}, {})
    _corrupt_flip_byte(path)
    with pytest.raises(HeronError) as err:
        load_latest_checkpoint(tmp_path, make_state(0))
    message = str(err.value)
    assert str(path) in message and "sha256 mismatch in arrays.npz" in message
    assert "delete" in message and "\n" not in message


def test_interrupted_write_leaves_a_temp_dir_that_is_ignored_then_cleaned(tmp_path):
    save_checkpoint(tmp_path, 10, {"x": np.arange(3)}, {}, {})
    # a writer killed mid-save: temp dir with partial files, no manifest, never renamed
    tmp = tmp_path / "checkpoints" / ".tmp-step_000000000020-abc123"
    tmp.mkdir()
    (tmp / "state.msgpack").write_bytes(b"\x81\xa1x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning: it is not a checkpoint
        ckpt = load_latest_checkpoint(tmp_path, {"x": np.zeros(3, np.int64)})
    assert ckpt.step == 10
    save_checkpoint(tmp_path, 30, {"x": np.arange(3)}, {}, {})
    assert not tmp.exists()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest",
        "step_000000000010",
        "step_000000000030",
    ]


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, {"x": np.arange(3)}, {}, {})

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, 2, {"x": np.arange(3)}, {"a": np.zeros(2)}, {})
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_000000000001"]


def test_template_mismatch_is_a_heron_error(tmp_path):
    save_checkpoint(tmp_path, 1, {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}, {}, {})
    with pytest.raises(HeronError, match=r"leaf \['w'\] is float32\[2, 3\] in the checkpoint but float32\[4, 3\] now"):
        load_latest_checkpoint(tmp_path, {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)})
    with pytest.raises(HeronError, match="does not match the current state structure"):
        load_latest_checkpoint(tmp_path, {"w": jnp.zeros((2, 3)), "c": jnp.zeros(3)})
    with pytest.raises(HeronError, match=r"int32\[3\] now"):
        load_latest_checkpoint(tmp_path, {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3, jnp.int32)})


def test_no_checkpoint_returns_none(tmp_path):
    assert load_latest_checkpoint(tmp_path, {"x": np.zeros(1)}) is None
    (tmp_path / "checkpoints").mkdir()
    assert load_latest_checkpoint(tmp_path, {"x": np.zeros(1)}) is None


def test_records_log_lengths_for_exact_resume(tmp_path):
    (tmp_path / "metrics.csv").write_bytes(b"step,name,value,wall_time\n1,a,1.0,2.0\n")
    (tmp_path / "eval.csv").write_bytes(b"step,seed,episode,return\n")
    path = save_checkpoint(tmp_path, 1, {"x": np.zeros(1)}, {}, {})
    meta = json.loads((path / "meta.json").read_text())
    assert meta["log_bytes"] == {"metrics.csv": 38, "eval.csv": 25}
    ckpt = load_latest_checkpoint(tmp_path, {"x": np.zeros(1)})
    assert ckpt.log_bytes == {"metrics.csv": 38, "eval.csv": 25}
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"state.msgpack", "arrays.npz", "meta.json"}
