#!/usr/bin/env python3
"""Writes tests/random_programs.rs: N small `#[grad]` functions `p0..` mixing `let`,
reassignment, compound assignment, branches, `match`, `for`, `while` and `loop` loops
with `break`/`continue` on active values, calls, a slice
argument `w` (indexing, iterator sums) and a local buffer `h` (element writes, reads,
passed to a call), then M functions `q0..` from the same grammar with issue 13's forms
added: `w` owned (`Vec<f64>` or `[f64; 3]`) and lent by reference to calls with a rule
(`weighted(&w, a)`, `slice_helper(&w)`, `backprop::logsumexp(&w)`), `vec![..]` literals
whose later element is an iterator reduction, then written element-wise, `loop`s whose
value is bound with `return` (also from a `for` nested in them) and `break value`,
`let v = if c { return r; } else { e };`, `return` from `for` loops, and `#[cfg(..)]`
on `let`s, `if`s, `for`s, `match`es, blocks and `match` arms (conditions whose truth
the test binary knows: a statement under a false one changes the result if it ran).
Each is checked against central differences (f64) at several points, and `f_grad`'s
value against `f`'s bit for bit. Deterministic (seeded); the `p` programs are the
same as before the `q` programs were added (the new forms draw no random numbers for
them).

Run from the repo root (the defaults are the checked-in run), then `cargo fmt`:
    python3 tests/support/gen_random_programs.py && cargo fmt
Or into another file: python3 tests/support/gen_random_programs.py [N [M [SEED]]] [--out PATH]
tests/support/check_generated.sh regenerates both generated files and diffs them.
"""
import random
import sys

ARGS = [a for a in sys.argv[1:] if not a.startswith("--out")]
OUT = "tests/random_programs.rs"
for i, a in enumerate(sys.argv[1:]):
    if a.startswith("--out="):
        OUT = a[len("--out="):]
    elif a == "--out":
        OUT = sys.argv[i + 2]
        ARGS.remove(OUT)
N = int(ARGS[0]) if len(ARGS) > 0 else 500
M = int(ARGS[1]) if len(ARGS) > 1 else 150
SEED = int(ARGS[2]) if len(ARGS) > 2 else 20261129
rng = random.Random(SEED)
DEFAULTS = (N, M, SEED) == (500, 150, 20261129)

# Issue 13's forms: off for the `p` programs (no extra random draws), on for the `q` ones.
FEATURES = False
# How the function names its slice argument when lending it (`w` borrowed, `&w` owned).
WREF = "w"
# Inside an `if`/`match` arm (where `return` is refused): a depth counter.
BRANCH = [0]
# The `#[cfg]` conditions this program uses: (condition, true in the test binary).
CONDS = []
CFG_POOL = [("test", True), ("not(test)", False), ("all()", True), ("any()", False),
            ("not(any())", True), ("all(test, any())", False), ("any(test, any())", True)]

UNARY = ["{}.tanh()", "{}.sin()", "{}.cos()", "({} * {}).exp().recip()", "({} * {} + 1.0).sqrt()",
         "({} * {} + 1.0).ln()", "backprop::sigmoid({})", "{}.atan()", "helper({})"]

# The loop index in scope, if any (slices are indexed with it).
INDEX = []


def atom(vars_):
    if FEATURES and rng.random() < 0.1:
        return rng.choice([f"weighted({WREF}, {rng.choice(vars_)})", f"backprop::logsumexp({WREF})",
                           "backprop::logsumexp(&h)", f"weighted(&h, {rng.choice(vars_)})",
                           f"slice_helper({WREF})"])
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
                           "slice_helper(&h)", f"slice_helper({WREF})", "w.iter().zip(h.iter()).map(|(a, b)| a * b).sum::<f64>()"])
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


def fresh(prefix):
    return f"{prefix}{rng.randint(0, 10**6)}"


def reduction(vars_):
    return rng.choice(["w.iter().sum::<f64>()", f"w.iter().map(|v| v * {rng.choice(vars_)}).sum::<f64>()",
                       "h.iter().sum::<f64>()", f"h.iter().map(|v| v * {rng.choice(vars_)}).sum::<f64>()",
                       "w.iter().zip(h.iter()).map(|(p, q)| p * q).sum::<f64>()"])


