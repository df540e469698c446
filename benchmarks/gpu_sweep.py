"""LoRA sweeps of a ~1B model on the GPUs present: 4 and 8 configs through `rf run`, against one
config alone, with aggregate tokens/s, swap time per chunk boundary and GPU utilization.

    python benchmarks/gpu_sweep.py --model TinyLlama/TinyLlama-1.1B-Chat-v1.0 --steps 64

`--model` takes a hub name or a local folder. rf starts one worker per visible GPU (`--backend ray`:
one Ray actor per GPU; give each backend its own `--out`). Figures:
- tokens/s: training tokens of all runs (TRL's `num_tokens` at each run's last step, summed) over
  the wall time of the whole `rf run`, model loading included.
- swap per boundary: `rf/save_seconds`, the checkpoint write at each chunk boundary (the adapter
  switch and RNG restore of the next turn take microseconds and are not recorded).
- GPU utilization: the mean of `nvidia-smi` samples (every 0.5 s) while `rf run` runs.
"""

from __future__ import annotations

import argparse
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


def sweep_config(model: str, configs: int, steps: int, num_chunks: int, folder: Path) -> dict[str, Any]:
    """`configs` runs: learning rates x LoRA ranks (4 = 2 x 2, 8 = 4 x 2)."""
    rates = list(LEARNING_RATES[: max(1, configs // len(LORAS))])
    loras = [{**lora, "lora_dropout": 0.05, "target_modules": "all-linear"} for lora in LORAS]
    return {
        "name": f"gpu-{configs}",
        "trainer": "sft",
        "model": {"name": model, "kwargs": {"dtype": "bfloat16"}},
        "data": {"train": {"source": "recipes.qa_data:chatterbot_qa", "shuffle_seed": 0}},
        "lora": {"grid": loras[: max(1, configs // len(rates))]} if configs > 1 else loras[0],
        "training": {
            "learning_rate": {"grid": rates} if configs > 1 else rates[0],
            "per_device_train_batch_size": 8,
            "max_length": 512,
            "max_steps": steps,
            "warmup_steps": steps // 10,
        },
        "num_chunks": num_chunks,
        "experiments_dir": str(folder / "experiments"),
    }


def sample_gpu(samples: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        samples.extend(float(line) for line in out.split() if line.strip())
        stop.wait(0.5)


def measure(config: dict[str, Any], folder: Path, backend: str) -> dict[str, float]:
    path = folder / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_gpu, args=(samples, stop), daemon=True)
    sampler.start()
    started = time.perf_counter()
    rf = str(Path(sys.executable).parent / "rf")
    subprocess.run([rf, "run", str(path), "--backend", backend], check=True)
    seconds = time.perf_counter() - started
    stop.set()
    store = ExperimentStore(Path(config["experiments_dir"]) / config["name"] / "state.db")
    tokens, swaps = 0.0, []
    for run in store.runs():
        rows = store.metrics(run.id)
        tokens += max((value for _, key, value in rows if key == "num_tokens"), default=0.0)
        swaps += [value for _, key, value in rows if key == "rf/save_seconds"]
    return {
        "runs": len(store.runs()),
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "swap_ms_median": 1000 * statistics.median(swaps),
        "swap_ms_max": 1000 * max(swaps),
        "gpu_utilization": statistics.mean(samples) if samples else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--num-chunks", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rf-gpu-sweep"))
    parser.add_argument("--backend", choices=["local", "ray"], default="local", help="as for rf run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| configs | wall time (s) | tokens/s (all runs) | swap median / max (ms) | GPU utilization |")
    print("|---:|---:|---:|---:|---:|")
    for configs in (1, 4, 8):
        config = sweep_config(args.model, configs, args.steps, args.num_chunks, args.out)
        result = measure(config, args.out, args.backend)
        swap = f"{result['swap_ms_median']:.0f} / {result['swap_ms_max']:.0f}"
        print(
            f"| {configs} | {result['seconds']:.0f} | {result['tokens_per_second']:,.0f} | {swap} | "
            f"{result['gpu_utilization']:.0f}% |",
            flush=True,
        )


if __name__ == "__main__":
    main()
