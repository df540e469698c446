"""A 4-config SFT LoRA sweep on rf-small: plain TRL one config after another, against `rf run`.

    .venv/bin/python benchmarks/sft_sweep.py --steps 200 --num-chunks 4 --out /tmp/rf-sft-sweep

Both sides train the same 4 configs (learning rate 1e-3 / 3e-3 x LoRA r=8 / r=32, all linear layers)
on the same rows: `recipes.qa_data:chatterbot_qa`, shuffled with seed 0, cut to steps x 8 training
rows + 64 eval rows (split with seed 42), so one epoch is exactly `--steps` optimizer steps and
rf's chunks cut it into `--num-chunks` equal parts. Batch 8 (eval 32), max_length 128, linear
schedule, seed 42, TRL settings as rf sets them on a CPU (use_cpu, fp32, no activation checkpointing,
logging every step, no saving, no reporting).

Each side runs as its own Python process, timed from before it starts to after it exits, so both pay
their imports:
- plain TRL: for each config, load the tokenizer and model, build an `SFTTrainer` with a
  `peft_config`, `train()`. It evaluates after the first quarter of steps and at the end
  (`--plain-eval end`: at the end only). rf evaluates at each of its chunk boundaries.
- rf: `rf run` on a generated config (in the output folder), in a fresh experiments_dir.

Figures (all from one run of each side on this machine; the CPU may be shared, see the load average):
- total wall time: the whole process, model loading and imports included.
- first comparison: seconds from the process start until every config has an eval loss. Plain: the
  4th config's first evaluation. rf: the latest store event that records a run's first chunk
  (its eval_loss is written in the same chunk record). As a fraction of the plain sequential total.
- swap per chunk boundary (rf): worker time between one chunk's last training step and the next
  chunk's start that is neither training nor evaluation: the part of the checkpoint the worker waits
  for (`rf/save_seconds`: from the end of evaluation to the handoff, the RNG state) plus the
  controller's gap (the store event that records the chunk as trained to the event that starts the
  next: dispatch; the worker is idle then). The rest of the checkpoint is written while the next run
  trains (`rf/write_seconds`, shown apart). The switch inside the next chunk (adapter
  activation, RNG restore) is not recorded by rf and is not counted; nor is the setup of a run's
  first chunk (model load, trainer build, tokenization), shown separately as startup.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SEED = 42
SHUFFLE_SEED = 0
BATCH = 8
EVAL_BATCH = 32
EVAL_ROWS = 64  # 2 eval batches of 32
MAX_LENGTH = 128
MODEL = "rf-small"
DATA_SOURCE = "recipes.qa_data:chatterbot_qa"
LEARNING_RATES = (1.0e-3, 3.0e-3)
LORAS = (
    {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": "all-linear"},
    {"r": 32, "lora_alpha": 64, "lora_dropout": 0.05, "target_modules": "all-linear"},
)
REPO = Path(__file__).resolve().parent.parent


def data_sizes(steps: int) -> tuple[int, float]:
    """Rows to select and the eval fraction that leaves exactly steps x BATCH training rows:
    `train_test_split` takes ceil(fraction x rows) for eval, and ceil((64 - 0.5)) = 64."""
    rows = steps * BATCH + EVAL_ROWS
    return rows, (EVAL_ROWS - 0.5) / rows


def configs() -> list[tuple[float, dict[str, Any]]]:
    return [(lr, lora) for lr in LEARNING_RATES for lora in LORAS]


def label(lr: float, rank: int) -> str:
    return f"lr {lr:g}, r {rank}"


def training_fields(steps: int) -> dict[str, Any]:
    """What both sides set in the TRL config, besides the learning rate."""
    return {
        "max_steps": steps,
        "per_device_train_batch_size": BATCH,
        "per_device_eval_batch_size": EVAL_BATCH,
        "max_length": MAX_LENGTH,
        "lr_scheduler_type": "linear",
        "warmup_steps": 0,
    }


# -- plain TRL, one config after another (run in a child process) -----------------------------------


def plain_child(steps: int, plain_eval: str, result_path: Path) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    from recipes.qa_data import chatterbot_qa
    from rfcli.models.tiny import builtin_model_path

    rows, fraction = data_sizes(steps)
    loaded: Dataset = chatterbot_qa()
    if rows > len(loaded):
        raise SystemExit(f"--steps {steps} needs {rows} rows; the data has {len(loaded)}")
    chosen = loaded.shuffle(seed=SHUFFLE_SEED).select(range(rows))
    split = chosen.train_test_split(test_size=fraction, seed=SEED)
    train, evaluation = split["train"], split["test"]
    assert len(train) == steps * BATCH and len(evaluation) == EVAL_ROWS, (len(train), len(evaluation))
    path = str(builtin_model_path(MODEL))
    eval_at = {steps} if plain_eval == "end" else {max(steps // 4, 1), steps}

    class EvalAt(TrainerCallback):
        def __init__(self) -> None:
            self.first_eval: float | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step in eval_at:
                control.should_evaluate = True

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.first_eval is None:
                self.first_eval = time.time()

    results = []
    for lr, lora in configs():
        started = time.time()
        set_seed(SEED)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
        args = SFTConfig(
            output_dir=tempfile.mkdtemp(prefix="rf-bench-plain-"),
            learning_rate=lr,
            seed=SEED,
            use_cpu=True,
            bf16=False,
            activation_checkpointing=False,
            logging_steps=1,
            logging_nan_inf_filter=False,
            dataloader_num_workers=0,
            report_to="none",
            save_strategy="no",
            eval_strategy="no",
            disable_tqdm=True,
            **training_fields(steps),
        )
        callback = EvalAt()
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=evaluation,
            processing_class=tokenizer,
            peft_config=LoraConfig(task_type="CAUSAL_LM", **lora),
            callbacks=[callback],
        )
        trainer.train()
        history = trainer.state.log_history
        eval_losses = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
        results.append(
            {
                "label": label(lr, lora["r"]),
                "started": started,
                "first_eval": callback.first_eval,
                "ended": time.time(),
                "final_eval_loss": eval_losses[-1] if eval_losses else None,
                "evaluations": len(eval_losses),
                "eval_seconds": sum(entry["eval_runtime"] for entry in history if "eval_runtime" in entry),
                "train_runtime": next(e["train_runtime"] for e in history if "train_runtime" in e),
            }
        )
        shutil.rmtree(str(args.output_dir), ignore_errors=True)
    result_path.write_text(json.dumps({"threads": torch.get_num_threads(), "configs": results}, indent=1))


def run_plain(steps: int, plain_eval: str, out: Path) -> dict[str, Any]:
    result_path = out / "plain.json"
    result_path.unlink(missing_ok=True)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--plain-child",
        f"--steps={steps}",
        f"--plain-eval={plain_eval}",
        f"--out={out}",
    ]
    started = time.time()
    with open(out / "plain.log", "w") as log:
        subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    total = time.time() - started
    result = json.loads(result_path.read_text())
    result["total"] = total
    result["first_comparison"] = max(config["first_eval"] for config in result["configs"]) - started
    return result


# -- rf run --------------------------------------------------------------------------------------


def rf_config(steps: int, num_chunks: int) -> str:
    rows, fraction = data_sizes(steps)
    lora_grid = "\n".join(f"    - {json.dumps(lora)}" for lora in LORAS)
    fields = "\n".join(f"  {key}: {json.dumps(value)}" for key, value in training_fields(steps).items())
    return f"""# Written by benchmarks/sft_sweep.py: the same 4 configs its plain TRL baseline trains.
