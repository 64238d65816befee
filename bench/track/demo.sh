#!/usr/bin/env bash
# The real capture end to end: the Pose2Sim demo's four videos through `stadion track run`
# (BlazePose on the CPU, triangulation, filtering, biomechanics, overlays), then the four
# overlays side by side as the small picture in docs/images/.
#
#   bench/track/demo.sh [OUT]     # default OUT: a temporary folder; needs ../shared/data
#   MODEL=lite bench/track/demo.sh
#
# Copies athlete.trc, summary.json and speed.svg into bench/track/demo/ and the picture to
# docs/images/track-demo-overlay.png.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data}
MODEL=${MODEL:-full}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${1:-$(mktemp -d)}
cargo build --release -q -p stadion
/usr/bin/time -f "%e s wall, %U s user, %S s system" "$TARGET/release/stadion" track run \
    "$DATA/track/pose2sim-demo-single" --model "$DATA/models/pose_landmark_$MODEL.onnx" \
    --fps 60 --out "$OUT"
mkdir -p bench/track/demo docs/images
cp "$OUT/athlete.trc" "$OUT/summary.json" "$OUT/biomech/speed.svg" bench/track/demo/
ffmpeg -v error -y -i "$OUT/overlay_cam01.png" -i "$OUT/overlay_cam02.png" \
    -i "$OUT/overlay_cam03.png" -i "$OUT/overlay_cam04.png" -filter_complex \
    "[0]scale=240:-1:flags=area[a];[1]scale=240:-1:flags=area[b];[2]scale=240:-1:flags=area[c];[3]scale=240:-1:flags=area[d];[a][b][c][d]hstack=4,split[s0][s1];[s0]palettegen=max_colors=96[p];[s1][p]paletteuse=dither=none" \
    docs/images/track-demo-overlay.png
echo "results in $OUT; summary:"
cat "$OUT/summary.json"
