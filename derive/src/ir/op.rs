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
    /// The shape of input k (only on the tensor path: broadcasting's transpose sums the
    /// cotangent back to it). A scalar's shape is a zero-sized value.
    Shape(usize),
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
///
/// `vjps` is the scalar path (`::backprop::__private::<rule>`, values by copy);
/// `tensor`, when given, overrides it on the tensor path
/// (`::backprop::__private::tensor::<rule>`, values by reference), where broadcasting
/// makes `+ - * /` need the shape of the side they return to. Without an override the
/// tensor path calls the same rule names with references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prim {
    pub name: &'static str,
    pub vjps: &'static [Vjp],
    pub tensor: Option<&'static [Vjp]>,
    /// A full reduction (`sum`, `mean`): its result is a scalar whatever its input.
    pub reduces: bool,
}

impl Prim {
    pub fn arity(&self) -> usize {
        self.vjps.len()
    }

    pub fn vjps_on(&self, scalar_path: bool) -> &'static [Vjp] {
        match (scalar_path, self.tensor) {
            (false, Some(t)) => t,
            _ => self.vjps,
        }
    }
}

/// A primitive whose rule is the same on both paths.
const fn p(name: &'static str, vjps: &'static [Vjp]) -> Prim {
    Prim {
        name,
        vjps,
        tensor: None,
        reduces: false,
    }
}

use Need::{In, Out, Shape};
use Vjp::{Identity, Negate, Rule, Zero};

#[rustfmt::skip]
pub const ADD: Prim = Prim {
    name: "+",
    vjps: &[Identity, Identity],
    tensor: Some(&[Rule("add_vjp", &[Shape(0)]), Rule("add_vjp", &[Shape(1)])]),
    reduces: false,
};
#[rustfmt::skip]
pub const SUB: Prim = Prim {
    name: "-",
    vjps: &[Identity, Negate],
    tensor: Some(&[Rule("add_vjp", &[Shape(0)]), Rule("sub_vjp_rhs", &[Shape(1)])]),
    reduces: false,
};
#[rustfmt::skip]
pub const MUL: Prim = Prim {
    name: "*",
    vjps: &[Rule("mul_vjp_lhs", &[In(1)]), Rule("mul_vjp_rhs", &[In(0)])],
    tensor: Some(&[Rule("mul_vjp_lhs", &[Shape(0), In(1)]), Rule("mul_vjp_rhs", &[Shape(1), In(0)])]),
    reduces: false,
};
#[rustfmt::skip]
pub const DIV: Prim = Prim {
    name: "/",
    vjps: &[Rule("div_vjp_lhs", &[In(1)]), Rule("div_vjp_rhs", &[In(1), Out])],
    tensor: Some(&[Rule("div_vjp_lhs", &[Shape(0), In(1)]), Rule("div_vjp_rhs", &[Shape(1), In(1), Out])]),
    reduces: false,
};
pub const NEG: Prim = p("-", &[Negate]);
/// `&x`: a borrow, the identity for derivatives.
pub const REF: Prim = p("&", &[Identity]);

/// `a[idx] = v` on an ndarray array the function owns: input 0 the array, 1 the value,
/// 2 the index (data, as written). A new version of the array; the reverse pass moves
/// the cotangent through `tensor::index_set_vjp` (both cotangents at once, in place), so
/// these entries only say what the pullback reads.
pub const INDEX_SET: Prim = p(
    "index_set",
    &[
        Rule("index_set_vjp", &[In(2)]),
        Rule("index_set_vjp", &[In(2)]),
        Zero,
    ],
);
/// `a[idx] += v` (`-=` is `+=` of `-v`): as [`INDEX_SET`], through `index_add_vjp`.
pub const INDEX_ADD: Prim = p(
    "index_add",
    &[
        Rule("index_add_vjp", &[In(2)]),
        Rule("index_add_vjp", &[In(2)]),
        Zero,
    ],
);

