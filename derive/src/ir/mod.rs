//! The IR: a function as a list of single-operation `let`s in SSA form (every local is
//! assigned once; a reassignment of a `let mut` makes a new version), each carrying
//! the span of the user code it came from. Analyses run on this, never on token
//! strings; diagnostics point at the spans.

pub mod lower;
pub mod op;
pub mod print;
pub mod rule_table;
pub mod tangent;

use proc_macro2::{Ident, Span};
use syn::Type;

pub use op::Prim;

/// Index of a value (a parameter, a user local's version or a temporary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VarId(pub usize);

#[derive(Clone, Debug)]
pub struct VarInfo {
    /// The unique name it is emitted under (`x`, `x_1` for a later version, `t0`).
    pub name: Ident,
}

/// What an argument's type says about differentiating it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// `f32`, `f64` or a generic type parameter: a float.
    Scalar,
    /// An ndarray array, view or a reference to one (`&Array2<f32>`, `ArrayView1<f64>`).
    Tensor,
    /// A buffer of floats: `&[f64]`, `&Vec<f32>`, `&[T; N]`, `Vec<f64>`, `[f64; N]`. Its
    /// gradient is a `Vec` of the same length.
    Buffer,
    /// A struct of parameters (`&Mlp`, `Line`): `backprop::Differentiable`; its gradient
    /// is a value of the same type.
    Struct,
    /// Anything else: integers, bools, labels, sizes. Never active.
    Other,
}

#[derive(Clone, Debug)]
pub struct Param {
    pub ident: Ident,
    pub ty: Type,
    pub kind: ParamKind,
    pub active: bool,
    pub var: VarId,
    /// The element type of a buffer argument (`f64` for `&[f64]`).
    pub elem: Option<Type>,
}

/// An input of an operation.
#[derive(Clone, Debug)]
pub enum Operand {
    Var(VarId),
    /// An expression that mentions no local: a literal, a `const`, `T::one()`.
    Const(syn::Expr),
}

impl Operand {
    pub fn var(&self) -> Option<VarId> {
        match self {
            Operand::Var(v) => Some(*v),
            Operand::Const(_) => None,
        }
    }
}

/// How an operation is spelled, so the forward pass reads like the user's code.
#[derive(Clone, Debug)]
pub enum Spelling {
    /// `a + b`, `-a`.
    Operator(syn::BinOp),
    Unary(syn::UnOp),
    /// `x.exp()`, `x.powi(2)`.
    Method(Ident),
    /// `x.sum::<f64>()`: a method with its turbofish, as written.
    MethodTurbofish(proc_macro2::TokenStream),
    /// `f64::max(a, b)`, `backprop::sigmoid(x)`: the path as written.
    Path(syn::ExprPath),
    /// `n as f64`.
    Cast(Box<Type>),
    /// `&x`.
    Ref,
    /// `x.mean().unwrap()`: a method whose `Option` result is unwrapped at once (`tail`
    /// is `.unwrap()` or `.expect("...")`, kept as written).
    MethodUnwrap(Ident, proc_macro2::TokenStream),
    /// `labels[i]`: indexing something that is not a float buffer (data).
    Index,
    /// `t.0`: an element of a tuple of data (`let (n, d) = x.dim();`).
    TupleField(syn::Index),
    /// `&labels[1..]`: a borrowed sub-slice of data (one operation: the slice alone
    /// has no size).
    RefIndex,
    /// `matches!(x, PAT)`: the pattern's tokens.
    Matches(proc_macro2::TokenStream),
    /// `ndarray::concatenate(axis, &[a, b]).unwrap()`, `stack![axis, a, b]`: the
    /// runtime's forward (which names the shapes on a mismatch) and the op's name;
    /// operand 0 is the axis, the others the arrays (passed as views).
    Join(proc_macro2::TokenStream, String),
    /// `XentOptions { label_smoothing: eps, ..Default::default() }`: a struct literal
    /// of data, as written, with `__bp_op{k}` where it reads operand `k` (the locals it
    /// names, which are its operands so that an active one is refused).
    Template(proc_macro2::TokenStream),
}

