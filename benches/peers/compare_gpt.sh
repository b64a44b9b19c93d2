#!/usr/bin/env bash
# The GPT of examples/gpt.rs against the same model in PyTorch (benches/peers/torch_gpt.py):
# same initial weights, same batches, same recipe. Checks the loss curves agree step by step,
# then times both in alternating rounds (paired: each round runs both back to back, so a
# busy machine slows both). Usage: benches/peers/compare_gpt.sh [STEPS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-200}
rounds=${2:-3}
py=${TORCH_PYTHON:-target/peers-torch/bin/python}
dir=out/gpt-peer
cargo build --release --example gpt
gpt=target/release/examples/gpt
"$gpt" --steps "$steps" --dump-init "$dir" --out "$dir" --quiet --sample 0 | grep -E "^(done|step)"
"$py" -W ignore benches/peers/torch_gpt.py "$dir" --csv "$dir/torch.csv" --threads 2
python3 - "$dir" <<'PY'
import csv, sys
d = sys.argv[1]
r = list(csv.DictReader(open(f"{d}/losses.csv")))
t = list(csv.DictReader(open(f"{d}/torch.csv")))
rel = [abs(float(a["loss"]) - float(b["loss"])) / float(b["loss"]) for a, b in zip(r, t)]
print(f"losses compared at {len(rel)} steps: max relative difference {max(rel):.2e}; "
      f"step {r[-1]['step']}: backprop {float(r[-1]['loss']):.5f}, torch {float(t[-1]['loss']):.5f}")
PY
for i in $(seq "$rounds"); do
    echo "round $i"
    "$gpt" --steps "$steps" --out "$dir/round" --quiet --sample 0 --eval-interval 100000 | grep -E "^done"
    "$py" -W ignore benches/peers/torch_gpt.py "$dir" --threads 2
done
