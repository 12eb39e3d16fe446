"""`heron bench report SUITE`: learning curves, final scores and rliable aggregates of a suite.

Scores. A run's final score is the mean return of its last evaluation (per seed), normalised as
100 (R − random) / (expert − random) with the suite's references for env tasks (those of its eval_env
for a cell evaluated in another env than it acts in) and the dataset's
ref_min_score / ref_max_score for dataset tasks. Where a task has neither, its raw returns are
shown and it is left out of the aggregates (raw returns of different tasks do not add up).

Aggregates (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice", through the
rliable library): over the runs × tasks score matrix of each algorithm, the interquartile mean
(IQM), median (of the per-task means, rliable's definition), mean and optimality gap (γ = 100, the
expert), each with a 95% stratified
percentile-bootstrap confidence interval (tasks are strata; `reps` resamples); performance profiles
(fraction of runs with score > τ, with bootstrap bands); and the probability of improvement
P(X > Y) for every pair of algorithms with its interval. The bootstrap draws from a NumPy
RandomState seeded by `seed`, so a report is reproducible. Outputs: report.md, report.html,
PNGs and scores.json (per-run final scores, also the format of shipped reference results) under
SUITE_DIR/report/.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heron import _fs
from heron.errors import HeronError
from heron.experiments.bench import Suite, cell_status, shipped_reference_file, slug


@dataclass
class RunScores:
    algo: str
    """The cell's label (the algorithm, plus its switch rule when the suite names one)."""
    task: str
    seeds: list[int]
    final: list[float]
    """Per seed: final score (normalised when the task has references, else raw return)."""
    curve_steps: list[int]
    curve: list[list[float]]
    """[evaluation][seed] score at each evaluation step."""
    normalised: bool
    run: str
    data: str | None = None
    """SHA-256 of the dataset's data file the run learnt from (None for env-only runs)."""
    settings: dict | None = None
    """The agent's resolved hyperparameters (the run config's "agent")."""


def data_digest(run_config: dict) -> str | None:
    """The SHA-256 of a run's dataset file, from the fingerprint its config records: the data alone, since
    what else the dataset directory holds (e.g. heron.json's build record) may differ for the same data."""
    from heron.data.minari_io import DATA_FILE

    sha = (run_config.get("dataset") or {}).get("sha256") or {}
    return sha.get(DATA_FILE) or sha.get("file")


def score_normaliser(dataset_info: dict, references: tuple[float, float] | None = None):
    """Normalised score 100 (R − random) / (expert − random): the given references, else the
    dataset's ref_min_score / ref_max_score (a run config's "dataset" entry); None when there are neither."""
    lo, hi = references or (dataset_info.get("ref_min_score"), dataset_info.get("ref_max_score"))
    if lo is None or hi is None or hi == lo:
        return None
    return lambda r: 100.0 * (np.asarray(r, np.float64) - lo) / (hi - lo)


def per_seed_scores(run_dir: Path, seeds: int, references: tuple[float, float] | None = None,
                    config: dict | None = None) -> tuple[list[int], np.ndarray, bool]:
    """(evaluation steps, [evaluations, seeds] mean return of each seed, normalised?) of a run; `config`: its
    config.json when the caller has read it already."""
    from heron.tracking.query import eval_rows
    from heron.tracking.run import CONFIG_FILE

    rows = eval_rows(run_dir)
    config = config if config is not None else _fs.read_json(Path(run_dir) / CONFIG_FILE)
    norm = score_normaliser(config.get("dataset") or {}, references)
    curve = np.array([np.asarray(returns, np.float64).reshape(seeds, -1).mean(axis=1) for _, returns in rows])
    return [int(s) for s, _ in rows], norm(curve) if norm else curve, norm is not None


def collect_scores(suite: Suite, root: Path) -> tuple[list[RunScores], list[str]]:
    """Finished runs of the suite's cells, and the keys of the cells that have none."""
    from heron.tracking.run import CONFIG_FILE

    scores, missing = [], []
    for cell in suite.cells:
        state, path = cell_status(root, cell)
        config = _fs.read_json(Path(path) / CONFIG_FILE) if state == "finished" else {}
        steps, curve, normalised = per_seed_scores(path, len(cell.seeds), suite.references_for(cell), config) \
            if state == "finished" else ([], np.zeros((0, 0)), False)
        if not steps:
            missing.append(cell.key)
            continue
        scores.append(RunScores(cell.label, cell.task, list(cell.seeds), curve[-1].tolist(), steps, curve.tolist(),
                                normalised, str(path), data_digest(config), config.get("agent")))
    return scores, missing