/// An operation on a buffer of floats (a slice, `Vec` or array). Buffers are the one
/// place where the IR is not SSA: element writes mutate the buffer in place, and the
/// reverse pass mirrors that with an adjoint buffer `d_x` updated in place (a read
/// `t = x[i]` adds `d_t` into `d_x[i]`; a write `x[i] = v` moves `d_x[i]` to `d_v`
/// and zeroes it), so a loop over `n` elements costs O(n) in reverse, not O(n²).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BufOp {
    /// `x[i]`: args `[x, i]`; defines the element.
    Read,
    /// `x[i] = v`: args `[x, i, v]`; `def` is a placeholder.
    Write,
    /// `vec![v; n]`: args `[v, n]`; defines a new buffer.
    Fill,
    /// `[v; N]`: args `[v, N]`.
    FillArray,
    /// `x.to_vec()`: args `[x, n]` (`n` = `x.len()`); a new buffer, a copy of `x`.
    ToVec,
    /// `&x[a..b]`: args `[x, a, b]`; `&x[a..]`: args `[x, a]`. A view: its elements
    /// are `x`'s from `a` on.
    View,
    /// `let y = x;`: args `[x]`; another name for the same buffer.
    Alias,
    /// `&x`: args `[x]`; a borrow of the same buffer.
    Borrow,
    /// `&p.w`: args `[p]`; a borrow of a field of a struct argument (or of a field of
    /// one). Its adjoint is the same field of `p`'s adjoint, `d_p.w`.
    Field(syn::Member),
    /// `p.b`: args `[p]`; the value of a float field.
    FieldRead(syn::Member),
    /// `&p.layers[i]`: args `[p.layers, i]`; a borrow of one struct of a collection of
    /// structs (a `Vec<Layer>` field, a `&Vec<Layer>` argument). A place: its adjoint is
    /// the same element of the collection's adjoint, `d_p.layers[i]`.
    Elem,
    /// `Vec::new()` (args `[]`) or `Vec::with_capacity(n)` (args `[n]`): a new, empty
    /// buffer that grows by `push`.
    NewVec,
    /// `h.push(v)`: args `[h, v]`. In reverse the pushed element's adjoint is the last
    /// element of `d_h` (pushes are undone last first): `d_v = d_h.pop()`.
    Push,
}

/// The right-hand side of a `let`.
#[derive(Clone, Debug)]
pub enum Rhs {
    /// `let y = x;`
    Copy(Operand),
    /// A primitive with a rule.
    Prim {
        prim: Prim,
        spelling: Spelling,
        args: Vec<Operand>,
    },
    /// A call of a function that has a rule companion (`#[grad]` or a declared rule).
    Call {
        path: syn::ExprPath,
        args: Vec<Operand>,
        /// The call's tangent, in a tangent program (`ir::tangent`): the companion's
        /// `tangent_forward(args.., tangents..)`, whose value is the tangent of the
        /// call's result.
        tangent: bool,
    },
    /// An operation whose result carries no derivative: comparisons, `floor`, casts to
    /// integers, `stop_gradient`. Its inputs never receive a cotangent.
    ZeroDerivative {
        spelling: Spelling,
        args: Vec<Operand>,
    },
    /// An operation with no rule. Fine on constants; an error if an active value
    /// reaches it (reported by `analysis::check` with `why`).
    NoRule {
        spelling: Spelling,
        args: Vec<Operand>,
        why: String,
        /// The user's expression, to span the error on all of it.
        at: proc_macro2::TokenStream,
    },
    /// `if cond { .. } else { .. }`: the statement's `def` names the branch's tape; the
    /// values it produces (its own value and the locals either branch reassigns) are
    /// the `outs`, SSA's φ-nodes.
    If(Box<IfNode>),
    /// A `for` over a range or a `while`: the statement's `def` names the per-iteration
    /// stack of saved values.
    Loop(Box<LoopNode>),
    /// An operation on a buffer of floats.
    Buffer { op: BufOp, args: Vec<Operand> },
}

