"""Bad inputs as a careless new user gives them, through `rf run` in this process, as the command
line prints them: one clear line naming what and where, exit status 2, no traceback, nothing written.

Every case starts from a good experiment file (BASE; `test_the_base_file_is_good` proves it passes)
and breaks one thing. `MOD` stands for a Python module written for the case, unique per case.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from huggingface_hub import constants as hub_constants

from rfcli.cli.app import main

BASE = """\
name: corpus
trainer: sft
model: {name: rf-tiny}
data:
  train: {source: train.jsonl}
lora: {r: 8, lora_alpha: 16, lora_dropout: 0.05, target_modules: [q_proj, v_proj]}
training:
  learning_rate: 1.0e-3
  per_device_train_batch_size: 2
  max_steps: 4
num_chunks: 2
experiments_dir: exps
"""
TEXT_ROWS = "".join(f'{{"text": "hello {i}"}}\n' for i in range(8))
PROMPT_ROWS = "".join(f'{{"prompt": "What is {i} + 1?"}}\n' for i in range(8))
GRPO = ("training.num_generations=2", "training.max_completion_length=4")
RAISE = "def rows():\n    raise RuntimeError('the data server is down')\n"


@dataclass(frozen=True)
class Bad:
    id: str
    expected: str
    """A fragment of the one line printed."""
    overrides: tuple[str, ...] = ()
    edit: tuple[str, str] | None = None
    """(old, new) text replaced in BASE."""
    files: tuple[tuple[str, str], ...] = ()
    config: bytes | None = None
    """The whole config file, instead of BASE."""
    config_name: str = "sweep.yaml"
    args: tuple[str, ...] | None = None
    """Another command than `rf run CONFIG OVERRIDES`."""


def over(id: str, expected: str, *overrides: str, files: tuple[tuple[str, str], ...] = ()) -> Bad:
    return Bad(id, expected, overrides=overrides, files=files)


def edit(id: str, expected: str, old: str, new: str, *overrides: str) -> Bad:
    return Bad(id, expected, overrides=overrides, edit=(old, new))


def module(text: str) -> tuple[tuple[str, str], ...]:
    return (("MOD.py", textwrap.dedent(text)),)


CASES = [
    # The file itself
    Bad("not-utf8", "sweep.yaml: not UTF-8 text (byte 0xe9", config=b"name: caf\xe9\ntrainer: sft\n"),
    Bad("a-folder", "sweep.yaml: is a folder", files=(("sweep.yaml/keep", ""),), config=b""),
    Bad("missing-file", "nowhere.yaml: no such file", args=("run", "nowhere.yaml")),
    Bad(
        "one-scalar",
        "expected a mapping of settings (name: ..., trainer: ...), got a str",
        config=b"quickstart\n",
    ),
    Bad(
        "a-list",
        "expected a mapping of settings (name: ..., trainer: ...), got a list",
        config=b"- name: x\n",
    ),
    edit(
        "tab-indent",
        "sweep.yaml: line 5 has a tab character; YAML indents with spaces only",
        "  train:",
        "\ttrain:",
    ),
    edit("unclosed", "not valid YAML on line", "[q_proj, v_proj]", "[q_proj, v_proj"),
    Bad(
        "brackets-in-name",
        "sweep[v2].yaml: num_chunks: expected an integer >= 1",
        ("num_chunks=0",),
        config_name="sweep[v2].yaml",
    ),
    over("not-key-value", "override 'num_chunks' is not key=value", "num_chunks"),
    edit("bad-interpolation", "cannot resolve interpolation", "max_steps: 4", "max_steps: ${nowhere}"),
    # Sections of the wrong shape, nested keys
    edit(
        "lora-list",
        "lora: expected a mapping of settings (key: value), got [8, 16]",
        "lora: {r: 8, lora_alpha: 16, lora_dropout: 0.05, target_modules: [q_proj, v_proj]}",
        "lora: [8, 16]",
    ),
    over(
        "section-a-scalar",
        "model: expected a mapping of settings (key: value), got 'rf-tiny'",
        "model=rf-tiny",
    ),
    over("section-empty", "training: expected a mapping of settings (key: value), got None", "training="),
    over(
        "string-for-a-list",
        "eval.metrics: expected a list, got 'recipes.qa_metrics:token_f1'",
        "eval.metrics=recipes.qa_metrics:token_f1",
    ),
    edit(
        "training-list",
        "training: expected a mapping of settings",
        "training:\n  learning_rate: 1.0e-3\n  per_device_train_batch_size: 2\n  max_steps: 4",
        "training:\n  - learning_rate: 1.0e-3\n  - max_steps: 4",
    ),
    over(
        "reward-weight",
        "rewards[0].weight: expected a number, got 'heavy'",
        "trainer=grpo",
        *GRPO,
        "rewards=[{function: MOD:reward, weight: heavy}]",
        files=module("def reward(completions, **kwargs):\n    return [1.0] * len(completions)\n"),
    ),
    over("unknown-key", "num_chunkz: unknown key 'num_chunkz' (did you mean 'num_chunks'?)", "num_chunkz=3"),
    over(
        "unknown-nested-key",
        "data.train.shufle_seed: unknown key 'shufle_seed' (did you mean 'shuffle_seed'?)",
        "data.train.shufle_seed=1",
    ),
    over("missing-name", "name: missing: this setting is required", "name=???"),
    over("bad-name", "sweep.yaml: name: experiment name 'a/b' must be a plain folder name", "name=a/b"),
    over("unknown-trainer", "trainer: expected one of sft, dpo, grpo, got 'ppo'", "trainer=ppo"),
    over("chunks-word", "num_chunks: expected an integer, got 'many'", "num_chunks=many"),
    over("seed-word", "seed: expected an integer, got 'lucky'", "seed=lucky"),
    over(
        "eval-fraction",
        "data.eval_fraction: expected a number between 0 and 1, got 1.5",
        "data.eval_fraction=1.5",
    ),
    # Training values TRL takes without looking
    over(
        "lr-string",
        "training.learning_rate: expected a number > 0, got 'fast'",
        "training.learning_rate=fast",
    ),
    edit(
        "lr-empty",
        "training.learning_rate: expected a number > 0, got None",
        "learning_rate: 1.0e-3",
        "learning_rate:",
    ),
    over(
        "lr-negative",
        "training.learning_rate: expected a number > 0, got -0.001",
        "training.learning_rate=-1e-3",
    ),
    over(
        "lr-typo-marker",
        "training.learning_rate.gird: 'gird' is not a search marker (did you mean 'grid'?)",
        "training.learning_rate={gird: [1e-3, 1e-4]}",
    ),
    over(
        "batch-zero",
        "training.per_device_train_batch_size: expected an integer >= 1, got 0",
        "training.per_device_train_batch_size=0",
    ),
    over(
        "batch-negative",
        "training.per_device_train_batch_size: expected an integer >= 1, got -2",
        "training.per_device_train_batch_size=-2",
    ),
    over(
        "accumulation-zero",
        "training.gradient_accumulation_steps: expected an integer >= 1, got 0",
        "training.gradient_accumulation_steps=0",
    ),
    over(
        "epochs-word",
        "training.num_train_epochs: expected a number > 0, got 'three'",
        "training.num_train_epochs=three",
    ),
    over(
        "max-steps-float",
        "training.max_steps: expected an integer >= 1 or -1, got 2.5",
        "training.max_steps=2.5",
    ),
    over(
        "max-steps-negative",
        "training.max_steps: expected an integer >= 1 or -1, got -5",
        "training.max_steps=-5",
    ),
    over(
        "warmup-negative", "training.warmup_steps: expected a number >= 0, got -1", "training.warmup_steps=-1"
    ),
    over(
        "max-length-zero",
        "training.max_length: expected an integer >= 1 or null, got 0",
        "training.max_length=0",
    ),
    over(
        "unknown-training-field",
        "SFTConfig has no field 'lerning_rate' (did you mean 'learning_rate'?)",
        "training.lerning_rate=1",
    ),
    over(
        "managed-field",
        "training.output_dir: 'output_dir' is managed by rf; remove it",
        "training.output_dir=/tmp/x",
    ),
    over("trl-rejects", "training: SFTConfig rejected the settings", "training.lr_scheduler_type=sideways"),
    over(
        "chunks-above-steps",
        "num_chunks: expected at most 4 (run 1 has 4 optimizer steps",
        "num_chunks=1000000000",
    ),
    # LoRA
    over(
        "lora-typo",
        "lora.lora_dropuot: LoraConfig has no field 'lora_dropuot' (did you mean 'lora_dropout'?)",
        "lora.lora_dropuot=0.1",
    ),
    over("lora-r-zero", "lora.r: expected an integer >= 1, got 0", "lora.r=0"),
    over(
        "dropout-one", "lora.lora_dropout: expected a number >= 0 and < 1, got 1.0", "lora.lora_dropout=1.0"
    ),
    over(
        "dropout-negative",
        "lora.lora_dropout: expected a number >= 0 and < 1, got -0.1",
        "lora.lora_dropout=-0.1",
    ),
    over("lora-unknown-field", "lora.rank: LoraConfig has no field 'rank'", "lora.rank=4"),
    over(
        "target-typo",
        "'q_prj' matches no module of the model (did you mean 'q_proj'?); model 'rf-tiny' has",
        "lora.target_modules=[q_prj, v_proj]",
    ),
    over(
        "target-regex-nothing",
        "lora.target_modules: '.*attn_proj' matches no module",
        "lora.target_modules='.*attn_proj'",
    ),
    over(
        "target-regex-norm",
        "'.*attention.*' matches model.layers.0.post_attention_layernorm, a layer LoRA cannot adapt",
        "lora.target_modules='.*attention.*'",
    ),
    over(
        "target-norm",
        "'input_layernorm' matches model.layers.0.input_layernorm, a layer LoRA cannot adapt",
        "lora.target_modules=[q_proj, input_layernorm]",
    ),
    # Search
    over(
        "samples-under-grid", "search.num_samples: num_samples is for random search", "search.num_samples=4"
    ),
    over(
        "random-without-samples",
        "search.num_samples: random search needs num_samples",
        "search.method=random",
    ),
    over(
        "distribution-under-grid",
        "'uniform' is a random distribution; set search.method: random",
        "lora.lora_dropout={uniform: [0.0, 0.1]}",
    ),
    over("empty-grid", "expected a non-empty list of values", "training.learning_rate={grid: []}"),
    over(
        "search-method-typo",
        "search.method: expected one of grid, random, tpe, gp, cmaes, qmc, got 'randon'"
        " (did you mean 'random'?)",
        "search.method=randon",
        "search.num_samples=3",
    ),
    over(
        "marker-with-another-key",
        "training.learning_rate.grid: 'grid' beside other keys is not a search axis",
        "training.learning_rate={grid: [1e-3, 1e-4], values: 3}",
    ),
    over(
        "override-inside-an-axis",
        "lora is a search axis ({grid: [...]} of 2 options); set one option's value by its index",
        "lora={grid: [{r: 8}, {r: 16}]}",
        "lora.r=4",
    ),
    # Sizes: a plan is counted, and values measured, before anything is made of them
    over(
        "grid-bomb",
        "the search space gives 10,000,000,000 runs (each grid axis multiplies them); a plan holds at most",
        *(f"training.x{axis}={{grid: {list(range(10))}}}" for axis in range(10)),
    ),
    over(
        "samples-bomb",
        "search.num_samples: asks for 5,000 runs; a plan holds at most 1,000",
        "search.method=random",
        "search.num_samples=5000",
    ),
    over(
        "deep-override-value", "its value nests more than 50 levels deep", "x=" + "[" * 10_000 + "]" * 10_000
    ),
    over("deep-override-key", "its key nests more than 50 levels deep", ".".join(["x"] * 10_000) + "=1"),
    edit(
        "deep-file-value",
        "sweep.yaml: values nest more than 50 levels deep",
        "num_chunks: 2",
        "num_chunks: 2\nextra: " + "{a: " * 10_000 + "1" + "}" * 10_000,
    ),
    # Models
    over(
        "model-not-anywhere",
        "model.name: 'someone/no-such-model' is not a built-in model (rf-tiny",
        "model.name=someone/no-such-model",
    ),
    over("model-folder-missing", "model.name: no such folder './models/mine'", "model.name=./models/mine"),
    over(
        "model-folder-empty",
        "model.name: folder 'empty-model' has no config.json",
        "model.name=empty-model",
        files=(("empty-model/README", "nothing here"),),
    ),
    over(
        "rewards-not-grpo",
        "rewards: only the grpo trainer uses reward functions, not sft",
        "rewards=[recipes.math_rewards:answer_format]",
    ),
    over(
        "reference-not-dpo",
        "model.reference: only the dpo trainer uses one, not sft",
        "model.reference=rf-tiny",
    ),
    # Data
    over(
        "data-missing",
        "data.train.source: no such data file 'nowhere.jsonl'",
        "data.train.source=nowhere.jsonl",
    ),
    over(
        "data-empty",
        "data.train.source: data file 'empty.jsonl' is empty",
        "data.train.source=empty.jsonl",
        files=(("empty.jsonl", ""),),
    ),
    over(
        "data-not-json",
        "data.train.source: cannot read 'broken.jsonl'",
        "data.train.source=broken.jsonl",
        files=(("broken.jsonl", "{text: hello\n"),),
    ),
    over(
        "data-unknown-suffix",
        "data.train.source: 'rows.dat' is a local file, but rf reads data files ending in .jsonl",
        "data.train.source=rows.dat",
        files=(("rows.dat", "hello\n"),),
    ),
    over(
        "text-not-strings",
        "data.train: column 'text' holds int64 values, e.g. 5; it must hold text (strings)",
        "data.train.source=numbers.jsonl",
        files=(("numbers.jsonl", '{"text": 5}\n'),),
    ),
    over(
        "columns-missing",
        "data.train: missing column 'text'",
        "data.train.source=qa.jsonl",
        files=(("qa.jsonl", '{"question": "q", "answer": "a"}\n'),),
    ),
    over(
        "dpo-columns",
        "data.train: missing columns 'prompt', 'chosen', 'rejected': the dpo trainer reads",
        "trainer=dpo",
    ),
    over(
        "builder-raises",
        "data.train.source: 'MOD:rows' raised RuntimeError: the data server is down (at MOD.py:2)",
        "data.train.source=MOD:rows",
        files=module(RAISE),
    ),
    over(
        "builder-keyword",
        "cannot take these arguments: got an unexpected keyword argument 'size'; it takes (count=3)",
        "data.train.source=MOD:rows",
        "data.train.kwargs={size: 3}",
        files=module("def rows(count=3):\n    return [{'text': 'x'}] * count\n"),
    ),
    over(
        "builder-string",
        "data.train.source: 'MOD:rows' gave a str; expected a datasets.Dataset",
        "data.train.source=MOD:rows",
        files=module("def rows():\n    return 'hello'\n"),
    ),
    over(
        "builder-list-of-str",
        "data.train.source: 'MOD:rows' gave a list holding str; expected one dict per row",
        "data.train.source=MOD:rows",
        files=module("def rows():\n    return ['hello', 'world']\n"),
    ),
    over(
        "builder-missing",
        "data.train.source: module 'MOD' has no function 'rowz' (did you mean 'rows'?)",
        "data.train.source=MOD:rowz",
        files=module("def rows():\n    return []\n"),
    ),
    over(
        "formatting-raises",
        "data.formatting: 'MOD:fmt' raised KeyError: 'question' (on row 0 at MOD.py:2)",
        "data.formatting=MOD:fmt",
        files=module("def fmt(row):\n    return {'text': row['question']}\n"),
    ),
    over(
        "formatting-string",
        "data.formatting: 'MOD:fmt' returned a str on row 0; expected a dict",
        "data.formatting=MOD:fmt",
        files=module("def fmt(row):\n    return row['text']\n"),
    ),
    over(
        "formatting-no-module",
        "data.formatting: cannot import module 'no_such_module'",
        "data.formatting=no_such_module:f",
    ),
    over(
        "formatting-not-spec",
        "data.formatting: expected 'module:function', got 'justaname'",
        "data.formatting=justaname",
    ),
    over(
        "eval-fraction-too-few",
        "data.eval_fraction: cannot hold out 0.01 of 1 rows",
        "data.train.source=one.jsonl",
        "data.eval_fraction=0.01",
        files=(("one.jsonl", '{"text": "x"}\n'),),
    ),
    # Rewards
    over(
        "grpo-no-reward",
        "rewards: GRPO needs at least one reward function",
        "trainer=grpo",
        *GRPO,
        "data.train.source=prompts.jsonl",
        files=(("prompts.jsonl", PROMPT_ROWS),),
    ),
    over(
        "reward-one-float",
        "rewards[0].function: 'MOD:reward' returned a float (1.0) for 2 completions",
        "trainer=grpo",
        *GRPO,
        "data.train.source=prompts.jsonl",
        "rewards=[MOD:reward]",
        files=(
            ("prompts.jsonl", PROMPT_ROWS),
            *module("def reward(completions, **kwargs):\n    return 1.0\n"),
        ),
    ),
    over(
        "reward-narrow",
        "rewards[0].function: reward 'MOD:reward' must accept TRL's keywords",
        "trainer=grpo",
        *GRPO,
        "data.train.source=prompts.jsonl",
        "rewards=[MOD:reward]",
        files=(("prompts.jsonl", PROMPT_ROWS), *module("def reward(completions):\n    return [0.0]\n")),
    ),
    over(
        "grpo-lora-beta",
        "training.beta: GRPO with LoRA and a KL term (beta > 0) is not supported yet",
        "trainer=grpo",
        *GRPO,
        "training.beta=0.1",
        "data.train.source=prompts.jsonl",
        "rewards=[MOD:reward]",
        files=(
            ("prompts.jsonl", PROMPT_ROWS),
            *module("def reward(completions, **kwargs):\n    return [0.0] * len(completions)\n"),
        ),
    ),
    # Where the experiment goes
    over(
        "experiments-dir-a-file",
        "experiments_dir: cannot make the experiment folder",
        "experiments_dir=taken",
        files=(("taken", "a file"),),
    ),
    over(
        "experiments-dir-read-only",
        "experiments_dir: cannot make the experiment folder /sys/rf-experiments/corpus",
        "experiments_dir=/sys/rf-experiments",
    ),
    # Settings this machine (no GPU) cannot honour, written for other tools and machines
    over("fp16-on-cpu", "training.fp16: fp16 mixed precision needs a CUDA GPU", "training.fp16=true"),
    over(
        "device-map",
        "model.kwargs.device_map: rf puts each worker's model on that worker's own GPU",
        "model.kwargs={device_map: auto}",
    ),
    over(
        "4bit-on-cpu",
        "model.kwargs.quantization_config: 4-bit and 8-bit quantization (bitsandbytes) needs a CUDA GPU",
        "model.kwargs={quantization_config: {load_in_4bit: true, bnb_4bit_quant_type: nf4}}",
    ),
    over(
        "bitsandbytes-optimizer",
        "training.optim: optimizer 'paged_adamw_8bit' is bitsandbytes' and needs a CUDA GPU",
        "training.optim=paged_adamw_8bit",
    ),
    over(
        "grpo-vllm",
        "training.use_vllm: vLLM generation is not supported yet",
        "trainer=grpo",
        *GRPO,
        "training.use_vllm=true",
        "data.train.source=prompts.jsonl",
        "rewards=[MOD:reward]",
        files=(
            ("prompts.jsonl", PROMPT_ROWS),
            *module("def reward(completions, **kwargs):\n    return [1.0] * len(completions)\n"),
        ),
    ),
    over(
        "two-precisions-on-one-base-model",
        "they must train in one precision, but these differ (bf16: runs 1; fp32: runs 2)",
        "training.bf16={grid: [true, false]}",
    ),
    # Other commands
    Bad(
        "ray-address-malformed",
        "--address 'nohost': expected the head node's HOST:PORT",
        args=("run", "sweep.yaml", "--backend", "ray", "--address", "nohost"),
    ),
    Bad(
        "ray-address-port-a-word",
        "--address 'head:port': expected the head node's HOST:PORT",
        args=("run", "sweep.yaml", "--backend", "ray", "--address", "head:port"),
    ),
    Bad(
        "ray-address-nobody-there",
        "--address 127.0.0.1:1: nothing accepts a connection there (Connection refused within 5 s)",
        args=("run", "sweep.yaml", "--backend", "ray", "--address", "127.0.0.1:1"),
    ),
    Bad(
        "plan-name-rf-run-refuses",
        "name: experiment name 'a/b' must be a plain folder name",
        args=("plan", "sweep.yaml", "name=a/b"),
    ),
    Bad(
        "plan-name-an-axis",
        "name: every run of a plan belongs to one experiment, but runs give 2 values (a, b)",
        args=("plan", "sweep.yaml", "name={grid: [a, b]}"),
    ),
    Bad(
        "status-unknown-experiment",
        "no experiment named 'corpse'",
        args=("status", "corpse", "--dir", "exps"),
    ),
    Bad(
        "ctl-unknown-experiment",
        "no experiment found: run `rf run CONFIG` first",
        args=("ctl", "stop", "1", "--dir", "exps"),
    ),
]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub is never asked: a model name that is nowhere fails at once."""
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