name: sft-sweep-bench
trainer: sft
model:
  name: {MODEL}
data:
  train:
    source: {DATA_SOURCE}
    shuffle_seed: {SHUFFLE_SEED}
    select: {rows}
  eval_fraction: {fraction!r}
lora:
  grid:
{lora_grid}
training:
  learning_rate: {{grid: {json.dumps(list(LEARNING_RATES))}}}
{fields}
num_chunks: {num_chunks}
seed: {SEED}
"""


def run_rf(steps: int, num_chunks: int, out: Path, side: str = "rf") -> dict[str, Any]:
    from rfcli.store.database import ExperimentStore
    from rfcli.store.experiments import experiment_folder
    from rfcli.store.layout import STATE_DB

    config_path = out / f"sft-sweep-bench-{side}.yaml"
    config_path.write_text(rf_config(steps, num_chunks))
    experiments = out / f"{side}-experiments"
    shutil.rmtree(experiments, ignore_errors=True)
    rf = Path(sys.executable).parent / "rf"
    command = [str(rf), "run", str(config_path), f"experiments_dir={experiments}"]
    started = time.time()
    with open(out / f"{side}.log", "w") as log:
        subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    total = time.time() - started

    store = ExperimentStore(experiment_folder(experiments, "sft-sweep-bench") / STATE_DB)
    runs = store.runs()
    metrics = {run.id: store.metrics(run.id) for run in runs}
    events = sorted(store.events(limit=1_000_000), key=lambda event: (event.time, event.id))

    def chunk_steps(run_id: int) -> list[int]:
        return sorted(step for step, key, _ in metrics[run_id] if key == "rf/save_seconds")

    def metric(run_id: int, key: str) -> dict[int, float]:
        return {step: value for step, k, value in metrics[run_id] if k == key}

    # A chunk's training ends with a 'trained' event whose detail starts with "chunk K;" (its checkpoint
    # is then written in the background); it is recorded with a 'ready' or 'completed' event "chunk K".
    # The next chunk starts with a 'running' event.
    ends = [e for e in events if e.kind == "trained"]
    recorded = [
        e for e in events if e.kind in ("ready", "completed") and (e.detail or "").startswith("chunk ")
    ]
    starts = [e for e in events if e.kind == "running"]
    first_chunk = {e.run_id: e.time for e in reversed(recorded) if e.detail == "chunk 1"}
    boundaries = []
    for end in ends:
        following = [s for s in starts if s.id > end.id]
        if not following:
            continue  # the last chunk of the experiment
        assert end.run_id is not None and end.detail is not None
        chunk = int(end.detail.split()[1].rstrip(";"))
        step = chunk_steps(end.run_id)[chunk - 1]
        save = metric(end.run_id, "rf/save_seconds")[step]
        write = metric(end.run_id, "rf/write_seconds")[step]
        gap = following[0].time - end.time
        boundaries.append(
            {"run": end.run_id, "next_run": following[0].run_id, "save": save, "gap": gap, "write": write}
        )

    per_run = []
    for run in runs:
        lr = run.config.get("training", {}).get("learning_rate")
        rank = (run.config.get("lora") or {}).get("r")
        chunk_seconds = [value for _, value in sorted(metric(run.id, "rf/chunk_seconds").items())]
        eval_losses = [value for _, value in sorted(metric(run.id, "eval_loss").items())]
        per_run.append(
            {
                "label": label(lr, rank) if lr is not None and rank is not None else run.name,
                "state": run.state,
                "chunks": len(chunk_seconds),
                "chunk_seconds": chunk_seconds,
                "first_eval": first_chunk.get(run.id),
                "final_eval_loss": eval_losses[-1] if eval_losses else None,
                "evaluations": len(eval_losses),
                "eval_seconds": sum(metric(run.id, "eval_runtime").values()),
            }
        )
    missing = [r["label"] for r in per_run if r["first_eval"] is None]
    return {
        "command": shlex.join(command),
        "total": total,
        "first_comparison": (max(first_chunk.values()) - started) if not missing else math.nan,
        "startup": min(e.time for e in starts) - started,
        "configs": per_run,
        "boundaries": boundaries,
        "threads": os.cpu_count(),  # rf's worker pool: cpu_count // workers, one CPU worker by default
    }


# -- the report ----------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def report(plain: dict[str, Any], rf: dict[str, Any], args: argparse.Namespace, reproduce: str) -> str:
    ratio = rf["total"] / plain["total"]
    first_plain = plain["first_comparison"] / plain["total"]
    first_rf = rf["first_comparison"] / plain["total"]
    swaps = [b["save"] + b["gap"] for b in rf["boundaries"]]
    saves = [b["save"] for b in rf["boundaries"]]
    gaps = [b["gap"] for b in rf["boundaries"]]
    writes = [b["write"] for b in rf["boundaries"]]
    plain_evals = "after the first quarter and at the end" if args.plain_eval == "quarter" else "at the end"

    def ok(good: bool) -> str:
        return "yes" if good else "**no**"

    lines = [
        f"SFT LoRA sweep: 4 configs x {args.steps} steps, batch {BATCH}, max_length {MAX_LENGTH}, "
        f"{MODEL}; rf num_chunks {args.num_chunks}",
        "",
        "| figure | plain TRL, sequential | rf run | goal | met |",
        "|---|---:|---:|---|---|",
        f"| total wall time (s) | {plain['total']:.1f} | {rf['total']:.1f} | | |",
        f"| ratio rf / plain | | {ratio:.3f} | <= 1.05 | {ok(ratio <= 1.05)} |",
        f"| every config has an eval loss at (s) | {plain['first_comparison']:.1f} "
        f"| {rf['first_comparison']:.1f} | | |",
        f"| first comparison / sequential total | {first_plain:.2f} | {first_rf:.2f} | <= 0.30 "
        f"| {ok(first_rf <= 0.30)} |",
        f"| swap per chunk boundary, median / max (ms) | | {ms(statistics.median(swaps))} / {ms(max(swaps))} "
        f"| median <= 10 | {ok(statistics.median(swaps) <= 0.010)} |",
        f"| of which the checkpoint's RNG state, median / max (ms) | | {ms(statistics.median(saves))} / "
        f"{ms(max(saves))} "
        "| | |",
        f"| of which controller gap, median / max (ms) | | {ms(statistics.median(gaps))} / {ms(max(gaps))} "
        "| | |",
        f"| checkpoint written in the background, median / max (ms) | | {ms(statistics.median(writes))} / "
        f"{ms(max(writes))} | | |",
        f"| chunk boundaries counted | | {len(swaps)} | | |",
        f"| rf start to first chunk dispatched (s) | | {rf['startup']:.1f} | <= 3 "
        f"| {ok(rf['startup'] <= 3)} |",
        f"| evaluations per config | {plain['configs'][0]['evaluations']} "
        f"| {rf['configs'][0]['evaluations']} | | |",
        f"| evaluation time, all configs (s) | {sum(c['eval_seconds'] for c in plain['configs']):.1f} "
        f"| {sum(c['eval_seconds'] for c in rf['configs']):.1f} | | |",
        "",
        "| config | plain final eval_loss | rf final eval_loss | plain train() s | rf chunk seconds |",
        "|---|---:|---:|---:|---|",
    ]
    by_label = {c["label"]: c for c in rf["configs"]}
    for config in plain["configs"]:
        other = by_label.get(config["label"], {})
        chunks = ", ".join(f"{s:.1f}" for s in other.get("chunk_seconds", []))
        lines.append(
            f"| {config['label']} | {config['final_eval_loss']:.4f} "
            f"| {other.get('final_eval_loss') or 0:.4f} "
            f"| {config['train_runtime']:.1f} | {chunks} |"
        )
    load = os.getloadavg()
    lines += [
        "",
        f"Machine: {os.cpu_count()} cores, torch threads {plain['threads']} (plain) and "
        f"{rf['threads']} (rf worker), load average before/after {args.load_before:.2f}/{load[0]:.2f} "
        "(the CPU is shared with other work). Plain TRL evaluates " + plain_evals + "; rf at every chunk "
        "boundary.",
        "",
        f"Reproduce: `{reproduce}`",
        f"rf command: `{rf['command']}`",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="max_steps of every config (default 200)")
    parser.add_argument("--num-chunks", type=int, default=4, help="rf's num_chunks (default 4)")
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "rf-sft-sweep", help="output folder"
    )
    parser.add_argument(
        "--plain-eval",
        choices=("quarter", "end"),
        default="quarter",
        help="plain TRL evaluates after the first quarter and at the end (default), or at the end only",
    )
    parser.add_argument(
        "--one-chunk", action="store_true", help="also time rf with num_chunks 1 on the same configs"
    )
    parser.add_argument("--plain-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.plain_child:
        plain_child(args.steps, args.plain_eval, args.out / "plain.json")
        return
    args.load_before = os.getloadavg()[0]
    reproduce = shlex.join(
        [".venv/bin/python", "benchmarks/sft_sweep.py", f"--steps={args.steps}"]
        + [f"--num-chunks={args.num_chunks}"]
        + ([] if args.plain_eval == "quarter" else [f"--plain-eval={args.plain_eval}"])
        + (["--one-chunk"] if args.one_chunk else [])
    )
    print(f"plain TRL: 4 configs x {args.steps} steps, one after another (log: {args.out / 'plain.log'})")
    plain = run_plain(args.steps, args.plain_eval, args.out)
    print(f"  {plain['total']:.1f} s\nrf run: num_chunks {args.num_chunks} (log: {args.out / 'rf.log'})")
    rf = run_rf(args.steps, args.num_chunks, args.out)
    print(f"  {rf['total']:.1f} s")
    one_chunk = None
    if args.one_chunk:
        print(f"rf run: num_chunks 1 (log: {args.out / 'rf-one-chunk.log'})")
        one_chunk = run_rf(args.steps, 1, args.out, side="rf-one-chunk")
        print(f"  {one_chunk['total']:.1f} s")
    (args.out / "results.json").write_text(
        json.dumps({"plain": plain, "rf": rf, "rf_one_chunk": one_chunk}, indent=1)
    )
    table = report(plain, rf, args, reproduce)
    if one_chunk is not None:
        chunked = rf["total"] / one_chunk["total"]
        table += (
            f"\n\nrf with num_chunks {args.num_chunks} against rf with 1 chunk on the same configs: "
            f"{rf['total']:.1f} s / {one_chunk['total']:.1f} s = {chunked:.3f} (goal <= 1.05)"
        )
    (args.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