def score_matrices(scores: list[RunScores], task: str | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """algo → [runs, tasks] normalised final scores / 100: over the tasks every algorithm ran (or over
    one `task` and the algorithms that ran it). Each algorithm keeps its own number of runs, trimmed
    to its smallest count over those tasks (rliable needs a full matrix per algorithm, not the same
    count for all: one algorithm with a single finished run must not cut the others to one)."""
    by: dict[tuple[str, str], list[float]] = {}
    for s in scores:
        if s.normalised and task in (None, s.task):
            by.setdefault((s.algo, s.task), []).extend(s.final)
    algos = sorted({a for a, _ in by})
    tasks = sorted({t for _, t in by if all((a, t) in by for a in algos)})
    if not algos or not tasks:
        return {}, []
    runs = {a: min(len(by[(a, t)]) for t in tasks) for a in algos}
    return {a: np.array([[by[(a, t)][i] / 100.0 for t in tasks] for i in range(runs[a])]) for a in algos}, tasks


def _interval_estimates(scores: dict, func, reps: int, seed: int):
    """rliable's stratified bootstrap, reproducible from `seed`.

    rliable's bootstraps draw their resampling indices from NumPy's global generator
    (`np.random.choice` in `update_indices`), not from the `random_state` they are given, so the
    global generator is seeded for the call and restored after it. (arch's FutureWarning about
    passing a RandomState is rliable's to fix, not the user's.)"""
    import warnings

    from rliable import library

    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return library.get_interval_estimates(scores, func, reps=reps, random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(saved)


def aggregates(matrices: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, dict[str, list[float]]]:
    """algo → metric → [point, ci_low, ci_high] (normalised score ×100)."""
    from rliable import metrics

    def agg(x):
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x),
                         metrics.aggregate_optimality_gap(x, 1.0)])

    points, cis = _interval_estimates(matrices, agg, reps, seed)
    names = ("IQM", "median", "mean", "optimality gap")
    return {a: {m: [100 * float(points[a][i]), 100 * float(cis[a][0][i]), 100 * float(cis[a][1][i])]
                for i, m in enumerate(names)} for a in matrices}


def probability_of_improvement(matrices: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, list[float]]:
    """"X,Y" → [P(X > Y), ci_low, ci_high] for every ordered pair of algorithms (X before Y)."""
    from rliable import metrics

    algos = sorted(matrices)
    pairs = {f"{x},{y}": (matrices[x], matrices[y]) for i, x in enumerate(algos) for y in algos[i + 1:]}
    if not pairs:
        return {}
    points, cis = _interval_estimates(pairs, metrics.probability_of_improvement, reps, seed + 1)
    return {k: [float(points[k]), *map(float, np.ravel(cis[k]))] for k in pairs}


def performance_profiles(matrices: dict[str, np.ndarray], reps: int, seed: int):
    top = max(1.0, max(float(m.max()) for m in matrices.values()))
    taus = np.linspace(min(0.0, min(float(m.min()) for m in matrices.values())), top, 41)
    points, cis = _interval_estimates(matrices, lambda x: np.array([np.mean(x > t) for t in taus]), reps, seed + 2)
    return taus, points, cis


# -- plots ----------------------------------------------------------------------------------------

