#!/usr/bin/env bash
# Start-up on the GPU machine (issue 27: ready in ≤ 10 s with 8 workers; bench/inference.md,
# "Start-up without transformers"), one call of about 3–4 minutes:
#   1. the imports a fork server pays for, in fresh interpreters, twice: torch alone, the preload
#      without transformers (every served model a BERT the plain-torch encoder serves), the preload
#      with transformers (before, and still for other models);
#   2. the GPU tests of the plain-torch BERT encoder (captured in CUDA graphs, equal to transformers')
#      and of the graphs;
#   3. bench/arrival.py, 8 workers, replicas then engine: ready time with its breakdown from the
#      server's log marks (`startup` in arrival.json: CLI, fork server imports, each process's fork,
#      load and warm-up), and a new version's arrival;
#   4. with BASE=<dir> (a copy of the code before, e.g. `git archive 2b1cd2c | tar -x -C .assets/base`
#      here, carried), the same bench/arrival.py run against that code in the same call.
# Results under $OUT: imports.txt, arrival.json (and arrival-base.json).
#   WHL=.whl MODEL=.assets/minilm-fp16 OUT=$OUT [BASE=.assets/base] bash bench/gpu_startup.sh
# On a CPU, as a check of the script itself:
#   WHL= PY=.venv/bin/python DEVICE=cpu WORKERS=2 OUT=/tmp/startup bash bench/gpu_startup.sh
set -uo pipefail
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
OUT=$(mkdir -p "${OUT:-bench/results}" && realpath "${OUT:-bench/results}")
if [ -n "${WHL:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$WHL"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
else
  export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ -n "${MODEL:-}" ]; then MODEL=$(realpath "$MODEL"); else
  MODEL=$($PY -c "from canaryflow.adapters.model_assets import minilm_path; print(minilm_path())"); fi
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
git log -1 --format="code: %h %s" 2>/dev/null

echo "== imports a fork server pays for (fresh interpreters; the first pair reads from a cold disk)"
SERVING="tokenizers, safetensors, uvicorn, inference.http_front.assembly, inference.models.loader, inference.models.plain_chain"
TRANSFORMERS="transformers.modeling_utils, transformers.models.auto.modeling_auto, transformers.models.auto.tokenization_auto, transformers.models.bert.modeling_bert"
for i in 1 2; do
  /usr/bin/time -f "%e s  torch alone" $PY -c "import torch"
  /usr/bin/time -f "%e s  preload without transformers" $PY -c "import torch, $SERVING"
  /usr/bin/time -f "%e s  preload with transformers" $PY -c "import torch, $TRANSFORMERS, $SERVING"
  /usr/bin/time -f "%e s  the CLI (canaryflow.app.cli)" $PY -c "import canaryflow.app.cli"
done 2>&1 | grep " s " | tee "$OUT/imports.txt"
$PY -c "
from inference.models.loader import served_without_transformers
print('model served without transformers:', served_without_transformers('$MODEL'))"

if [ "$DEVICE" != cpu ]; then
  echo "== GPU tests: the BERT encoder in CUDA graphs, the graphs"
  CANARYFLOW_TEST_MODEL_DIR=$MODEL timeout 150 $PY -m pytest --noconftest -m gpu -q -p no:cacheprovider \
      tests/inference/test_bert_encoder.py tests/inference/test_cuda_graphs.py -k "captured or graphed_equals" \
      2>&1 | tail -4
fi

arrival() {  # code dir, out file
  (cd "$1" && PYTHONPATH=${PYTHONPATH/$PWD/$1} timeout -s INT -k 10 150 $PY bench/arrival.py --model "$MODEL" \
      --device "$DEVICE" --workers "${WORKERS:-8}" --mode replicas --mode engine --out "$2" 2>&1 \
    | grep -E "^\||^replicas:|^engine:|^Device|Traceback|Error")
}
echo "== start-up and a new version's arrival: this code"
arrival "$PWD" "$OUT/arrival.json"
if [ -n "${BASE:-}" ]; then
  echo "== the same, the code before ($BASE)"
  cp bench/startup_marks.py bench/arrival.py "$BASE/bench/"  # the same measurement, the old server
  arrival "$(realpath "$BASE")" "$OUT/arrival-base.json"
fi
