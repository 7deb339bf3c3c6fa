#!/usr/bin/env bash
# The static checks CI runs before the tests (run it locally before committing):
# ruff lint, ruff format check and mypy on src/, with the versions scripts/setup.sh installed.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