/// `t = a[idx]`, an element of an ndarray array read as a float: input 0 the array, 1
/// the index (data). Its cotangent is `d_t` at `idx` in zeros of `a`'s shape (the
/// transpose of a gather, as JAX's and PyTorch's indexing: O(size of `a`) per read).
pub const INDEX_GET: Prim = Prim {
    name: "index_get",
    vjps: &[Rule("index_get_vjp", &[Shape(0), In(1)]), Zero],
    tensor: None,
    reduces: true,
};

/// `Array2::zeros`, `Array::from_elem`, `ndarray::Array3::ones`, ...: a path whose
/// second-to-last segment is an ndarray array type and whose last is a constructor.
pub fn is_array_constructor(path: &syn::Path) -> bool {
    let segs = segments(path);
    let [.., ty, f] = &segs[..] else {
        return false;
    };
    let array = ty == "Array"
        || ty == "ArrayD"
        || (ty.starts_with("Array") && ty[5..].parse::<u8>().is_ok());
    array
        && matches!(
            f.as_str(),
            "zeros"
                | "ones"
                | "from_elem"
                | "from_shape_fn"
                | "from_shape_vec"
                | "from_vec"
                | "default"
                | "eye"
        )
}

/// A path's segments as text (`backprop::ops::relu` → `["backprop", "ops", "relu"]`).
pub fn segments(path: &syn::Path) -> Vec<String> {
    path.segments.iter().map(|s| s.ident.to_string()).collect()
}

/// `a.fill(v)` on an ndarray array the function owns: input 0 the array, 1 the value.
/// Every element is replaced: `d_v = Σ d_a₁`, `d_a₀ = 0` (through `tensor::fill_vjp`).
pub const FILL: Prim = p("fill", &[Rule("fill_vjp", &[]), Rule("fill_vjp", &[])]);

/// Whether `prim` writes into an ndarray array in place ([`INDEX_SET`], [`INDEX_ADD`],
/// [`FILL`]): a new version of the array, whose pullback takes the cotangent.
pub fn is_element_write(prim: &Prim) -> bool {
    matches!(prim.name, "index_set" | "index_add" | "fill")
}

/// Array methods with a rule, by name; the receiver is input 0. One line per rule. The
/// float methods (also elementwise on arrays) are the rule table's
/// (`derive/src/rule_table.in`, [`crate::ir::rule_table::methods`]).
#[rustfmt::skip]
const METHODS: &[Prim] = &[
    p("to_owned", &[Identity]),
    p("into_owned", &[Identity]),
    p("view", &[Identity]),
    // A copy in row-major order where the receiver is not (a `CowArray`): the same
    // values, so the cotangent passes through.
    p("as_standard_layout", &[Identity]),
    p("clone", &[Identity]),
    p("t", &[Rule("t_vjp", &[])]),
    p("reversed_axes", &[Rule("t_vjp", &[])]),
    p("dot", &[Rule("dot_vjp_lhs", &[In(1)]), Rule("dot_vjp_rhs", &[In(0)])]),
    Prim { name: "sum", vjps: &[Rule("sum_vjp", &[Shape(0)])], tensor: None, reduces: true },
    Prim { name: "mean", vjps: &[Rule("mean_vjp", &[Shape(0)])], tensor: None, reduces: true },
    p("sum_axis", &[Rule("sum_axis_vjp", &[Shape(0), In(1)]), Zero]),
    // `x.mean().unwrap()` and `x.mean_axis(axis).unwrap()` (ndarray returns `Option`).
    Prim { name: "mean_unwrap", vjps: &[Rule("mean_vjp", &[Shape(0)])], tensor: None, reduces: true },
    p("mean_axis_unwrap", &[Rule("mean_axis_vjp", &[Shape(0), In(1)]), Zero]),
    // Gathers and views: the cotangent goes back into zeros of the source's shape.
    p("select", &[Rule("select_vjp", &[Shape(0), In(1), In(2)]), Zero, Zero]),
    p("slice", &[Rule("slice_vjp", &[Shape(0), In(1)]), Zero]),
    p("slice_axis", &[Rule("slice_axis_vjp", &[Shape(0), In(1), In(2)]), Zero, Zero]),
    p("index_axis", &[Rule("index_axis_vjp", &[Shape(0), In(1), In(2)]), Zero, Zero]),
    p("row", &[Rule("row_vjp", &[Shape(0), In(1)]), Zero]),
    p("column", &[Rule("column_vjp", &[Shape(0), In(1)]), Zero]),
    // Shapes.
    p("insert_axis", &[Rule("insert_axis_vjp", &[In(1)]), Zero]),
    p("remove_axis", &[Rule("remove_axis_vjp", &[Shape(0), In(1)]), Zero]),
    p("permuted_axes", &[Rule("permuted_axes_vjp", &[In(1)]), Zero]),
    // `x.into_shape_with_order(s).unwrap()`, `x.to_shape(s).unwrap()` (row-major).
    p("into_shape_with_order_unwrap", &[Rule("reshape_vjp", &[Shape(0)]), Zero]),
    p("to_shape_unwrap", &[Rule("reshape_vjp", &[Shape(0)]), Zero]),
    // Reductions along an axis; `max_axis`/`min_axis` are what `fold_axis`/`map_axis`
    // computing a max or min are lowered to (input 0 is a borrow of the receiver).
    p("var_axis", &[Rule("var_axis_vjp", &[In(0), In(1), In(2)]), Zero, Zero]),
    p("std_axis", &[Rule("std_axis_vjp", &[In(0), In(1), In(2), Out]), Zero, Zero]),
    p("max_axis", &[Rule("max_axis_vjp", &[In(0), In(1), Out]), Zero]),
    p("min_axis", &[Rule("min_axis_vjp", &[In(0), In(1), Out]), Zero]),
];