/// How a loop iterates.
#[derive(Clone, Debug)]
pub enum LoopHead {
    /// `for pat in <range>`: the range tokens (bounds already lowered to operands).
    For {
        index: VarId,
        range: proc_macro2::TokenStream,
        /// The locals the range's bounds read (the reverse pass rebuilds the range
        /// from them when they are at hand, instead of saving it).
        bounds: Vec<VarId>,
        /// Whether the range can run backwards (`range.rev()`): all forms but
        /// `step_by` over `a..=b`.
        double_ended: bool,
    },
    /// `while cond`: `cond` is computed by the first `head_len` statements of the body.
    While { cond: Operand, head_len: usize },
}

/// A loop in SSA form: each local the body reassigns is *carried*: read at the top of
/// an iteration as `entry`, written at its end as `exit`, `init` before the loop, `out`
/// after it.
#[derive(Clone, Debug)]
pub struct LoopNode {
    pub head: LoopHead,
    pub body: Vec<Stmt>,
    pub carried: Vec<Carried>,
}

#[derive(Clone, Debug)]
pub struct Carried {
    pub init: Operand,
    pub entry: VarId,
    pub exit: Operand,
    pub out: VarId,
}

/// A two-way branch in SSA form.
#[derive(Clone, Debug)]
pub struct IfNode {
    /// A bool; never active.
    pub cond: Operand,
    pub then_body: Vec<Stmt>,
    pub else_body: Vec<Stmt>,
    pub outs: Vec<IfOut>,
}

/// One value an `if` produces: `def` after the branch, from `then_val` or `else_val`.
#[derive(Clone, Debug)]
pub struct IfOut {
    pub def: VarId,
    pub then_val: Operand,
    pub else_val: Operand,
}

impl Rhs {
    pub fn operands(&self) -> &[Operand] {
        match self {
            Rhs::Copy(o) => std::slice::from_ref(o),
            Rhs::Prim { args, .. }
            | Rhs::Call { args, .. }
            | Rhs::ZeroDerivative { args, .. }
            | Rhs::NoRule { args, .. }
            | Rhs::Buffer { args, .. } => args,
            Rhs::If(node) => std::slice::from_ref(&node.cond),
            Rhs::Loop(_) => &[],
        }
    }
}

#[derive(Clone, Debug)]
pub struct Stmt {
    pub def: VarId,
    pub rhs: Rhs,
    /// The user expression this operation came from.
    pub span: Span,
    /// A type the user wrote on the `let` (`let x: f64 = ...`), kept in the forward pass.
    pub ty: Option<Type>,
    /// The user's expression as text, for run-time messages (`x.dot(w1) + b1`).
    pub source: String,
    /// A compound assignment (`y += x`): on arrays the result keeps `y`'s shape, so `x`
    /// must broadcast into it (checked at run time, as ndarray's `+=` does).
    pub compound: bool,
}

#[derive(Debug)]
pub struct Func {
    pub params: Vec<Param>,
    /// The result's type: a float, or an owned ndarray array of floats.
    pub ret_ty: Type,
    /// The float type adjoints are made of: the result's type, or its element type when
    /// the function returns an array.
    pub float_ty: Type,
    pub vars: Vec<VarInfo>,
    /// Items declared in the body (`const`, `use`, `fn`), hoisted as they are.
    pub items: Vec<syn::Item>,
    pub body: Vec<Stmt>,
    pub ret: Operand,
    /// Every value that is a buffer of floats (arguments, new buffers, views, aliases).
    pub buffers: std::collections::HashSet<VarId>,
    /// The function's generics (float type parameters change how adjoints add up).
    pub generics: syn::Generics,
    /// Where each value is defined, built on the first `def_of` (the body is not
    /// changed after lowering): a path of (statement index, nested body) steps.
    pub defs: std::cell::OnceCell<std::collections::HashMap<VarId, Vec<(usize, u8)>>>,
    /// Each value by its emitted name, built on the first `locals_in`.
    pub by_name: std::cell::OnceCell<std::collections::HashMap<String, VarId>>,
    /// The function's name (a call of it is recursion: its tape is boxed).
    pub name: Ident,
    /// Calls of another function's gradient (`let (l, g) = h_grad(x);`): each value is
    /// `(value, gradient)`, a place like a struct argument (`t.0`, `t.1.w[i]`), whose
    /// adjoint starts as zeros (`h_grad::zero_like`) where its block's reverse starts.
    pub grad_calls: std::collections::HashSet<VarId>,
}

