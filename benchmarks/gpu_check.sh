#!/usr/bin/env bash
# One-shot GPU check of issue 18; benchmarks/gpu_check.py says what it runs and records.
#
#   bash benchmarks/gpu_check.sh --prepare   # on a machine with the network: the wheels the GPU
#                                            # image lacks (fvcore and its pure-Python deps) -> .whl/
#                                            # (git-ignored; name it in the device tool's carry)
#   bash benchmarks/gpu_check.sh [--dry-run] [gpu_check.py options]   # on the GPU machine
#
# The GPU machine has no network; its python3 already has torch (CUDA) and triton. Send .whl/ with
# the working tree (the device tool's carry: [".whl"]) and pass the commit, which has no .git there:
#   UPBENCH_COMMIT=<git rev-parse HEAD> bash benchmarks/gpu_check.sh
# upbench is put on PYTHONPATH (operators/ and suites/ under their import names), not installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
WHEELS=.whl

if [[ "${1:-}" == "--prepare" ]]; then
  mkdir -p "$WHEELS"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 -d "$WHEELS" iopath==0.1.9 yacs==0.1.8 termcolor
  "$PY" -m pip wheel -q --no-deps -w "$WHEELS" fvcore==0.1.5.post20221221
  ls -l "$WHEELS"
  exit 0
fi

site=$(mktemp -d /tmp/upbench-site.XXXXXX)
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$WHEELS"/*.whl
fi
ln -sfn "$PWD/operators" "$site/upbench_operators"
ln -sfn "$PWD/suites" "$site/upbench_suites"
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1
if ! "$PY" -c "import upbench, upbench_operators, fvcore" 2>/tmp/upbench-import.err; then
  echo "gpu_check.sh: upbench does not import here: $(tail -n 1 /tmp/upbench-import.err)" \
    "(run 'bash benchmarks/gpu_check.sh --prepare' where pip works, and carry .whl)" >&2
  exit 2
fi
exec "$PY" benchmarks/gpu_check.py "$@"
