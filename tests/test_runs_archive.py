"""`heron runs export | import`: round trip, and every hostile or broken archive is refused
with one line, exit status 2 and the root left exactly as it was."""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import tarfile

import numpy as np
import pytest

from heron.cli.main import main
from heron.cli.runs import add_runs_parser
from heron.errors import HeronError
from heron.tracking import query
from heron.tracking.archive import ImportLimits, export_runs, import_runs
from heron.tracking.checkpoint import list_checkpoints, load_latest_checkpoint
from heron.tracking.run import Run, read_status

STATE = {"w": np.arange(6.0).reshape(2, 3), "step": np.int64(0)}


def heron(*argv, capsys=None):
    parser = argparse.ArgumentParser(prog="heron")
    sub = parser.add_subparsers(dest="command", required=True)
    add_runs_parser(sub)
    args = parser.parse_args([str(a) for a in argv])
    assert args.func(args) == 0
    return capsys.readouterr().out if capsys is not None else None


def make_runs(root):
    a = Run.create(root, "sac-pendulum", {"algo": "sac", "env": "Pendulum-v1", "lr": 3e-4}, ["heron", "train"], 0, tensorboard=False)
    for step in range(100, 1100, 100):
        a.log(step, {"loss/critic": 1.0 / step, "alpha": 0.2})
        if step % 500 == 0:
            a.log_eval(step, [-1000.0 + step, -900.0 + step])
    a.save_checkpoint(1000, STATE, {"buffer_obs": np.ones((4, 3), np.float32)}, {"buffer_size": 4})
    a.finish()
    (a.path / "report.md").write_text("# report\n")
    (a.path / "eval_curve.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    b = Run.create(root, "sac-pendulum-lr", {"algo": "sac", "env": "Pendulum-v1", "lr": 1e-3}, ["heron", "train"], 1, seeds=3)
    for step in range(100, 1100, 100):
        b.log(step, {"loss/critic": np.array([1.0, 2.0, 3.0]) / step})
        if step % 500 == 0:
            b.log_eval(step, [[step - 800.0, step - 700.0], [step - 600.0, step - 500.0], [step - 400.0, step - 300.0]])
            b.save_checkpoint(step, {**STATE, "step": np.int64(step)})
    b.finish()
    return a, b


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two source runs and their archive (with checkpoints); made once, never modified."""
    tmp = tmp_path_factory.mktemp("source")
    root = tmp / "runs"
    a, b = make_runs(root)
    archive = tmp / "shared.tar.gz"
    export_runs([a.name, b.name], archive, root=root, checkpoints=True)
    return root, a, b, archive


def snapshot(path):
    """Every path under `path` (hidden ones too) with its content hash; None if it is missing."""
    if not os.path.lexists(path):
        return None
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), path)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def metric_rows(root):
    return query.sql(root, "SELECT run, step, name, value, wall_time FROM metrics ORDER BY ALL")[1]


def eval_rows(root):
    return query.sql(root, 'SELECT run, step, seed, episode, "return" FROM evals ORDER BY ALL')[1]


# -- round trip ----------------------------------------------------------------------------


def test_round_trip_export_import(runs, tmp_path, capsys):
    root, a, b, _ = runs
    archive = tmp_path / "cli.tar.gz"
    out = heron("runs", "export", a.name, b.name[:20], "--out", archive, "--checkpoints", "--root", root, capsys=capsys)
    assert out.startswith(f"wrote {archive} (2 runs, ")
    assert f"{b.name}  finished, " in out and "checkpoint step 1000; left out: tb/" in out

    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert names[0] == "manifest.json"
    assert manifest["format"] == "heron-runs-archive" and manifest["version"] == 1
    assert manifest["heron"] and manifest["exported_at"] and manifest["checkpoints"] == "latest"
    by_name = {r["name"]: r for r in manifest["runs"]}
    files_a = set(by_name[a.name]["files"])
    assert files_a >= {"config.json", "provenance.json", "status.json", "metrics.csv", "eval.csv", "report.md", "eval_curve.png"}
    assert "checkpoints/latest" in files_a
    # only the latest checkpoint of b (it has two locally)
    assert len(list_checkpoints(b.path)) == 2
    ckpt_b = {f.split("/")[1] for f in by_name[b.name]["files"] if f.startswith("checkpoints/step_")}
    assert ckpt_b == {"step_000000001000"}
    assert not any(n.split("/")[2] == "tb" for n in names[1:])
    for name, entry in by_name.items():
        for rel, meta in entry["files"].items():
            with tarfile.open(archive) as tar:
                data = tar.extractfile(f"runs/{name}/{rel}").read()
            assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["bytes"]

    fresh = tmp_path / "elsewhere" / "runs"
    out = heron("runs", "import", archive, "--root", fresh, capsys=capsys)
    assert out.startswith(f"imported 2 runs into {fresh}: ")

    out = heron("runs", "list", "--root", fresh, capsys=capsys)
    lines = out.splitlines()
    assert lines[2].split()[:7] == [a.name, "sac", "Pendulum-v1", "finished", "1000", "1", "50.00"]
    assert lines[3].split()[:7] == [b.name, "sac", "Pendulum-v1", "finished", "1000", "3", "450.00"]
    local = [{k: v for k, v in r.items() if k != "path"} for r in query.runs_table(root)]
    imported = [{k: v for k, v in r.items() if k != "path"} for r in query.runs_table(fresh)]
    assert imported == local
    assert metric_rows(fresh) == metric_rows(root) and len(metric_rows(root)) == 60
    assert eval_rows(fresh) == eval_rows(root)

    for run in (a, b):
        moved = fresh / run.name
        assert read_status(moved)["status"] == "finished"
        note = json.loads((moved / "imported.json").read_text())
        assert note["archive"] == "cli.tar.gz" and note["status_at_export"] == "finished"
        assert note["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
        assert (moved / "config.json").read_bytes() == (run.path / "config.json").read_bytes()
        assert not (moved / "tb").exists()
        ckpt = load_latest_checkpoint(moved, STATE)
        want = load_latest_checkpoint(run.path, STATE)
        assert ckpt.step == want.step == 1000
        np.testing.assert_array_equal(ckpt.tree["w"], STATE["w"])
        assert int(ckpt.tree["step"]) == int(want.tree["step"])
        assert ckpt.arrays.keys() == want.arrays.keys()
        for k in ckpt.arrays:
            np.testing.assert_array_equal(ckpt.arrays[k], want.arrays[k])
    assert load_latest_checkpoint(fresh / a.name, STATE).meta == {"buffer_size": 4}

    out = heron("runs", "show", a.name, "--root", fresh, capsys=capsys)
    assert "imported   from cli.tar.gz on " in out and "status     finished" in out
    out = heron("runs", "compare", a.name, b.name, "--root", fresh, capsys=capsys)
    assert "50.00 ± 50.00" in out and "450.00 ± 163.30" in out

    # importing again (or into the root the runs came from) changes nothing
    before = snapshot(fresh)
    out = heron("runs", "import", archive, "--root", fresh, capsys=capsys)
    assert out.startswith(f"imported 0 runs into {fresh}") and f"skipped {a.name} (already in" in out
    assert snapshot(fresh) == before
    before = snapshot(root)
    heron("runs", "import", archive, "--root", root, capsys=capsys)
    assert snapshot(root) == before


def test_export_without_checkpoints_and_force(runs, tmp_path):
    root, a, _, _ = runs
    archive = tmp_path / "a.tar.gz"
    export_runs([a.path], archive)
    with tarfile.open(archive) as tar:
        assert not any("checkpoints" in n for n in tar.getnames())
    with pytest.raises(HeronError, match="exists; pass --force"):
        export_runs([a.path], archive)
    export_runs([a.path], archive, force=True, checkpoints=True)
    with tarfile.open(archive) as tar:
        assert any("checkpoints/step_" in n for n in tar.getnames())
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    for bad, message in (
        (tmp_path / "a.zip", "must end in .tar.gz"),
        (tmp_path / "missing" / "a.tar.gz", "does not exist"),
    ):
        with pytest.raises(HeronError, match=message):
            export_runs([a.path], bad)
    with pytest.raises(HeronError, match="given twice"):
        export_runs([a.name, a.path], tmp_path / "b.tar.gz", root=root)


def test_running_run_is_refused_and_killed_run_exports_as_killed(tmp_path):
    root = tmp_path / "runs"
    live = Run.create(root, "ppo", {"algo": "ppo"}, ["heron"], 0, tensorboard=False)
    live.log(10, {"loss": 1.0})
    with pytest.raises(HeronError, match=f"run {live.name} is still running .*wait for it to finish"):
        export_runs([live.path], tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()
    live.close()
    status = json.loads((live.path / "status.json").read_text())
    status.update(pid=999_999_999)  # the process is gone: killed
    (live.path / "status.json").write_text(json.dumps(status))
    export_runs([live.path], tmp_path / "x.tar.gz")
    result = import_runs(tmp_path / "x.tar.gz", tmp_path / "other")
    assert result.imported == [live.name]
    assert [r["status"] for r in query.runs_table(tmp_path / "other")] == ["killed"]
    assert json.loads((live.path / "status.json").read_text())["status"] == "running"  # source untouched


# -- hostile and broken archives -----------------------------------------------------------


def read_members(archive):
    with tarfile.open(archive) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar.getmembers()]


def write_members(path, members):
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info = tarfile.TarInfo(info.name) if isinstance(info, str) else info
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)


def member(name, type_=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = type_, linkname, 0o644
    return info


def set_file(members, suffix, data, update_manifest=False):
    out = []
    for info, old in members:
        if info.name.endswith(suffix):
            old = data
        out.append((info, old))
    if update_manifest:
        (m, raw), rest = out[0], out[1:]
        manifest = json.loads(raw)
        for run in manifest["runs"]:
            for rel in run["files"]:
                if f"runs/{run['name']}/{rel}".endswith(suffix):
                    run["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        out = [(m, json.dumps(manifest).encode())] + rest
    return out


def _status_running(members):
    name, raw = next((i.name, d) for i, d in members if i.name.endswith("status.json"))
    status = json.loads(raw)
    status["status"] = "running"
    return set_file(members, name, json.dumps(status).encode(), True)


def _corrupt_checkpoint(members):
    name = next(i.name for i, _ in members if i.name.endswith("state.msgpack"))
    data = bytearray(next(d for i, d in members if i.name == name))
    data[-1] ^= 0xFF
    return set_file(members, name, bytes(data), update_manifest=True)  # archive manifest agrees, checkpoint's not


def _checksum(members):
    name = next(i.name for i, _ in members if i.name.endswith("metrics.csv"))
    data = next(d for i, d in members if i.name == name)
    return set_file(members, name, data.replace(b"0.2", b"0.3"))


def _first_run(members):
    return next(i.name.split("/")[1] for i, _ in members if i.name.startswith("runs/"))


MUTATIONS = {
    "symlink": (lambda m: m + [(member(f"runs/{_first_run(m)}/notes.json", tarfile.SYMTYPE, "/etc/passwd"), b"")], "is a symlink"),
    "hardlink": (lambda m: m + [(member(f"runs/{_first_run(m)}/notes.json", tarfile.LNKTYPE, "manifest.json"), b"")], "is a hard link"),
    "device": (lambda m: m + [(member(f"runs/{_first_run(m)}/null.json", tarfile.CHRTYPE), b"")], "character device"),
    "fifo": (lambda m: m + [(member(f"runs/{_first_run(m)}/pipe.json", tarfile.FIFOTYPE), b"")], "FIFO"),
    "dotdot": (lambda m: m + [(member("runs/../evil.json"), b"{}")], "'..' path"),
    "dotdot_deep": (lambda m: m + [(member(f"runs/{_first_run(m)}/../../evil.md"), b"x")], "'..' path"),
    "absolute": (lambda m: m + [(member("/tmp/heron-evil.json"), b"{}")], "absolute path"),
    "checksum": (_checksum, "checksum mismatch in runs/.*/metrics.csv"),
    "size": (lambda m: set_file(m, "eval.csv", b"step,seed,episode,return\n"), "size mismatch in runs/.*/eval.csv"),
    "unlisted": (lambda m: m + [(member(f"runs/{_first_run(m)}/notes.txt"), b"hi")], "notes.txt is not listed in manifest.json"),
    "pickle": (lambda m: m + [(member(f"runs/{_first_run(m)}/state.pkl"), b"\x80\x04.")], "unexpected member .*state.pkl"),
    "imported_marker": (lambda m: m + [(member(f"runs/{_first_run(m)}/imported.json"), b"{}")], "unexpected member"),
    "outside_runs": (lambda m: m + [(member("evil.sh"), b"rm -rf /")], "unexpected member 'evil.sh'"),
    "hidden_run": (lambda m: m + [(member(".hidden/config.json"), b"{}")], "unexpected member"),
    "no_manifest": (lambda m: m[1:], "no manifest.json"),
    "duplicate": (lambda m: m + [m[3]], "appears twice"),
    "missing_file": (lambda m: [x for x in m if not x[0].name.endswith("report.md")], "report.md is listed in manifest.json but missing"),
    "running_status": (_status_running, "says 'running'"),
    "corrupt_checkpoint": (_corrupt_checkpoint, r"checkpoint runs/.*/checkpoints/step_000000001000 is corrupt \(sha256 mismatch in state.msgpack\)"),
    "deep_json": (lambda m: set_file(m, "config.json", b"[" * 5000 + b"]" * 5000, True), "config.json is nested"),
    "bad_json": (lambda m: set_file(m, "provenance.json", b"{not json", True), "provenance.json is not valid JSON"),
}


def import_exit(archive, root, capsys):
    rc = main(["runs", "import", str(archive), "--root", str(root)])
    captured = capsys.readouterr()
    return rc, captured.err


@pytest.fixture
def target(tmp_path):
    """A root that already holds one unrelated run, to check it is left alone."""
    root = tmp_path / "target"
    run = Run.create(root, "dqn", {"algo": "dqn"}, ["heron"], 0, tensorboard=False)
    run.log(1, {"loss": 1.0})
    run.finish()
    return root


def check_refused(archive, root, capsys, message):
    before = snapshot(root)
    rc, err = import_exit(archive, root, capsys)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith(f"heron: error: cannot import {archive}: "), err
    assert re.search(message, err), err
    assert snapshot(root) == before
    return err


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_hostile_archive_is_refused_and_root_unchanged(runs, target, tmp_path, capsys, case):
    _, _, _, good = runs
    mutate, message = MUTATIONS[case]
    bad = tmp_path / f"{case}.tar.gz"
    write_members(bad, mutate(read_members(good)))
    err = check_refused(bad, target, capsys, message)
    assert "nothing was imported" in err
    # a root that did not exist is not left behind either
    check_refused(bad, tmp_path / "new" / "root", capsys, message)


def test_oversized_member_header_is_refused_before_reading(runs, target, tmp_path, capsys):
    _, _, _, good = runs
    manifest_info, manifest = read_members(good)[0]
    huge = member("runs/x-1/metrics.csv")
    huge.size = 5 << 30  # claims 5 GiB; the data is not even there
    raw = manifest_info.tobuf(tarfile.PAX_FORMAT) + manifest + b"\0" * (-len(manifest) % 512)
    raw += huge.tobuf(tarfile.PAX_FORMAT) + b"a" * 512
    bad = tmp_path / "huge.tar.gz"
    bad.write_bytes(gzip.compress(raw))
    check_refused(bad, target, capsys, r"runs/x-1/metrics.csv' is 5368709120 bytes, more than the \d+-byte limit")


def test_limits_apply(runs, target):
    _, _, _, good = runs
    for limits, message in (
        (ImportLimits(max_file_bytes=200), "more than the 200-byte limit"),
        (ImportLimits(max_total_bytes=2000), "more than 2000 bytes in total"),
        (ImportLimits(max_members=3), "more than 3 members"),
        (ImportLimits(max_runs=1), "more than 1 runs"),
        (ImportLimits(max_json_depth=1), "nested more than 1 levels"),
    ):
        before = snapshot(target)
        with pytest.raises(HeronError, match=message):
            import_runs(good, target, limits=limits)
        assert snapshot(target) == before


@pytest.mark.parametrize(
    "case, message",
    [
        ("truncated", "corrupt or truncated archive"),
        ("corrupt", "corrupt or truncated archive|checksum mismatch"),
        ("crc", "corrupt or truncated archive .*CRC"),
        ("text", "not a gzip-compressed tar archive"),
        ("empty", "not a gzip-compressed tar archive"),
        ("gzip_not_tar", "corrupt or truncated archive"),
        ("trailing", "unexpected data after the end"),
    ],
)
def test_broken_archive_is_refused(runs, target, tmp_path, capsys, case, message):
    _, _, _, good = runs
    data = good.read_bytes()
    bad = tmp_path / f"{case}.tar.gz"
    if case == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif case == "corrupt":
        mid = len(data) // 2
        bad.write_bytes(data[:mid] + bytes(b ^ 0x5A for b in data[mid : mid + 64]) + data[mid + 64 :])
    elif case == "crc":
        bad.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:-4]) + data[-4:])
    elif case == "text":
        bad.write_text("config.json\nstatus.json\n")
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "gzip_not_tar":
        bad.write_bytes(gzip.compress(b"hello world " * 100))
    elif case == "trailing":
        bad.write_bytes(gzip.compress(gzip.decompress(data) + os.urandom(2 << 20)))
    check_refused(bad, target, capsys, message)


def test_existing_run_with_other_content_refuses_the_whole_import(runs, tmp_path, capsys):
    _, a, b, archive = runs
    target = tmp_path / "target"
    import_runs(archive, target)
    with open(target / b.name / "metrics.csv", "a") as f:
        f.write("2000,alpha,0.5,0.0\n")
    (target / a.name).rename(target / "moved-away")  # a would be new: still nothing is imported
    err = check_refused(archive, target, capsys, f"run {b.name} already exists in {target} with different content")
    assert "nothing was imported" in err


def test_missing_archive_and_directory(tmp_path, capsys):
    rc, err = import_exit(tmp_path / "nope.tar.gz", tmp_path / "root", capsys)
    assert rc == 2 and "does not exist" in err
    rc, err = import_exit(tmp_path, tmp_path / "root", capsys)
    assert rc == 2 and "not a regular file" in err
    assert not (tmp_path / "root").exists()


def test_stale_import_dir_of_a_dead_process_is_removed(runs, target):
    from heron.tracking.archive import IMPORT_TMP_PREFIX, _host_tag

    _, a, _, archive = runs
    stale = target / f"{IMPORT_TMP_PREFIX}{_host_tag()}-999999999-abc123" / "runs" / a.name
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    mine = target / f"{IMPORT_TMP_PREFIX}{_host_tag()}-{os.getpid()}-abc123"  # a live process's
    mine.mkdir()
    assert len(import_runs(archive, target).imported) == 2
    assert not stale.parent.parent.exists() and mine.is_dir()
    assert sorted(p.name for p in target.iterdir() if p.name.startswith(".")) == [mine.name]
