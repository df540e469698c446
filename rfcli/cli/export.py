"""`rf export RUN_ID|--best --out DIR [--merge]`: a run's weights as a standard folder, loadable
without rf: a PEFT adapter with its tokenizer, a merged model (`--merge`), or a full fine-tune's model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rfcli.cli.options import DirOption, ExperimentOption
from rfcli.errors import UserError
from rfcli.results.experiment import ExperimentResults, RunResult, load_results
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR, find_experiment
from rfcli.ui.tables import format_metric

DEFAULT_METRIC = "eval_loss"


def export_command(
    out: Annotated[
        Path, typer.Option("--out", help="An empty or new folder to write to.", show_default=False)
    ],
    run_id: Annotated[
        int | None, typer.Argument(help="The run id, as `rf status` shows it.", show_default=False)
    ] = None,
    best: Annotated[bool, typer.Option("--best", help="Export the run with the best --metric.")] = False,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric", help="With --best: the metric to rank by (a loss is minimized, others maximized)."
        ),
    ] = None,
    merge: Annotated[
        bool, typer.Option("--merge", help="Merge the LoRA adapter into the base model.")
    ] = False,
    experiment: ExperimentOption = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
) -> None:
    """Write a run's adapter (or model) and tokenizer to --out, from its last finished chunk.

    Load the result with `AutoPeftModelForCausalLM.from_pretrained(OUT)`, or with
    `AutoModelForCausalLM.from_pretrained(OUT)` after --merge or for a full fine-tune.
    """
    if (run_id is None) == (not best):
        raise UserError("give a RUN_ID or --best (not both)")
    if metric is not None and not best:
        raise UserError("--metric ranks the runs for --best; with a RUN_ID leave it out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already exists and is not an empty folder; give a new folder")
    results = load_results(find_experiment(experiment, search_dir=experiments_dir))
    if run_id is None:
        chosen = best_run(results, metric or DEFAULT_METRIC)
    else:
        chosen = results.run(run_id)
    checkpoint = checkpoint_of(chosen)
    from rfcli.engine.worker import quiet_libraries
    from rfcli.results.export import export_run

    quiet_libraries()
    what = export_run(chosen.run, checkpoint, out, merge)
    loader = (
        "AutoModelForCausalLM"
        if merge or chosen.run.config.get("lora") is None
        else "AutoPeftModelForCausalLM"
    )
    typer.echo(f"exported run {chosen.label} from {checkpoint} to {out}: {what} and its tokenizer")
    typer.echo(f"load it with {loader}.from_pretrained({str(out)!r})")


def best_run(results: ExperimentResults, metric: str) -> RunResult:
    """The run whose latest `metric` is best among the runs with a checkpoint to export."""
    ranked = [result for result in results.ranked(metric) if result.run.checkpoint]
    if not ranked:
        logged = ", ".join(results.logged_metrics()) or "none yet"
        raise UserError(
            f"no run of experiment '{results.name}' with a checkpoint has logged '{metric}'"
            f" (metrics logged: {logged}); pass --metric with one of those, or a RUN_ID"
        )
    best = ranked[0]
    typer.echo(f"best run by {metric}: {best.run.id} ({metric} {format_metric(best.value(metric))})")
    if best.warning:
        typer.echo(f"warning: run {best.run.id}: {best.warning}")
    return best


def checkpoint_of(result: RunResult) -> Path:
    run = result.run
    if run.checkpoint is None:
        raise UserError(f"run {run.id} has no finished chunk yet, so nothing to export")
    checkpoint = Path(run.checkpoint)
    if not checkpoint.is_dir():
        raise UserError(f"run {run.id} is {run.state}: its checkpoint {checkpoint} is no longer on disk")
    return checkpoint
