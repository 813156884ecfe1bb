#!/usr/bin/env bash
# The device check (benchmarks/device_check.py) as the device machine runs it: from the
# repository root of its copy, nothing installed, results under $OUT. Extra arguments pass
# through, e.g. `bash benchmarks/device_check.sh --rev abc1234 --budget_s 300`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PYTHONPATH=. python3 -m benchmarks.device_check --out "${OUT:?set OUT to the output folder}" "$@"
