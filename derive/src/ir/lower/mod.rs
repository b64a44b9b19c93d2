//! syn → IR: one operation per `let` (A-normal form), SSA versions for reassigned
//! locals, every unsupported construct reported with its span and what is supported.

mod branches;
mod buffers;
mod chains;
mod closures;
mod desugar;
mod element_writes;
mod expr;
mod loops;
mod mapv;
mod methods;
mod nested;
mod places;
mod scope;
mod signature;
mod stmt;

pub(crate) use signature::{
    array_of_integers, collection_elem, is_array_type_name, is_struct_type_name, used_as_data,
};
pub use signature::{dimension_type_params, float_type_params};

use super::{Func, Operand, Rhs, Stmt, VarId, VarInfo};
use crate::attr::GradArgs;
use crate::diag::Ctxt;
use crate::names::Names;
use closures::LocalClosure;
use desugar::lift_loop_returns;
use places::field_bases;
use quote::ToTokens;
use signature::check_signature;
use std::collections::{HashMap, HashSet};
use syn::spanned::Spanned;
use syn::{Expr, ItemFn};

/// What `#[grad]` differentiates, for the end of every "not supported" message.
pub const SUPPORTED: &str = "`#[grad]` differentiates `let` bindings (shadowing, `let mut` with `=`, `+=`, `-=`, \
     `*=`, `/=`, `let (a, b) = (x, y);`), `if`/`else` on floats and arrays (as statements and expressions, an early \
     `if c { return v; }`, `if let Some(x) = option`), `for` over integer ranges, over buffers (`x.iter()`, \
     `.enumerate()`, `.zip(..)`) and over lists of structs (`for layer in &p.layers`), `while` and `loop` with `break` (also `break value`) and `continue`, buffers of floats (`&[f64]`, `Vec<f64>`, \
     `[f64; N]`: indexing, `len`, sub-slices `&x[a..b]`, element writes on local buffers, \
     `iter().sum()`, `.map(..).sum()`, `.fold(..)`), arithmetic `+ - * /` and unary `-` (on \
     floats and ndarray arrays, with broadcasting), float methods, the array methods README lists \
     (`dot`, `t`, `sum`, `mean`, `sum_axis`, `select`, `slice`, `mapv`, ...), borrows `&x`, calls of functions that have a rule \
     (`#[grad]` and `#[custom_vjp]` functions, `backprop::sigmoid`, `backprop::ops::relu`, \
     ...), `match` on values without a derivative (arms binding no parts), `matches!`, \
     blocks, a final `return` and `return` from loops; labelled loops and `while let` \
     are not supported yet";

pub fn lower(cx: &Ctxt, item: &ItemFn, args: &GradArgs) -> Option<Func> {
    // Always `Some`: see the comment before the return.
    let generics = float_type_params(&item.sig.generics);
    let mut lw = Lowerer {
        cx,
        names: Names::new(item.to_token_stream()),
        claimed: HashSet::new(),
        vars: Vec::new(),
        scopes: vec![HashMap::new()],
        body: Vec::new(),
        items: Vec::new(),
        generics,
        named_result: None,
        poisoned: HashSet::new(),
        closures: HashMap::new(),
        temps: HashSet::new(),
        buffers: HashSet::new(),
        owner_rhs: HashMap::new(),
        read_cache: HashMap::new(),
        places: HashSet::new(),
        grad_calls: HashSet::new(),
        type_params: item
            .sig
            .generics
            .type_params()
            .map(|t| t.ident.to_string())
            .collect(),
        array_params: HashSet::new(),
        tensor_params: HashSet::new(),
        param_vars: HashSet::new(),
        ndarray_names: HashSet::new(),
        struct_params: HashSet::new(),
        active_params: HashSet::new(),
        field_bases: field_bases(&item.block),
        multi_indexed: places::multi_indexed(&item.block),
    };
    check_signature(cx, item);
    let ret_ty = lw.return_type(item);
    let params = lw.params(item, args);
    lw.active_params = params
        .iter()
        .filter(|p| p.active)
        .map(|p| p.ident.to_string())
        .collect();
    // A refused signature is the one error: the body is not lowered against it (a tuple
    // result would add "tuples not supported" for its tail).
    let ret = if cx.error_count() > 0 {
        dummy()
    } else {
        let body = lift_loop_returns(&item.block.stmts, &lw.names_for_lift(), ret_ty.as_ref());
        lw.block_value(&body, item.block.span(), true)
    };
    // With errors the function is not emitted, but analysing it still reports the
    // errors only analysis finds (an active value reaching an op without a rule), so
    // one compile shows every problem.
    Some(Func {
        params,
        float_ty: ret_ty
            .as_ref()
            .and_then(|t| lw.owned_array_elem(t))
            .or_else(|| ret_ty.clone())
            .unwrap_or_else(|| syn::parse_quote!(f64)),
        ret_ty: ret_ty.unwrap_or_else(|| syn::parse_quote!(f64)),
        vars: lw.vars,
        items: lw.items,
        body: lw.body,
        ret,
        buffers: lw.buffers,
        generics: item.sig.generics.clone(),
        defs: Default::default(),
        by_name: Default::default(),
        name: item.sig.ident.clone(),
        grad_calls: lw.grad_calls,
    })
}

