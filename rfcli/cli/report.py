"""`rf report [EXPERIMENT] [--out DIR]`: a PNG of every run's training and eval loss against step,
and a Markdown summary next to it (the best run by eval loss, a table of runs, their checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rfcli.cli.options import DirOption, ExperimentArgument
from rfcli.errors import UserError
from rfcli.paths import folder_problem
from rfcli.results.audit import audit_stops
from rfcli.results.experiment import load_results
from rfcli.results.settings import counted, settings_label
from rfcli.results.summary import BEST_BY, summary_markdown
from rfcli.store.database import ExperimentStore
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR, find_experiment
from rfcli.store.layout import ExperimentLayout
from rfcli.ui.tables import format_metric

PICTURE = "losses.png"
SUMMARY = "summary.md"
OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Folder to write losses.png and summary.md to; default: <experiment>/report."),
]


def report_command(
    experiment: ExperimentArgument = None,
    out: OutOption = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the best run and the stops audit as JSON.")
    ] = False,
) -> None:
    """Draw every run's training and eval loss, and each generation metric, against step
    (losses.png); summarize the runs (summary.md), with an audit of the stops."""
    folder = find_experiment(experiment, search_dir=experiments_dir)
    results = load_results(folder)
    with ExperimentStore(ExperimentLayout(folder).state_db, create=False) as store:
        audit = audit_stops(store)
    if not any(result.curves.get("loss") for result in results.runs):
        raise UserError(f"nothing to draw yet: no run of experiment '{results.name}' has logged a loss")
    out = folder / "report" if out is None else out
    problem = folder_problem(out)
    if problem is not None:
        raise UserError(f"cannot write the report to {out}: {problem}; give another folder with --out")
    from rfcli.results.figure import loss_figure

    try:
        out.mkdir(parents=True, exist_ok=True)
        loss_figure(results).savefig(out / PICTURE, dpi=110)
        summary = summary_markdown(results, PICTURE) + "\n" + "\n".join(audit.markdown()) + "\n"
        (out / SUMMARY).write_text(summary, encoding="utf-8")
    except OSError as error:  # a file system that refuses (read-only, full, not permitted)
        raise UserError(
            f"cannot write the report to {out}: {error.strerror}; give another folder with --out"
        ) from None
    ranked = results.ranked(BEST_BY, "min")
    if as_json:
        best = {"run_id": ranked[0].run.id, BEST_BY: ranked[0].value(BEST_BY)} if ranked else None
        document = {"experiment": results.name, "picture": str(out / PICTURE), "summary": str(out / SUMMARY)}
        typer.echo(json.dumps({**document, "best": best, "stops_audit": audit.to_json()}, indent=2))
        return
    typer.echo(f"wrote {out / PICTURE} and {out / SUMMARY} ({counted(len(results.runs), 'run')})")
    if ranked:
        best_run = ranked[0]
        typer.echo(
            f"best run by eval loss: {best_run.run.id} ({settings_label(best_run.settings)}),"
            f" eval loss {format_metric(best_run.value(BEST_BY))}"
        )
        if best_run.warning:
            typer.echo(f"warning: run {best_run.run.id}: {best_run.warning}")
    for line in audit.lines():
        typer.echo(line)
