"""Plan-time checks of the `policy:` section that span runs, and its one-line description."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rfcli.config.errors import ConfigError, did_you_mean, join_key
from rfcli.config.schema import PolicyConfig
from rfcli.config.search import axis_marker

POLICY_META = "policy"
"""Store meta key: the `policy:` section (JSON) of the plan `rf run` was last started with."""


def policy_from_json(text: str | None) -> PolicyConfig:
    """The policy stored in an experiment's meta; none for an experiment that never had one."""
    return PolicyConfig(**json.loads(text)) if text else PolicyConfig()


def check_policy(raw_policy: Any, policy: PolicyConfig, flat_runs: dict[int, dict[str, Any]]) -> None:
    """One policy steers the whole sweep, judges a metric the runs can record, and PBT can only
    perturb numbers every run sets (`flat_runs`: each run's config as dotted keys, by run id)."""
    axis = find_axis(raw_policy, "policy")
    if axis is not None:
        raise ConfigError("one policy steers the whole sweep: give plain values, not search axes", key=axis)
    if policy.name == "none":
        return
    if policy.metric.startswith("eval_") and not all(has_eval_data(flat) for flat in flat_runs.values()):
        raise ConfigError(
            f"'{policy.metric}' is recorded only on eval data, and a run of this plan has none: set "
            "data.eval or data.eval_fraction (or judge a training metric such as loss)",
            key="policy.metric",
        )
    if policy.name != "pbt":
        return
    for trainer in dict.fromkeys(str(flat.get("trainer", "sft")) for flat in flat_runs.values()):
        for key in policy.perturb:
            unknown = unknown_setting(key, trainer)
            if unknown is not None:
                raise ConfigError(f"PBT perturbs '{key}', but {unknown}", key="policy.perturb")
    for run_id, flat in flat_runs.items():
        for key in policy.perturb:
            value = flat.get(key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                said = "does not set it" if value is None else f"sets it to {value!r}"
                raise ConfigError(
                    f"PBT perturbs '{key}', but run {run_id} {said}; set a number for it in the config "
                    f"({key}: ...)",
                    key="policy.perturb",
                )


def has_eval_data(flat: dict[str, Any]) -> bool:
    """Whether a run's config (as dotted keys) gives it eval data: an eval source or a fraction."""
    eval_source = any(key.startswith("data.eval.") for key in flat) or flat.get("data.eval") is not None
    return eval_source or flat.get("data.eval_fraction") is not None


def unknown_setting(key: str, trainer: str) -> str | None:
    """Why `key` names no setting a run has ('SFTConfig has no field ...'), or None when it does:
    a field of the trainer's TRL config, of PEFT's LoraConfig, or of rf's own schema."""
    from rfcli.config.typed import field_type

    section, _, name = key.partition(".")
    if section in ("training", "lora") and name and "." not in name:
        if section == "training":
            from rfcli.config.training import config_class

            cls: Any = config_class(trainer)
        else:
            from peft import LoraConfig

            cls = LoraConfig
        fields = [field.name for field in dataclasses.fields(cls)]
        if name in fields:
            return None
        return f"{cls.__name__} has no field '{name}'{did_you_mean(name, fields)}"
    if field_type(key) is None:
        return f"rf's settings have no '{key}'"
    return None


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
