"""Can the early rungs of a sweep be trusted? An audit of its stops, from what the store holds.

1. For each rung (the chunk counts a policy judged runs at; without one, every chunk count below
   the last): the rank correlation (Spearman) between the runs'
   values at that rung and their final values, over the runs that trained to their end (at least
   3 of them, with numbers). Near 1: the order at that rung was the final order, and stopping the
   weak runs there lost nothing; near 0 or below: the rung told little.
2. The runs a policy stopped that were ahead of the eventual winner (the best final value) at the
   rung they were stopped at: each one a configuration that might have won.
3. With `policy.dry_run: true`, every run the policy would have stopped, with where it finished
   among the runs that trained to their end; the winner among them, above all, is a stop that would
   have lost the sweep's best.

The metric is the policy's, or else the search's, or eval_loss (lower is better).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from rfcli.config.policy import POLICY_META, policy_from_json
from rfcli.policy.decisions import format_value
from rfcli.search.proposer import SEARCH_META, SearchSettings
from rfcli.store.database import ExperimentStore

MIN_RUNS = 3
"""Fewer finished runs than this give no correlation worth reading."""


@dataclass(frozen=True)
class RungTrust:
    rung: int
    runs: int
    """Runs that trained to their end with a number at this rung and at their end."""
    spearman: float | None
    """None with fewer than MIN_RUNS runs, or when every value is the same."""


@dataclass(frozen=True)
class AuditedStop:
    run_id: int
    rung: int
    value: float | None
    winner_value: float | None
    """The winner's value at the same rung."""
    final_rank: int | None = None
    """Dry run: where the run finished among those that trained to their end (1 is the winner)."""


@dataclass(frozen=True)
class StopsAudit:
    metric: str
    mode: str
    winner: int | None
    winner_final: float | None
    rungs: list[RungTrust] = field(default_factory=list)
    ahead_of_winner: list[AuditedStop] = field(default_factory=list)
    would_have_stopped: list[AuditedStop] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return _finite(asdict(self))

    def lines(self) -> list[str]:
        """What `rf report` prints: one line per rung, then the stops worth a look."""
        if self.winner is None:
            return [f"stops audit: no run has trained to its end with a number for {self.metric} yet"]
        head = f"stops audit on {self.metric} ({self.mode}), winner run {self.winner}"
        lines = [f"{head} ({format_value(self.winner_final)}):"]
        told = [trust for trust in self.rungs if trust.spearman is not None]
        for trust in told:
            lines.append(
                f"  chunk {trust.rung}: Spearman {trust.spearman:.2f} with the final values, over "
                f"{trust.runs} runs that trained to their end"
            )
        untold = [str(trust.rung) for trust in self.rungs if trust.spearman is None]
        if untold:
            lines.append(
                f"  chunk {', '.join(untold)}: fewer than {MIN_RUNS} runs that trained to their end, or all "
                "equal: nothing to tell"
            )
        return lines + [f"  {line}" for line in self.stop_lines()]

    def stop_lines(self) -> list[str]:
        """The stops worth a look: ahead of the winner when stopped, or what a dry run would have stopped."""
        lines = []
        for stop in self.ahead_of_winner:
            lines.append(
                f"run {stop.run_id} was stopped at chunk {stop.rung} ahead of the winner "
                f"({format_value(stop.value)} against {format_value(stop.winner_value)})"
            )
        for stop in self.would_have_stopped:
            ended = "the winner" if stop.final_rank == 1 else _ended(stop.final_rank)
            lines.append(
                f"dry run: the policy would have stopped run {stop.run_id} at chunk {stop.rung}; {ended}"
            )
        return lines

    def markdown(self) -> list[str]:
        """The audit's section of the report's summary.md."""
        lines = ["## Stops audit", ""]
        if self.winner is None:
            return [*lines, self.lines()[0]]
        lines += [
            f"Winner: run {self.winner}, final {self.metric} {format_value(self.winner_final)}. For each "
            "chunk count, the rank correlation (Spearman) between the values there and the final values "
            "of the runs that trained to their end:",
            "",
            "| chunk | runs | Spearman |",
            "|---:|---:|---:|",
            *(
                f"| {t.rung} | {t.runs} | {'-' if t.spearman is None else f'{t.spearman:.2f}'} |"
                for t in self.rungs
            ),
        ]
        stops = self.stop_lines()
        return [*lines, "", *([f"- {line}" for line in stops] or ["No run was stopped ahead of the winner."])]


