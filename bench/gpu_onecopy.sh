#!/usr/bin/env bash
# One short GPU call (bench/inference.md, "One copy of the weights"): 8 replicas (8 copies of the
# weights) against the default on a GPU, the engine (8 HTTP fronts, one copy), at the top loads, single sentences at 512
# and 1,024 wrk connections and 32-sentence requests at 64, each mode's start-up and GPU memory;
# then, in the time left, encoders of BERT-base and BERT-large shape (seeded random weights) at 128
# and 512 tokens against their graphed forward pass (bench/encoder_sizes.py); then, if time is
# still left, the GPU tests of the lanes (a replica's one, the engine's two at once). Every phase
# runs under `timeout` cut to what is left of BUDGET_S (default 265 s), so a slow start costs the
# later phases, never the figures already taken. Results under $OUT: replicas8.json, default8.json,
# summary.json, encoder_sizes.json, log.txt (what this script prints), full.log (every line of the
# benchmarks).
# OVERCOMMIT=1 adds bench/overcommit.py after the sizes (overcommit.json; narrow the sizes to make
# room, e.g. SHAPES=bert-base). PHASES="modes sizes overcommit arrival lanes" picks phases (default:
# all but overcommit); arrival is bench/arrival.py (start-up, a new version routed in; arrival.json).
# FRONTS_ALSO=12 measures the default once more with 12 HTTP fronts (default12.json); SKIP_REPLICAS=1
# leaves the 8 replicas (and the summary against them) out.
# SIZES_PEER=infinity runs infinity-emb beside the sizes (bench/encoder_sizes.py --peer infinity, its
# wheel from $WHL; batch size SIZES_PEER_BATCH, default 128): after canaryflow's server for a shape
# has stopped, one infinity start on that folder (MiniLM's was ready in 14 s on an H100,
# bench/inference.md; BERT-large loads more, and infinity warms up on 2 x 128 texts of 512 tokens)
# and, per length, the same 2 s warm-up and MEASURE_S of wrk: about 15 s + 8 s a length per shape,
# ~60 s for the default 2 shapes x 2 lengths, so the phase's cap grows by SIZES_PEER_S (default 70).
#
# On the GPU machine, from a checkout (or a copy of one) with the wheels, the fp16 MiniLM and
# .tools (bash bench/tools.sh) beside it:
#   WHL=../.whl MODEL=../.assets/minilm-fp16 TOOLS=../.tools OUT=$OUT bash bench/gpu_onecopy.sh
# The same on a CPU, as a check of the script itself (no wheels, tiny loads):
#   WHL= PY=.venv/bin/python DEVICE=cpu WORKERS=2 SINGLE=4 BATCH32=2 MEASURE_S=2 SHAPES=minilm \
#     TOKENS=24 SIZES_ARGS=--quick OUT=/tmp/onecopy bash bench/gpu_onecopy.sh
# and its sizes phase with the peer (infinity_emb installed with --no-deps into /tmp/infsite; a
# small batch, as infinity's warm-up of 2 x 128 texts of 512 tokens takes minutes on 2 cores, and
# 8 connections, as 128 of 32 texts queue more than a CPU answers in the measured seconds):
#   WHL= PY=.venv/bin/python DEVICE=cpu WORKERS=1 MEASURE_S=8 SHAPES=minilm TOKENS=24 PHASES=sizes \
#     SIZES_ARGS="--quick --concurrency 8 --threads 1" SIZES_PEER=infinity SIZES_PEER_BATCH=8 \
#     PYTHONPATH=/tmp/infsite OUT=/tmp/onecopy bash bench/gpu_onecopy.sh
set -uo pipefail
START=$SECONDS
BUDGET_S=${BUDGET_S:-265}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")

