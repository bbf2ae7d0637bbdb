# Sourced by bench/gpu.sh and bench/gpu_modes.sh on the GPU machine, from the repo root: installs the
# carried wheels ($WHL) into /tmp/site, exports the environment, and sets WRK to
# "--load-generator wrk" when the carried .tools/wrk links on this host (else empty: Python clients).
set -uo pipefail
WHL=${WHL:-.whl}
MODEL=${MODEL:-.assets/minilm-fp16}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHL"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
WRK=""
if [ -x .tools/wrk ] && ! LD_LIBRARY_PATH=.tools/lib ldd .tools/bin/wrk | grep -q "not found"; then
  WRK="--load-generator wrk"; echo "load generator: wrk from 2 connections"
else
  echo "load generator: python (.tools/wrk missing or unlinkable)"
fi
