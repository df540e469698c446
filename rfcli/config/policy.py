"""Plan-time checks of the `policy:` section that span runs, and its one-line description."""

from __future__ import annotations

import json
from typing import Any

from rfcli.config.errors import ConfigError, join_key
from rfcli.config.schema import PolicyConfig
from rfcli.config.search import axis_marker

POLICY_META = "policy"
"""Store meta key: the `policy:` section (JSON) of the plan `rf run` was last started with."""


def policy_from_json(text: str | None) -> PolicyConfig:
    """The policy stored in an experiment's meta; none for an experiment that never had one."""
    return PolicyConfig(**json.loads(text)) if text else PolicyConfig()


def check_policy(raw_policy: Any, policy: PolicyConfig, flat_runs: dict[int, dict[str, Any]]) -> None:
    """One policy steers the whole sweep, and PBT can only perturb numbers every run sets
    (`flat_runs`: each run's config as dotted keys, by run id)."""
    axis = find_axis(raw_policy, "policy")
    if axis is not None:
        raise ConfigError("one policy steers the whole sweep: give plain values, not search axes", key=axis)
    if policy.name != "pbt":
        return
    for run_id, flat in flat_runs.items():
        for key in policy.perturb:
            value = flat.get(key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(
                    f"PBT perturbs '{key}', but run {run_id} sets it to {value!r}; set a number for it "
                    "in the config (e.g. training.learning_rate: 1.0e-4)",
                    key="policy.perturb",
                )


def find_axis(node: Any, path: str) -> str | None:
    """The dotted key of the first search axis inside `node`, or None."""
    if axis_marker(node) is not None:
        return path
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found = find_axis(child, join_key(path, key))
        if found is not None:
            return found
    return None


def describe_policy(policy: PolicyConfig) -> str:
    """'asha on eval_loss (min): the best 1/2 go on at chunks 1, 2, 4, ...' for `rf plan` and `rf status`."""
    if policy.name == "none":
        return "policy: none (every run trains to its end unless a person stops it)"
    head = f"policy: {policy.name} on {policy.metric} ({policy.mode})"
    if policy.name == "pbt":
        factors = " / ".join(f"x{factor:g}" for factor in policy.factors)
        body = (
            f"every {policy.interval} chunk(s) the bottom {policy.quantile:.0%} are replaced by warm clones "
            f"of the top {policy.quantile:.0%} with {', '.join(policy.perturb)} {factors} "
            f"(or a planned value, p={policy.resample_probability:g})"
        )
    else:
        rungs = (
            ", ".join(map(str, sorted(policy.rungs)))
            if policy.rungs
            else f"powers of {policy.eta} below each run's last chunk"
        )
        timing = "as each run arrives" if policy.name == "asha" else "once every run has arrived"
        body = f"the best 1/{policy.eta} go on at chunks {rungs}, judged {timing}"
    return f"{head}: {body}" + (" · dry run: decisions are recorded, not acted on" if policy.dry_run else "")