def audit_stops(store: ExperimentStore) -> StopsAudit:
    """The audit of the module doc for the experiment in `store`."""
    metric, mode = audited_metric(store)
    sign = 1.0 if mode == "min" else -1.0
    values = store.chunk_values(metric)
    runs = store.runs()
    final = {}
    for run in runs:
        chunks = values.get(run.id, {})
        last = chunks.get(run.total_chunks or 0)
        if run.state == "completed" and last is not None and math.isfinite(last):
            final[run.id] = last
    if not final:
        return StopsAudit(metric, mode, None, None)
    winner = min(final, key=lambda run_id: (sign * final[run_id], run_id))
    decisions = store.decisions()
    last_chunk = max(run.total_chunks or 0 for run in runs if run.id in final)
    judged = sorted({recorded.decision.rung for recorded in decisions}) or range(1, last_chunk)
    rungs = [rung_trust(rung, values, final) for rung in judged]
    ranked = sorted(final, key=lambda run_id: (sign * final[run_id], run_id))
    ahead, would = [], []
    for recorded in decisions:
        decision = recorded.decision
        if not decision.acts:
            continue
        at_rung = values.get(winner, {}).get(decision.rung)
        stop = AuditedStop(decision.run_id, decision.rung, decision.value, at_rung)
        if recorded.dry_run:
            rank = ranked.index(decision.run_id) + 1 if decision.run_id in final else None
            would.append(AuditedStop(stop.run_id, stop.rung, stop.value, at_rung, rank))
        elif _ahead(decision.value, at_rung, sign):
            ahead.append(stop)
    return StopsAudit(metric, mode, winner, final[winner], rungs, ahead, would)


def audited_metric(store: ExperimentStore) -> tuple[str, str]:
    """The policy's metric and mode, else the search's, else eval_loss (min)."""
    policy = policy_from_json(store.get_meta(POLICY_META))
    if policy.name != "none":
        return policy.metric, policy.mode
    search = store.get_meta(SEARCH_META)
    if search is not None:
        settings = SearchSettings.from_json(search)
        return settings.metric, settings.mode
    return "eval_loss", "min"


def rung_trust(rung: int, values: dict[int, dict[int, float | None]], final: dict[int, float]) -> RungTrust:
    pairs = [
        (at_rung, final[run_id])
        for run_id in final
        if (at_rung := values.get(run_id, {}).get(rung)) is not None and math.isfinite(at_rung)
    ]
    if len(pairs) < MIN_RUNS or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return RungTrust(rung, len(pairs), None)
    from scipy.stats import spearmanr

    early, late = zip(*pairs, strict=True)
    return RungTrust(rung, len(pairs), float(spearmanr(early, late).statistic))


def _ahead(value: float | None, than: float | None, sign: float) -> bool:
    if value is None or than is None or not math.isfinite(value):
        return False
    return sign * value < sign * than


def _ended(rank: int | None) -> str:
    return (
        "it did not train to its end"
        if rank is None
        else f"it finished {rank} of those that trained to their end"
    )


def _finite(node: Any) -> Any:
    """JSON has no NaN: such values become null."""
    if isinstance(node, dict):
        return {key: _finite(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_finite(item) for item in node]
    if isinstance(node, float) and not math.isfinite(node):
        return None
    return node
