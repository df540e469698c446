"""Time to the best of 16 configurations: plain TRL one after another, `rf run` on the full grid,
and `rf run` with ASHA (eta 2 and eta 4) stopping the weak runs at rungs.

    .venv/bin/python benchmarks/time_to_best.py --steps 64 --num-chunks 8 --out /tmp/rf-time-to-best

Every way trains the same 16 configs of `rf-small` (learning rate 3e-3 / 1e-3 / 3e-4 / 1e-4 x LoRA
rank 4 / 8 / 16 / 32, alpha 2 x rank, all linear layers) on the same rows of
`recipes.qa_data:chatterbot_qa` (shuffled with seed 0): steps x 8 training rows and 32 eval rows,
batch 8, max_length 64, linear schedule, seed 42. rf cuts each run into `--num-chunks` chunks and
evaluates at each boundary; plain TRL evaluates each config once, at its end.

Figures, each way in its own process, timed from before it starts to after it exits:
- wall time, and chunk-units trained: chunks each run trained itself (a full run is num_chunks).
  Plain TRL trains every config whole: 16 x num_chunks.
- best known at: plain TRL knows its best only when the last config is evaluated. rf: for each
  chunk count k, the moment the last run still training records chunk k; the best is known at the
  first such moment from which the eventual winner leads at every chunk count after it.
- winner and its final eval loss: the lowest eval loss of the runs that trained to their end.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "rf-small"
LEARNING_RATES = (3.0e-3, 1.0e-3, 3.0e-4, 1.0e-4)
RANKS = (4, 8, 16, 32)
BATCH, EVAL_ROWS, MAX_LENGTH, SEED = 8, 32, 64, 42
POLICIES: dict[str, dict[str, Any] | None] = {
    "rf full grid": None,
    "rf asha eta 2": {"name": "asha", "metric": "eval_loss", "mode": "min", "eta": 2},
    "rf asha eta 4": {"name": "asha", "metric": "eval_loss", "mode": "min", "eta": 4},
}
REPO = Path(__file__).resolve().parent.parent


def label(lr: float, rank: int) -> str:
    return f"lr {lr:g}, r {rank}"


def data_fields(steps: int) -> dict[str, Any]:
    """`select` and `eval_fraction` leaving exactly steps x BATCH training rows: `train_test_split`
    takes ceil(fraction x rows) eval rows, and ceil(EVAL_ROWS - 0.5) = EVAL_ROWS."""
    rows = steps * BATCH + EVAL_ROWS
    return {"select": rows, "eval_fraction": (EVAL_ROWS - 0.5) / rows}


def training_fields(steps: int) -> dict[str, Any]:
    return {
        "max_steps": steps,
        "per_device_train_batch_size": BATCH,
        "per_device_eval_batch_size": EVAL_ROWS,
        "max_length": MAX_LENGTH,
        "lr_scheduler_type": "linear",
    }


def lora_fields(rank: int) -> dict[str, Any]:
    return {"r": rank, "lora_alpha": 2 * rank, "target_modules": "all-linear"}


# -- plain TRL, one config after another (run in a child process) -----------------------------------


def plain_child(steps: int, threads: int, result_path: Path) -> None:
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    from recipes.qa_data import chatterbot_qa
    from rfcli.models.tiny import builtin_model_path

    torch.set_num_threads(threads)
    fields = data_fields(steps)
    rows = chatterbot_qa().shuffle(seed=0).select(range(fields["select"]))
    split = rows.train_test_split(test_size=fields["eval_fraction"], seed=SEED)
    path = str(builtin_model_path(MODEL))
    results = []
    for lr in LEARNING_RATES:
        for rank in RANKS:
            set_seed(SEED)
            output_dir = tempfile.mkdtemp(prefix="rf-bench-plain-")
            arguments = SFTConfig(
                output_dir=output_dir,
                learning_rate=lr,
                seed=SEED,
                use_cpu=True,
                bf16=False,
                activation_checkpointing=False,
                dataloader_num_workers=0,
                report_to="none",
                save_strategy="no",
                disable_tqdm=True,
                **training_fields(steps),
            )
            trainer = SFTTrainer(
                model=AutoModelForCausalLM.from_pretrained(path),
                args=arguments,
                train_dataset=split["train"],
                eval_dataset=split["test"],
                processing_class=AutoTokenizer.from_pretrained(path),
                peft_config=LoraConfig(task_type="CAUSAL_LM", **lora_fields(rank)),
            )
            trainer.train()
            final = trainer.evaluate()["eval_loss"]
            results.append({"label": label(lr, rank), "final_eval_loss": final, "ended": time.time()})
            shutil.rmtree(output_dir, ignore_errors=True)
    result_path.write_text(json.dumps(results, indent=1))


def run_plain(steps: int, num_chunks: int, threads: int, out: Path) -> dict[str, Any]:
    result_path = out / "plain.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--plain-child",
        f"--steps={steps}",
        f"--threads={threads}",
        f"--out={out}",
    ]
    started = time.time()
    with open(out / "plain.log", "w") as log:
        subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    total = time.time() - started
    configs = json.loads(result_path.read_text())
    winner = min(configs, key=lambda config: config["final_eval_loss"])
    return {
        "wall": total,
        "chunk_units": len(configs) * num_chunks,
        "best_known": max(config["ended"] for config in configs) - started,
        "winner": winner["label"],
        "winner_loss": winner["final_eval_loss"],
    }


# -- rf run ----------------------------------------------------------------------------------------


def rf_config(name: str, steps: int, num_chunks: int, policy: dict[str, Any] | None) -> dict[str, Any]:
    fields = data_fields(steps)
    config: dict[str, Any] = {
        "name": name,
        "trainer": "sft",
        "model": {"name": MODEL},
        "data": {
            "train": {
                "source": "recipes.qa_data:chatterbot_qa",
                "shuffle_seed": 0,
                "select": fields["select"],
            },
            "eval_fraction": fields["eval_fraction"],
        },
        "lora": {"grid": [lora_fields(rank) for rank in RANKS]},
        "training": {"learning_rate": {"grid": list(LEARNING_RATES)}, **training_fields(steps)},
        "num_chunks": num_chunks,
        "seed": SEED,
    }
    if policy is not None:
        config["policy"] = policy
    return config


def run_rf(
    name: str, steps: int, num_chunks: int, threads: int, policy: dict[str, Any] | None, out: Path
) -> dict[str, Any]:
    return run_rf_config(rf_config(name, steps, num_chunks, policy), num_chunks, threads, out)


def run_rf_config(config: dict[str, Any], num_chunks: int, threads: int, out: Path) -> dict[str, Any]:
    """`rf run` of `config` as a process of its own, timed; the figures from its store."""
    from rfcli.engine.pool import WORKER_THREADS_ENV
    from rfcli.store.experiments import STATE_DB, experiment_folder

    name = config["name"]
    config_path = out / f"{name}.yaml"
    config_path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    experiments = out / "rf-experiments"
    shutil.rmtree(experiment_folder(experiments, name), ignore_errors=True)
    command = [
        str(Path(sys.executable).parent / "rf"),
        "run",
        str(config_path),
        f"experiments_dir={experiments}",
    ]
    started = time.time()
    environment = {**os.environ, WORKER_THREADS_ENV: str(threads)}  # the same torch threads as plain TRL
    with open(out / f"{name}.log", "w") as log:
        subprocess.run(command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT, check=True)
    total = time.time() - started
    return {"wall": total, **rf_results(experiment_folder(experiments, name) / STATE_DB, started, num_chunks)}


def rf_results(state_db: Path, started: float, num_chunks: int) -> dict[str, Any]:
    """Chunk-units, when the best became known, the winner and its loss, from an experiment's store."""
    from rfcli.store.database import ExperimentStore

    with ExperimentStore(state_db) as store:
        runs = store.runs()
        values = store.chunk_values("eval_loss")
        ends = {
            (event.run_id, int((event.detail or "chunk 0").split()[1])): event.time
            for event in store.events(limit=1_000_000)
            if event.run_id is not None
            and event.kind in ("ready", "completed")
            and (event.detail or "").startswith("chunk ")
        }
    completed = [run for run in runs if run.state == "completed"]
    final = {run.id: values[run.id][max(values[run.id])] for run in completed}
    winner = min(final, key=lambda run_id: final[run_id])  # type: ignore[arg-type, return-value]
    labels = {run.id: label(run.config["training"]["learning_rate"], run.config["lora"]["r"]) for run in runs}
    return {
        "chunk_units": sum(len(chunks) for chunks in values.values()),
        "best_known": best_known(values, ends, winner, num_chunks) - started,
        "winner": labels[winner],
        "winner_loss": final[winner],
        "stopped": sum(run.state == "stopped" for run in runs),
        "runs": len(runs),
        # [final eval loss, seconds until it was recorded] of each run that trained to its end
        "finals": sorted([final[run.id], ends[(run.id, max(values[run.id]))] - started] for run in completed),
    }


