#!/usr/bin/env bash
# Create .venv and install modalign with every extra and its test tools. CPU-only machines get the
# CPU build of torch (torch==2.13.0 first, so nothing pulls a multi-GB CUDA build).
#   bash scripts/setup.sh            # library, CLI, search, service, pretrained encoders, test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
# torch stays at the version above while the extras (transformers, peft, faiss, ...) install
echo "torch==2.13.0" > .venv/torch-constraint.txt
.venv/bin/python -m pip install --quiet -c .venv/torch-constraint.txt \
  -e ".[dev,hf,pretrained,search,usearch,qdrant,ray,serve,serve-test]"
# Peer implementations used as numeric oracles by optional tests (no dependencies: their
# packages would pull torchvision; the tests load only their torch-only modules).
.venv/bin/python -m pip install --quiet --no-deps -r requirements-peers.txt
echo "ready: source .venv/bin/activate"
