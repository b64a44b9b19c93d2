#!/usr/bin/env python3
"""Writes tests/random_programs.rs: 500 small `#[grad]` functions mixing `let`,
reassignment, compound assignment, branches, `match`, `for`, `while` and `loop` loops
with `break`/`continue` on active values, calls, a slice
argument `w` (indexing, iterator sums) and a local buffer `h` (element writes, reads,
passed to a call), each checked against central differences (f64) at several points.
Deterministic (seeded).

Run from the repo root, then `cargo fmt`:
    python3 tests/support/gen_random_programs.py && cargo fmt
"""
import random

N = 500
rng = random.Random(20261129)

UNARY = ["{}.tanh()", "{}.sin()", "{}.cos()", "({} * {}).exp().recip()", "({} * {} + 1.0).sqrt()",
         "({} * {} + 1.0).ln()", "backprop::sigmoid({})", "{}.atan()", "helper({})"]

# The loop index in scope, if any (slices are indexed with it).
INDEX = []


def atom(vars_):
    r = rng.random()
    if r < 0.6:
        return rng.choice(vars_)
    if r < 0.7:
        return f"w[{rng.randint(0, 2)}]"
    if r < 0.78:
        return f"h[{rng.randint(0, 2)}]"
    if r < 0.86 and INDEX:
        return f"{rng.choice(['w', 'h'])}[{INDEX[-1]} % 3]"
    if r < 0.9:
        return rng.choice(["w.iter().map(|v| v * v).sum::<f64>()", "h.iter().sum::<f64>()",
                           "slice_helper(&h)", "slice_helper(w)", "w.iter().zip(h.iter()).map(|(a, b)| a * b).sum::<f64>()"])
    return f"{rng.choice([0.5, 1.5, 2.0, 0.25, 3.0])}_f64"


def expr(vars_, depth=0):
    if depth > 2 or rng.random() < 0.3:
        return atom(vars_)
    k = rng.random()
    a = expr(vars_, depth + 1)
    if k < 0.45:
        b = expr(vars_, depth + 1)
        op = rng.choice(["+", "-", "*"])
        return f"({a} {op} {b})"
    if k < 0.55:
        b = expr(vars_, depth + 1)
        return f"({a} / (1.0 + {b} * {b}))"
    u = rng.choice(UNARY)
    return u.format(*([a] * u.count("{}")))


def stmt(vars_, mutable, depth):
    """One statement; may nest a branch or a loop. Returns lines."""
    r = rng.random()
    lines = []
    if r < 0.3 or not mutable:
        name = f"v{len(vars_)}"
        lines.append(f"let {name} = ({expr(vars_)}).tanh();")
        vars_.append(name)
        return lines
    target = rng.choice(mutable)
    if r < 0.42:
        j = f"{INDEX[-1]} % 3" if INDEX and rng.random() < 0.5 else str(rng.randint(0, 2))
        op = rng.choice(["=", "+=", "*="])
        lines.append(f"h[{j}] {op} ({expr(vars_)}).tanh();")
    elif r < 0.5:
        op = rng.choice(["+=", "-=", "*="])
        lines.append(f"{target} {op} ({expr(vars_)}).tanh();")
    elif r < 0.6:
        lines.append(f"{target} = ({expr(vars_)}).tanh();")
    elif r < 0.75 and depth < 2:
        cond = rng.choice([f"{rng.choice(vars_)} > {rng.choice(['0.1', '-0.2', '0.0'])}", "n % 2 == 0", f"n > {rng.randint(0, 3)}"])
        lines.append(f"if {cond} {{")
        inner = list(vars_)
        for _ in range(rng.randint(1, 2)):
            lines += ["    " + l for l in stmt(inner, mutable, depth + 1)]
        lines.append("} else {")
        inner = list(vars_)
        for _ in range(rng.randint(0, 2)):
            lines += ["    " + l for l in stmt(inner, mutable, depth + 1)]
        lines.append("}")
    elif r < 0.9 and depth < 2:
        head = rng.choice(["for _ in 0..n {", "for i in 0..n + 1 {", "for _ in (0..n).rev() {", "for i in 0..n + 1 {"])
        lines.append(head.replace(" i ", f" i{depth} "))
        if " i " in head:
            INDEX.append(f"i{depth}")
        inner = list(vars_)
        body = []
        for _ in range(rng.randint(1, 3)):
            body.append(stmt(inner, mutable, depth + 1))
        if rng.random() < 0.35:
            # An early exit or skip on an active value (points sit away from the threshold).
            jump = rng.choice(["break", "continue"])
            cond = f"{rng.choice(vars_ + mutable)} > {rng.choice(['0.37', '-0.13', '0.07'])}"
            body.insert(rng.randint(0, len(body)), [f"if {cond} {{", f"    {jump};", "}"])
        for b in body:
            lines += ["    " + l for l in b]
        if " i " in head:
            INDEX.pop()
        lines.append("}")
    elif depth < 2 and rng.random() < 0.3:
        # A `match` on the (inactive) trip count.
        lines.append("match n % 3 {")
        for pat in ["0", "1 | 2", "_"]:
            lines.append(f"    {pat} => {{")
            inner = list(vars_)
            for _ in range(rng.randint(0, 2)):
                lines += ["        " + l for l in stmt(inner, mutable, depth + 1)]
            lines.append("    }")
        lines.append("}")
    elif depth < 2 and rng.random() < 0.3:
        # `loop` with the exit test first and a `break` on an active value.
        c = f"k{rng.randint(0, 10**6)}"
        lines.append(f"let mut {c} = 0;")
        lines.append("loop {")
        lines.append(f"    if {c} >= n {{")
        lines.append("        break;")
        lines.append("    }")
        inner = list(vars_)
        for _ in range(rng.randint(1, 2)):
            lines += ["    " + l for l in stmt(inner, mutable, depth + 1)]
        lines.append(f"    if {rng.choice(vars_)} > 0.61 {{")
        lines.append("        break;")
        lines.append("    }")
        lines.append(f"    {c} += 1;")
        lines.append("}")
    elif depth < 2:
        # A while loop with a bounded trip count (a counter carried beside the values).
        c = f"k{rng.randint(0, 10**6)}"
        lines.append(f"let mut {c} = 0;")
        lines.append(f"while {c} < n {{")
        inner = list(vars_)
        for _ in range(rng.randint(1, 2)):
            lines += ["    " + l for l in stmt(inner, mutable, depth + 1)]
        lines.append(f"    {c} += 1;")
        lines.append("}")
    else:
        op = rng.choice(["+=", "*="])
        lines.append(f"{target} {op} ({expr(vars_)}).tanh();")
    return lines


