"""The `policy:` section: checked at plan time like the rest, described by `rf plan`, and not part
of a run's identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfcli.config.errors import ConfigError
from rfcli.config.plan import compile_plan
from rfcli.config.policy import describe_policy
from rfcli.config.schema import PolicyConfig
from tests.unit.test_plan import write_config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("policy.nme=asha", "policy.nme: unknown key 'nme' (did you mean 'name'?)"),
        ("policy.name=hyperband", "policy.name: expected one of none, sha, asha, pbt, got 'hyperband'"),
        ("policy.mode=lowest", "policy.mode: expected min or max, got 'lowest'"),
        ("policy.eta=1", "policy.eta: expected an integer >= 2, got 1"),
        ("policy.rungs=[0, 2]", "policy.rungs: expected chunk counts >= 1, got [0, 2]"),
        ("policy.quantile=0.75", "policy.quantile: expected a number above 0 and at most 0.5, got 0.75"),
        ("policy.factors=[0.8, -1]", "policy.factors: expected positive numbers, got [0.8, -1.0]"),
        ("policy.resample_probability=2", "policy.resample_probability: expected a number from 0 to 1"),
        ("policy.eta={grid: [2, 3]}", "policy.eta: one policy steers the whole sweep"),
        (
            "policy={name: pbt, perturb: [training.weight_decay]}",
            "policy.perturb: PBT perturbs 'training.weight_decay', but run 1 does not set it; set a "
            "number for it in the config (training.weight_decay: ...)",
        ),
        (
            "policy={name: pbt, perturb: [training.lerning_rate]}",
            "PBT perturbs 'training.lerning_rate', but SFTConfig has no field 'lerning_rate' (did you "
            "mean 'learning_rate'?)",
        ),
        ("policy={name: pbt, perturb: [lora.rank]}", "but LoraConfig has no field 'rank'"),
        ("policy={name: pbt, perturb: [data.eval_rowz]}", "but rf's settings have no 'data.eval_rowz'"),
        ("policy={name: pbt, perturb: [lora.target_modules]}", "but run 1 sets it to ['q_proj', 'v_proj']"),
        ("data.eval_fraction=null", "policy.metric: 'eval_loss' is recorded only on eval data"),
    ],
)
def test_bad_policies_name_the_key_and_the_fix(tmp_path: Path, override: str, message: str) -> None:
    """Each with an asha policy on eval data unless the case says otherwise."""
    with pytest.raises(ConfigError) as error:
        compile_plan(write_config(tmp_path), ["policy.name=asha", "data.eval_fraction=0.5", override])
    assert message in str(error.value) and str(error.value).startswith(str(tmp_path))


def test_the_policy_is_typed_and_leaves_the_plan_the_same(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    without = compile_plan(path, [])
    with_policy = compile_plan(
        path, ["policy={name: asha, metric: loss, eta: 3, rungs: [1, 3], dry_run: true}"]
    )
    policy = with_policy.runs[0].config.policy
    assert (policy.name, policy.eta, policy.rungs, policy.dry_run) == ("asha", 3, [1, 3], True)
    assert without.runs[0].config.policy.name == "none"
    assert [run.fingerprint for run in with_policy.runs] == [run.fingerprint for run in without.runs]


def test_descriptions_say_what_each_policy_does() -> None:
    assert describe_policy(PolicyConfig()).startswith("policy: none")
    assert describe_policy(PolicyConfig(name="sha", rungs=[2, 1])) == (
        "policy: sha on eval_loss (min): the best 1/2 go on at chunks 1, 2, judged once every run has arrived"
    )
    pbt = describe_policy(PolicyConfig(name="pbt", metric="reward", mode="max", dry_run=True))
    assert pbt.startswith("policy: pbt on reward (max): every 2 chunk(s) the bottom 25% are replaced")
    assert "training.learning_rate x0.8 / x1.2" in pbt and pbt.endswith(
        "dry run: decisions are recorded, not acted on"
    )


@pytest.mark.parametrize(
    ("policy", "chunks", "message"),
    [
        (PolicyConfig(name="asha", rungs=[1, 5]), {1: 3, 2: 4}, "policy.rungs: no run reaches chunk 5"),
        (PolicyConfig(name="sha", rungs=[4]), {1: 4}, "no run reaches chunk 4 before its last"),
        (PolicyConfig(name="asha"), {1: 1}, "policy.name: asha judges runs at the powers of 2"),
        (PolicyConfig(name="pbt", interval=4), {1: 4, 2: 3}, "policy.interval: PBT exploits every 4 chunks"),
        (PolicyConfig(name="asha", rungs=[1, 3]), {1: 4}, None),
        (PolicyConfig(name="pbt", interval=2), {1: 3}, None),
        (PolicyConfig(), {1: 1}, None),
    ],
)
def test_a_policy_no_run_reaches_is_refused_before_anything_trains(
    policy: PolicyConfig, chunks: dict[int, int], message: str | None
) -> None:
    """A rung at or past every run's last chunk (or no rung at all) would leave the policy idle for
    the whole sweep, without a word."""
    from rfcli.engine.preflight import policy_errors

    errors = [str(error) for error in policy_errors(policy, chunks)]
    assert errors == [] if message is None else len(errors) == 1 and message in errors[0], errors
