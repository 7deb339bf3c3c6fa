#!/usr/bin/env bash
# Create .venv-vision: a second environment for the torchvision-based peers (timm, open_clip).
#   bash scripts/setup_vision.sh     # after scripts/setup.sh; ~1.5 min, ~5.5 GB
# Why a second environment: timm and open_clip import torchvision, and PyPI's torchvision does not
# import beside the CPU build of torch 2.13.0 that .venv holds ("operator torchvision::nms does not
# exist"). torch 2.14.1 + torchvision 0.29.1 are a matching pair (torchvision 0.29 is built against
# torch 2.14); their default builds carry CUDA libraries but run on CPU. The tests in tests/vision
# and benchmarks/train_throughput.py use this environment; tests/test_vision_env.py runs them from
# the main suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m venv .venv-vision
V=.venv-vision/bin/python
$V -m pip install --quiet --upgrade pip
$V -m pip install --quiet torch==2.14.1 torchvision==0.29.1
echo "torch==2.14.1" > .venv-vision/torch-constraint.txt
# modalign with its vision extra (timm, open-clip-torch) and pytest; torch stays at 2.14.1
$V -m pip install --quiet -c .venv-vision/torch-constraint.txt -e ".[vision]" "pytest>=8"
echo "ready: .venv-vision/bin/python"