def write_case(folder: Path, case: Bad, module_name: str) -> list[str]:
    """The case's files in `folder`; the command line to run."""
    (folder / "train.jsonl").write_text(TEXT_ROWS)
    for name, text in case.files:
        path = folder / name.replace("MOD", module_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("MOD", module_name))
    config = folder / case.config_name
    if case.config is not None:
        if not config.is_dir():
            config.write_bytes(case.config)
    else:
        text = BASE if case.edit is None else BASE.replace(*case.edit)
        assert case.edit is None or text != BASE, f"the edit of {case.id} changes nothing"
        config.write_text(text)
    if case.args is not None:
        return list(case.args)
    return ["run", case.config_name, *(o.replace("MOD", module_name) for o in case.overrides)]


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if "__pycache__" not in path.parts}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_clear_line(
    case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    module_name = f"rf_case_{case.id.replace('-', '_')}"
    args = write_case(tmp_path, case, module_name)
    before = files_under(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert exited.value.code == 2, out + err
    assert len(lines) == 1, out + err
    assert lines[0].startswith("error: ")
    assert case.expected.replace("MOD", module_name) in lines[0]
    assert files_under(tmp_path) == before  # nothing written: no experiment folder, no store


@pytest.mark.parametrize(
    ("made", "said"),
    [
        ("pipe", "sweep.yaml: is a named pipe, not a file"),
        ("link", "sweep.yaml: is a symbolic link to 'gone.yaml', which does not exist"),
        ("device", "/dev/null: is a device, not a file"),
    ],
)
def test_a_config_path_that_is_no_file_is_named_as_what_it_is(
    made: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Never 'no such file' for what is there, and never a read that blocks on a pipe."""
    monkeypatch.chdir(tmp_path)
    config = Path("/dev/null") if made == "device" else tmp_path / "sweep.yaml"
    if made == "pipe":
        os.mkfifo(config)
    elif made == "link":
        config.symlink_to("gone.yaml")
    before = files_under(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["run", str(config) if made == "device" else "sweep.yaml"])
    out, err = capsys.readouterr()
    assert exited.value.code == 2
    assert [line for line in (out + err).splitlines() if line.strip()] == [
        f"error: {said}; pass the path of an experiment YAML (see configs/)"
    ]
    assert files_under(tmp_path) == before


def test_the_base_file_is_good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each case breaks one thing of a file that passes every check."""
    from rfcli.config.plan import compile_plan
    from rfcli.engine.preflight import check_inputs

    monkeypatch.chdir(tmp_path)
    write_case(tmp_path, Bad("base", ""), "unused")
    check_inputs(compile_plan(Path("sweep.yaml"), []))


def test_every_error_of_a_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    overrides = (
        "training.learning_rate=fast",
        "lora.r=0",
        "lora.lora_dropout=2",
        "training.max_steps=2.5",
        "num_chunkz=3",
    )
    args = write_case(tmp_path, Bad("several", "", overrides=overrides), "unused")
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: sweep.yaml: num_chunkz: unknown key 'num_chunkz' (did you mean 'num_chunks'?)",
        "error: sweep.yaml: training.learning_rate: expected a number > 0, got 'fast'",
        "error: sweep.yaml: training.max_steps: expected an integer >= 1 or -1, got 2.5",
        "error: sweep.yaml: lora.r: expected an integer >= 1, got 0",
        "error: sweep.yaml: lora.lora_dropout: expected a number >= 0 and < 1, got 2",
    ]


def test_a_file_that_drops_runs_is_another_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rfcli.config.plan import compile_plan
    from rfcli.engine.experiment import open_experiment

    monkeypatch.chdir(tmp_path)
    write_case(tmp_path, Bad("base", ""), "unused")
    started = compile_plan(Path("sweep.yaml"), ["training.learning_rate={grid: [1e-3, 1e-4]}"])
    open_experiment(started).store.close()
    with pytest.raises(SystemExit) as exited:
        main(["run", "sweep.yaml"])  # the same file without the second learning rate: run 2 is gone
    assert exited.value.code == 2
    assert "which this file no longer gives" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["lora.r=0"], "error: clone: lora.r: expected an integer >= 1, got 0"),
        (
            ["training.learning_rate={grid: [1e-3, 1e-4]}"],
            "error: clone: a clone is one run: give plain values, not search axes",
        ),
    ],
)
def test_a_clone_that_cannot_work_is_refused_when_given(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    overrides: list[str],
    expected: str,
) -> None:
    from rfcli.config.plan import compile_plan
    from rfcli.engine.experiment import open_experiment

    monkeypatch.chdir(tmp_path)
    write_case(tmp_path, Bad("base", ""), "unused")
    experiment = open_experiment(compile_plan(Path("sweep.yaml"), []))
    with pytest.raises(SystemExit) as exited:
        main(["ctl", "clone", "1", *overrides, "--dir", "exps", "--wait", "0"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [expected]
    assert experiment.store.pending_commands() == []  # nothing queued
    experiment.store.close()
