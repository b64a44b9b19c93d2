#!/usr/bin/env bash
# Sets up JAX (CPU) in a virtual environment under target/ and times its MLP step, the
# peer of `cargo bench --bench mlp_step`. Run both on a quiet machine and compare:
#   cargo bench --bench mlp_step -- --warm-up-time 1 --measurement-time 3
#   bash benches/peers/run_jax.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/peers-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "jax[cpu]"
fi
echo "== both cores"
"$venv/bin/python" benches/peers/jax_mlp_step.py
echo "== one core (taskset -c 0)"
taskset -c 0 "$venv/bin/python" benches/peers/jax_mlp_step.py
