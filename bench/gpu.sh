#!/usr/bin/env bash
# One call on the GPU machine (bench/inference.md, "Run it"): the graph tests, the start-up time with
# every CUDA graph captured before ready against the lazy default, then the full benchmark table
# (raw ceiling, 8 replicas, float answers as in the earlier runs) with infinity-emb as the peer at
# three of its points (one client, the top single-sentence level, 32 sentences at 64) in the same
# run, and base64 answers (what the openai client asks for) at a few levels. With .tools/wrk
# (bash bench/tools.sh) wrk drives every point of 2 or more connections (a fifth less generator
# CPU per request than the Python clients: bench/loadgen_cost.py); the one-client points stay on
# the Python client. Every row says its generator and that generator's CPU. About 6-7 minutes.
# Run from the repo root with the wheels in $WHL and the fp16 model in $MODEL; results go to $OUT
# (default bench/results).
. bench/gpu_setup.sh
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader

echo "== graphed vs eager passes"
CANARYFLOW_TEST_MODEL_DIR=$MODEL timeout 240 python3 -m pytest --noconftest -m gpu -q -p no:cacheprovider \
    tests/inference/test_cuda_graphs.py 2>&1 | tail -4

B="python3 bench/inference.py --model $MODEL --device cuda --workers 8 --clients 4 --measure-s 5 $WRK"
echo "== start-up, 8 replicas: every graph before ready, then lazy (the default)"
# Each server log line carries its wall time: with the "start" mark they are the start-up timeline
# (fork server preload, fork, CUDA context and weights, captures before ready, ready).
T="ready|loaded in|warmed up|forked|captured|starting"
date +"start %T.%3N"; timeout -s INT 150 $B --ready-only --server-arg=--graph-capture=all --out "$OUT/ready-all.json" 2>&1 | grep -E "$T"
date +"start %T.%3N"; timeout -s INT 120 $B --ready-only --out "$OUT/ready-lazy.json" 2>&1 | grep -E "$T"
echo "== start-up, one process (--workers 1)"
date +"start %T.%3N"; timeout -s INT 120 ${B/--workers 8/--workers 1} --ready-only 2>&1 | grep -E "$T"

echo "== benchmark, float answers; then infinity-emb (the peer) at three points"
timeout -s INT 420 $B --single 1,64,256,512,1024 --batch32 8,32,64,128 --out "$OUT/replicas8.json" \
    --peer infinity --peer-single 1,512 --peer-batch32 64 2>&1 \
    | grep -v -E "^(Loading|20[0-9]{2}-)" | tail -45
echo "== base64 answers"
timeout -s INT 120 $B --skip-raw --single 1,512 --batch32 64 --encoding-format base64 \
    --out "$OUT/replicas8-base64.json" 2>&1 | grep -E "^  " | tail -4