struct Lowerer<'a> {
    cx: &'a Ctxt,
    names: Names,
    /// User names already given to a value (the next binding gets `x_1`).
    claimed: HashSet<String>,
    vars: Vec<VarInfo>,
    scopes: Vec<HashMap<String, VarId>>,
    body: Vec<Stmt>,
    items: Vec<syn::Item>,
    generics: HashSet<String>,
    /// Values named `t0`, `t1`, ...: operations' results that no user binding named.
    temps: HashSet<VarId>,
    /// The var created for the `want`ed name by the last `define`, so a `let` knows its
    /// initializer already produced the binding (no extra copy).
    named_result: Option<VarId>,
    /// Names whose `let` was refused (see `local`).
    poisoned: HashSet<String>,
    /// Closures bound to a local (`let act = |z: f64| z.tanh();`), inlined at each call.
    closures: HashMap<String, LocalClosure>,
    /// Values that are buffers of floats (see `BufOp`).
    buffers: HashSet<VarId>,
    /// Struct arguments and field views of them (`&p.w`).
    places: HashSet<VarId>,
    /// Calls of another function's `f_grad` (see `Func::grad_calls`).
    grad_calls: HashSet<VarId>,
    /// The function's type parameters (a `T` argument is not a struct).
    type_params: HashSet<String>,
    /// Array arguments taken by value (`p: [f64; 3]`), and copies of arrays.
    array_params: HashSet<VarId>,
    /// Struct arguments.
    struct_params: HashSet<VarId>,
    /// The names of the differentiated arguments.
    active_params: HashSet<String>,
    /// ndarray array arguments (element writes into them are refused).
    tensor_params: HashSet<VarId>,
    /// Every argument.
    param_vars: HashSet<VarId>,
    /// Locals last bound to what is syntactically an ndarray array (`x.dot(w)`,
    /// `(&h + &b).tanh()`, an ndarray argument or such a local): `h.iter()` over one
    /// walks a flat copy (see `bind_sources`).
    ndarray_names: HashSet<String>,
    /// Names the body reads a field of (`layer.w`): a binding of one of them to an
    /// element of a collection of structs (`let layer = &p.layers[i];`) is a place.
    field_bases: HashSet<String>,
    /// Names the body indexes with several indices (`w[[i, j]]`, `w[(i, j)]`): ndarray
    /// arrays, never buffers of floats.
    multi_indexed: HashSet<String>,
    /// How each buffer the function owns was made (found from nested blocks, whose
    /// statements are lowered apart from the enclosing body).
    owner_rhs: HashMap<VarId, Rhs>,
    /// Element reads since the last write or control-flow boundary, by buffer and
    /// index: `q[i] * q[i]` reads (and saves) the element once.
    read_cache: HashMap<(VarId, String), VarId>,
}

impl Lowerer<'_> {
    // ---- errors ---------------------------------------------------------------------

    fn unsupported_macro(&self, m: &syn::Macro) {
        self.cx.error_spanned_by(
            m,
            format!(
                "macro invocations (`{}!`) are not supported inside `#[grad]` functions: the macro cannot see what they expand to (to print while debugging, print in the caller, or call the plain function `f` the attribute leaves as written); {SUPPORTED}",
                m.path.to_token_stream().to_string().replace(' ', "")
            ),
        );
    }

    fn unsupported(&self, e: &Expr) -> Operand {
        let what = match e {
            Expr::If(_) => "`if`",
            Expr::Match(_) => "`match`",
            Expr::ForLoop(_) => "`for` loops",
            Expr::While(_) => "`while` loops",
            Expr::Loop(_) => "`loop`",
            Expr::Break(_) => "`break`",
            Expr::Continue(_) => "`continue`",
            Expr::Return(_) => "an early `return`",
            Expr::Closure(_) => "closures",
            Expr::Index(_) => "indexing",
            Expr::Field(_) => "field access",
            Expr::Tuple(_) => "tuples",
            Expr::Array(_) | Expr::Repeat(_) => "arrays",
            Expr::Reference(_) => "references (`&x`)",
            Expr::Unary(_) => "dereferencing (`*x`)",
            Expr::Range(_) => "ranges",
            Expr::Macro(m) => {
                self.unsupported_macro(&m.mac);
                return dummy();
            }
            Expr::Unsafe(_) => "`unsafe` blocks",
            Expr::Async(_) | Expr::Await(_) => "`async`/`.await`",
            Expr::Try(_) | Expr::TryBlock(_) => "the `?` operator",
            Expr::Struct(_) => "struct literals",
            Expr::Let(_) => "`let` in conditions",
            Expr::Block(_) => "labelled blocks",
            _ => "this expression",
        };
        self.cx.error_spanned_by(
            e,
            format!("{what}: not supported by `#[grad]` yet; {SUPPORTED}"),
        );
        dummy()
    }
}

