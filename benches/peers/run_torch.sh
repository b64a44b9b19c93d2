#!/usr/bin/env bash
# Sets up PyTorch (CPU use of the PyPI wheel) in a virtual environment under target/ and
# times its MLP step and its AdamW step, the peers of `benches/mlp_step.rs` and
# `benches/optim.rs`. Run on a quiet machine, next to those benches.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/peers-torch
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch
fi
"$venv/bin/python" -W ignore benches/peers/torch_mlp_step.py
"$venv/bin/python" -W ignore benches/peers/torch_adamw.py
