"""LoRA sweeps of a ~1B model on this machine's GPUs, 1, 4 and 8 configurations through `rf run`, then
two full fine-tunes taking turns on one worker: what a GPU user pays for training many runs at once.

    python benchmarks/gpu_sweep.py --model PATH_OR_HUB_NAME --out DIR

benchmarks/device_check.py runs it with the ~1B model it builds; `--model` takes any hub name or local
folder. rf starts as `python -m rfcli` (no `rf` script needed beside the interpreter). The rows are
full-length documents (`recipes.qa_data:chatterbot_documents`, cut to `--max-length` tokens), so the
figures measure the GPU, not rf's per-step overhead on short rows.

Figures (DIR/gpu_sweep.json, and a Markdown table on stdout):
- tokens/s, training: every run's training tokens (TRL's `num_tokens` at its last step) over the
  seconds its chunks took (`rf/chunk_seconds`: set-up, training, evaluation, the boundary's hand-off),
  all runs together; the goal is 8 configurations at 0.9x or more of one alone.
- tokens/s, wall: the same tokens over the whole `rf run`, start-up and model loading included.
- swap per boundary: `rf/save_seconds`, what the worker waits for at a boundary before the next run
  (the RNG state and, for a full fine-tune, its move into pinned host memory).
- peak GPU memory: the most `nvidia-smi` saw during the sweep; per parked LoRA run, the 8-config
  sweep's peak over the 1-config sweep's, divided by 7.
- full fine-tune park / unpark: `rf/park_seconds` and `rf/unpark_seconds`, median over boundaries.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from rfcli.store.database import ExperimentStore

LEARNING_RATES = (1.0e-4, 2.0e-4, 5.0e-4, 1.0e-3)
LORAS = ({"r": 16, "lora_alpha": 32}, {"r": 64, "lora_alpha": 128})


def sweep_config(args: argparse.Namespace, configs: int, lora: bool) -> dict[str, Any]:
    """`configs` runs: learning rates x LoRA ranks (4 = 2 x 2, 8 = 4 x 2); without LoRA, learning rates."""
    rates = list(LEARNING_RATES[: max(1, configs // len(LORAS))]) if lora else list(LEARNING_RATES[:configs])
    loras = [{**spec, "lora_dropout": 0.05, "target_modules": "all-linear"} for spec in LORAS]
    config: dict[str, Any] = {
        "name": f"gpu-{'lora' if lora else 'full'}-{configs}",
        "trainer": "sft",
        "model": {"name": args.model, "kwargs": {"dtype": args.dtype}},
        "data": {
            "train": {
                "source": "recipes.qa_data:chatterbot_documents",
                "kwargs": {"num_rows": 1024, "words": 2 * args.max_length},
            }
        },
        "training": {
            "learning_rate": {"grid": rates} if len(rates) > 1 else rates[0],
            "per_device_train_batch_size": args.batch_size,
            "max_length": args.max_length,
            "max_steps": args.steps if lora else args.full_steps,
            "warmup_steps": 2,
        },
        "num_chunks": args.num_chunks,
        "experiments_dir": str(args.out / "experiments"),
    }
    if lora:
        chosen = loras[: max(1, configs // len(rates))]
        config["lora"] = {"grid": chosen} if len(chosen) > 1 else chosen[0]
    return config


def sample_gpu(samples: list[tuple[float, float]], stop: threading.Event) -> None:
    """(utilization %, memory used MiB) of every GPU, every half second."""
    while not stop.is_set():
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        except FileNotFoundError:  # no NVIDIA driver: a CPU smoke run of this script
            return
        for line in out.strip().splitlines():
            utilization, memory = (float(part) for part in line.split(","))
            samples.append((utilization, memory))
        stop.wait(0.5)


def measure(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    path = args.out / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_gpu, args=(samples, stop), daemon=True)
    sampler.start()
    started = time.perf_counter()
    log = (args.out / f"{config['name']}.log").open("w")
    subprocess.run([sys.executable, "-m", "rfcli", "run", str(path)], check=True, stdout=log, stderr=log)
    seconds = time.perf_counter() - started
    stop.set()
    store = ExperimentStore(Path(config["experiments_dir"]) / config["name"] / "state.db")
    tokens, chunk_seconds = 0.0, 0.0
    timings: dict[str, list[float]] = {}
    runs = store.runs()
    for run in runs:
        rows = store.metrics(run.id)
        tokens += max((value for _, key, value in rows if key == "num_tokens"), default=0.0)
        chunk_seconds += sum(value for _, key, value in rows if key == "rf/chunk_seconds")
        for _, key, value in rows:
            if key in ("rf/save_seconds", "rf/park_seconds", "rf/unpark_seconds"):
                timings.setdefault(key, []).append(value)
    store.close()
    result: dict[str, Any] = {
        "runs": len(runs),
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_second_training": tokens / chunk_seconds if chunk_seconds else 0.0,
        "tokens_per_second_wall": tokens / seconds,
        "peak_gpu_memory_mib": max((memory for _, memory in samples), default=None),
        "gpu_utilization": statistics.mean(u for u, _ in samples) if samples else None,
    }
    for key, values in timings.items():
        name = key.removeprefix("rf/").removesuffix("_seconds")
        result[f"{name}_ms_median"] = 1000 * statistics.median(values)
        result[f"{name}_ms_max"] = 1000 * max(values)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a local folder or a hub name")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--steps", type=int, default=24, help="optimizer steps of each LoRA run")
    parser.add_argument("--full-steps", type=int, default=8, help="optimizer steps of each full fine-tune")
    parser.add_argument("--num-chunks", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512, help="tokens per row (every row is this long)")
    parser.add_argument("--configs", type=int, nargs="+", default=[1, 4, 8], help="LoRA sweep sizes")
    parser.add_argument("--full", type=int, default=2, help="full fine-tunes on one worker (0: none)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for configs in args.configs:
        results[f"lora-{configs}"] = measure(sweep_config(args, configs, lora=True), args)
        print(f"lora-{configs}: {results[f'lora-{configs}']}", flush=True)
    if args.full:
        results[f"full-{args.full}"] = measure(sweep_config(args, args.full, lora=False), args)
        print(f"full-{args.full}: {results[f'full-{args.full}']}", flush=True)
    (args.out / "gpu_sweep.json").write_text(json.dumps(results, indent=2))
    print(table(results, args.configs))


COLUMNS = (
    "sweep", "runs", "wall (s)", "tokens/s training", "vs 1 config", "tokens/s wall",
    "swap median / max (ms)", "park / unpark (ms)", "peak GPU memory (MiB)", "GPU util",
)  # fmt: skip


def table(results: dict[str, dict[str, Any]], configs: list[int]) -> str:
    """The README's rows: one per sweep, with the ratio the goal is stated in."""
    alone = results.get(f"lora-{configs[0]}", {}).get("tokens_per_second_training") or 0.0
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---" + "|---:" * (len(COLUMNS) - 1) + "|"]
    for name, result in results.items():
        peak, utilization = result["peak_gpu_memory_mib"], result["gpu_utilization"]
        cells = [
            name,
            str(result["runs"]),
            f"{result['seconds']:.0f}",
            f"{result['tokens_per_second_training']:,.0f}",
            f"{result['tokens_per_second_training'] / alone:.2f}" if alone else "-",
            f"{result['tokens_per_second_wall']:,.0f}",
            f"{result.get('save_ms_median', 0):.0f} / {result.get('save_ms_max', 0):.0f}",
            f"{result['park_ms_median']:.0f} / {result['unpark_ms_median']:.0f}"
            if "park_ms_median" in result
            else "-",
            "-" if peak is None else f"{peak:,.0f}",
            "-" if utilization is None else f"{utilization:.0f}%",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    peaks = [results[f"lora-{n}"]["peak_gpu_memory_mib"] for n in (configs[0], configs[-1])]
    if None not in peaks and configs[-1] > configs[0]:
        per_run = (peaks[1] - peaks[0]) / (configs[-1] - configs[0])
        lines.append(f"\nGPU memory per parked LoRA run: {per_run:,.0f} MiB")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
