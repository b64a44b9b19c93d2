"""Prints the path of a bench binary of this workspace, building it if needed:
`python3 benches/peers/bench_binary.py mlp_step`. The peer comparison scripts run that
binary directly (as a server or with an environment switch) instead of through
criterion."""
import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def bench_binary(name):
    out = subprocess.run(
        ["cargo", "bench", "--bench", name, "--no-run", "--message-format=json"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m["target"]["name"] == name and m.get("executable"):
            return m["executable"]
    raise SystemExit(f"no `{name}` bench binary")


if __name__ == "__main__":
    print(bench_binary(sys.argv[1]))