/// The methods whose result is a view of their receiver (or, for the consuming ones,
/// the receiver itself reshaped): a rule that reads such a value re-derives it from
/// its source in the reverse pass instead of keeping it (see `Emitter::saved_operand`).
pub const VIEW_METHODS: &[&str] = &[
    "slice",
    "slice_axis",
    "index_axis",
    "row",
    "column",
    "to_shape_unwrap",
    "as_standard_layout",
];

/// View methods that consume their receiver (`self`): re-derived through `.view()`, and
/// only when the receiver is itself a view (an owned result is kept as it is).
pub const CONSUMING_VIEW_METHODS: &[&str] = &[
    "insert_axis",
    "remove_axis",
    "permuted_axes",
    "reversed_axes",
    "into_shape_with_order_unwrap",
];

/// `ndarray::concatenate` / `concatenate!` (`stack`) with `n` arrays: input 0 is the
/// axis, input k the k-th array, whose cotangent is its slice of `d` (for
/// `concatenate`, the shapes of the inputs before it give the offset).
pub fn join(stack: bool, n: usize) -> Option<Prim> {
    const CONCAT: &[Vjp] = &[
        Zero,
        Rule("concatenate_vjp_1", &[In(0), Shape(1)]),
        Rule("concatenate_vjp_2", &[In(0), Shape(1), Shape(2)]),
        Rule("concatenate_vjp_3", &[In(0), Shape(1), Shape(2), Shape(3)]),
        Rule(
            "concatenate_vjp_4",
            &[In(0), Shape(1), Shape(2), Shape(3), Shape(4)],
        ),
        Rule(
            "concatenate_vjp_5",
            &[In(0), Shape(1), Shape(2), Shape(3), Shape(4), Shape(5)],
        ),
        Rule(
            "concatenate_vjp_6",
            &[
                In(0),
                Shape(1),
                Shape(2),
                Shape(3),
                Shape(4),
                Shape(5),
                Shape(6),
            ],
        ),
        Rule(
            "concatenate_vjp_7",
            &[
                In(0),
                Shape(1),
                Shape(2),
                Shape(3),
                Shape(4),
                Shape(5),
                Shape(6),
                Shape(7),
            ],
        ),
        Rule(
            "concatenate_vjp_8",
            &[
                In(0),
                Shape(1),
                Shape(2),
                Shape(3),
                Shape(4),
                Shape(5),
                Shape(6),
                Shape(7),
                Shape(8),
            ],
        ),
    ];
    const STACK: &[Vjp] = &[
        Zero,
        Rule("stack_vjp_1", &[In(0)]),
        Rule("stack_vjp_2", &[In(0)]),
        Rule("stack_vjp_3", &[In(0)]),
        Rule("stack_vjp_4", &[In(0)]),
        Rule("stack_vjp_5", &[In(0)]),
        Rule("stack_vjp_6", &[In(0)]),
        Rule("stack_vjp_7", &[In(0)]),
        Rule("stack_vjp_8", &[In(0)]),
    ];
    if n == 0 || n > MAX_JOIN {
        return None;
    }
    let (name, vjps) = if stack {
        ("stack", STACK)
    } else {
        ("concatenate", CONCAT)
    };
    Some(p(name, &vjps[..=n]))
}

