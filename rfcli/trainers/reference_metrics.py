"""What scoring DPO's reference reports: the rows a training step (or an evaluation) scored, and how
long it took, logged with that step; and the words the progress line gives them for a chunk. No
torch here: the controller reads them."""

from __future__ import annotations

from collections.abc import Sequence

MetricRow = tuple[int, str, float]
ROWS, SECONDS = "rf/reference_rows", "rf/reference_seconds"
EVAL_ROWS, EVAL_SECONDS = "rf/eval_reference_rows", "rf/eval_reference_seconds"
"""An evaluation's keys are its own: it logs at the step its chunk's last training step logged at."""


def reference_metrics(rows: int, seconds: float, evaluation: bool) -> dict[str, float]:
    keys = (EVAL_ROWS, EVAL_SECONDS) if evaluation else (ROWS, SECONDS)
    return dict(zip(keys, (float(rows), seconds), strict=True))


def scored_in_chunk(metrics: Sequence[MetricRow]) -> str | None:
    """'reference log-probs of 24 new rows (1.3 s)' when the chunk scored any, else None."""
    rows = sum(value for _, key, value in metrics if key in (ROWS, EVAL_ROWS))
    seconds = sum(value for _, key, value in metrics if key in (SECONDS, EVAL_SECONDS))
    return f"reference log-probs of {int(rows)} new rows ({seconds:.1f} s)" if rows else None
