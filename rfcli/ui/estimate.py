"""What `rf plan --estimate` prints: a row per run, then the most a worker holds and, calibrated, the
sweep's wall time with and without the policy's expected stops."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rfcli.engine.progress import format_duration
from rfcli.results.settings import counted, settings_label

if TYPE_CHECKING:
    from rfcli.config.plan import RunPlan
    from rfcli.estimate.plan_estimate import PlanEstimate


def size(number: float) -> str:
    from accelerate.utils import convert_bytes

    return str(convert_bytes(number))


def parameters(number: int) -> str:
    """'29.5M', '624.6K', '812'."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if number >= scale:
            return f"{number / scale:.1f}{unit}"
    return str(number)


def estimate_view(run_plan: RunPlan, estimate: PlanEstimate) -> Group:
    from rfcli.results.settings import differing_settings

    settings = differing_settings({run.id: run.raw for run in run_plan.runs})
    timed = estimate.calibration is not None
    table = Table(
        title=escape(f"{run_plan.name}: what the plan costs ({counted(len(estimate.runs), 'run')})")
    )
    for column in ("run", "settings", "trainable / all params", "steps", "chunks", "tokens", "memory"):
        table.add_column(column, justify="left" if column == "settings" else "right", overflow="fold")
    if timed:
        table.add_column("time", justify="right")
    for run in estimate.runs:
        memory = run.memory
        cells = [
            str(run.run.id),
            escape(settings_label(settings[run.run.id]) or "-"),
            f"{parameters(memory.trainable_parameters)} / {parameters(memory.total_parameters)}",
            str(run.workload.steps),
            str(run.workload.chunks),
            f"{run.workload.tokens:,}",
            f"{size(memory.parked_bytes)} + {size(memory.training_bytes)}",
        ]
        if timed:
            cells.append(format_duration(run.seconds or 0.0))
        table.add_row(*cells)
    lines: list[Text | Table] = [table, Text(sweep_line(estimate)), Text(memory_line(estimate))]
    lines.extend(Text(line) for line in time_lines(estimate, run_plan.runs[0].config.policy.name))
    return Group(*lines)


def sweep_line(estimate: PlanEstimate) -> str:
    """The whole sweep's work: what every run trains to its end, added up."""
    workloads = [run.workload for run in estimate.runs]
    steps = sum(workload.steps for workload in workloads)
    chunks = sum(workload.chunks for workload in workloads)
    tokens = sum(workload.tokens for workload in workloads)
    return (
        f"the sweep: {counted(steps, 'optimizer step')} in {counted(chunks, 'chunk')}, "
        f"{counted(tokens, 'token')}, every run trained to its end"
    )


def memory_line(estimate: PlanEstimate) -> str:
    first = estimate.runs[0].memory
    base = (
        f"the base model's weights {size(first.model_bytes)} (shared by a worker's LoRA runs)"
        if first.shared_model
        else "its own copy of the model in each run's figure"
    )
    return (
        f"memory: a run holds the first figure between chunks (its adapter or model, and AdamW's state) and "
        f"the second while it trains (gradients, and the activations of a micro-batch of the longest rows); "
        f"{base}. At most {size(estimate.worker_bytes)} on each of {counted(estimate.workers, 'worker')}."
    )


def time_lines(estimate: PlanEstimate, policy: str) -> list[str]:
    calibration = estimate.calibration
    if calibration is None or estimate.sweep_seconds is None:
        return ["add --calibrate to time a few real steps here and estimate the wall time"]
    lines = [
        f"calibrated here: {counted(calibration.steps, 'step')} of run 1 at {calibration.step_seconds:.3g} s "
        f"each ({calibration.tokens_per_step:,.0f} tokens a step; other runs scaled by theirs), "
        f"{calibration.boundary_seconds:.3g} s a chunk boundary, set-up "
        f"{calibration.first_setup_seconds:.3g} s for a worker's first run and "
        f"{calibration.later_setup_seconds:.3g} s for later ones, "
        f"start-up {calibration.startup_seconds:.3g} s",
        f"wall time: about {format_duration(estimate.sweep_seconds)} with every run trained to its end",
    ]
    if estimate.policy_seconds is not None:
        lines.append(f"with {policy}'s expected stops: about {format_duration(estimate.policy_seconds)}")
    elif policy == "pbt":
        lines.append(
            "pbt replaces runs rather than stopping them: every chunk still trains, in the same time"
        )
    return lines
