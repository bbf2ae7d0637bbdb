#!/usr/bin/env bash
# The second GPU call (bench/inference.md, "Run it"): after bench/gpu.sh, the points that decide the
# targets with the serving modes side by side in one run: what a server imports, the start-up
# timeline, 8 replicas at the top loads (right after ready, then again), the engine mode (one copy
# of the weights behind 8 fronts) at the same loads with its GPU memory; with PROFILE=1 a py-spy
# profile of the replicas at the top single-sentence load. About 5 minutes.
# Same environment as bench/gpu.sh: WHL (wheels), MODEL (fp16 model dir), OUT (results).
. bench/gpu_setup.sh

echo "== imports a server pays for: the plain chain's preload against sentence-transformers"
PLAIN="import torch, transformers.modeling_utils, transformers.models.auto.modeling_auto, transformers.models.bert.modeling_bert"
for i in 1 2; do
  /usr/bin/time -f "%e s  plain chain preload" python3 -c "$PLAIN"
  /usr/bin/time -f "%e s  torch + sentence_transformers" python3 -c "import torch, sentence_transformers"
done 2>&1 | grep " s " | tee "$OUT/imports.txt"

echo "== requests before background captures (GPU tests)"
CANARYFLOW_TEST_MODEL_DIR=$MODEL timeout 240 python3 -m pytest --noconftest -m gpu -q -p no:cacheprovider \
    tests/inference/test_cuda_graphs.py -k background 2>&1 | tail -4

B="python3 bench/inference.py --model $MODEL --device cuda --workers 8 --clients 4 --measure-s 5 --skip-raw $WRK"
T="ready|loaded in|warmed up|forked|captured|starting|sentence-transformers"
echo "== start-up timeline: 8 replicas, then one process"
date +"start %T.%3N"; timeout -s INT 120 $B --ready-only 2>&1 | grep -E "$T"
date +"start %T.%3N"; timeout -s INT 120 ${B/--workers 8/--workers 1} --ready-only 2>&1 | grep -E "$T"

run() {  # name, timeout, extra args
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout -s INT "$limit" $B "$@" --out "$OUT/$name.json" 2>&1 | grep -E "^  (canaryflow|infinity)|GPU memory|ready in|embedding failed" | sort | uniq -c | sort -k2 | tail -14
}
# The first 1,024 and 256 points come right after ready (graphs traffic asks for still being
# captured), the repeats once they are.
run replicas8 200 --single 1,1024,1024,1536 --batch32 256,256
run engine8 150 --single 1,1024 --batch32 128,256 --server-arg=--engine
if [ -n "${PROFILE:-}" ]; then
echo "== profile: 8 replicas, single sentences at 1,024 connections"
timeout -s INT 90 $B --single 1024 --batch32 128 --profile /tmp/prof --out /tmp/prof.json 2>&1 | grep -E "^  " | tail -3
python3 bench/profile_summary.py /tmp/prof --seconds 5 > "$OUT/profile.txt" 2>&1; head -60 "$OUT/profile.txt"
fi
