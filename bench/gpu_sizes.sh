#!/usr/bin/env bash
# One GPU call (bench/inference.md, "Real sizes and lengths"): bench/encoder_sizes.py on MiniLM and on
# BERT-base and BERT-large shapes (seeded random weights), 24/48/128/512 tokens: the server (8 fronts
# and the engine, one copy of the weights) against the model's own graphed forward pass. About 7
# minutes. Same environment as bench/gpu.sh: WHL (wheels), MODEL (fp16 MiniLM dir), OUT (results).
. bench/gpu_setup.sh
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
timeout -s INT ${LIMIT:-540} python3 bench/encoder_sizes.py --minilm "$MODEL" --device cuda --models-dir /tmp/encoders \
    --shapes "${SHAPES:-minilm,bert-base,bert-large}" --tokens "${TOKENS:-24,48,128,512}" \
    --out "$OUT/encoder_sizes.json" "$@" 2>&1 | grep -E "^  |^\||^peer|Device|Traceback|Error|ready" | tee "$OUT/sizes.txt"
