"""Compiling an experiment file: overrides, interpolation, stable plans, and every kind of bad input."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rfcli.config.errors import ConfigError, ConfigErrors
from rfcli.config.plan import compile_plan

BASE = """
name: unit
trainer: sft
model: {name: rf-tiny}
data:
  train: {source: DATA}
lora: {r: 8, lora_alpha: 16, target_modules: [q_proj, v_proj]}
training:
  learning_rate: {grid: [1.0e-3, 1.0e-4]}
  per_device_train_batch_size: 4
  max_steps: 10
num_chunks: 2
"""


def write_config(tmp_path: Path, old: str = "", new: str = "") -> Path:
    """The base config with one piece of text replaced."""
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "hello"}\n')
    text = textwrap.dedent(BASE).replace("DATA", str(data))
    if old:
        text = text.replace(old, new)
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_grid_plan_has_ids_in_order_and_varying_keys(tmp_path: Path) -> None:
    plan = compile_plan(write_config(tmp_path), [])
    assert [run.id for run in plan.runs] == [1, 2]
    assert plan.varying_keys() == ["training.learning_rate"]
    assert [run.config.training["learning_rate"] for run in plan.runs] == [1e-3, 1e-4]
    assert plan.runs[0].config.lora == {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}


def test_same_file_same_plan(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    assert [r.fingerprint for r in compile_plan(path, []).runs] == [
        r.fingerprint for r in compile_plan(path, []).runs
    ]


def test_overrides_set_values_and_axes(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    plan = compile_plan(path, ["num_chunks=8", "lora.r={grid: [4, 16]}", "training.learning_rate=3e-4"])
    assert [(run.config.lora["r"], run.config.num_chunks) for run in plan.runs] == [(4, 8), (16, 8)]  # type: ignore[index]
    assert all(run.config.training["learning_rate"] == 3e-4 for run in plan.runs)


def test_interpolation_resolves(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, "per_device_train_batch_size: 4", "per_device_train_batch_size: ${num_chunks}"
    )
    assert compile_plan(path, []).runs[0].config.training["per_device_train_batch_size"] == 2


def test_random_plan_is_seeded(tmp_path: Path) -> None:
    path = write_config(tmp_path, "{grid: [1.0e-3, 1.0e-4]}", "{loguniform: [1.0e-5, 1.0e-2]}")
    overrides = ["search.method=random", "search.num_samples=5"]
    first = [run.config.training["learning_rate"] for run in compile_plan(path, overrides).runs]
    assert first == [run.config.training["learning_rate"] for run in compile_plan(path, overrides).runs]
    assert len(set(first)) == 5
    other = compile_plan(path, [*overrides, "seed=1"]).runs
    assert first != [run.config.training["learning_rate"] for run in other]


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (["num_chunkz=3"], "num_chunkz", "did you mean 'num_chunks'"),
        (["data.train.shufle_seed=1"], "data.train.shufle_seed", "did you mean 'shuffle_seed'"),
        (["num_chunks=many"], "num_chunks", "expected an integer, got 'many'"),
        (["model=rf-tiny"], "model", "expected a mapping of settings (key: value), got 'rf-tiny'"),
        (["model="], "model", "expected a mapping of settings (key: value), got None"),
        (["eval.metrics=recipes.qa_metrics:token_f1"], "eval.metrics", "expected a list, got 'recipes"),
        (["policy.rungs=[1, one]"], "policy.rungs[1]", "expected an integer, got 'one'"),
        (["data.train=5"], "data.train", "expected a mapping of settings (key: value), got 5"),
        (["data.train=[a.jsonl]"], "data.train", "expected a mapping of settings (key: value), got ['a"),
        (["search=random"], "search", "expected a mapping of settings (key: value), got 'random'"),
        (["search.method=randon", "search.num_samples=3"], "search.method", "(did you mean 'random'?)"),
        (
            ["training.learning_rate={grid: [1e-3], values: 3}"],
            "training.learning_rate.grid",
            "beside other keys",
        ),
        (["lora={grid: [{r: 8}, {r: 16}]}", "lora.r=4"], None, "lora is a search axis"),
        (["name=a/b"], "name", "must be a plain folder name"),
        ([f"lora.x{i}={{grid: {list(range(10))}}}" for i in range(10)], None, "gives 20,000,000,000 runs"),
        (["search.method=random", "search.num_samples=5000"], "search.num_samples", "asks for 5,000 runs"),
        (["x=" + "[" * 10_000 + "]" * 10_000], None, "its value nests more than 50 levels deep"),
        ([".".join(["x"] * 10_000) + "=1"], None, "its key nests more than 50 levels deep"),
        (["num_chunks=0"], "num_chunks", ">= 1"),
        (["trainer=ppo"], "trainer", "one of sft, dpo, grpo"),
        (["training.lerning_rate=1"], "training.lerning_rate", "did you mean 'learning_rate'"),
        (["training.lr_scheduler_type=sideways"], "training", "SFTConfig rejected"),
        (["training.output_dir=/tmp/x"], "training.output_dir", "managed by rf"),
        (["lora.lora_alhpa=4"], "lora.lora_alhpa", "did you mean 'lora_alpha'"),
        (["lora.use_dora=true", "lora.lora_bias=true"], "lora", "LoraConfig rejected"),
        (["data.train.source=missing.jsonl"], "data.train.source", "no such data file"),
        (["data.formatting=recipes.formatting:nothing_here"], "data.formatting", "has no function"),
        (["data.formatting=no_such_module:f"], "data.formatting", "cannot import module"),
        (["data.formatting=justaname"], "data.formatting", "module:function"),
        (["trainer=grpo", "training.num_generations=2"], "rewards", "at least one reward"),
        (["name=???"], "name", "required"),
        (["data.eval_rows=0"], "data.eval_rows", ">= 1"),
        (["data.eval_fraction=null", "data.eval_rows=8"], "data.eval_rows", "no eval set to sample"),
        (["grid=[{num_chunks: 2}]"], "grid", "write the whole file as {grid: [config A, config B]}"),
        (["training.grid=[1]"], "training.grid", "make training itself the axis"),
        (["name={grid: [unit, other]}"], "name", "every run of a plan belongs to one experiment"),
    ],
)
def test_bad_input_names_file_key_and_fix(
    tmp_path: Path, overrides: list[str], key: str, message: str
) -> None:
    path = write_config(tmp_path)
    with pytest.raises(ConfigError) as raised:
        compile_plan(path, overrides)
    error = raised.value
    assert error.source == str(path)
    assert error.key == key, str(error)
    assert message in str(error)


def test_whole_alternative_configurations_are_one_grid_over_the_file(tmp_path: Path) -> None:
    """Two configurations that differ in several sections at once: the file is `{grid: [A, B]}`."""
    single = write_config(tmp_path).read_text().replace("{grid: [1.0e-3, 1.0e-4]}", "1.0e-3")
    full_fine_tune = single.replace("lora: {r: 8, lora_alpha: 16, target_modules: [q_proj, v_proj]}\n", "")
    options = [
        textwrap.indent(text, "    ").replace("    name", "  - name", 1) for text in (single, full_fine_tune)
    ]
    path = tmp_path / "alternatives.yaml"
    path.write_text("grid:\n" + "".join(options))
    plan = compile_plan(path, ["grid.1.training.learning_rate=1e-5"])
    assert [(run.config.lora is None, run.config.training["learning_rate"]) for run in plan.runs] == [
        (False, 1e-3),
        (True, 1e-5),
    ]


def test_the_readmes_whole_alternatives_example_is_a_plan_of_4_runs(tmp_path: Path) -> None:
    readme = Path("README.md").read_text(encoding="utf-8")
    example = readme.split("#### Whole alternative configurations")[1].split("```yaml\n")[1].split("```")[0]
    (tmp_path / "alternatives.yaml").write_text(example)
    plan = compile_plan(tmp_path / "alternatives.yaml", [])
    assert [(run.config.lora or {}).get("r") for run in plan.runs] == [8, 32, 8, 16]
    assert {run.config.name for run in plan.runs} == {"two-setups"}


def test_keys_inside_kwargs_are_the_users_own(tmp_path: Path) -> None:
    plan = compile_plan(write_config(tmp_path), ["data.train.kwargs={grid: [1, 2], size: 3}"])
    assert plan.runs[0].config.data.train.kwargs == {"grid": [1, 2], "size": 3}


def test_reward_must_take_trl_keywords(tmp_path: Path) -> None:
    (tmp_path / "narrow_rewards.py").write_text("def reward(completions):\n    return [0.0]\n")
    path = write_config(tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        with pytest.raises(ConfigError, match=r"\*\*kwargs") as raised:
            compile_plan(
                path, ["trainer=grpo", "rewards=[narrow_rewards:reward]", "training.num_generations=4"]
            )
    assert raised.value.key == "rewards[0].function"


def test_yaml_errors_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        compile_plan(tmp_path / "absent.yaml", [])
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        compile_plan(broken, [])
    with pytest.raises(ConfigError, match="not key=value"):
        compile_plan(write_config(tmp_path), ["num_chunks"])


@pytest.mark.parametrize("config", sorted(Path("configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_plan_offline(config: Path) -> None:
    plan = compile_plan(config, [])
    assert len(plan.runs) >= 2


@pytest.mark.parametrize(
    "value",
    ["[" * 10_000 + "]" * 10_000, "{a: " * 10_000 + "1" + "}" * 10_000],
    ids=["lists", "mappings"],
)
def test_a_file_nested_ten_thousand_deep_is_one_error(tmp_path: Path, value: str) -> None:
    path = write_config(tmp_path, "num_chunks: 2", f"num_chunks: 2\nextra: {value}")
    with pytest.raises(ConfigError, match="values nest more than 50 levels deep"):
        compile_plan(path, [])


def test_yaml_aliases_that_repeat_each_other_are_one_error(tmp_path: Path) -> None:
    """A billion laughs: each level repeats the one before ten times."""
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        before = chr(ord("a") + level - 1)
        levels.append(f"{chr(ord('a') + level)}: &{chr(ord('a') + level)} [{', '.join([f'*{before}'] * 10)}]")
    path = write_config(tmp_path, "num_chunks: 2", "num_chunks: 2\nlaughs:\n  " + "\n  ".join(levels))
    with pytest.raises(ConfigError, match="holds more than 100,000 values"):
        compile_plan(path, [])


def test_schema_errors_are_reported_together(tmp_path: Path) -> None:
    path = write_config(tmp_path, "num_chunks: 2", "num_chunks: many\nseed: lucky")
    with pytest.raises(ConfigErrors) as raised:
        compile_plan(path, ["data.train.shufle_seed=1", "lora=[8]"])
    assert [(error.source, error.key) for error in raised.value.errors] == [
        (str(path), "data.train.shufle_seed"),
        (str(path), "lora"),
        (str(path), "num_chunks"),
        (str(path), "seed"),
    ]


def test_experiments_dir_expands_the_home_folder(tmp_path: Path) -> None:
    plan = compile_plan(write_config(tmp_path), ["experiments_dir=~/rf-runs"])
    assert plan.runs[0].config.experiments_dir == str(Path.home() / "rf-runs")
