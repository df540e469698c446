"""The report's Markdown summary: the best run by eval loss, a table of runs, each run's last checkpoint."""

from __future__ import annotations

from pathlib import Path

from rfcli.results.experiment import ExperimentResults
from rfcli.results.settings import settings_label, short_keys
from rfcli.ui.tables import format_metric, step_text

BEST_BY = "eval_loss"


def summary_markdown(results: ExperimentResults, picture: str) -> str:
    lines = [f"# {results.name}", "", f"![training and eval loss against step]({picture})", ""]
    ranked = results.ranked(BEST_BY, "min")
    if ranked:
        best = ranked[0]
        apart = settings_label(best.settings) or "the only run"
        lines.append(
            f"Best run by eval loss: **run {best.run.id}** ({apart}),"
            f" eval loss {format_metric(best.value(BEST_BY))} at step {best.run.global_step}; its last"
            f" checkpoint is `{best.run.checkpoint or 'not written yet'}`."
            + (f" **But it has a warning:** {best.warning}." if best.warning else "")
        )
    else:
        lines.append("No run has an eval loss yet (no eval data, or no chunk finished).")
    warned = [result for result in results.runs if result.warning]
    if warned:
        lines += ["", "## Warnings", ""]
        lines += [f"- run {result.run.id}: {result.warning}" for result in warned]
    lines += [
        "",
        *runs_table(results),
        "",
        f"Checkpoint folders are inside the experiment folder `{results.folder}`.",
    ]
    return "\n".join(lines) + "\n"


def runs_table(results: ExperimentResults) -> list[str]:
    keys = list(results.runs[0].settings) if results.runs else []
    names = short_keys(keys)
    header = ["run", *(names[key] for key in keys), "state", "step", "loss", "eval loss", "last checkpoint"]
    rows = [header, ["---:", *("---" for _ in keys), "---", "---:", "---:", "---:", "---"]]
    for result in results.runs:
        run = result.run
        rows.append(
            [
                str(run.id),
                *(result.settings[key] for key in keys),
                result.outcome,
                step_text(run.global_step, run.max_steps),
                format_metric(result.value("loss")),
                format_metric(result.value(BEST_BY)),
                inside(results.folder, run.checkpoint),
            ]
        )
    return ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]


def inside(folder: Path, checkpoint: str | None) -> str:
    if checkpoint is None:
        return "-"
    path = Path(checkpoint)
    return f"`{path.relative_to(folder) if path.is_relative_to(folder) else path}`"
