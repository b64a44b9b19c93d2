//! Syntax → operation: the ONE place that knows `a * b` means "the mul rule" and
//! `x.exp()` means "the exp rule". The macro never knows types; each rule named here
//! is a function in `::backprop::__private` that rustc resolves by type.
//!
//! A rule is given per input: which saved values its pullback reads (`In(k)` = input
//! k, where 0 is the receiver of a method; `Out` = the op's result), so the tape keeps
//! only what the *active* inputs' pullbacks need (STYLE.md §b.10).

/// A value a pullback reads from the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    In(usize),
    Out,
}

/// How the cotangent of one input is computed from the output cotangent `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vjp {
    /// `d` itself (addition, `fract`, the addend of `mul_add`).
    Identity,
    /// `−d` (the right side of a subtraction, negation).
    Negate,
    /// `::backprop::__private::<name>(needs..., d)`.
    Rule(&'static str, &'static [Need]),
    /// Nothing flows to this input (the integer exponent of `powi`).
    Zero,
}

/// A primitive with a rule: its name (for messages), and one [`Vjp`] per input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prim {
    pub name: &'static str,
    pub vjps: &'static [Vjp],
}

impl Prim {
    pub fn arity(&self) -> usize {
        self.vjps.len()
    }
}

use Need::{In, Out};
use Vjp::{Identity, Negate, Rule, Zero};

pub const ADD: Prim = Prim {
    name: "+",
    vjps: &[Identity, Identity],
};
pub const SUB: Prim = Prim {
    name: "-",
    vjps: &[Identity, Negate],
};
pub const MUL: Prim = Prim {
    name: "*",
    vjps: &[Rule("mul_vjp_lhs", &[In(1)]), Rule("mul_vjp_rhs", &[In(0)])],
};
pub const DIV: Prim = Prim {
    name: "/",
    vjps: &[
        Rule("div_vjp_lhs", &[In(1)]),
        Rule("div_vjp_rhs", &[In(1), Out]),
    ],
};
pub const NEG: Prim = Prim {
    name: "-",
    vjps: &[Negate],
};

