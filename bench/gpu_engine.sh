#!/usr/bin/env bash
# One GPU call (bench/inference.md, "One copy of the weights"): the serving modes side by side at the
# points that decide the one-copy targets, in one run on one machine: 8 replicas (8 copies), the
# engine (one copy behind 8 fronts) with its default two GPU streams and with one, and, when
# BASE=<dir> holds a checkout of the code before (e.g. `git archive <commit> | tar -x -C <dir>`),
# that code's engine too. GPU tests first (graphed = eager, two lanes at once); PROFILE=1 adds a
# py-spy profile of the engine at the top loads. About 6 minutes.
# Same environment as bench/gpu.sh: WHL (wheels), MODEL (fp16 model dir), OUT (results).
. bench/gpu_setup.sh
MODEL=$(realpath "$MODEL")
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader

echo "== GPU tests: graphed vs eager passes, two lanes at once"
CANARYFLOW_TEST_MODEL_DIR=$MODEL timeout 240 python3 -m pytest --noconftest -m gpu -q -p no:cacheprovider \
    tests/inference/test_cuda_graphs.py -k "${TEST_FILTER:-}" 2>&1 | tail -4

POINTS="--single ${SINGLE:-1,1024,1536} --batch32 ${BATCH32:-128,256}"
B="python3 bench/inference.py --model $MODEL --device cuda --workers 8 --clients 4 --measure-s 5 --skip-raw $WRK $POINTS"
run() {  # name, timeout, extra args
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout -s INT "$limit" $B "$@" --out "$OUT/$name.json" 2>&1 \
    | grep -E "^  (canaryflow|infinity)|GPU memory|ready in|embedding failed|Traceback|Error" | tail -14
}
run replicas8 150 --server-arg=--replicas
run engine8 150 --server-arg=--engine
before() {  # name, extra args: the code in $BASE, same points
  local name=$1; shift
  echo "== $name (the code in $BASE)"
  (cd "$BASE" && timeout -s INT 150 python3 bench/inference.py --model $MODEL --device cuda --workers 8 \
      --clients 4 --measure-s 5 --skip-raw $WRK $POINTS "$@" --out "$OUT/$name.json" 2>&1 \
    | grep -E "^  canaryflow|ready in|Traceback|Error" | tail -8)
}
if [ -n "${BASE:-}" ]; then
  BASE=$(realpath "$BASE"); OUT=$(realpath "$OUT")
  [ -d "$BASE/.tools" ] || cp -r .tools "$BASE/"  # wrk, found beside the bench
  before engine8-before --server-arg=--engine
fi
# SIZES=1: the real-size benchmark in the same call (bench/gpu_sizes.sh; SHAPES, TOKENS, LIMIT narrow it)
if [ -n "${SIZES:-}" ]; then bash bench/gpu_sizes.sh; fi
if [ -n "${BASE:-}" ] && [ "$SECONDS" -lt "${BEFORE_BY:-470}" ]; then before replicas8-before --server-arg=--replicas; fi
summary() {
  python3 bench/engine_summary.py "$OUT"/replicas8.json "$OUT"/replicas8-before.json "$OUT"/engine8.json \
      "$OUT"/engine8-before.json "$OUT"/engine8-1stream.json | tee "$OUT/summary.txt"
}
summary
# What is left of a 10-minute call: the engine on one stream, then the profile.
if [ "$SECONDS" -lt "${ONE_STREAM_BY:-440}" ]; then
  CANARYFLOW_INFERENCE_GPU_STREAMS=1 run engine8-1stream 100 --server-arg=--engine
  summary
fi
if [ -n "${PROFILE:-}" ] && [ "$SECONDS" -lt "${PROFILE_BY:-470}" ]; then
  echo "== profile: engine, top loads"
  timeout -s INT 100 $B --single 1536 --batch32 256 --server-arg=--engine --profile /tmp/prof \
      --out /tmp/prof.json 2>&1 | grep -E "^  " | tail -3
  python3 bench/profile_summary.py /tmp/prof --seconds 5 > "$OUT/profile-engine.txt" 2>&1; head -70 "$OUT/profile-engine.txt"
fi
