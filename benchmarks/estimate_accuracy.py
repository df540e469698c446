"""How close `rf plan --estimate --calibrate` comes to the wall time of the `rf run` it estimates.

    .venv/bin/python benchmarks/estimate_accuracy.py --out /tmp/rf-estimate-accuracy
    .venv/bin/python benchmarks/estimate_accuracy.py --only quickstart --set training.max_steps=8  # a toy

For each sweep, back to back so both see the same machine: `rf plan CONFIG --estimate --calibrate`
(its estimate, with the policy's expected stops when it has a stopping policy), then `rf run CONFIG`
timed from its start to its exit, each in a fresh experiments folder. The sweeps: the shipped
quickstarts (SFT, its ASHA and PBT variants, DPO, GRPO) and the three `rf run` ways of
`benchmarks/time_to_best.py` (16 LoRA configs of rf-small: the full grid, ASHA eta 2 and eta 4).
The load average is printed before and after each pair: the CPU may be shared. `--set key=value`
overrides go to both commands of every pair (a toy size, to try the script). At the end, the
`# Wall time here:` header line each shipped config measured should carry.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rfcli.engine.progress import format_duration

REPO = Path(__file__).resolve().parent.parent
RF = Path(sys.executable).parent / "rf"
SHIPPED = ("quickstart", "quickstart-asha", "quickstart-pbt", "quickstart-dpo", "quickstart-grpo")
DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def seconds_of(text: str) -> float:
    """'2m31s', '45s', '1h07m' (as rf prints a duration) -> seconds."""
    hours, minutes, secs = (int(part or 0) for part in DURATION.match(text.strip()).groups())  # type: ignore[union-attr]
    return 3600.0 * hours + 60.0 * minutes + secs


def estimated(output: str) -> dict[str, float | None]:
    """The estimate's two wall times from `rf plan --estimate --calibrate`'s output."""
    text = " ".join(output.split())
    full = re.search(r"wall time: about (\S+) with every run", text)
    stopped = re.search(r"expected stops: about (\S+)", text)
    if full is None:
        raise SystemExit(f"no wall time in the estimate:\n{output[-3000:]}")
    return {"full": seconds_of(full.group(1)), "stopped": seconds_of(stopped.group(1)) if stopped else None}


def sweeps(steps: int, out: Path) -> dict[str, Path]:
    """Each sweep's config file: the shipped ones as they are, time_to_best's written to `out`."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from time_to_best import POLICIES, rf_config

    files = {name: REPO / "configs" / f"{name}.yaml" for name in SHIPPED}
    for way, policy in POLICIES.items():
        name = "ttb-" + way.removeprefix("rf ").replace(" ", "-")
        path = out / f"{name}.yaml"
        path.write_text(json.dumps(rf_config(name, steps, 8, policy), indent=1))  # JSON is YAML
        files[f"time_to_best {way.removeprefix('rf ')}"] = path
    return files


def rf(*args: str | Path, log: Path, threads: int) -> tuple[float, str]:
    started = time.perf_counter()
    environment = {**os.environ, "RF_WORKER_THREADS": str(threads)}
    result = subprocess.run(
        [str(RF), *map(str, args)], cwd=REPO, env=environment, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"rf {' '.join(map(str, args))} failed (see {log}):\n{result.stderr[-2000:]}")
    return seconds, result.stdout


def measure(name: str, config: Path, out: Path, threads: int, overrides: list[str]) -> dict[str, Any]:
    folder = out / "experiments" / name.replace(" ", "-")
    shutil.rmtree(folder, ignore_errors=True)
    given = [*overrides, f"experiments_dir={folder}"]
    slug = name.replace(" ", "-")
    load_before = os.getloadavg()[0]
    _, estimate_output = rf(
        "plan", config, *given, "--estimate", "--calibrate", log=out / f"{slug}.plan.log", threads=threads
    )
    wall, _ = rf("run", config, *given, log=out / f"{slug}.run.log", threads=threads)
    return {
        "name": name,
        **estimated(estimate_output),
        "measured": wall,
        "loads": (load_before, os.getloadavg()[0]),
    }


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "| sweep | estimated | measured | estimated / measured | load average before, after |",
        "|---|---:|---:|---:|---|",
    ]
    for result in results:
        estimate = result["stopped"] if result["stopped"] is not None else result["full"]
        what = f"{estimate:.0f} s" + (
            f" (all runs to the end: {result['full']:.0f} s)" if result["stopped"] else ""
        )
        lines.append(
            f"| {result['name']} | {what} | {result['measured']:.0f} s | {estimate / result['measured']:.2f} "
            f"| {result['loads'][0]:.1f}, {result['loads'][1]:.1f} |"
        )
    return "\n".join(lines)


def header_lines(results: list[dict[str, Any]]) -> str:
    """The `# Wall time here:` line of each shipped config measured (see rfcli/config/shipped.py)."""
    lines = []
    for result in results:
        if result["name"] in SHIPPED:
            before, after = result["loads"]
            lines.append(
                f"configs/{result['name']}.yaml: # Wall time here: {format_duration(result['measured'])} "
                f"({os.cpu_count()} CPU cores, load average {before:.1f} before, {after:.1f} after)"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/rf-estimate-accuracy"))
    parser.add_argument("--steps", type=int, default=32, help="time_to_best's steps per config (default 32)")
    parser.add_argument("--only", nargs="*", help="measure only these sweeps (names as in the table)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per worker")
    parser.add_argument("--set", nargs="*", default=[], help="key=value overrides for every sweep")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name, config in sweeps(args.steps, args.out).items():
        if args.only and name not in args.only:
            continue
        print(f"{name}: estimate, then rf run (load average {os.getloadavg()[0]:.1f})", flush=True)
        results.append(measure(name, config, args.out, args.threads, args.set))
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        print(report(results[-1:]).splitlines()[-1], flush=True)
    print(report(results))
    print(header_lines(results))


if __name__ == "__main__":
    main()
