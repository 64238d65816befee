#!/usr/bin/env bash
# Synthetic sprint benchmark: stadion's chain vs aniposelib on the same 2D input, one core.
#
#   bench/track/run.sh            # 4 cameras 30 m from the lane, 3 px noise, 5 % outliers
#   CAMERAS=8 bench/track/run.sh
#
# Installs aniposelib from PyPI into a virtualenv under the cargo target directory (once),
# builds stadion in release, generates the race, prints stadion's scores and aniposelib's
# MPJPE and frames per second. Both are pinned to CPU 0 (taskset) and single-threaded.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-target}
VENV=${VENV:-$TARGET/aniposelib-venv}
CAMERAS=${CAMERAS:-4}
RANSAC_FRAMES=${RANSAC_FRAMES:-150}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q aniposelib
fi
cargo build --release -q -p stadion
OUT=$(mktemp -d)
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
echo "== stadion (tracker: association + triangulation; triangulate: given the association)"
taskset -c 0 "$TARGET/release/stadion" track synth --cameras "$CAMERAS" --noise-px 3 \
    --outliers 0.05 --exchange "$OUT/race.json" | tee "$OUT/stadion.json"
echo "== aniposelib $("$VENV/bin/pip" show aniposelib | sed -n 's/^Version: //p') (triangulate_ransac on the first $RANSAC_FRAMES frames)"
taskset -c 0 "$VENV/bin/python" bench/track/aniposelib_bench.py "$OUT/race.json" "$RANSAC_FRAMES"
rm -rf "$OUT"
