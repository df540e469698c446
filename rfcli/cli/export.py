"""`rf export RUN_ID|--best --out DIR [--merge]`: a run's weights as a standard folder, loadable
without rf: a PEFT adapter with its tokenizer, a merged model (`--merge`), or a full fine-tune's model.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rfcli.cli.options import DirOption, ExperimentOption
from rfcli.errors import UserError
from rfcli.paths import folder_problem
from rfcli.results.experiment import ExperimentResults, RunResult, load_results
from rfcli.store.checksums import DamagedCheckpoint, resume_point
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR, find_experiment
from rfcli.ui.tables import format_metric

DEFAULT_METRIC = "eval_loss"
TRL_LOSSES = ("loss", "eval_loss")
"""What TRL's trainers log as their loss: lower is better, with no policy or --mode to say so."""


def export_command(
    out: Annotated[
        Path, typer.Option("--out", help="An empty or new folder to write to.", show_default=False)
    ],
    run_id: Annotated[
        int | None, typer.Argument(help="The run id, as `rf status` shows it.", show_default=False)
    ] = None,
    best: Annotated[bool, typer.Option("--best", help="Export the run with the best --metric.")] = False,
    metric: Annotated[
        str | None, typer.Option("--metric", help="With --best: the metric to rank by (default eval_loss).")
    ] = None,
    mode: Annotated[
        RankMode | None,
        typer.Option(
            "--mode",
            help="With --best: min or max is best; default the policy's mode when its metric is the one "
            "ranked by, and min for TRL's losses.",
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
    if (metric is not None or mode is not None) and not best:
        raise UserError("--metric and --mode rank the runs for --best; with a RUN_ID leave them out")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} already exists and is not an empty folder; give a new folder")
    problem = folder_problem(out)
    if problem is not None:
        raise UserError(f"cannot export to {out}: {problem}; give another folder with --out")
    results = load_results(find_experiment(experiment, search_dir=experiments_dir))
    if run_id is None:
        chosen = best_run(results, metric or DEFAULT_METRIC, mode)
    else:
        chosen = results.run(run_id)
    checkpoint = checkpoint_of(chosen)
    from rfcli.engine.worker import quiet_libraries
    from rfcli.results.export import export_run

    quiet_libraries()
    try:
        out.mkdir(parents=True, exist_ok=True)  # only now: a refusal above leaves nothing behind
        what = export_run(chosen.run, checkpoint, out, merge)
    except OSError as error:  # a file system that refuses (read-only, full, not permitted)
        where = f" ({error.filename})" if error.filename else ""
        raise UserError(f"cannot export run {chosen.run.id} to {out}: {error.strerror}{where}") from None
    loader = (
        "AutoModelForCausalLM"
        if merge or chosen.run.config.get("lora") is None
        else "AutoPeftModelForCausalLM"
    )
    typer.echo(f"exported run {chosen.label} from {checkpoint} to {out}: {what} and its tokenizer")
    typer.echo(f"load it with {loader}.from_pretrained({str(out)!r})")


class RankMode(StrEnum):
    min = "min"
    max = "max"


def ranking_mode(results: ExperimentResults, metric: str, mode: RankMode | None) -> tuple[str, str]:
    """Which way `metric` ranks, and why: --mode, else the policy's mode when the policy judges by
    this metric, else lowest first for TRL's own losses. Anything else is not guessed from its name
    (a perplexity is minimized, a reward maximized), so it needs --mode."""
    if mode is not None:
        return mode.value, "--mode"
    if results.policy.name != "none" and results.policy.metric == metric:
        return results.policy.mode, f"the mode of the experiment's {results.policy.name} policy"
    if metric in TRL_LOSSES:
        return "min", "a loss"
    raise UserError(
        f"--best cannot tell which way '{metric}' ranks: no policy of experiment '{results.name}' judges "
        "by it; pass --mode min or --mode max"
    )


def best_run(results: ExperimentResults, metric: str, mode: RankMode | None = None) -> RunResult:
    """The run whose latest `metric` is best among the runs with a checkpoint to export."""
    if not any(result.run.checkpoint for result in results.ranked(metric, "min")):
        logged = ", ".join(results.logged_metrics()) or "none yet"
        raise UserError(
            f"no run of experiment '{results.name}' with a checkpoint has logged '{metric}'"
            f" (metrics logged: {logged}); pass --metric with one of those, or a RUN_ID"
        )
    direction, why = ranking_mode(results, metric, mode)
    best = next(result for result in results.ranked(metric, direction) if result.run.checkpoint)
    order = "lowest" if direction == "min" else "highest"
    typer.echo(
        f"best run by {metric} ({order} first: {why}): {best.run.id}"
        f" ({metric} {format_metric(best.value(metric))})"
    )
    if best.warning:
        typer.echo(f"warning: run {best.run.id}: {best.warning}")
    return best


def checkpoint_of(result: RunResult) -> Path:
    """The run's last checkpoint, checked against its checksums; the one before it when it is damaged."""
    run = result.run
    if run.checkpoint is None:
        raise UserError(f"run {run.id} has no finished chunk yet, so nothing to export")
    checkpoint = Path(run.checkpoint)
    if not checkpoint.is_dir():
        raise UserError(f"run {run.id} is {run.state}: its checkpoint {checkpoint} is no longer on disk")
    try:
        point = resume_point(run.checkpoint)
    except DamagedCheckpoint as damaged:
        raise UserError(f"run {run.id} cannot be exported: {damaged}") from None
    if point.passed_over:
        typer.echo(f"run {run.id}: {point.fallback_line(use='exports')}")
    assert point.checkpoint is not None
    return Path(point.checkpoint)
