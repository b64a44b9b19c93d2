#!/usr/bin/env bash
# The MLP step of `benches/mlp_step.rs` against jitted JAX, as a paired ratio.
#
# This VM's speed drifts by ±20% over seconds (other tenants), so two medians taken a
# minute apart can disagree by more than the difference being measured. Each round
# here times 300 of our steps and then 300 of JAX's (the order alternates), and the
# ratio is taken within the round; the script prints every round and the median ratio.
#   bash benches/peers/compare_mlp_step.sh          # ROUNDS=7 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-7}
venv=target/peers-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "jax[cpu]"
fi
bin=$(python3 benches/peers/bench_binary.py mlp_step)
ours() { MLP_STEP_MEDIAN=300 "$bin" | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p'; }
jax() { "$venv/bin/python" benches/peers/jax_mlp_step.py | sed -n 's/^jax value_and_grad: median \([0-9.]*\) ms.*/\1/p'; }
ratios=()
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then o=$(ours); j=$(jax); else j=$(jax); o=$(ours); fi
    ratio=$(python3 -c "print(f'{$o / $j:.3f}')")
    ratios+=("$ratio")
    echo "round $r: backprop $o ms, jax $j ms, backprop/jax $ratio"
done
python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f'median backprop/jax over {len(v)} rounds: {statistics.median(v):.3f} (min {min(v):.3f}, max {max(v):.3f})')" "${ratios[@]}"
