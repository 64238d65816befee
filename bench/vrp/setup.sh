#!/usr/bin/env bash
# Makes the virtualenv the VRP benchmark runs the peer solvers from (bench/.venv, git-ignored)
# and installs them from PyPI: PyVRP 0.14, OR-Tools and VROOM (pyvroom). Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${STADION_BENCH_VENV:-$here/../.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
"$venv/bin/python" -c 'from importlib.metadata import version as v; print("pyvrp", v("pyvrp"), "| ortools", v("ortools"), "| pyvroom", v("pyvroom"))'