impl Lowerer<'_> {
    /// A struct literal (`XentOptions { label_smoothing: eps, ..Default::default() }`):
    /// data, with no derivative through it. The locals it names are its operands, so
    /// one that carries a derivative (a struct of parameters built from active values)
    /// is refused by name rather than cut off from the gradient.
    fn struct_literal(
        &mut self,
        st: &syn::ExprStruct,
        want: Option<&proc_macro2::Ident>,
    ) -> Operand {
        let why = format!(
            "`#[grad]` takes a struct literal as data, with no derivative through it (options such as `XentOptions {{ label_smoothing: eps, ..Default::default() }}`); `{}` is built from a value that carries a derivative. Pass the values to a function that takes them (`loss(&w, b, ..)` instead of `loss(&Lin {{ w, b }}, ..)`), or pass the struct itself as an argument",
            pretty(&st.to_token_stream())
        );
        self.data_template(&Expr::Struct(st.clone()), why, want)
    }

    /// A tuple given to a method (`pos.broadcast((b, t, d))`): data, a shape, as a
    /// struct literal is; a method with a rule reads its tuples elsewhere.
    pub(super) fn tuple_argument(&mut self, t: &syn::ExprTuple) -> Operand {
        let why = format!(
            "`#[grad]` reads a tuple given to a method as data (a shape such as `(b, t, d)`); `{}` holds a value that carries a derivative",
            pretty(&t.to_token_stream())
        );
        self.data_template(&Expr::Tuple(t.clone()), why, None)
    }

    /// `e` as data kept as written: the locals it names become its operands (holes in
    /// the template), so that an active one is refused with `why`.
    fn data_template(
        &mut self,
        e: &Expr,
        why: String,
        want: Option<&proc_macro2::Ident>,
    ) -> Operand {
        use syn::visit_mut::VisitMut;
        struct Holes<'s, 'a> {
            lw: &'s Lowerer<'a>,
            vars: Vec<crate::ir::VarId>,
            opaque: bool,
        }
        impl VisitMut for Holes<'_, '_> {
            fn visit_expr_mut(&mut self, e: &mut Expr) {
                if let Expr::Path(p) = e
                    && p.qself.is_none()
                    && let Some(i) = p.path.get_ident()
                    && let Some(v) = self.lw.lookup(&i.to_string())
                {
                    let k = match self.vars.iter().position(|&u| u == v) {
                        Some(k) => k,
                        None => {
                            self.vars.push(v);
                            self.vars.len() - 1
                        }
                    };
                    let hole = quote::format_ident!("__bp_op{}", k, span = i.span());
                    *e = syn::parse_quote!(#hole);
                    return;
                }
                syn::visit_mut::visit_expr_mut(self, e);
            }
            fn visit_macro_mut(&mut self, m: &mut syn::Macro) {
                let lw = self.lw;
                self.opaque |=
                    any_ident(m.tokens.clone(), &mut |i| lw.is_local_name(&i.to_string()));
            }
            fn visit_expr_closure_mut(&mut self, c: &mut syn::ExprClosure) {
                self.opaque = true;
                syn::visit_mut::visit_expr_closure_mut(self, c);
            }
            // A name bound inside (`match o { Some(e) => e, .. }`, `{ let s = ..; s }`)
            // would be taken for the function's local of that name.
            fn visit_pat_mut(&mut self, _: &mut syn::Pat) {
                self.opaque = true;
            }
            fn visit_local_mut(&mut self, _: &mut syn::Local) {
                self.opaque = true;
            }
            // A closure bound to a local is inlined where called, so it does not exist
            // in the generated code.
            fn visit_expr_call_mut(&mut self, c: &mut syn::ExprCall) {
                if let Expr::Path(p) = &*c.func
                    && let Some(i) = p.path.get_ident()
                    && self.lw.closures.contains_key(&i.to_string())
                {
                    self.opaque = true;
                }
                syn::visit_mut::visit_expr_call_mut(self, c);
            }
        }
        let mut template = e.clone();
        // `Opts { eps }` names the local `eps`: written out, the field keeps its name.
        if let Expr::Struct(st) = &mut template {
            for field in &mut st.fields {
                if field.colon_token.is_none() {
                    field.colon_token = Some(Default::default());
                }
            }
        }
        let mut holes = Holes {
            lw: self,
            vars: Vec::new(),
            opaque: false,
        };
        holes.visit_expr_mut(&mut template);
        if holes.opaque {
            self.cx.error_spanned_by(
                e,
                "`#[grad]` takes a struct literal or a tuple as data, written with literals, locals and calls; bind a part that uses a closure, a macro of locals, or binds names of its own (`match`, `let`) to a local first (`let v = ...;`)",
            );
            return dummy();
        }
        let args = holes.vars.into_iter().map(Operand::Var).collect();
        self.define(
            want,
            Rhs::NoRule {
                spelling: crate::ir::Spelling::Template(template.to_token_stream()),
                at: e.to_token_stream(),
                args,
                why,
            },
            e.span(),
        )
    }
}

