"""The device check's steps, each timed and bounded, with every figure written to one folder:

1. the machine: GPUs (nvidia-smi), torch and CUDA versions;
2. a ~1B Llama-shaped model built from a config on the GPU (no hub): rf-small's tokenizer, hidden
   size 2048, 22 layers, 32 heads with 4 key/value heads, MLP 5632 (TinyLlama's shape), 0.98B
   parameters, saved in bfloat16;
3. the CUDA test tier (tests/gpu);
4. benchmarks/gpu_sweep.py on that model: LoRA sweeps of 1, 4 and 8 configurations and two full
   fine-tunes taking turns on one worker.

    bash benchmarks/device_check.sh OUT             # installs the carried wheels first, then this
    python benchmarks/device_check.py --out OUT --work /tmp/rf-device-check [--smoke]

`--smoke` runs the same steps at a toy size, on whatever this machine is (the CPU included), to check
the script itself. Big files (models, experiments) stay under `--work`; OUT gets figures only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
ONE_BILLION = {
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
}
SMOKE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def machine(out: Path) -> str:
    import torch

    lines = [f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}"]
    try:
        lines += subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.splitlines()
    except FileNotFoundError:
        lines.append("no nvidia-smi: no NVIDIA GPU here")
    (out / "machine.txt").write_text("\n".join(lines) + "\n")
    return "; ".join(lines)


def build_model(folder: Path, shape: dict[str, Any]) -> str:
    """A random-init Llama with rf-small's tokenizer, made where it will train (the GPU when there is
    one) and saved in bfloat16 there, float32 on a CPU."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rfcli.models.tiny import builtin_model_path

    tokenizer = AutoTokenizer.from_pretrained(builtin_model_path("rf-small"))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shape,
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    return f"{parameters / 1e9:.2f}B parameters, {str(dtype).removeprefix('torch.')}, built on {device}"


def step(name: str, command: list[str], out: Path, timeout: float) -> str:
    """A step in a child process, its output kept in OUT/<name>.txt; its outcome in words."""
    started = time.perf_counter()
    with (out / f"{name}.txt").open("w") as log:
        try:
            result = subprocess.run(
                command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            )
            outcome = "passed" if result.returncode == 0 else f"failed (exit {result.returncode})"
        except subprocess.TimeoutExpired:
            outcome = f"stopped after {timeout:.0f} s"
    return f"{outcome} in {time.perf_counter() - started:.0f} s (output: {name}.txt)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rf-device-check"))
    parser.add_argument("--smoke", action="store_true", help="toy sizes: check the script on any machine")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary = {"machine": machine(args.out)}

    model = args.work / ("rf-smoke" if args.smoke else "rf-1b")
    begun = time.perf_counter()
    summary["model"] = build_model(model, SMOKE if args.smoke else ONE_BILLION)
    summary["model"] += f" in {time.perf_counter() - begun:.0f} s"

    tier = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests/gpu"]
    summary["cuda tier"] = step("cuda-tier", tier, args.out, timeout=120 if not args.smoke else 300)

    sizes = ["--steps", "16"]
    if args.smoke:
        sizes = ["--steps", "4", "--full-steps", "4", "--max-length", "32", "--configs", "1", "2"]
    dtype = "float32" if args.smoke else "bfloat16"
    sweep = [sys.executable, "benchmarks/gpu_sweep.py", "--model", str(model), "--dtype", dtype]
    sweep += ["--out", str(args.work / "sweep"), *sizes]
    summary["gpu sweep"] = step("gpu-sweep", sweep, args.out, timeout=240 if not args.smoke else 900)
    figures = args.work / "sweep" / "gpu_sweep.json"
    if figures.is_file():
        (args.out / "gpu_sweep.json").write_text(figures.read_text())
    summary["total"] = f"{time.perf_counter() - started:.0f} s"
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
