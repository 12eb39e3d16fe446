"""Queries over many runs with DuckDB (the run files are the store; nothing is hand-scanned).

Views (see `connect`), over every run directory directly under a root:

* ``metrics(run, path, step, name, value, wall_time)`` — all metrics.csv files;
* ``evals(run, path, step, seed, episode, return)`` — all eval.csv files;
* ``runs(name, path, algo, env, status, steps, last_eval_step, last_eval_return,
  best_eval_return, seeds, resumed, start_time, start_unix, end_time, error, hostname, pid,
  config)`` — one row per run: status.json + config.json (read as text and picked apart with
  DuckDB's JSON functions, so differing config schemas never clash) + the eval summary.
  ``status`` is the effective status (``killed`` for a dead ``running`` process on this host,
  via a Python UDF). ``last_eval_return`` is the mean over episodes and seeds at the last
  evaluation step, ``best_eval_return`` the best such mean over steps.
  Finished/failed runs carry their final eval summary in status.json (written by
  `Run.finish`), so only the eval.csv of running/killed runs is aggregated at query time.
  ``steps`` is the larger of the step recorded in status.json (updated every few seconds, at
  checkpoints and at the end) and the last evaluation step — so `runs list` never reads the
  (large) metrics files.

CSV files are read with a fixed schema (``columns=``, no sniffing; heron writes them, so
every file has the same header — ``union_by_name`` would only add a per-file header sniff)
and ``ignore_errors``, so a torn last line of a crashed run is skipped rather than failing
the query. `algo`/`env` come from config keys ``algo`` | ``algorithm`` | ``agent`` and
``env`` | ``env_id`` | ``env.id``.

Speed: `connect` lists the run directories once in Python and gives DuckDB the file lists as
session variables (no glob is expanded per view, bind and query), and reads the small
status.json/config.json files once. Measured with `benchmarks/runs_query.py` (2000 runs):
`runs_table` about half the time of the per-view globs it replaced.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from heron.errors import HeronError
from heron.tracking.metrics import EVAL_FILE, EVAL_METRIC, METRICS_FILE, SEED_SEP
from heron.tracking.run import CONFIG_FILE, STATUS_FILE, check_run_dir, effective_status

METRICS_COLUMNS = "{'step': 'BIGINT', 'name': 'VARCHAR', 'value': 'DOUBLE', 'wall_time': 'DOUBLE'}"
EVAL_COLUMNS = "{'step': 'BIGINT', 'seed': 'INTEGER', 'episode': 'INTEGER', 'return': 'DOUBLE'}"
_CSV_OPTS = "header = true, auto_detect = false, delim = ',', quote = '\"', escape = '\"', filename = true, ignore_errors = true"

RUNS_COLUMNS = (
    "name",
    "path",
    "algo",
    "env",
    "status",
    "steps",
    "last_eval_step",
    "last_eval_return",
    "best_eval_return",
    "seeds",
    "resumed",
    "start_time",
    "start_unix",
    "end_time",
    "error",
    "hostname",
    "pid",
    "config",
)


def _duckdb_connect():
    """An in-memory DuckDB connection without the progress bar.

    DuckDB draws its progress bar on stdout for queries over ~2 s, even when stdout is a file
    or a pipe, so it would end up inside `heron runs sql ... > out.txt`.
    """
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    return con


def _lit(s: str | os.PathLike) -> str:
    """A SQL string literal."""
    return "'" + os.fspath(s).replace("'", "''") + "'"


def _file_source(files: str | Sequence[str]) -> str:
    if isinstance(files, str):
        return _lit(files)
    return "[" + ", ".join(_lit(f) for f in files) + "]"


def _run_of(col: str = "filename") -> str:
    return f"parse_filename(parse_dirpath({col}))"


def _metrics_select(source: str) -> str:
    return (
        f"SELECT {_run_of()} AS run, parse_dirpath(filename) AS path, step, name, value, wall_time "
        f"FROM read_csv({source}, columns = {METRICS_COLUMNS}, {_CSV_OPTS})"
    )


def _evals_select(source: str) -> str:
    return (
        f"SELECT {_run_of()} AS run, parse_dirpath(filename) AS path, step, seed, episode, \"return\" "
        f"FROM read_csv({source}, columns = {EVAL_COLUMNS}, {_CSV_OPTS})"
    )


_EMPTY = {
    "metrics": "SELECT NULL::VARCHAR AS run, NULL::VARCHAR AS path, NULL::BIGINT AS step, "
    "NULL::VARCHAR AS name, NULL::DOUBLE AS value, NULL::DOUBLE AS wall_time WHERE false",
    "evals": "SELECT NULL::VARCHAR AS run, NULL::VARCHAR AS path, NULL::BIGINT AS step, "
    'NULL::INTEGER AS seed, NULL::INTEGER AS episode, NULL::DOUBLE AS "return" WHERE false',
    "text": "SELECT NULL::VARCHAR AS filename, NULL::VARCHAR AS content WHERE false",
}


def _status_udf(status: str | None, hostname: str | None, pid, ticks) -> str | None:
    if status is None:
        return None
    return effective_status(
        {
            "status": status,
            "hostname": hostname,
            "pid": None if pid is None else int(pid),
            "pid_start_ticks": None if ticks is None else int(ticks),
        }
    )


_RUNS_VIEW = """
CREATE VIEW runs AS
WITH st AS (
    SELECT parse_dirpath(filename) AS path,
           CASE WHEN json_valid(content) THEN content END AS s
    FROM status_files
), cf AS (
    SELECT parse_dirpath(filename) AS path,
           CASE WHEN json_valid(content) THEN content END AS c
    FROM config_files
), ev AS (
    SELECT path, step, avg("return") AS ret FROM evals_live GROUP BY path, step
), evs AS (
    SELECT path, max(step) AS last_eval_step, arg_max(ret, step) AS last_eval_return,
           max(ret) AS best_eval_return
    FROM ev GROUP BY path
), j AS (
    SELECT st.path, s,
           coalesce(TRY_CAST(json_extract(s, '$.eval.last_step') AS BIGINT), evs.last_eval_step)
               AS last_eval_step,
           coalesce(TRY_CAST(json_extract(s, '$.eval.last_mean') AS DOUBLE), evs.last_eval_return)
               AS last_eval_return,
           coalesce(TRY_CAST(json_extract(s, '$.eval.best_mean') AS DOUBLE), evs.best_eval_return)
               AS best_eval_return,
           TRY_CAST(json_extract(s, '$.step') AS BIGINT) AS status_step
    FROM st LEFT JOIN evs USING (path)
)
SELECT
    parse_filename(j.path) AS name,
    j.path AS path,
    coalesce(json_extract_string(c, '$.algo'), json_extract_string(c, '$.algorithm'),
             json_extract_string(c, '$.agent')) AS algo,
    coalesce(json_extract_string(c, '$.env.id'), json_extract_string(c, '$.env_id'),
             json_extract_string(c, '$.env')) AS env,
    heron_status(json_extract_string(s, '$.status'), json_extract_string(s, '$.hostname'),
                 TRY_CAST(json_extract(s, '$.pid') AS BIGINT),
                 TRY_CAST(json_extract(s, '$.pid_start_ticks') AS BIGINT)) AS status,
    CASE WHEN status_step IS NULL THEN last_eval_step
         WHEN last_eval_step IS NULL THEN status_step
         ELSE greatest(status_step, last_eval_step)
    END AS steps,
    last_eval_step,
    last_eval_return,
    best_eval_return,
    TRY_CAST(json_extract(c, '$.seeds') AS BIGINT) AS seeds,
    TRY_CAST(json_extract(s, '$.resumed') AS BIGINT) AS resumed,
    json_extract_string(s, '$.start_time') AS start_time,
    TRY_CAST(json_extract(s, '$.start_unix') AS DOUBLE) AS start_unix,
    json_extract_string(s, '$.end_time') AS end_time,
    json_extract_string(s, '$.error') AS error,
    json_extract_string(s, '$.hostname') AS hostname,
    TRY_CAST(json_extract(s, '$.pid') AS BIGINT) AS pid,
    c AS config
