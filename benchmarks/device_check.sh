#!/usr/bin/env bash
# Every GPU measurement in one command, on a GPU machine with Python 3.12 and torch that reaches no
# package registry: run `make device-wheels` where there is one, carry .device/ with the working tree,
# then here:
#
#   bash benchmarks/device_check.sh [OUT [--smoke]]   # figures go to OUT (default: $OUT, else ./device-check)
#
# It installs what the carried wheels add to the machine's own Python and packages, builds a ~1B
# Llama-shaped model from a config, runs the CUDA test tier and benchmarks/gpu_sweep.py, and writes
# the figures (machine.txt, cuda-tier.txt, gpu-sweep.txt with its table, gpu_sweep.json, summary.json) to OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-device-check}}"
work="${RF_DEVICE_WORK:-/tmp/rf-device-check}"
mkdir -p "$out" "$work"
python="${RF_DEVICE_PYTHON:-python3}"
if [ -z "${RF_DEVICE_PYTHON:-}" ]; then
  [ -d .device/wheels ] || { echo "no .device/wheels: run 'make device-wheels' where PyPI is reachable" >&2; exit 2; }
  # Into the Python that has torch, beside its own packages: pip takes from the wheels only what is missing.
  needs=(trl datasets omegaconf mlflow-skinny SQLAlchemy alembic chatterbot-corpus pytest)
  wheels=(--no-index --find-links .device/wheels)
  "$python" -m pip install -q "${wheels[@]}" "${needs[@]}" \
    || "$python" -m pip install -q --break-system-packages "${wheels[@]}" "${needs[@]}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 RF_CACHE_DIR="$work/cache"
exec "$python" benchmarks/device_check.py --out "$out" --work "$work" "${@:2}"
