#!/usr/bin/env bash
# Issue 16's scaling table: ours and PyTorch at 1, 2, 4, ... threads up to the cores
# available (or the counts given), each side pinned with `taskset -c 0-(n-1)` and told n
# (RAYON_NUM_THREADS and MATMUL_NUM_THREADS for ours, torch.set_num_threads for
# PyTorch). Prints a markdown table of median ms and the ratio ours / PyTorch.
#
#   bash benches/peers/scaling.sh [THREADS ...]
#
# Our side is the prebuilt `examples/scaling.rs` (SCALING_BIN, default
# target/release/examples/scaling; built with cargo when missing and cargo exists), so
# it runs on a machine without a Rust toolchain. PyTorch is `python3` (PYTHON) with
# torch importable; without it the PyTorch column is "-". SCALING_ROUNDS (default 7)
# timed calls per point. SCALING_VARIANTS="gemm blocks" adds rows for sgemm and both MLP
# steps with every threaded product on gemm's own threading (`+gemmthreads`) or on one
# block of C per thread (`+blocks`): BACKPROP_MATMUL_THREADING.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${SCALING_BIN:-$root/target/release/examples/scaling}
py=${PYTHON:-python3}
workloads=${SCALING_WORKLOADS:-"sgemm mlp_small mlp_big xent adamw f_big"}
if [[ ! -x $bin ]]; then
    (cd "$root" && cargo build --release --example scaling >&2)
fi
cores=$(nproc)
if (($# > 0)); then
    counts=("$@")
else
    counts=()
    for ((n = 1; n < cores; n *= 2)); do counts+=("$n"); done
    counts+=("$cores")
fi
have_torch=0
"$py" -c "import torch" 2>/dev/null && have_torch=1

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for n in "${counts[@]}"; do
    pin=(taskset -c "0-$((n - 1))")
    # shellcheck disable=SC2086
    "${pin[@]}" env RAYON_NUM_THREADS="$n" MATMUL_NUM_THREADS="$n" "$bin" $workloads f_forward_big |
        sed "s/^/ours $n /" | tee -a "$results" >&2
    for v in ${SCALING_VARIANTS:-}; do
        "${pin[@]}" env RAYON_NUM_THREADS="$n" MATMUL_NUM_THREADS="$n" BACKPROP_MATMUL_THREADING="$v" \
            "$bin" sgemm mlp_small mlp_big | sed "s/^/ours $n /" | tee -a "$results" >&2
    done
    if ((have_torch)); then
        # shellcheck disable=SC2086
        "${pin[@]}" "$py" "$here/scaling_torch.py" "$n" $workloads |
            sed "s/^/torch $n /" | tee -a "$results" >&2
    fi
done

echo
echo "median ms over ${SCALING_ROUNDS:-7} rounds; $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo
echo "| workload | threads | backprop | PyTorch | backprop / PyTorch |"
echo "|---|---|---|---|---|"
awk '
    { key = $3 " " $2; t[$1, key] = $4; if (!(key in seen)) { seen[key] = 1; order[++k] = key } }
    END {
        for (i = 1; i <= k; i++) {
            split(order[i], p, " "); name = p[1]; n = p[2]
            ours = t["ours", order[i]]
            if (ours == "") continue
            base = name; sub(/\+(gemmthreads|blocks)$/, "", base)
            peer = t["torch", base " " n]
            ratio = (peer != "" && peer > 0) ? sprintf("%.2f", ours / peer) : "-"
            if (name == "f_forward_big") {
                f = t["ours", "f_big " n]
                ratio = (f != "") ? sprintf("f_big / this = %.2f", f / ours) : "-"
                peer = ""
            }
            printf "| %s | %s | %s | %s | %s |\n", name, n, ours, (peer == "" ? "-" : peer), ratio
        }
    }' "$results" | sort -t'|' -k2,2 -k3,3n -s
