"""The policy's decisions as `rf status` shows them: what acted, with the numbers that explain it."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from rfcli.config.policy import describe_policy
from rfcli.config.schema import PolicyConfig
from rfcli.policy.decisions import format_value
from rfcli.store.database import RecordedDecision


def decisions_view(policy: PolicyConfig, decisions: list[RecordedDecision]) -> Group:
    """The policy in one line, then a table of its stops and replacements (not its 'go on's); the
    events say the same in words."""
    lines: list[Text | Table] = [Text(describe_policy(policy), style="bold")]
    acting = [recorded for recorded in decisions if recorded.decision.acts]
    if acting:
        table = Table(caption=f"{len(decisions) - len(acting)} 'goes on' decisions not shown (see --json)")
        for name, justify in [("run", "right"), ("chunk", "right"), ("value", "right"), ("rank", "right")]:
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        table.add_column("cutoff", justify="right")
        table.add_column("decision", overflow="fold")
        for recorded in acting:
            d = recorded.decision
            verb = d.verb + (" (dry run)" if recorded.dry_run else "")
            if d.parent_id is not None:
                changes = ", ".join(
                    f"{key.rsplit('.', 1)[-1]} {format_value(new)}" for key, new in d.changes.items()
                )
                verb += f" by a warm clone of run {d.parent_id} with {changes}"
            table.add_row(
                str(d.run_id),
                str(d.rung),
                format_value(d.value),
                "-" if d.rank is None else f"{d.rank} of {d.cohort}",
                "-" if d.cutoff is None else format_value(d.cutoff),
                verb,
            )
        lines.append(table)
    return Group(*lines)
