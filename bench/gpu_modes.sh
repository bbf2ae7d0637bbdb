#!/usr/bin/env bash
# The second GPU call (bench/inference.md, "Run it"): after bench/gpu.sh, the points that decide the
# targets with the serving modes side by side in one run: 8 replicas at the top loads (default
# batches of 256 rows, then --max-batch-size 512), the engine mode (one copy of the weights behind
# 8 fronts) at the same loads with its GPU memory, and a py-spy profile of the replicas at the top
# single-sentence load. The graph tests and the start-up timeline first. About 5 minutes.
# Same environment as bench/gpu.sh: WHL (wheels), MODEL (fp16 model dir), OUT (results).
set -uo pipefail
WHL=${WHL:-.whl}
MODEL=${MODEL:-.assets/minilm-fp16}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHL"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

echo "== graphed vs eager passes; requests before background captures"
CANARYFLOW_TEST_MODEL_DIR=$MODEL timeout 240 python3 -m pytest --noconftest -m gpu -q -p no:cacheprovider \
    tests/inference/test_cuda_graphs.py 2>&1 | tail -4

B="python3 bench/inference.py --model $MODEL --device cuda --workers 8 --clients 4 --measure-s 5 --skip-raw"
if [ -x .tools/wrk ] && ! LD_LIBRARY_PATH=.tools/lib ldd .tools/bin/wrk | grep -q "not found"; then
  B="$B --load-generator wrk"
fi
T="ready|loaded in|warmed up|forked|captured|starting|sentence-transformers"
echo "== start-up timeline: 8 replicas, then one process"
date +"start %T.%3N"; timeout -s INT 120 $B --ready-only 2>&1 | grep -E "$T"
date +"start %T.%3N"; timeout -s INT 120 ${B/--workers 8/--workers 1} --ready-only 2>&1 | grep -E "$T"

run() {  # name, timeout, extra args
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout -s INT "$limit" $B "$@" --out "$OUT/$name.json" 2>&1 | grep -E "^  |GPU memory|ready in" | tail -12
}
run replicas8 150 --single 1,1024,1536 --batch32 128,256
run replicas8-batch512 100 --single 1024 --batch32 128,256 --server-arg=--max-batch-size=512
run engine8 150 --single 1,1024 --batch32 128,256 --server-arg=--engine
echo "== profile: 8 replicas, single sentences at 1,024 connections"
timeout -s INT 90 $B --single 1024 --batch32 128 --profile /tmp/prof --out /tmp/prof.json 2>&1 | grep -E "^  " | tail -3
python3 bench/profile_summary.py /tmp/prof > "$OUT/profile.txt" 2>&1; head -60 "$OUT/profile.txt"
