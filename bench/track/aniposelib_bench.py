"""The aniposelib side of stadion's synthetic sprint benchmark (see run.sh).

Reads the race written by `stadion track synth --exchange race.json` (per-frame pan-tilt
cameras in OpenCV terms, the athlete's 2D keypoints per camera, the true joints) and
triangulates every frame with aniposelib's `CameraGroup.triangulate` (DLT over all views)
and `CameraGroup.triangulate_ransac` (its outlier-rejecting method). Only the
triangulation calls are timed, in CPU time of this (single-threaded) process so that
other load on a shared machine does not count; updating the cameras every frame is not.
Prints one JSON object.
"""

import json
import sys
import time

import numpy as np
from aniposelib.cameras import Camera, CameraGroup


def main(path, ransac_frames):
    race = json.load(open(path))
    names = race["camera_names"]
    group = CameraGroup([Camera(name=n) for n in names])
    frames = race["frames"]
    results = {}
    for method in ("triangulate", "triangulate_ransac"):
        errors, seconds, counted = [], 0.0, 0
        limit = len(frames) if method == "triangulate" else min(ransac_frames, len(frames))
        # Warm up the JIT on the first frame (jax compiles on first call).
        for warm in (True, False):
            for f in frames[: 1 if warm else limit]:
                for cam, c in zip(group.cameras, f["cameras"]):
                    cam.set_camera_matrix(np.array(c["matrix"], dtype=float))
                    cam.set_distortions(np.array(c["dist"], dtype=float))
                    cam.set_rotation(np.array(c["rvec"], dtype=float))
                    cam.set_translation(np.array(c["tvec"], dtype=float))
                    cam.set_size(c["size"])
                pts = np.full((len(names), 17, 2), np.nan)
                for ci, view in enumerate(f["points"]):
                    if view is None:
                        continue
                    for j, k in enumerate(view):
                        if k is not None and k[2] >= 0.3:
                            pts[ci, j] = k[:2]
                start = time.process_time()
                if method == "triangulate":
                    p3d = group.triangulate(pts, undistort=True)
                else:
                    p3d = group.triangulate_ransac(pts, undistort=True, min_cams=2)[0]
                took = time.process_time() - start
                if warm:
                    continue
                seconds += took
                counted += 1
                truth = np.array(f["truth"])
                ok = ~np.isnan(p3d[:, 0])
                errors.extend(np.linalg.norm(p3d[ok] - truth[ok], axis=1) * 1000.0)
        results[method] = {
            "frames": counted,
            "mpjpe_mm": float(np.mean(errors)),
            "joints_triangulated": len(errors),
            "us_per_frame": 1e6 * seconds / counted,
            "fps": counted / seconds,
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10**9)