def new_form(vars_, mutable, depth):
    """One of issue 13's forms, or None to fall through to the old grammar."""
    r = rng.random()
    lines = []
    if r < 0.25:
        # A `vec!` literal whose later element is a reduction, then written.
        l = fresh("l")
        elems = [f"({expr(vars_)}).tanh()", reduction(vars_)]
        if rng.random() < 0.4:
            elems.insert(rng.randint(0, 2), rng.choice(vars_))
        lines.append(f"let mut {l} = vec![{', '.join(elems)}];")
        for _ in range(rng.randint(1, 3)):
            j = rng.randint(0, len(elems) - 1)
            lines.append(f"{l}[{j}] {rng.choice(['=', '+=', '*=', '-='])} ({expr(vars_)}).tanh();")
        use = rng.choice([f"{l}[0] * {l}[1]", f"slice_helper(&{l})", f"{l}.iter().sum::<f64>()",
                          f"{l}[{len(elems) - 1}] + {l}.iter().map(|v| v * v).sum::<f64>()"])
        name = f"v{len(vars_)}"
        lines.append(f"let {name} = ({use}).tanh();")
        vars_.append(name)
        return lines
    if r < 0.5 and depth < 2:
        # A `loop` whose value is bound: `break value`, and `return` (outside branches).
        c = fresh("c")
        lines.append(f"let mut {c} = 0;")
        name = f"v{len(vars_)}"
        lines.append(f"let {name} = loop {{")
        lines.append(f"    {c} += 1;")
        lines.append(f"    if {c} > n {{")
        lines.append(f"        break ({expr(vars_)}).tanh();")
        lines.append("    }")
        inner = list(vars_)
        body = [stmt(inner, mutable, depth + 1) for _ in range(rng.randint(1, 2))]
        # The exits go anywhere among the body's statements: they read only the names
        # bound before the loop.
        inner = list(vars_)
        exits = []
        if BRANCH[0] == 0 and rng.random() < 0.8:
            exits.append([f"if {rng.choice(inner)} > {rng.choice(['0.37', '-0.13', '0.07'])} {{",
                          f"    return ({expr(inner)}).tanh();", "}"])
        if BRANCH[0] == 0 and rng.random() < 0.5:
            # A `for` nested in the value loop, with a `return` inside it.
            i = f"i{depth + 1}"
            loop = [f"for {i} in 0..n + 1 {{"]
            INDEX.append(i)
            inner2 = list(inner)
            loop += ["    " + l for l in stmt(inner2, mutable, depth + 2)]
            loop += [f"    if {rng.choice(inner2)} > {rng.choice(['0.41', '-0.27', '0.13'])} {{",
                     f"        return ({expr(inner2)}).tanh();", "    }"]
            INDEX.pop()
            loop.append("}")
            exits.append(loop)
        if rng.random() < 0.5:
            exits.append([f"if {rng.choice(inner)} > {rng.choice(['0.53', '-0.31', '0.19'])} {{",
                          f"    break ({expr(inner)}).tanh();", "}"])
        if rng.random() < 0.3:
            exits.append([f"if {rng.choice(inner)} > {rng.choice(['0.29', '-0.47'])} {{", "    continue;", "}"])
        for e in exits:
            body.insert(rng.randint(0, len(body)), e)
        for b in body:
            lines += ["    " + l for l in b]
        lines.append("};")
        vars_.append(name)
        return lines
    if r < 0.6 and depth == 0 and BRANCH[0] == 0:
        # `let v = if c { return r; } else { e };` (either arm returning).
        name = f"v{len(vars_)}"
        cond = f"{rng.choice(vars_)} > {rng.choice(['0.23', '-0.17', '0.71'])}"
        ret = f"return ({expr(vars_)}).tanh()"
        val = f"({expr(vars_)}).tanh()"
        if rng.random() < 0.5:
            lines += [f"let {name} = if {cond} {{", f"    {ret};", "} else {", f"    {val}", "};"]
        else:
            lines += [f"let {name} = if {cond} {{", f"    {val}", "} else {", f"    {ret}", "};"]
        vars_.append(name)
        return lines
    if r < 0.9 and CONDS:
        return cfg_stmt(vars_, mutable, depth)
    return None


