"""Search quality at the same compute: grid + ASHA, random + ASHA and TPE + ASHA on one LoRA space of
`rf-small`, each over several seeds.

    .venv/bin/python benchmarks/search_quality.py --steps 64 --num-chunks 8 --seeds 0 1 2

Every sweep trains `rf-small` with LoRA on all linear layers, on the rows of time_to_best.py
(`recipes.qa_data:chatterbot_qa` shuffled with seed 0: steps x 8 training rows, 32 eval rows), batch
8, max_length 64, a linear schedule, `--steps` steps in `--num-chunks` chunks, with ASHA (eta 2) on
eval loss. The space:

- learning rate: loguniform over two decades, 1e-4 to 1e-2
- LoRA rank: a choice of 4, 8, 16, 32, 64
- LoRA alpha: a choice of 8, 16, 32, 64, 128 (so alpha / rank runs from 1/8 to 32)
- LoRA dropout: uniform from 0 to 0.1

Grid + ASHA trains time_to_best.py's 16 configs (learning rate 3e-3 / 1e-3 / 3e-4 / 1e-4 x rank
4 / 8 / 16 / 32, alpha 2 x rank, no dropout: points of the same space); the chunk-units it spends
are the budget. Random + ASHA draws 16 configs of the space up front (about as many chunk-units: the
same ASHA over 16 runs). TPE + ASHA proposes, 8 at a time, each freed slot refilled at once, until
its runs have trained the grid's chunk-units of the same seed (`search.budget`; the runs then in
the schedule finish as ASHA lets them). The seed is the experiment's (and the search's) seed.

Figures, each sweep in its own process, timed from before it starts to after it exits:
- best final eval loss: the lowest of the runs that trained to their end;
- wall time, and chunk-units (chunks each run trained itself; a full run is num_chunks);
- within 1% at: seconds until a run trained to its end with a final eval loss within 1% of the
  best any method found with that seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
from typing import Any

from time_to_best import MODEL, RANKS, lora_fields, rf_config, run_rf_config, sweep_arguments

ASHA = {"name": "asha", "metric": "eval_loss", "mode": "min", "eta": 2}
SPACE_LORA = {
    "r": {"choice": [4, 8, 16, 32, 64]},
    "lora_alpha": {"choice": [8, 16, 32, 64, 128]},
    "lora_dropout": {"uniform": [0.0, 0.1]},
    "target_modules": "all-linear",
}
LEARNING_RATE = {"loguniform": [1.0e-4, 1.0e-2]}
NUM_SAMPLES, CONCURRENT, MOST_PROPOSALS = 16, 8, 64
METHODS = ("grid", "random", "tpe")


def sweep_config(method: str, seed: int, steps: int, num_chunks: int, budget: int | None) -> dict[str, Any]:
    config = rf_config(f"sq-{method}-{seed}", steps, num_chunks, ASHA)
    config["seed"] = seed
    if method == "grid":
        config["lora"] = {"grid": [{**lora_fields(rank), "lora_dropout": 0.0} for rank in RANKS]}
        return config
    config["lora"] = SPACE_LORA
    config["training"]["learning_rate"] = LEARNING_RATE
    config["search"] = {"method": method, "num_samples": NUM_SAMPLES}
    if method == "tpe":
        config["search"].update({"concurrent": CONCURRENT, "num_samples": MOST_PROPOSALS, "budget": budget})
        if budget is None:  # no grid sweep of this seed measured: as many configs as the grid
            config["search"]["num_samples"] = NUM_SAMPLES
    return config


def within(finals: list[list[float]], reference: float, tolerance: float = 0.01) -> float | None:
    """Seconds until a run ended within `tolerance` of `reference`, or None."""
    times = [seconds for loss, seconds in finals if loss <= reference * (1 + tolerance)]
    return min(times) if times else None


def report(
    results: dict[str, dict[int, dict[str, Any]]], args: argparse.Namespace, loads: list[float]
) -> str:
    seeds = sorted(next(iter(results.values())))
    reference = {seed: min(results[m][seed]["winner_loss"] for m in results) for seed in seeds}
    lines = [
        f"{MODEL}, {args.steps} steps in {args.num_chunks} chunks, ASHA eta 2; grid and random: "
        f"{NUM_SAMPLES} configs, TPE: proposals until the grid's chunk-units are spent",
        "",
        "| method | seed | best final eval loss | wall time (s) | chunk-units | within 1% at (s) "
        "| runs stopped |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, by_seed in results.items():
        for seed in seeds:
            result = by_seed[seed]
            reached = within(result["finals"], reference[seed])
            lines.append(
                f"| {method} + asha | {seed} | {result['winner_loss']:.4f} | {result['wall']:.0f} "
                f"| {result['chunk_units']} | {'never' if reached is None else f'{reached:.0f}'} "
                f"| {result['stopped']} of {result['runs']} |"
            )
    lines += [
        "",
        "| method | mean best final eval loss | mean wall time (s) | mean chunk-units |",
        "|---|---:|---:|---:|",
    ]
    for method, by_seed in results.items():
        mean = {
            key: statistics.mean(by_seed[s][key] for s in seeds)
            for key in ("winner_loss", "wall", "chunk_units")
        }
        lines.append(
            f"| {method} + asha | {mean['winner_loss']:.4f} | {mean['wall']:.0f} "
            f"| {mean['chunk_units']:.1f} |"
        )
    if {"grid", "random", "tpe"} <= results.keys():
        tpe, grid, rand = results["tpe"], results["grid"], results["random"]
        every = all(tpe[s]["winner_loss"] <= grid[s]["winner_loss"] for s in seeds)
        mean_tpe = statistics.mean(tpe[s]["winner_loss"] for s in seeds)
        mean_random = statistics.mean(rand[s]["winner_loss"] for s in seeds)
        walls = statistics.mean(tpe[s]["wall"] for s in seeds) / statistics.mean(
            grid[s]["wall"] for s in seeds
        )
        lines += [
            "",
            f"- TPE at least as good as grid on every seed: {'met' if every else 'not met'}",
            f"- TPE better than random on average: {mean_tpe:.4f} against {mean_random:.4f}: "
            f"{'met' if mean_tpe < mean_random else 'not met'}",
            f"- TPE wall time / grid wall time (means): {walls:.2f}: {'met' if walls <= 1 else 'not met'}",
        ]
    lines += [
        "",
        f"Machine: {os.cpu_count()} cores, {args.threads} torch thread(s); load average "
        + ", ".join(f"{load:.1f}" for load in loads)
        + " (before, and after each sweep).",
        f"Reproduce: `.venv/bin/python benchmarks/search_quality.py --steps {args.steps} "
        f"--num-chunks {args.num_chunks} --seeds {' '.join(map(str, args.seeds))} --threads {args.threads}`",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = sweep_arguments(__doc__.splitlines()[0], "rf-search-quality")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    loads = [os.getloadavg()[0]]
    settings = f"steps {args.steps}, chunks {args.num_chunks}, threads {args.threads}"
    results: dict[str, dict[int, dict[str, Any]]] = {method: {} for method in args.methods}
    for seed in args.seeds:
        for method in args.methods:
            saved = args.out / f"{method}-{seed}.json"
            if args.reuse and saved.is_file() and json.loads(saved.read_text())["settings"] == settings:
                results[method][seed] = json.loads(saved.read_text())
                continue
            print(
                f"{method} + asha, seed {seed} (logs in {args.out}), load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            grid = results.get("grid", {}).get(seed)
            budget = None if grid is None else int(grid["chunk_units"])
            config = sweep_config(method, seed, args.steps, args.num_chunks, budget)
            results[method][seed] = {
                **run_rf_config(config, args.num_chunks, args.threads, args.out),
                "settings": settings,
            }
            saved.write_text(json.dumps(results[method][seed], indent=1))
            loads.append(os.getloadavg()[0])
    text = report(results, args, loads)
    (args.out / "report.md").write_text(text + "\n")
    print(text)
    print(f"\ncommand: {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()