impl Func {
    pub fn is_buffer(&self, v: VarId) -> bool {
        self.buffers.contains(&v)
    }

    /// `&p.w` (at any depth): a field view, whose adjoint is a field of a struct
    /// argument's adjoint.
    pub fn is_field_view(&self, v: VarId) -> bool {
        matches!(
            self.def_of(v),
            Some(Stmt {
                rhs: Rhs::Buffer {
                    op: BufOp::Field(_) | BufOp::Elem,
                    ..
                },
                ..
            })
        )
    }

    /// The call of another function's gradient that `v` is a part of (`g = &t.1`,
    /// `&g.w`, `&g.w[1..]`), if any: such a part is a borrow of a local of the forward
    /// pass, made again in the reverse pass from the call's value.
    pub fn grad_call_root(&self, v: VarId) -> Option<VarId> {
        let mut cur = v;
        loop {
            if self.grad_calls.contains(&cur) {
                return Some(cur);
            }
            match self.def_of(cur) {
                Some(Stmt {
                    rhs:
                        Rhs::Buffer {
                            op:
                                BufOp::Field(_)
                                | BufOp::Elem
                                | BufOp::View
                                | BufOp::Alias
                                | BufOp::Borrow,
                            args,
                        },
                    ..
                }) => cur = args[0].var()?,
                _ => return None,
            }
        }
    }

    /// The buffer that owns `v`'s elements and the offsets of `v`'s element 0 in it
    /// (one per view on the way; none for the owner itself).
    pub fn buffer_root(&self, v: VarId) -> (VarId, Vec<Operand>) {
        let mut offsets = Vec::new();
        let mut cur = v;
        while let Some(Stmt {
            rhs: Rhs::Buffer { op, args },
            ..
        }) = self.def_of(cur)
        {
            match op {
                BufOp::View => offsets.push(args[1].clone()),
                BufOp::Alias | BufOp::Borrow => {}
                _ => break,
            }
            cur = args[0].var().expect("a view's base is a buffer");
        }
        offsets.reverse();
        (cur, offsets)
    }

    /// Whether `v`'s elements live in a buffer built by `push` (`Vec::new()`, or a view
    /// of one): its length is known only at the end of the forward pass.
    pub fn grown_by_push(&self, v: VarId) -> bool {
        matches!(
            self.def_of(self.buffer_root(v).0),
            Some(Stmt {
                rhs: Rhs::Buffer {
                    op: BufOp::NewVec,
                    ..
                },
                ..
            })
        )
    }

    pub fn name(&self, v: VarId) -> &Ident {
        &self.vars[v.0].name
    }

    /// The values a data argument kept as written reads (`s![.., a..b]`, `(n, d)`):
    /// lowering renamed the locals in it to their versions, which are these names.
    pub fn locals_in(&self, e: &syn::Expr) -> Vec<VarId> {
        let by_name = self.by_name.get_or_init(|| {
            self.vars
                .iter()
                .enumerate()
                .map(|(k, info)| (info.name.to_string(), VarId(k)))
                .collect()
        });
        let mut out: Vec<VarId> = idents(&quote::ToTokens::to_token_stream(e))
            .iter()
            .filter_map(|i| by_name.get(i).copied())
            .collect();
        out.sort();
        out
    }