out = [
    "// @generated by tests/support/gen_random_programs.py; do not edit.",
    "//! A differential test: 500 generated functions mixing reassignment, compound",
    "//! assignment, branches, `for`/`while` loops, calls, a slice argument and a local",
    "//! buffer written element-wise, each `#[grad]` gradient",
    "//! against central differences (f64) at several points (away from kinks: every",
    "//! branch condition compares with a threshold the sampled points do not sit on).",
    "#![allow(clippy::all, unused_mut, unused_variables, unused_assignments, unused_parens)]",
    "",
    "use backprop::{grad, gradcheck};",
    "",
    "#[grad]",
    "fn helper(v: f64) -> f64 {",
    "    v * v.tanh() + 0.5 * v",
    "}",
    "",
    "#[grad]",
    "fn slice_helper(v: &[f64]) -> f64 {",
    "    v.iter().map(|t| t * t.tanh()).sum()",
    "}",
    "",
]
tests = []
for k in range(N):
    vars_ = ["x", "y"]
    mutable = []
    body = ["let mut h = vec![0.0_f64; 3];"]
    for name in ["a", "b"][: rng.randint(1, 2)]:
        body.append(f"let mut {name} = ({expr(vars_)}).tanh();")
        mutable.append(name)
        vars_.append(name)
    for _ in range(rng.randint(2, 5)):
        body += stmt(vars_, mutable, 0)
    ret = " + ".join(mutable + [rng.choice(vars_)])
    out.append("#[grad]")
    out.append(f"fn p{k}(x: f64, y: f64, w: &[f64], n: usize) -> f64 {{")
    out += ["    " + l for l in body]
    out.append(f"    {ret}")
    out.append("}")
    out.append("")
    tests.append(k)

out.append("/// Points: a few x, y and trip counts.")
out.append("const POINTS: [(f64, f64, [f64; 3], usize); 4] = [(0.3, -0.7, [0.2, -0.4, 0.9], 0), (-1.1, 0.45, [-0.6, 0.35, 0.15], 1), (0.8, 1.3, [1.1, 0.05, -0.3], 2), (-0.35, -0.9, [0.5, -1.2, 0.7], 3)];")
out.append("")
for chunk in range(0, N, 50):
    out.append("#[test]")
    out.append(f"fn programs_{chunk:03}_to_{chunk + 49:03}() {{")
    out.append("    for (x, y, w, n) in POINTS {")
    out.append("        let w = w.to_vec();")
    for k in range(chunk, min(chunk + 50, N)):
        out.append(f"        let r = gradcheck!(p{k}(x = x, y = y, w = &w, n = const n));")
        out.append(f"        assert!(r.passed(), \"p{k} at ({{x}}, {{y}}, {{w:?}}, {{n}}):\\n{{r}}\");")
    out.append("    }")
    out.append("}")
    out.append("")
open("tests/random_programs.rs", "w").write("\n".join(out) + "\n")