def _plot_curves(scores: list[RunScores], task: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for algo in sorted({s.algo for s in scores if s.task == task}):
        runs = [s for s in scores if s.task == task and s.algo == algo]
        steps = runs[0].curve_steps
        runs = [r for r in runs if r.curve_steps == steps]
        per_seed = np.concatenate([np.asarray(r.curve).T for r in runs])  # [seeds, evals]
        mean = per_seed.mean(axis=0)
        ax.plot(steps, mean, label=f"{algo} ({len(per_seed)} seeds)")
        if len(per_seed) > 1:
            stderr = per_seed.std(axis=0, ddof=1) / math.sqrt(len(per_seed))
            ax.fill_between(steps, mean - 1.96 * stderr, mean + 1.96 * stderr, alpha=0.2)
    normalised = any(s.normalised for s in scores if s.task == task)
    ax.set(title=task, xlabel="step (env steps; updates for offline runs)",
           ylabel="normalised score" if normalised else "return")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"curve_{slug(task)}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_aggregates(agg, profiles, poi, out: Path, suffix: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    paths = []
    names = ["IQM", "median", "mean", "optimality gap"]
    points = {a: np.array([agg[a][m][0] for m in names]) for a in agg}
    cis = {a: np.array([[agg[a][m][1] for m in names], [agg[a][m][2] for m in names]]) for a in agg}
    fig, _ = plot_utils.plot_interval_estimates(points, cis, metric_names=names, algorithms=sorted(agg),
                                                xlabel="normalised score", xlabel_y_coordinate=-0.4)
    paths.append(out / f"aggregates{suffix}.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    taus, prof, prof_ci = profiles
    fig, ax = plt.subplots(figsize=(6, 3.6))
    plot_utils.plot_performance_profiles(prof, taus * 100, performance_profile_cis=prof_ci, ax=ax,
                                         xlabel=r"normalised score ($\tau$)")
    ax.legend(fontsize=8)
    paths.append(out / f"performance_profile{suffix}.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    if poi:
        p = {k: v[0] for k, v in poi.items()}
        ci = {k: np.array([v[1], v[2]]) for k, v in poi.items()}
        ax = plot_utils.plot_probability_of_improvement(p, ci, figsize=(5, 0.6 + 0.5 * len(p)))
        paths.append(out / f"probability_of_improvement{suffix}.png")
        ax.figure.savefig(paths[-1], dpi=110, bbox_inches="tight")
        plt.close(ax.figure)
    return paths


# -- the report -----------------------------------------------------------------------------------

def load_reference(suite_name: str) -> dict | None:
    """Shipped reference results of a suite (heron/suites/NAME.reference.json), if any."""
    path = shipped_reference_file(suite_name)
    return json.loads(path.read_text()) if path is not None else None


def reference_data_caveat(ours: dict[str, str], reference: dict) -> list[str]:
    """Report lines saying where the shipped reference learnt from other data than these runs. Datasets are
    built where they are used (`heron data suite make`), and a build is byte-identical on one machine but not
    across CPUs (floating point differs, so the data-collecting agent does), so the same task name can hold
    other data."""
    if not ours:
        return []
    recorded = reference.get("datasets")
    if recorded is None:
        return ["", "The reference does not record which data it learnt from: if your datasets were built on "
                    "another kind of CPU than the reference's, they hold other data and its scores are only a guide."]
    other = sorted(t for t, digest in ours.items() if recorded.get(t) not in (None, digest))
    unknown = sorted(t for t in ours if t not in recorded)
    lines = [""]
    if other:
        lines.append(f"**The reference learnt from other data** for {', '.join(other)} (the dataset files' digests "
                     f"differ: built on another kind of CPU, a dataset holds other data), so its scores there are only "
                     f"a guide; your own runs on one set of files are the fair comparison.")
    if unknown:
        lines.append(f"The reference does not record which data it learnt from for {', '.join(unknown)}.")
    if not other and not unknown:
        lines.append("The reference learnt from the same data as these runs (same dataset file digests).")
    return lines


def reference_settings_caveat(ours: dict[str, dict], reference: dict) -> list[str]:
    """Report lines naming the cells whose shipped reference ran other agent settings than these runs: a
    default changed since the reference was made, or a setting it predates (e.g. CQL's weight_init, added
    when CQL moved from Flax's init to PyTorch's), so its scores there measure other code."""
    if not ours:
        return []
    recorded = reference.get("settings")
    if recorded is None:
        return ["", "The reference does not record its runs' agent settings: a default changed since it was made "
                    "would not show here."]
    notes = []
    for cell, mine in sorted(ours.items()):
        theirs = recorded.get(cell)
        if theirs is None:
            continue
        changed = [f"{k} {mine[k]!r} (reference {theirs[k]!r})" for k in mine if k in theirs and mine[k] != theirs[k]]
        changed += [f"{k} {mine[k]!r} (the reference predates it)" for k in mine if k not in theirs]
        if changed:
            notes.append(f"{cell.replace('|', ' on ')}: {', '.join(changed)}")
    if not notes:
        return ["", "The reference ran the same agent settings as these runs."]
    return ["", "**The reference ran other agent settings** (its scores there measure other code): " + "; ".join(notes)
            + "."]


def _fmt(x: float) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.1f}"


def switch_table(scores: list[RunScores]) -> list[dict]:
    """Offline→online runs: per method and task, the switch metrics of each run's finetune.json
    (pre-switch score, dip % of it, env steps until the online curve is back to it, final score),
    normalised with the dataset's references like the cells' final scores. The dip is a median: it
    divides by the pre-switch score, so one run that scored near 0 before the switch would swamp a mean."""
    from heron.experiments.finetune import SUMMARY_FILE

    by: dict[tuple[str, str], list[dict]] = {}
    for s in scores:
        path = Path(s.run) / SUMMARY_FILE
        summary = _fs.read_json(path) if path.is_file() else {}
        if "pre_switch_score" in summary:  # none when the run had no offline evaluation (e.g. RLPD from scratch)
            by.setdefault((s.algo, s.task), []).append(summary)
    rows = []
    for (algo, task), runs in by.items():
        recovered = [r["steps_to_recover"] for r in runs if r.get("steps_to_recover") is not None]
        rows.append({"algo": algo, "task": task, "runs": len(runs),
                     "pre_switch": float(np.mean([r["pre_switch_score"] for r in runs])),
                     "dip_percent": float(np.median([r["dip_percent"] for r in runs])),
                     "dip_percent_max": float(np.max([r["dip_percent"] for r in runs])),
                     "recovered": len(recovered),
                     "steps_to_recover_median": float(np.median(recovered)) if recovered else None,
                     "final": float(np.mean([r["final_score"] for r in runs]))})
    return rows


def write_report(suite: Suite, root: Path, *, reps: int = 5000, seed: int = 0) -> Path:
    """Write SUITE_DIR/report/{report.md, report.html, *.png, scores.json}; returns report.md."""
    if reps < 100:
        raise HeronError(f"--reps must be >= 100 for a meaningful bootstrap, got {reps}")
    scores, missing = collect_scores(suite, root)
    if not scores:
        raise HeronError(f"suite {suite.name} has no finished runs under {root}: run it first "
                         f"(`heron bench run {suite.name}`)")
    out = root / "report"
    out.mkdir(parents=True, exist_ok=True)
    tasks = [t for t in suite.tasks if any(s.task == t for s in scores)]
    curve_pngs = [_plot_curves(scores, t, out) for t in tasks]
    # aggregates over the tasks every algorithm ran, then per task (when there is more than one)
    groups = []
    matrices, agg_tasks = score_matrices(scores)
    if matrices:
        groups.append(("all tasks", "", matrices, agg_tasks))
    if len(tasks) > 1 or not matrices:
        for t in tasks:
            m, ts = score_matrices(scores, t)
            if m:
                groups.append((t, f"_{slug(t)}", m, ts))
    results = []
    for label, suffix, m, ts in groups:
        agg = aggregates(m, reps, seed)
        poi = probability_of_improvement(m, reps, seed)
        pngs = _plot_aggregates(agg, performance_profiles(m, reps, seed), poi, out, suffix)
        results.append({"label": label, "tasks": ts, "runs": {a: int(x.shape[0]) for a, x in m.items()},
                        "aggregates": agg, "probability_of_improvement": poi, "pngs": pngs})
    reference = load_reference(suite.name)

    # final-score table: algo × task, mean ± std over seeds (and the reference's, when shipped)
    table = []
    for algo in suite.algos:
        for task in tasks:
            finals = [x for s in scores if s.algo == algo and s.task == task for x in s.final]
            if not finals:
                continue
            ref = ((reference or {}).get("final") or {}).get(f"{algo}|{task}")
            table.append({"algo": algo, "task": task, "seeds": len(finals), "mean": float(np.mean(finals)),
                          "std": float(np.std(finals)), "min": float(np.min(finals)), "max": float(np.max(finals)),
                          "normalised": any(s.normalised for s in scores if s.task == task),
                          "reference_mean": float(np.mean(ref)) if ref else None,
                          "reference_seeds": len(ref) if ref else 0})
    from heron.tracking.provenance import cpu_model, heron_source_commit, package_version

    made = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "heron": package_version("heron"),
            "git_commit": heron_source_commit()}
    summary = {"suite": suite.name, "made": made, "reps": reps, "seed": seed,
               "aggregates": {r["label"]: {k: r[k] for k in ("tasks", "runs", "aggregates", "probability_of_improvement")}
                              for r in results},
               "table": table, "switch": switch_table(scores), "missing_cells": missing,
               "final": {f"{s.algo}|{s.task}": [] for s in scores},
               "datasets": {s.task: s.data for s in scores if s.data},
               "settings": {f"{s.algo}|{s.task}": s.settings for s in scores if s.settings is not None}}
    for s in scores:
        summary["final"][f"{s.algo}|{s.task}"].extend(s.final)
    _fs.atomic_write_json(out / "scores.json", summary)

    md = [f"# Benchmark suite `{suite.name}`", "", suite.description, "",
          f"{len(scores)} finished runs of {len(suite.cells)} cells"
          + (f"; {len(missing)} cells not finished yet ({', '.join(missing[:5])}{' …' if len(missing) > 5 else ''})"
             if missing else "") + ".", "",
          "## Final scores", "",
          "Mean ± std over seeds of the last evaluation (normalised score where the task has references, "
          "else return)" + (f"; alongside, the shipped reference results (made {reference['made']['date']} on "
                            f"{reference['made']['cpu']}, heron {reference['made']['git_commit'] or '?'})."
                            if reference else "."), "",
          "| algorithm | task | seeds | mean ± std | min | max |" + (" reference mean (seeds) |" if reference else ""),
          "|---|---|---|---|---|---|" + ("---|" if reference else "")]
    for r in table:
        line = (f"| {r['algo']} | {r['task']} | {r['seeds']} | {_fmt(r['mean'])} ± {_fmt(r['std'])} | "
                f"{_fmt(r['min'])} | {_fmt(r['max'])} |")
        if reference:
            line += f" {_fmt(r['reference_mean'])} ({r['reference_seeds']}) |" if r["reference_mean"] is not None \
                else " — |"
        md.append(line)
    if reference:
        md += reference_data_caveat(summary["datasets"], reference)
        md += reference_settings_caveat(summary["settings"], reference)
    if summary["switch"]:
        md += ["", "## The switch (offline→online runs)", "",
               "From each run's `finetune.json`: the last offline evaluation (mean over runs), the dip (how far the "
               "online evaluations fall below it before first reaching it again, % of it; median and worst run), "
               "how many runs got back to it and the median env steps that took, and the final score (mean).", "",
               "| method | task | runs | before the switch | dip (median / worst) | recovered | median steps to recover | final |",
               "|---|---|---|---|---|---|---|---|"]
        for r in summary["switch"]:
            median = r["steps_to_recover_median"]
            steps = f"{median:.0f}" if median is not None else "—"  # env steps: a whole number
            md.append(f"| {r['algo']} | {r['task']} | {r['runs']} | {_fmt(r['pre_switch'])} | "
                      f"{_fmt(r['dip_percent'])}% / {_fmt(r['dip_percent_max'])}% | {r['recovered']}/{r['runs']} | "
                      f"{steps} | {_fmt(r['final'])} |")
    for r in results:
        agg, poi = r["aggregates"], r["probability_of_improvement"]
        md += ["", f"## Aggregates (rliable): {r['label']}", "",
               (f"Over {len(r['tasks'])} task(s) ({', '.join(r['tasks'])}); runs per task: "
                f"{', '.join(f'{a} {n}' for a, n in sorted(r['runs'].items()))}; "
                f"normalised scores; 95% stratified bootstrap CIs ({reps} resamples). Optimality gap: lower is better."),
               "", "| algorithm | IQM | median | mean | optimality gap |", "|---|---|---|---|---|"]
        for a in sorted(agg):
            md.append(f"| {a} | " + " | ".join(f"{_fmt(v[0])} [{_fmt(v[1])}, {_fmt(v[2])}]"
                                                for v in agg[a].values()) + " |")
        if poi:
            md += ["", "Probability of improvement P(X > Y):", "", "| X | Y | P(X > Y) [95% CI] |", "|---|---|---|"]
            for k, v in poi.items():
                x, y = k.split(",")
                md.append(f"| {x} | {y} | {v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}] |")
    if not results:
        md += ["", "No aggregates: no task has normalised scores (add references to the suite)."]
    md += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for r in results for p in r["pngs"]]
    md += [f"![{p.stem}]({p.name})" for p in curve_pngs]
    md += ["", f"Per-run final scores: `scores.json`. Runs: `{root / 'runs'}`."]
    _fs.atomic_write_bytes(out / "report.md", ("\n".join(md) + "\n").encode())
    _fs.atomic_write_bytes(out / "report.html", _html(md).encode())
    return out / "report.md"


def _html(md_lines: list[str]) -> str:
    """The Markdown report as standalone HTML (headings, paragraphs, tables, images)."""
    body, table = [], []

    def flush_table():
        if table:
            rows = [r.strip("|").split("|") for r in table if not set(r) <= set("|-")]
            head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in rows[0])
            tail = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in rows[1:])
            body.append(f"<table><tr>{head}</tr>{tail}</table>")
            table.clear()

    for line in md_lines:
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# ').replace('`', ''))}</h{level}>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1:-1]
            body.append(f'<img src="{html.escape(src)}" alt="{html.escape(src)}">')
        elif line:
            body.append(f"<p>{html.escape(line.replace('`', ''))}</p>")
    flush_table()
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px}img{max-width:100%}")
    return f"<!doctype html><meta charset=utf-8><title>heron bench</title><style>{style}</style>\n" + "\n".join(body)