def cfg_stmt(vars_, mutable, depth):
    cond, truth = rng.choice(CONDS)
    k = rng.random()
    lines = []
    if k < 0.35:
        # A `let` under the condition: a false one changes the result if it ran.
        v = rng.choice(vars_ + mutable)
        m = "mut " if v in mutable else ""
        if truth and rng.random() < 0.5:
            name = f"v{len(vars_)}"
            lines.append(f"#[cfg({cond})]")
            lines.append(f"let {name} = ({expr(vars_)}).tanh();")
            vars_.append(name)
        elif truth:
            lines.append(f"#[cfg({cond})]")
            lines.append(f"let {m}{v} = ({v} * 0.5 + {expr(vars_)}).tanh();")
        else:
            lines.append(f"#[cfg({cond})]")
            lines.append(f"let {m}{v} = {v} * 100.0 + 1.0;")
        return lines
    if k < 0.5:
        # A pair: the same name under a condition and under its negation.
        name = f"v{len(vars_)}"
        lines += [f"#[cfg({cond})]", f"let {name} = ({expr(vars_)}).sin();",
                  f"#[cfg(not({cond}))]", f"let {name} = ({expr(vars_)}).cos();"]
        vars_.append(name)
        return lines
    # A statement of the old grammar under the condition: `if`, `for` and `match` take
    # the attribute, anything else goes in a block (no names escape either way).
    inner = list(vars_)
    # `return` is refused in a loop inside a block, as inside a branch: no returns here.
    BRANCH[0] += 1
    body = stmt(inner, mutable, depth + 1) if depth < 2 else stmt(inner, mutable, 2)
    BRANCH[0] -= 1
    if not truth and mutable and rng.random() < 0.5:
        body.append(f"{rng.choice(mutable)} *= 100.0;")
    lines.append(f"#[cfg({cond})]")
    if len(body) > 1 and body[0].split(" ")[0] in ("if", "for", "match") and body[-1] == "}":
        # One statement (the old grammar's `if`/`for`/`match` lines end at its `}`).
        return lines + body
    return lines + ["{"] + ["    " + l for l in body] + ["}"]


def stmt(vars_, mutable, depth):
    """One statement; may nest a branch or a loop. Returns lines."""
    if FEATURES and rng.random() < 0.35:
        lines = new_form(vars_, mutable, depth)
        if lines is not None:
            return lines
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
        BRANCH[0] += 1
        inner = list(vars_)
        for _ in range(rng.randint(1, 2)):
            lines += ["    " + l for l in stmt(inner, mutable, depth + 1)]
        lines.append("} else {")
        inner = list(vars_)
        for _ in range(rng.randint(0, 2)):
            lines += ["    " + l for l in stmt(inner, mutable, depth + 1)]
        BRANCH[0] -= 1
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
            if FEATURES and BRANCH[0] == 0 and rng.random() < 0.3:
                jump = f"return ({expr(vars_)}).tanh()"
            else:
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
        BRANCH[0] += 1
        if FEATURES and CONDS and rng.random() < 0.5:
            # An arm under a condition, ahead of the arm it overrides when true.
            cond, truth = rng.choice(CONDS)
            lines.append(f"    #[cfg({cond})]")
            lines.append(f"    {rng.choice(['0', '1', '2'])} => {{")
            inner = list(vars_)
            for _ in range(rng.randint(0, 1)):
                lines += ["        " + l for l in stmt(inner, mutable, depth + 1)]
            if mutable:
                lines.append(f"        {rng.choice(mutable)} {'+= 0.5' if truth else '*= 100.0'};")
            lines.append("    }")
        for pat in ["0", "1 | 2", "_"]:
            lines.append(f"    {pat} => {{")
            inner = list(vars_)
            for _ in range(rng.randint(0, 2)):
                lines += ["        " + l for l in stmt(inner, mutable, depth + 1)]
            lines.append("    }")
        BRANCH[0] -= 1
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