/// Float methods with a rule, by name. The receiver is input 0.
const METHODS: &[Prim] = &[
    Prim {
        name: "exp",
        vjps: &[Rule("exp_vjp", &[Out])],
    },
    Prim {
        name: "exp2",
        vjps: &[Rule("exp2_vjp", &[Out])],
    },
    Prim {
        name: "exp_m1",
        vjps: &[Rule("exp_m1_vjp", &[Out])],
    },
    Prim {
        name: "ln",
        vjps: &[Rule("ln_vjp", &[In(0)])],
    },
    Prim {
        name: "ln_1p",
        vjps: &[Rule("ln_1p_vjp", &[In(0)])],
    },
    Prim {
        name: "log2",
        vjps: &[Rule("log2_vjp", &[In(0)])],
    },
    Prim {
        name: "log10",
        vjps: &[Rule("log10_vjp", &[In(0)])],
    },
    Prim {
        name: "log",
        vjps: &[
            Rule("log_vjp_x", &[In(0), In(1)]),
            Rule("log_vjp_base", &[In(1), Out]),
        ],
    },
    Prim {
        name: "sqrt",
        vjps: &[Rule("sqrt_vjp", &[Out])],
    },
    Prim {
        name: "cbrt",
        vjps: &[Rule("cbrt_vjp", &[Out])],
    },
    Prim {
        name: "powi",
        vjps: &[Rule("powi_vjp", &[In(0), In(1)]), Zero],
    },
    Prim {
        name: "powf",
        vjps: &[
            Rule("powf_vjp_x", &[In(0), In(1)]),
            Rule("powf_vjp_p", &[In(0), Out]),
        ],
    },
    Prim {
        name: "recip",
        vjps: &[Rule("recip_vjp", &[Out])],
    },
    Prim {
        name: "abs",
        vjps: &[Rule("abs_vjp", &[In(0)])],
    },
    Prim {
        name: "max",
        vjps: &[
            Rule("max_vjp_a", &[In(0), In(1)]),
            Rule("max_vjp_b", &[In(0), In(1)]),
        ],
    },
    Prim {
        name: "min",
        vjps: &[
            Rule("min_vjp_a", &[In(0), In(1)]),
            Rule("min_vjp_b", &[In(0), In(1)]),
        ],
    },
    Prim {
        name: "clamp",
        vjps: &[
            Rule("clamp_vjp_x", &[In(0), In(1), In(2)]),
            Rule("clamp_vjp_lo", &[In(0), In(1)]),
            Rule("clamp_vjp_hi", &[In(0), In(2)]),
        ],
    },
    Prim {
        name: "hypot",
        vjps: &[
            Rule("hypot_vjp_a", &[In(0), Out]),
            Rule("hypot_vjp_b", &[In(1), Out]),
        ],
    },
    Prim {
        name: "atan2",
        vjps: &[
            Rule("atan2_vjp_y", &[In(0), In(1)]),
            Rule("atan2_vjp_x", &[In(0), In(1)]),
        ],
    },
    Prim {
        name: "mul_add",
        vjps: &[
            Rule("mul_vjp_lhs", &[In(1)]),
            Rule("mul_vjp_rhs", &[In(0)]),
            Identity,
        ],
    },
    Prim {
        name: "sin",
        vjps: &[Rule("sin_vjp", &[In(0)])],
    },
    Prim {
        name: "cos",
        vjps: &[Rule("cos_vjp", &[In(0)])],
    },
    Prim {
        name: "tan",
        vjps: &[Rule("tan_vjp", &[Out])],
    },
    Prim {
        name: "asin",
        vjps: &[Rule("asin_vjp", &[In(0)])],
    },
    Prim {
        name: "acos",
        vjps: &[Rule("acos_vjp", &[In(0)])],
    },
    Prim {
        name: "atan",
        vjps: &[Rule("atan_vjp", &[In(0)])],
    },
    Prim {
        name: "sinh",
        vjps: &[Rule("sinh_vjp", &[In(0)])],
    },
    Prim {
        name: "cosh",
        vjps: &[Rule("cosh_vjp", &[In(0)])],
    },
    Prim {
        name: "tanh",
        vjps: &[Rule("tanh_vjp", &[Out])],
    },
    Prim {
        name: "fract",
        vjps: &[Identity],
    },
];

/// Methods whose derivative is zero wherever it exists (piecewise-constant, or with a
/// non-float result). Mirrors `backprop::rules::nondiff`.
const ZERO_DERIVATIVE_METHODS: &[&str] = &[
    "floor",
    "ceil",
    "round",
    "round_ties_even",
    "trunc",
    "signum",
    "is_nan",
    "is_finite",
    "is_infinite",
    "is_normal",
    "is_subnormal",
    "is_sign_positive",
    "is_sign_negative",
    "partial_cmp",
    "total_cmp",
    "to_bits",
];

/// What a method name means.
pub enum MethodKind {
    Prim(Prim),
    ZeroDerivative,
    Unknown,
}

pub fn method(name: &str, arity: usize) -> MethodKind {
    if let Some(p) = METHODS
        .iter()
        .find(|p| p.name == name && p.arity() == arity)
    {
        return MethodKind::Prim(*p);
    }
    if ZERO_DERIVATIVE_METHODS.contains(&name) {
        return MethodKind::ZeroDerivative;
    }
    MethodKind::Unknown
}

/// The sentence every "no rule" message ends with.
pub fn supported_methods() -> String {
    let with_rule: Vec<&str> = METHODS.iter().map(|p| p.name).collect();
    format!(
        "the float methods with a rule are {}; {} have derivative 0",
        with_rule.join(", "),
        ZERO_DERIVATIVE_METHODS[..6].join(", ")
    )
}

/// Integer primitive types: a cast to one of them has derivative 0.
pub fn is_integer_type_name(name: &str) -> bool {
    matches!(
        name,
        "i8" | "i16"
            | "i32"
            | "i64"
            | "i128"
            | "isize"
            | "u8"
            | "u16"
            | "u32"
            | "u64"
            | "u128"
            | "usize"
            | "bool"
    )
}