/// A [`crate::ir::Spelling::Template`] with its holes filled: `__bp_op{k}` by `ops[k]`.
pub(crate) fn fill_template(
    ts: proc_macro2::TokenStream,
    ops: &[proc_macro2::TokenStream],
) -> proc_macro2::TokenStream {
    use proc_macro2::{Group, TokenTree};
    ts.into_iter()
        .flat_map(|tt| -> Vec<TokenTree> {
            match tt {
                TokenTree::Ident(i) => match i
                    .to_string()
                    .strip_prefix("__bp_op")
                    .and_then(|k| k.parse::<usize>().ok())
                {
                    Some(k) => {
                        let op = &ops[k];
                        quote::quote!((#op)).into_iter().collect()
                    }
                    None => vec![TokenTree::Ident(i)],
                },
                TokenTree::Group(g) => {
                    let mut ng = Group::new(g.delimiter(), fill_template(g.stream(), ops));
                    ng.set_span(g.span());
                    vec![TokenTree::Group(ng)]
                }
                other => vec![other],
            }
        })
        .collect()
}

/// A placeholder operand after an error (the function is not emitted then).
/// Whether any identifier in `ts`, inside groups too (macro bodies, closures), satisfies
/// `pred`: what a token-level "does this mention that name" asks.
fn any_ident(
    ts: proc_macro2::TokenStream,
    pred: &mut dyn FnMut(&proc_macro2::Ident) -> bool,
) -> bool {
    ts.into_iter().any(|tt| match tt {
        proc_macro2::TokenTree::Ident(i) => pred(&i),
        proc_macro2::TokenTree::Group(g) => any_ident(g.stream(), pred),
        _ => false,
    })
}

fn dummy() -> Operand {
    Operand::Const(syn::parse_quote!(0.0))
}

/// Tokens as text with Rust's usual spacing (`x.dot(w1) + b1`, not `x . dot (w1) + b1`),
/// for messages shown at run time.
/// A type as text with Rust's usual spacing (`Option<f64>`, `std::num::ParseFloatError`).
fn pretty_type(ts: &proc_macro2::TokenStream) -> String {
    pretty(ts)
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" < ", "<")
        .replace(" <", "<")
        .replace("< ", "<")
        .replace(" >", ">")
}

fn pretty(ts: &proc_macro2::TokenStream) -> String {
    let raw = ts.to_string();
    let mut out = String::with_capacity(raw.len());
    let chars: Vec<char> = raw.chars().collect();
    for (k, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let prev = out.chars().last().unwrap_or(' ');
            let next = chars.get(k + 1).copied().unwrap_or(' ');
            if matches!(prev, '.' | '(' | '[' | '&' | '!')
                || matches!(next, '.' | '(' | ')' | '[' | ']' | ',' | ';' | '?')
            {
                continue;
            }
            // `- x` after an operator or an opening bracket is a unary minus.
            if prev == '-'
                && out
                    .trim_end_matches('-')
                    .trim_end()
                    .ends_with(['(', ',', '=', '+', '*', '/'])
            {
                continue;
            }
        }
        out.push(c);
    }
    out
}