def best_known(
    values: dict[int, dict[int, float | None]],
    ends: dict[tuple[int, int], float],
    winner: int,
    num_chunks: int,
) -> float:
    """The first moment from which `winner` leads at every chunk count (see the module doc)."""
    known = None
    for chunk in range(1, num_chunks + 1):
        at_chunk = {
            run_id: chunks[chunk] for run_id, chunks in values.items() if chunks.get(chunk) is not None
        }
        leader = min(at_chunk, key=lambda run_id: at_chunk[run_id])  # type: ignore[arg-type, return-value]
        if leader != winner:
            known = None
        elif known is None:
            known = max(ends[(run_id, chunk)] for run_id in at_chunk)
    assert known is not None, "the winner leads at its last chunk"
    return known


# -- the report ------------------------------------------------------------------------------------


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace, loads: tuple[float, float]) -> str:
    plain, grid = results["plain TRL, sequential"], results["rf full grid"]
    lines = [
        f"16 configs of {MODEL} x {args.steps} steps (batch {BATCH}, max_length {MAX_LENGTH}), "
        f"rf num_chunks {args.num_chunks}",
        "",
        "| way | wall time (s) | / plain | chunk-units | / full grid | best known at (s) | winner "
        "| its final eval loss | / full grid's best |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for way, result in results.items():
        cells = [
            way,
            f"{result['wall']:.0f}",
            f"{result['wall'] / plain['wall']:.2f}",
            str(result["chunk_units"]),
            f"{result['chunk_units'] / grid['chunk_units']:.0%}",
            f"{result['best_known']:.0f}",
            result["winner"],
            f"{result['winner_loss']:.4f}",
            f"{result['winner_loss'] / grid['winner_loss']:.4f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Machine: {os.cpu_count()} cores, {args.threads} torch thread(s) per side, load average "
        f"{loads[0]:.2f} before and {loads[1]:.2f} after.",
        f"Reproduce: `.venv/bin/python benchmarks/time_to_best.py --steps {args.steps} "
        f"--num-chunks {args.num_chunks} --threads {args.threads}`",
    ]
    return "\n".join(lines)


def sweep_arguments(description: str, out: str) -> argparse.ArgumentParser:
    """The options of the benchmarks that time `rf run` sweeps of this module's configs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=64, help="max_steps of every config (default 64)")
    parser.add_argument("--num-chunks", type=int, default=8, help="rf's num_chunks (default 8)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / out)
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads of each side (default: all cores)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep what is already measured in --out with these settings"
    )
    return parser


def main() -> None:
    parser = sweep_arguments(__doc__.splitlines()[0], "rf-time-to-best")
    parser.add_argument("--plain-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.plain_child:
        plain_child(args.steps, args.threads, args.out / "plain.json")
        return
    load_before = os.getloadavg()[0]
    settings = f"steps {args.steps}, chunks {args.num_chunks}, threads {args.threads}"
    results = {}
    for way in ("plain TRL, sequential", *POLICIES):
        saved = args.out / f"{way.replace(' ', '-').replace(',', '')}.json"
        if args.reuse and saved.is_file() and json.loads(saved.read_text())["settings"] == settings:
            results[way] = json.loads(saved.read_text())
            continue
        print(f"{way} (logs in {args.out}), load average {os.getloadavg()[0]:.1f}", flush=True)
        if way in POLICIES:
            name = "ttb-" + way.removeprefix("rf ").replace(" ", "-")
            results[way] = run_rf(name, args.steps, args.num_chunks, args.threads, POLICIES[way], args.out)
        else:
            results[way] = run_plain(args.steps, args.num_chunks, args.threads, args.out)
        results[way]["settings"] = settings
        saved.write_text(json.dumps(results[way], indent=1))
    text = report(results, args, (load_before, os.getloadavg()[0]))
    (args.out / "report.md").write_text(text + "\n")
    print(text)
    print(f"\ncommand: {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()