/// The most arrays `concatenate`/`stack` may join inside `#[grad]`.
pub const MAX_JOIN: usize = 8;

/// Methods with a non-float result (a flag, an ordering, a length or a shape): derivative
/// zero, and never an array, whatever they are called on.
const DATA_METHODS: &[&str] = &[
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
    "len",
    "is_empty",
    "nrows",
    "ncols",
    "ndim",
    "shape",
    "dim",
    "raw_dim",
];

/// Whether `x.name()` is data rather than an array (`x.len()`, `x.dim()`).
pub fn returns_data(name: &str) -> bool {
    DATA_METHODS.contains(&name)
}

/// What a method name means.
pub enum MethodKind {
    Prim(Prim),
    ZeroDerivative,
    Unknown,
}

pub fn method(name: &str, arity: usize) -> MethodKind {
    if let Some(p) = crate::ir::rule_table::methods()
        .iter()
        .chain(METHODS)
        .find(|p| p.name == name && p.arity() == arity)
    {
        return MethodKind::Prim(*p);
    }
    if crate::ir::rule_table::constants().contains(&name) || DATA_METHODS.contains(&name) {
        return MethodKind::ZeroDerivative;
    }
    MethodKind::Unknown
}

/// A method with a rule on floats (not an array method): `p.b.exp()` reads the value.
pub fn is_float_method(name: &str) -> bool {
    crate::ir::rule_table::methods()
        .iter()
        .any(|p| p.name == name)
        || crate::ir::rule_table::constants().contains(&name)
}