CMD = "python3 tests/support/gen_random_programs.py" + ("" if DEFAULTS else f" {N} {M} {SEED}") + " && cargo fmt"
out = [
    f"// @generated by tests/support/gen_random_programs.py ({CMD}); do not edit.",
    f"//! A differential test: {N} generated functions `p` mixing reassignment, compound",
    "//! assignment, branches, `for`/`while` loops, calls, a slice argument and a local",
    f"//! buffer written element-wise, and {M} more `q` with issue 13's forms (an owned",
    "//! buffer argument lent to calls, `vec![..]` literals with reductions, `return` in",
    "//! loops whose value is bound and in `let v = if ..`, `#[cfg(..)]` on statements and",
    "//! arms), each `#[grad]` gradient against central differences (f64) at several",
    "//! points (away from kinks: every branch condition compares with a threshold the",
    "//! sampled points do not sit on), and `f_grad`'s value against `f`'s bit for bit.",
    "#![allow(clippy::all, unused_mut, unused_variables, unused_assignments, unused_parens, unused_braces, unreachable_patterns, unreachable_code)]",
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
    "#[grad]",
    "fn weighted(v: &[f64], a: f64) -> f64 {",
    "    let mut s = 0.0;",
    "    for t in v {",
    "        s += t * a;",
    "    }",
    "    s.tanh()",
    "}",
    "",
]


def program(name, sig):
    vars_ = ["x", "y"]
    mutable = []
    body = ["let mut h = vec![0.0_f64; 3];"]
    for v in ["a", "b"][: rng.randint(1, 2)]:
        body.append(f"let mut {v} = ({expr(vars_)}).tanh();")
        mutable.append(v)
        vars_.append(v)
    for _ in range(rng.randint(2, 5)):
        body += stmt(vars_, mutable, 0)
    ret = " + ".join(mutable + [rng.choice(vars_)])
    out.append("#[grad]")
    out.append(f"fn {name}({sig}) -> f64 {{")
    out.extend("    " + l for l in body)
    out.append(f"    {ret}")
    out.append("}")
    out.append("")


for k in range(N):
    program(f"p{k}", "x: f64, y: f64, w: &[f64], n: usize")

# The `q` programs: the same grammar with issue 13's forms, `w` owned or borrowed.
FEATURES = True
q_types = []
for k in range(M):
    wty = rng.choice(["Vec<f64>", "[f64; 3]", "&[f64]"])
    WREF = "w" if wty == "&[f64]" else "&w"
    CONDS = rng.sample(CFG_POOL, rng.randint(1, 2)) if rng.random() < 0.6 else []
    program(f"q{k}", f"x: f64, y: f64, w: {wty}, n: usize")
    q_types.append(wty)

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
        out.append(f"        assert_eq!(p{k}_grad(x, y, &w, n).0.to_bits(), p{k}(x, y, &w, n).to_bits(), \"p{k} value\");")
    out.append("    }")
    out.append("}")
    out.append("")
for chunk in range(0, M, 50):
    out.append("#[test]")
    out.append(f"fn issue13_programs_{chunk:03}_to_{chunk + 49:03}() {{")
    out.append("    for (x, y, w, n) in POINTS {")
    out.append("        let v = w.to_vec();")
    for k in range(chunk, min(chunk + 50, M)):
        arg = {"Vec<f64>": ("w = v.clone()", "v.clone()"), "[f64; 3]": ("w = w", "w"), "&[f64]": ("w = &v", "&v")}[q_types[k]]
        out.append(f"        let r = gradcheck!(q{k}(x = x, y = y, {arg[0]}, n = const n));")
        out.append(f"        assert!(r.passed(), \"q{k} at ({{x}}, {{y}}, {{w:?}}, {{n}}):\\n{{r}}\");")
        out.append(f"        assert_eq!(q{k}_grad(x, y, {arg[1]}, n).0.to_bits(), q{k}(x, y, {arg[1]}, n).to_bits(), \"q{k} value\");")
    out.append("    }")
    out.append("}")
    out.append("")
open(OUT, "w").write("\n".join(out) + "\n")