PHASES=" ${PHASES:-modes sizes arrival lanes} ${OVERCOMMIT:+overcommit} "
want() { [[ "$PHASES" == *" $1 "* ]]; }
left() { echo $((BUDGET_S - (SECONDS - START))); }
# phase_limit MAX: seconds a phase may take, MAX or what is left (minus a margin to write results)
phase_limit() { local l=$(($(left) - 5)); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
say() { echo "== [$((SECONDS - START)) s] $*"; }

main() {
say "setup"
if [ -n "${WHL:-}" ]; then
  # The imports' first read of torch from disk overlaps the wheels' install.
  $PY -c "import torch, transformers, sentence_transformers; torch.zeros(1, device='$DEVICE')" &
  warm=$!
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$WHL"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
  wait $warm
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # kept: where a CPU check finds infinity_emb
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
[ -e .tools ] || cp -r "${TOOLS:-../.tools}" .tools
MODEL=$(realpath "${MODEL:-.assets/minilm-fp16}") || exit 2
[ -f "$MODEL/model.safetensors" ] || { echo "MODEL: no model.safetensors in $MODEL"; exit 2; }
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
if [ -f .commit ]; then echo "code: $(cat .commit)"; else git log -1 --format="code: %h %s" 2>/dev/null; fi

# bench/inference.py at the top loads only (no raw ceiling), wrk from 2 connections.
B="$PY bench/inference.py --model $MODEL --device $DEVICE --workers ${WORKERS:-8} --clients 4 \
   --measure-s ${MEASURE_S:-5} --skip-raw --load-generator wrk --single ${SINGLE:-512,1024} \
   --batch32 ${BATCH32:-64}"
mode() {  # name, max seconds, serve options
  local name=$1 max=$2; shift 2
  local limit; limit=$(phase_limit "$max")
  say "$name ($*; at most ${limit} s)"
  [ "$limit" -gt 20 ] || { echo "skipped: too little time left"; return; }
  timeout -s INT -k 10 "$limit" $B "$@" --out "$OUT/$name.json" 2>&1 | tee -a "$OUT/full.log" \
    | grep -E "^  (canaryflow)|ready in|max \||GPU memory|Traceback|Error|error" | tail -12
}
if want modes; then
  [ -n "${SKIP_REPLICAS:-}" ] || mode replicas8 ${MODE_MAX_S:-85} --server-arg=--replicas
  # No mode named: the default on a GPU, the engine (one copy of the weights); its log says so.
  mode default8 ${MODE_MAX_S:-85}
  # FRONTS_ALSO=N: the default again with N HTTP fronts (does the host's side cap the engine?)
  [ -z "${FRONTS_ALSO:-}" ] || mode "default$FRONTS_ALSO" ${MODE_MAX_S:-85} --workers "$FRONTS_ALSO"
  grep -o "serving mode: .*" "$OUT/full.log" | tail -1
  say "summary"
  [ -n "${SKIP_REPLICAS:-}" ] || $PY bench/engine_summary.py "$OUT/replicas8.json" "$OUT/default8.json" --json "$OUT/summary.json"
fi

PEER_ARGS="" SIZES_MAX_S=200
if [ -n "${SIZES_PEER:-}" ]; then
  PEER_ARGS="--peer $SIZES_PEER --peer-batch-size ${SIZES_PEER_BATCH:-128}"
  SIZES_MAX_S=$((SIZES_MAX_S + ${SIZES_PEER_S:-70}))
fi
limit=$(phase_limit $SIZES_MAX_S)
if ! want sizes; then :
elif [ "$limit" -gt 45 ]; then
  say "encoder sizes: ${SHAPES:-bert-base,bert-large} at ${TOKENS:-128,512} tokens${SIZES_PEER:+, $SIZES_PEER beside} (at most ${limit} s)"
  timeout -s INT -k 10 "$limit" $PY bench/encoder_sizes.py --minilm "$MODEL" --device "$DEVICE" \
      --workers "${WORKERS:-8}" --models-dir /tmp/encoders --shapes "${SHAPES:-bert-base,bert-large}" \
      --tokens "${TOKENS:-128,512}" --measure-s "${MEASURE_S:-5}" --warmup-s 2 ${SIZES_ARGS:-} $PEER_ARGS \
      --out "$OUT/encoder_sizes.json" 2>&1 | tee -a "$OUT/full.log" | grep -E "^  |^\||^peer|Device|Traceback|Error|error"
  [ -f "$OUT/encoder_sizes.json" ] && $PY bench/encoder_sizes.py --table "$OUT/encoder_sizes.json"
else
  say "encoder sizes skipped: ${limit} s left"
fi

# OVERCOMMIT=1: many versions on the device (bench/overcommit.py), 8 MiniLM versions, room for 2
# (--max-resident-versions; OC_ARGS="--cap bytes" for a budget sized from a version's cost, one more
# server start when the first guess is off); each load mixed and split into hot and cold streams,
# measured once the server stopped capturing graphs (warm-up rounds, at most OC_SETTLE_S)
limit=$(phase_limit 180)
if want overcommit && [ "$limit" -gt 50 ]; then
  say "overcommit: ${OC_VERSIONS:-8} versions, room for a quarter (at most ${limit} s)"
  timeout -s INT -k 10 "$limit" $PY bench/overcommit.py --model "$MODEL" --device "$DEVICE" \
      --versions "${OC_VERSIONS:-8}" --concurrency "${OC_CONCURRENCY:-64}" --measure-s 4 \
      --settle-s "${OC_SETTLE_S:-50}" --probes "${OC_PROBES:-20}" ${OC_ARGS:-} \
      --out "$OUT/overcommit.json" 2>&1 | tee -a "$OUT/full.log" \
    | grep -E "^\||^one request|^all resident|^warm-up|^hot set|^split|^budget|^Device|Traceback|Error|error"
  if [ "$DEVICE" != cpu ]; then  # weight slots on the GPU: own rows, no capture on a bring-back
    CANARYFLOW_TEST_MODEL_DIR=$MODEL timeout "$(phase_limit 120)" $PY -m pytest --noconftest -m gpu -q \
        -p no:cacheprovider tests/inference/test_weight_slots_gpu.py 2>&1 | tail -8
  fi
fi

# ARRIVAL: each mode started from nothing until ready, then a second version routed into it
limit=$(phase_limit 90)
if want arrival && [ "$limit" -gt 40 ]; then
  say "start-up and a new version's arrival (at most ${limit} s)"
  timeout -s INT -k 10 "$limit" $PY bench/arrival.py --model "$MODEL" --device "$DEVICE" \
      --workers "${WORKERS:-8}" --mode replicas --mode engine --out "$OUT/arrival.json" 2>&1 \
    | tee -a "$OUT/full.log" | grep -E "^\||^replicas:|^engine:|^Device|Traceback|Error|error"
fi

limit=$(phase_limit 100)
if want lanes && [ "$DEVICE" != cpu ] && [ "$limit" -gt 30 ]; then
  say "GPU tests of the graphs: lanes, captures while serving, eviction"
  CANARYFLOW_TEST_MODEL_DIR=$MODEL timeout "$limit" $PY -m pytest --noconftest -m gpu -q \
      -p no:cacheprovider tests/inference/test_cuda_graphs.py tests/inference/test_bert_encoder.py 2>&1 | tail -8
fi
say "done"
}
main 2>&1 | tee -a "$OUT/log.txt"