/// The sentence every "no rule" message ends with.
pub fn supported_methods() -> String {
    let with_rule: Vec<&str> = crate::ir::rule_table::methods()
        .iter()
        .map(|p| p.name)
        .collect();
    format!(
        "the float methods with a rule are {}; {} have derivative 0; on ndarray arrays also dot, t, reversed_axes, sum, mean().unwrap(), sum_axis, mean_axis(..).unwrap(), var_axis, std_axis, to_owned, view, select, slice(s![..]), slice_axis, index_axis, row, column, insert_axis, remove_axis, permuted_axes, into_shape_with_order(..).unwrap(), to_shape(..).unwrap(), mapv(|v| ..) with elementwise float methods, and fold_axis/map_axis computing a max or min",
        with_rule.join(", "),
        crate::ir::rule_table::constants().join(", ")
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

/// `backprop::ops`' functions: their tapes own what they keep (a copy of the input, the
/// output, a mask), so a call on an array this function made needs no checkpoint.
const RUNTIME_ARRAY_OPS: &[&str] = &[
    "relu",
    "sigmoid",
    "tanh",
    "gelu",
    "silu",
    "softplus",
    "leaky_relu",
    "softmax",
    "log_softmax",
    "softmax_cross_entropy",
    "bce_with_logits",
    "mse",
    "matmul",
    "matvec",
    "add",
    "sub",
    "mul",
    "div",
    "sum",
    "mean",
    "sum_axis",
    "mean_axis",
    "layer_norm",
    "rms_norm",
    "embedding",
    "softmax_masked",
    "softmax_causal",
    "attention",
    "gelu_exact",
    "dropout",
    "cross_entropy",
];

/// Whether a call's path names one of `backprop::ops`' functions (`relu`, `ops::relu`,
/// `backprop::ops::relu`; a bare name as the runtime's, imported), whose tapes own
/// what they keep. A user's own `#[grad]` function of such a name gets a `forward`
/// whose tape owns copies of what it borrows, so either may be behind a bare name
/// (`emit::companions`, [`shares_runtime_name`]).
/// The runtime's array ops whose companion has a `jvp` (forward mode): the elementwise
/// activations, the softmaxes and the fused cross-entropy.
const RUNTIME_OPS_WITH_JVP: &[&str] = &[
    "relu",
    "sigmoid",
    "tanh",
    "gelu",
    "gelu_exact",
    "silu",
    "softplus",
    "softmax",
    "log_softmax",
    "softmax_cross_entropy",
];

/// Whether `path` is a runtime array op with a `jvp` companion.
pub fn runtime_op_has_jvp(path: &syn::Path) -> bool {
    is_runtime_array_op(path)
        && segments(path)
            .last()
            .is_some_and(|l| RUNTIME_OPS_WITH_JVP.contains(&l.as_str()))
}

pub fn is_runtime_array_op(path: &syn::Path) -> bool {
    let segs = segments(path);
    let Some(last) = segs.last() else {
        return false;
    };
    RUNTIME_ARRAY_OPS.contains(&last.as_str()) && (segs.len() == 1 || segs[segs.len() - 2] == "ops")
}

/// The runtime ops that are also functions of a float (`sigmoid(x)` of an `f64`).
pub const ALSO_ON_FLOATS: &[&str] = &[
    "relu",
    "sigmoid",
    "tanh",
    "gelu",
    "silu",
    "softplus",
    "leaky_relu",
];

/// What a runtime op returns, for the analysis of kinds.
pub enum OpResult {
    /// A float: the losses and full reductions.
    Float,
    /// An array.
    Array,
    /// What its first argument is: the activations, also functions of a float
    /// (`sigmoid(x)`), unless called through `ops::`.
    LikeInput,
}

/// What the runtime op `path` returns (see [`OpResult`]).
pub fn runtime_op_result(path: &syn::Path) -> OpResult {
    let segs = segments(path);
    let name = segs.last().map(String::as_str).unwrap_or("");
    match name {
        "mse" | "bce_with_logits" | "softmax_cross_entropy" | "cross_entropy" | "sum" | "mean" => {
            OpResult::Float
        }
        _ if ALSO_ON_FLOATS.contains(&name)
            && (segs.len() < 2 || segs[segs.len() - 2] != "ops") =>
        {
            OpResult::LikeInput
        }
        _ => OpResult::Array,
    }
}

/// Whether a `#[grad]` function's name is also one of `backprop::ops`' functions: a
/// bare call of it is emitted as the runtime op's is.
pub fn shares_runtime_name(name: &syn::Ident) -> bool {
    RUNTIME_ARRAY_OPS.contains(&name.to_string().as_str())
}

/// Float methods with several float inputs that `#[grad]` also differentiates
/// elementwise when an operand is an array (`x.powf(p)`, `x.clamp(lo, hi)`, and
/// `v.max(0.0)` or `v.max(0.01 * v)` inside `mapv`), floats broadcast: the forward and
/// the rules are in the runtime's `rules::elementwise`, which has one forward function
/// per name here.
pub const ELEMENTWISE_WITH_FLOATS: [&str; 6] = ["max", "min", "powf", "hypot", "log", "clamp"];

/// How an operation on the tensor path pushes one input's tangent forward (forward
/// mode, `emit::tangent`): the term `Jₖ·tₖ`, shaped like the output, that input `k`
/// adds to the output's tangent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tangent {
    /// `::backprop::__private::tangent::<name>(reads.., &t_k)`.
    Rule(&'static str, &'static [Need]),
    /// `tensor::dot(a, b)` with `t_k` in place of input `k` (a product is bilinear).
    Dot,
    /// `t_y = &t_x` beside `y = &x`: a borrow of the tangent.
    Borrow,
    /// An elementwise method of the rule table: the pullback's scalar rule at `d = t`,
    /// element by element (a diagonal Jacobian is its own transpose), through
    /// `tangent::elementwise`.
    Elementwise,
}

/// The tangent rule of input `k` of `prim` on the tensor path, where there is one. Each
/// is the operation itself where it is linear in the input (one fact: what the op does
/// to an array, it does to the array's tangent), the product rule for `*`, `/` and
/// `dot`, and the table's own rule for elementwise methods.
#[rustfmt::skip]
pub fn tensor_tangent(prim: &Prim, k: usize) -> Option<Tangent> {
    use Tangent::Rule as R;
    Some(match (prim.name, prim.arity(), k) {
        ("+", 2, _) => R("spread", &[Out]),
        ("-", 2, 0) => R("spread", &[Out]),
        ("-", 2, 1) => R("spread_neg", &[Out]),
        ("-", 1, 0) => R("neg", &[]),
        ("*", 2, 0) => R("mul", &[Out, In(1)]),
        ("*", 2, 1) => R("mul", &[Out, In(0)]),
        ("/", 2, 0) => R("div_lhs", &[Out, In(1)]),
        ("/", 2, 1) => R("div_rhs", &[Out, In(1)]),
        ("&", 1, 0) => Tangent::Borrow,
        ("to_owned" | "into_owned" | "view" | "as_standard_layout" | "clone", 1, 0) => R("copy", &[]),
        ("t" | "reversed_axes", 1, 0) => R("t", &[]),
        ("dot", 2, _) => Tangent::Dot,
        ("sum", 1, 0) => R("sum", &[]),
        ("mean" | "mean_unwrap", 1, 0) => R("mean", &[]),
        ("sum_axis", 2, 0) => R("sum_axis", &[In(1)]),
        ("mean_axis_unwrap", 2, 0) => R("mean_axis", &[In(1)]),
        ("select", 3, 0) => R("select", &[In(1), In(2)]),
        ("slice", 2, 0) => R("slice", &[In(1)]),
        ("slice_axis", 3, 0) => R("slice_axis", &[In(1), In(2)]),
        ("index_axis", 3, 0) => R("index_axis", &[In(1), In(2)]),
        ("row", 2, 0) => R("row", &[In(1)]),
        ("column", 2, 0) => R("column", &[In(1)]),
        ("insert_axis", 2, 0) => R("insert_axis", &[In(1)]),
        ("remove_axis", 2, 0) => R("remove_axis", &[In(1)]),
        ("permuted_axes", 2, 0) => R("permuted_axes", &[In(1)]),
        ("into_shape_with_order_unwrap" | "to_shape_unwrap", 2, 0) => R("reshape", &[In(1)]),
        ("var_axis", 3, 0) => R("var_axis", &[In(0), In(1), In(2)]),
        ("std_axis", 3, 0) => R("std_axis", &[In(0), In(1), In(2), Out]),
        ("max_axis" | "min_axis", 2, 0) => R("extreme_axis", &[In(0), In(1), Out]),
        ("index_get", 2, 0) => R("index_get", &[In(1)]),
        // Elementwise methods, also those with float operands (`v.max(0.0)`,
        // `v.powf(p)`, `v.clamp(lo, hi)`) where the floats are constants: the tangent
        // pass checks that (`tangent::elementwise_reads`), else `f_jvp` pairs the gradient.
        (_, _, 0) if crate::ir::rule_table::methods().iter().any(|p| p == prim) => {
            Tangent::Elementwise
        }
        _ => return None,
    })
}