    /// The statement that defines `v`, at any depth.
    /// The statement that defines `v`, if one does. O(depth) after the first call,
    /// which indexes the body (the search it replaced was linear, and quadratic over
    /// an expansion).
    pub fn def_of(&self, v: VarId) -> Option<&Stmt> {
        // Step kinds: 0 = the statement itself, 1 = a then-arm, 2 = an else-arm,
        // 3 = a loop body (then the next index is inside it).
        fn index(
            stmts: &[Stmt],
            path: &mut Vec<(usize, u8)>,
            out: &mut std::collections::HashMap<VarId, Vec<(usize, u8)>>,
        ) {
            for (k, s) in stmts.iter().enumerate() {
                path.push((k, 0));
                out.entry(s.def).or_insert_with(|| path.clone());
                path.pop();
                match &s.rhs {
                    Rhs::If(node) => {
                        path.push((k, 1));
                        index(&node.then_body, path, out);
                        path.pop();
                        path.push((k, 2));
                        index(&node.else_body, path, out);
                        path.pop();
                    }
                    Rhs::Loop(node) => {
                        path.push((k, 3));
                        index(&node.body, path, out);
                        path.pop();
                    }
                    _ => {}
                }
            }
        }
        let defs = self.defs.get_or_init(|| {
            let mut out = std::collections::HashMap::new();
            index(&self.body, &mut Vec::new(), &mut out);
            out
        });
        let path = defs.get(&v)?;
        let mut stmts: &[Stmt] = &self.body;
        for &(k, kind) in path {
            let s = &stmts[k];
            match (kind, &s.rhs) {
                (0, _) => return Some(s),
                (1, Rhs::If(node)) => stmts = &node.then_body,
                (2, Rhs::If(node)) => stmts = &node.else_body,
                (3, Rhs::Loop(node)) => stmts = &node.body,
                _ => unreachable!("the index follows the body's shape"),
            }
        }
        None
    }
}

/// Every identifier in `ts`, at any depth (the names generated code mentions).
pub fn idents(ts: &proc_macro2::TokenStream) -> std::collections::HashSet<String> {
    fn walk(ts: &proc_macro2::TokenStream, out: &mut std::collections::HashSet<String>) {
        for tt in ts.clone() {
            match tt {
                proc_macro2::TokenTree::Ident(i) => {
                    out.insert(i.to_string());
                }
                proc_macro2::TokenTree::Group(g) => walk(&g.stream(), out),
                _ => {}
            }
        }
    }
    let mut out = std::collections::HashSet::new();
    walk(ts, &mut out);
    out
}

/// How many times each value is read anywhere in `func`: as an operand, a branch's
/// output, a loop's carried value or bound, a `while` condition, or the result.
pub fn use_counts(func: &Func) -> std::collections::HashMap<VarId, usize> {
    let mut n = std::collections::HashMap::new();
    let mut add = |v: VarId| *n.entry(v).or_insert(0) += 1;
    walk(&func.body, &mut |st| {
        st.rhs
            .operands()
            .iter()
            .filter_map(Operand::var)
            .for_each(&mut add);
        match &st.rhs {
            Rhs::If(node) => {
                for out in &node.outs {
                    out.then_val.var().into_iter().for_each(&mut add);
                    out.else_val.var().into_iter().for_each(&mut add);
                }
            }
            Rhs::Loop(node) => {
                for c in &node.carried {
                    c.init.var().into_iter().for_each(&mut add);
                    c.exit.var().into_iter().for_each(&mut add);
                }
                match &node.head {
                    LoopHead::For { bounds, .. } => bounds.iter().copied().for_each(&mut add),
                    LoopHead::While { cond, .. } => cond.var().into_iter().for_each(&mut add),
                }
            }
            _ => {}
        }
    });
    func.ret.var().into_iter().for_each(&mut add);
    n
}

/// Every statement, branches included, in program order.
pub fn walk<'a>(stmts: &'a [Stmt], f: &mut dyn FnMut(&'a Stmt)) {
    for s in stmts {
        f(s);
        match &s.rhs {
            Rhs::If(node) => {
                walk(&node.then_body, f);
                walk(&node.else_body, f);
            }
            Rhs::Loop(node) => walk(&node.body, f),
            _ => {}
        }
    }
}

/// `Array2<f64>`, `Array<T, D>`, `ArrayD<f32>`: an owned ndarray array (not a view, not a
/// reference), by the spelling of its type.
pub fn is_owned_array_type(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().is_some_and(|s| {
            let n = s.ident.to_string();
            n == "Array"
                || n == "ArrayD"
                || n.strip_prefix("Array")
                    .is_some_and(|d| d.parse::<u8>().is_ok())
        }),
        _ => false,
    }
}
