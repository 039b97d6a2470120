#!/usr/bin/env bash
# The scaling benchmark on a machine with more cores (e.g. 16), unattended, in under 9 minutes:
#   scripts/device_scaling.sh            (from anywhere; writes "$OUT/scaling.md" if OUT is set)
# 1. finds a Python with the project's dependencies (.venv, else a new .venv-scaling with
#    `pip install -e .[bench]`; if the machine is offline and pip fails, a venv over the
#    system site-packages, with the repository on PYTHONPATH);
# 2. runs `python -m benchmarks.scaling --rounds 3 --max-k 15`, with a time budget so that no
#    new k starts when the rest could overrun (those k are listed as skipped), under a hard
#    `timeout` that leaves the whole script inside 9 minutes. SCALING_ARGS (e.g. "--n 20000
#    --max-k 3", for a dry run) is appended to the command line.
set -euo pipefail
START=$SECONDS
LIMIT_S=${LIMIT_S:-530}          # hard limit for the whole script
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=10

has_deps() { "$1" -c 'import numba, numpy, zmq, chronicle_async' >/dev/null 2>&1; }

PY=""
for cand in "$ROOT/.venv/bin/python" "$ROOT/.venv-scaling/bin/python"; do
  if [ -x "$cand" ] && has_deps "$cand"; then PY=$cand; break; fi
done
if [ -z "$PY" ]; then
  BASE=$(command -v python3.11 || command -v python3)
  "$BASE" -m venv --system-site-packages "$ROOT/.venv-scaling"
  PY="$ROOT/.venv-scaling/bin/python"
  timeout 180 "$PY" -m pip install --quiet --retries 1 -e ".[bench]" \
    || echo "device_scaling: pip install failed (offline?); using the system site-packages" >&2
fi
has_deps "$PY" || { echo "device_scaling: $PY lacks numba/numpy/pyzmq; cannot run" >&2; exit 2; }

# /dev/shm must hold the fan-in's 15 queues at once (1.9 GiB at 1M messages); else fewer messages.
N_ARGS=()
FREE_KB=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
if [ -n "${FREE_KB:-}" ] && [ "$FREE_KB" -lt $((3 * 1024 * 1024)) ]; then
  N_ARGS=(--n 100000)
  echo "device_scaling: /dev/shm has ${FREE_KB} KiB free: 100,000 messages per writer" >&2
fi

ELAPSED=$((SECONDS - START))
HARD=$((LIMIT_S - ELAPSED))
BUDGET=$((HARD - 150))              # the last k started (3 rounds at k = 15) finishes in the rest
[ "$BUDGET" -gt 30 ] || BUDGET=30
REPORT=$(mktemp /tmp/chronicle-scaling-XXXXXX.md)
echo "device_scaling: $PY, $(nproc) CPUs, budget ${BUDGET}s, hard limit ${HARD}s" >&2
timeout --kill-after=10 "$HARD" "$PY" -m benchmarks.scaling --rounds 3 --max-k 15 ${N_ARGS[@]+"${N_ARGS[@]}"} \
  --budget-s "$BUDGET" --out "$REPORT" ${SCALING_ARGS:-}
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$REPORT" "$OUT/scaling.md"
fi
rm -f "$REPORT"
echo "device_scaling: done in $((SECONDS - START)) s" >&2