FROM j LEFT JOIN cf USING (path)
"""

# Runs whose eval summary is not cached in status.json (not final, or written before the
# cache existed): their eval.csv is aggregated live.
_LIVE_RUNS = """
SELECT parse_dirpath(filename) FROM status_files
WHERE NOT coalesce(json_valid(content)
                   AND json_extract_string(content, '$.status') IN ('finished', 'failed')
                   AND json_exists(content, '$.eval'), false)
"""


_SCANNED_FILES = (STATUS_FILE, CONFIG_FILE, METRICS_FILE, EVAL_FILE)


def _scan_root(base: str) -> dict[str, list[str]]:
    """``{file name: [paths]}`` of the run files in each directory directly under `base`.

    The same set as the glob ``{base}/*/{name}`` (one ``listdir`` per run directory), found once
    per connection instead of each view expanding its own glob at every bind and query.
    """
    found: dict[str, list[str]] = {f: [] for f in _SCANNED_FILES}
    with os.scandir(base) as it:
        dirs = sorted(e.name for e in it if e.is_dir())
    for name in dirs:
        d = f"{base}/{name}"
        try:
            present = set(os.listdir(d))
        except OSError:  # removed or unreadable meanwhile
            continue
        for fname in _SCANNED_FILES:
            if fname in present:
                found[fname].append(f"{d}/{fname}")
    return found


def _read_texts(paths: list[str]) -> tuple[list[str], list[str]]:
    """(paths, contents) of the files that could be read (a run deleted meanwhile is skipped)."""
    kept, texts = [], []
    for p in paths:
        try:
            with open(p, "rb") as f:
                texts.append(f.read().decode("utf-8", errors="replace"))
        except OSError:
            continue
        kept.append(p)
    return kept, texts


def connect(root: str | os.PathLike):
    """An in-memory DuckDB connection with the views ``metrics``, ``evals`` and ``runs``.

    The run files are found once (`_scan_root`) and handed to DuckDB as session variables
    (``heron_*_files``); status.json and config.json are read once here (they are small) and
    passed as text. So the views see the runs that existed at `connect` time, and the metrics
    and eval CSV files are read by DuckDB only when a query uses them.
    """
    root = Path(root)
    if not root.is_dir():
        raise HeronError(
            f"runs root {root} does not exist; train a run first (`heron train`), or point "
            "--root DIR / $HERON_RUNS_DIR at the directory holding the runs"
        )
    con = _duckdb_connect()
    con.create_function(
        "heron_status",
        _status_udf,
        ["VARCHAR", "VARCHAR", "BIGINT", "BIGINT"],
        "VARCHAR",
        null_handling="special",
        side_effects=True,
    )
    files = _scan_root(os.fspath(root.resolve()))

    def variable(name: str, value: list[str]) -> str:
        con.execute(f"SET VARIABLE {name} = ?::VARCHAR[]", [value])
        return f"getvariable('{name}')"

    for view, fname, select, empty in (
        ("metrics", METRICS_FILE, _metrics_select, "metrics"),
        ("evals", EVAL_FILE, _evals_select, "evals"),
    ):
        paths = files[fname]
        body = select(variable(f"heron_{view}_files", paths)) if paths else _EMPTY[empty]
        con.execute(f"CREATE VIEW {view} AS {body}")
    for view, fname in (("status_files", STATUS_FILE), ("config_files", CONFIG_FILE)):
        paths, texts = _read_texts(files[fname])
        if paths:
            p, t = variable(f"heron_{view}_paths", paths), variable(f"heron_{view}_texts", texts)
            body = f"SELECT unnest({p}) AS filename, unnest({t}) AS content"
        else:
            body = _EMPTY["text"]
        con.execute(f"CREATE VIEW {view} AS {body}")
    eval_files = set(files[EVAL_FILE])
    live = [f"{p}/{EVAL_FILE}" for (p,) in con.execute(_LIVE_RUNS).fetchall() if f"{p}/{EVAL_FILE}" in eval_files]
    body = _evals_select(variable("heron_evals_live_files", live)) if live else _EMPTY["evals"]
    con.execute(f"CREATE VIEW evals_live AS {body}")
    con.execute(_RUNS_VIEW)
    return con


def runs_table(root: str | os.PathLike) -> list[dict]:
    """One dict per run under `root` (keys: RUNS_COLUMNS), oldest first."""
    con = connect(root)
    try:
        cols = ", ".join(RUNS_COLUMNS)
        rows = con.execute(f"SELECT {cols} FROM runs ORDER BY start_unix NULLS LAST, name").fetchall()
    finally:
        con.close()
    return [dict(zip(RUNS_COLUMNS, row)) for row in rows]


def sql(root: str | os.PathLike, query: str) -> tuple[list[str], list[tuple]]:
    """Run free-form SQL over the views ``metrics``, ``evals``, ``runs``: (columns, rows)."""
    import duckdb

    con = connect(root)
    try:
        try:
            cur = con.execute(query)
        except duckdb.Error as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise HeronError(
                f"SQL error: {first}; the views are metrics(run, path, step, name, value, "
                "wall_time), evals(run, path, step, seed, episode, return), runs("
                + ", ".join(RUNS_COLUMNS)
                + ")"
            ) from None
        if cur.description is None:
            return [], []
        columns = [d[0] for d in cur.description]
        return columns, cur.fetchall()
    finally:
        con.close()


# -- per-run series ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetricSeries:
    """One metric of one run: ``values[t, s]`` at ``steps[t]`` for seed column ``s``.

    ``seeds`` is None when the run logged only the aggregate (then ``values`` has one
    column); for ``eval/return`` each column is one seed's mean episode return.
    """

    run_dir: str
    name: str
    steps: np.ndarray
    values: np.ndarray
    seeds: list[int] | None

    @property
    def mean(self) -> np.ndarray:
        return np.nanmean(self.values, axis=1)

    @property
    def std(self) -> np.ndarray:
        if self.values.shape[1] < 2:
            return np.zeros(len(self.steps))
        return np.nanstd(self.values, axis=1)


def _dirs(run_dirs: Sequence[str | os.PathLike]) -> list[str]:
    return [os.fspath(check_run_dir(d).resolve()) for d in run_dirs]


def _existing(dirs: list[str], fname: str) -> list[str]:
    return [f"{d}/{fname}" for d in dirs if os.path.isfile(f"{d}/{fname}")]


def available_metrics(run_dirs: Sequence[str | os.PathLike]) -> dict[str, list[str]]:
    """Metric names per run dir (``/seed{i}`` variants folded), ``eval/return`` if evaluated."""
    dirs = _dirs(run_dirs)
    out: dict[str, set[str]] = {d: set() for d in dirs}
    con = _duckdb_connect()
    try:
        files = _existing(dirs, METRICS_FILE)
        if files:
            rows = con.execute(
                f"SELECT DISTINCT path, regexp_replace(name, '{SEED_SEP}[0-9]+$', '') "
                f"FROM ({_metrics_select(_file_source(files))})"
            ).fetchall()
            for path, name in rows:
                out[path].add(name)
        files = _existing(dirs, EVAL_FILE)
        if files:
            rows = con.execute(
                f"SELECT DISTINCT path FROM ({_evals_select(_file_source(files))})"
            ).fetchall()
            for (path,) in rows:
                out[path].add(EVAL_METRIC)
    finally:
        con.close()
    return {d: sorted(names) for d, names in out.items()}


def metric_series(run_dirs: Sequence[str | os.PathLike], name: str) -> dict[str, MetricSeries]:
    """`name` (``eval/return`` reads eval.csv) for each run dir, keyed by resolved run dir.

    Per-seed series ``name/seed{i}`` are used when present (one column per seed); duplicate
    (step, name) rows keep the last written. HeronError if a run lacks the metric.
    """
    dirs = _dirs(run_dirs)
    con = _duckdb_connect()
    try:
        if name == EVAL_METRIC:
            files = _existing(dirs, EVAL_FILE)
            rows = (
                con.execute(
                    f"SELECT path, step, seed, avg(\"return\") FROM ({_evals_select(_file_source(files))}) "
                    "GROUP BY path, step, seed ORDER BY path, step, seed"
                ).fetchall()
                if files
                else []
            )
            per_seed = {(p, st, int(sd)): v for p, st, sd, v in rows}
            aggregate: dict = {}
        else:
            files = _existing(dirs, METRICS_FILE)
            prefix = name + SEED_SEP
            rows = (
                con.execute(
                    f"SELECT path, step, name, arg_max(value, wall_time) "
                    f"FROM ({_metrics_select(_file_source(files))}) "
                    "WHERE name = $name OR (starts_with(name, $prefix) AND "
                    "regexp_full_match(substr(name, length($prefix) + 1), '[0-9]+')) "
                    "GROUP BY path, step, name ORDER BY path, step",
                    {"name": name, "prefix": prefix},
                ).fetchall()
                if files
                else []
            )
            per_seed, aggregate = {}, {}
            for p, st, n, v in rows:
                if n == name:
                    aggregate[(p, st)] = v
                else:
                    per_seed[(p, st, int(n[len(prefix) :]))] = v
    finally:
        con.close()

    out: dict[str, MetricSeries] = {}
    missing = []
    for d in dirs:
        seeds = sorted({s for (p, _, s) in per_seed if p == d})
        if seeds:
            steps = np.array(sorted({st for (p, st, _) in per_seed if p == d}), dtype=np.int64)
            index = {int(st): i for i, st in enumerate(steps)}
            col = {s: j for j, s in enumerate(seeds)}
            values = np.full((len(steps), len(seeds)), np.nan)
            for (p, st, s), v in per_seed.items():
                if p == d:
                    values[index[int(st)], col[s]] = v
            out[d] = MetricSeries(d, name, steps, values, seeds)
        else:
            pts = sorted((st, v) for (p, st), v in aggregate.items() if p == d)
            if not pts:
                missing.append(d)
                continue
            steps = np.array([st for st, _ in pts], dtype=np.int64)
            values = np.array([[v] for _, v in pts], dtype=np.float64)
            out[d] = MetricSeries(d, name, steps, values, None)
    if missing:
        avail = available_metrics(missing)
        d = missing[0]
        names = ", ".join(avail[d]) or "none (nothing logged yet)"
        raise HeronError(f"run {Path(d).name} has no metric {name!r}; available: {names}")
    return out


def last_metric_values(run_dir: str | os.PathLike) -> list[tuple[str, int, float]]:
    """(name, step, value) of the last logged value of every metric of one run."""
    d = _dirs([run_dir])[0]
    files = _existing([d], METRICS_FILE)
    if not files:
        return []
    con = _duckdb_connect()
    try:
        return con.execute(
            f"SELECT name, max(step), arg_max(value, step) FROM ({_metrics_select(_file_source(files))}) "
            "GROUP BY name ORDER BY name"
        ).fetchall()
    finally:
        con.close()


def eval_summary(run_dir: str | os.PathLike) -> dict | None:
    """{last_step, last_mean, last_std, best_step, best_mean, evaluations, episodes} or None.

    Means are over all episodes and seeds of one evaluation step; ``last_std`` is the spread
    across seeds (of their per-seed means) when the run has several seeds, else across
    episodes.
    """
    d = _dirs([run_dir])[0]
    if not os.path.isfile(f"{d}/{EVAL_FILE}"):
        return None
    con = _duckdb_connect()
    try:
        rows = con.execute(
            f"SELECT step, seed, avg(\"return\"), stddev_pop(\"return\"), count(*) "
            f"FROM ({_evals_select(_lit(f'{d}/{EVAL_FILE}'))}) GROUP BY step, seed ORDER BY step, seed"
        ).fetchall()
    finally:
        con.close()
    if not rows:
        return None
    by_step: dict[int, list] = {}
    for step, _seed, mean, std, n in rows:
        by_step.setdefault(step, []).append((mean, std, n))
    means = {st: float(np.average([m for m, _, _ in v], weights=[n for _, _, n in v])) for st, v in by_step.items()}
    last = max(by_step)
    best = max(means, key=lambda st: means[st])
    seeds_last = by_step[last]
    last_std = (
        float(np.std([m for m, _, _ in seeds_last])) if len(seeds_last) > 1 else float(seeds_last[0][1] or 0.0)
    )
    return {
        "last_step": int(last),
        "last_mean": means[last],
        "last_std": last_std,
        "best_step": int(best),
        "best_mean": means[best],
        "evaluations": len(by_step),
        "seeds": len(seeds_last),
        "episodes": int(sum(r[4] for r in rows)),
    }


def eval_rows(run_dir: str | os.PathLike) -> list[tuple[int, list[float]]]:
    """(step, every episode return of that evaluation, seed-major) for one run, by step."""
    d = _dirs([run_dir])[0]
    if not os.path.isfile(f"{d}/{EVAL_FILE}"):
        return []
    con = _duckdb_connect()
    try:
        rows = con.execute(
            f"SELECT step, list(\"return\" ORDER BY seed, episode) "
            f"FROM ({_evals_select(_lit(f'{d}/{EVAL_FILE}'))}) GROUP BY step ORDER BY step"
        ).fetchall()
    finally:
        con.close()
    return [(int(step), list(values)) for step, values in rows]
