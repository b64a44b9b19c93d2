//! Places: expressions that name data in place (a buffer, a field of a struct
//! argument, `p.layers[i]`), lowered to borrows of it rather than copies.

use super::Lowerer;
use crate::ir::op::{self};
use crate::ir::{BufOp, Operand, Rhs};
use proc_macro2::Ident;
use std::collections::HashSet;
use syn::Expr;
use syn::spanned::Spanned;
use syn::visit::Visit;

impl Lowerer<'_> {
    /// Whether `e` names a buffer of floats: a local or argument that is one, a borrow
    /// of one, a sub-slice `x[a..b]` of one, or a buffer literal.
    pub(super) fn is_buffer_expr(&self, e: &Expr) -> bool {
        match e {
            Expr::Path(p) => {
                p.qself.is_none()
                    && p.path
                        .get_ident()
                        .and_then(|i| self.lookup(&i.to_string()))
                        .is_some_and(|v| self.buffers.contains(&v) || self.is_field_view_var(v))
            }
            Expr::Paren(p) => self.is_buffer_expr(&p.expr),
            Expr::Group(g) => self.is_buffer_expr(&g.expr),
            Expr::Reference(r) => r.mutability.is_none() && self.is_buffer_expr(&r.expr),
            Expr::Index(ix) => is_range_index(e) && self.is_buffer_expr(&ix.expr),
            // `p.w` of a struct argument: indexed, it is a buffer.
            Expr::Field(_) => self.is_field_of_place(e),
            // A literal (`&[x, y]`, `&vec![a, b]`, `&[0.0; N]` as an argument): a new
            // buffer, as the same literal bound by `let` is.
            Expr::Array(a) => !a.elems.is_empty(),
            Expr::Repeat(_) => true,
            Expr::Macro(m) => m.mac.path.is_ident("vec"),
            _ => false,
        }
    }

    /// A struct argument, or a field (at any depth) of one.
    pub(super) fn is_place_expr(&self, e: &Expr) -> bool {
        match e {
            Expr::Path(p) => {
                p.qself.is_none()
                    && p.path
                        .get_ident()
                        .and_then(|i| self.lookup(&i.to_string()))
                        .is_some_and(|v| self.places.contains(&v))
            }
            Expr::Paren(p) => self.is_place_expr(&p.expr),
            Expr::Field(f) => self.is_place_expr(&f.base),
            // `h_grad(x)` in `h_grad(x).1.w`: another function's value and gradient.
            Expr::Call(_) => super::nested::grad_call(e).is_some(),
            // `p.layers[i]` in `p.layers[i].w`: one struct of a collection of structs
            // (a float buffer's element has no fields, so this is only asked of bases).
            Expr::Index(ix) => !is_range_index(e) && self.is_place_expr(&ix.expr),
            _ => false,
        }
    }

    /// `p.w`, `p.layer1.w`: a field of a struct argument.
    pub(super) fn is_field_of_place(&self, e: &Expr) -> bool {
        match e {
            Expr::Paren(p) => self.is_field_of_place(&p.expr),
            Expr::Field(f) => self.is_place_expr(&f.base),
            _ => false,
        }
    }

    /// A struct argument or a view of a field of one (`let t = &p.w;`), whose adjoint is
    /// the same field of the argument's adjoint.
    pub(super) fn place(&mut self, e: &Expr, want: Option<&Ident>) -> Operand {
        match e {
            Expr::Paren(p) => self.place(&p.expr, want),
            Expr::Field(f) if self.is_place_expr(&f.base) => {
                let base = self.place(&f.base, None);
                let v = self.define(
                    want,
                    Rhs::Buffer {
                        op: BufOp::Field(f.member.clone()),
                        args: vec![base],
                    },
                    f.span(),
                );
                if let Operand::Var(b) = v {
                    self.places.insert(b);
                }
                v
            }
            Expr::Index(ix) if !is_range_index(e) && self.is_place_expr(&ix.expr) => {
                let base = self.place(&ix.expr, None);
                let i = self.expr(&ix.index, None);
                let v = self.define(
                    want,
                    Rhs::Buffer {
                        op: BufOp::Elem,
                        args: vec![base, i],
                    },
                    ix.span(),
                );
                if let Operand::Var(b) = v {
                    self.places.insert(b);
                }
                v
            }
            Expr::Call(c) if super::nested::grad_call(e).is_some() => self.grad_call_place(c, want),
            _ => self.expr(e, want),
        }
    }

    /// A method's receiver: a field of a struct argument is borrowed (`p.w.len()`,
    /// `p.w.dot(&x)`), except for float methods, which take the value (`p.b.exp()`).
    pub(super) fn receiver(&mut self, e: &Expr, method: &Ident) -> Operand {
        let element = matches!(e, Expr::Index(_)) && self.is_place_expr(e);
        // A field is borrowed whatever the method: `p.w.exp()` on an array field must not
        // move it out of the struct, and `(&p.temp).exp()` of a float field takes the
        // tensor path, whose rules hold for floats too.
        if self.is_field_of_place(e) || (element && !op::is_float_method(&method.to_string())) {
            self.place(e, None)
        } else if let Expr::Index(_) = e
            && matches!(method.to_string().as_str(), "len" | "is_empty" | "iter")
            && !self.is_buffer_expr(e)
            && !self.is_place_expr(e)
        {
            self.data_row(e)
        } else {
            self.expr(e, None)
        }
    }
}

/// `x[a..b]`: indexing with a range.
pub(super) fn is_range_index(e: &Expr) -> bool {
    match e {
        Expr::Index(ix) => matches!(&*ix.index, Expr::Range(_)),
        Expr::Paren(p) => is_range_index(&p.expr),
        Expr::Group(g) => is_range_index(&g.expr),
        _ => false,
    }
}

/// The names the block reads a field of (`layer.w`, `layer.0`), or passes as they are
/// to a function (`dense(&h, layer)`: a reference to a struct; a float reached through
/// an iterator is passed as `*v`).
pub(super) fn field_bases(block: &syn::Block) -> HashSet<String> {
    struct V(HashSet<String>);
    impl<'ast> Visit<'ast> for V {
        fn visit_expr_field(&mut self, f: &'ast syn::ExprField) {
            if let Expr::Path(p) = &*f.base
                && let Some(i) = p.path.get_ident()
            {
                self.0.insert(i.to_string());
            }
            syn::visit::visit_expr_field(self, f);
        }
        fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
            for a in &c.args {
                if let Expr::Path(p) = a
                    && let Some(i) = p.path.get_ident()
                {
                    self.0.insert(i.to_string());
                }
            }
            syn::visit::visit_expr_call(self, c);
        }
        // An array element of a list (`for w in &p.ws { h = h.dot(w) }`): the operand of
        // `dot`, or the receiver of a method no float has.
        fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
            let name = |e: &Expr| match e {
                Expr::Path(p) => p.path.get_ident().map(|i| i.to_string()),
                Expr::Reference(r) => match &*r.expr {
                    Expr::Path(p) => p.path.get_ident().map(|i| i.to_string()),
                    _ => None,
                },
                _ => None,
            };
            if m.method == "dot" {
                self.0.extend(m.args.iter().filter_map(name));
            }
            if ARRAY_ONLY_METHODS.contains(&m.method.to_string().as_str()) {
                self.0.extend(name(&m.receiver));
            }
            syn::visit::visit_expr_method_call(self, m);
        }
        // `concatenate![Axis(1), out, head(x, hd)]`: the joined expressions.
        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            for e in join_macro_args(m) {
                self.visit_expr(&e);
            }
        }
    }
    let mut v = V(HashSet::new());
    v.visit_block(block);
    v.0
}

/// The expressions of a `concatenate![..]`/`stack![..]` (ndarray's join macros, which
/// `#[grad]` lowers), none for any other macro.
pub(super) fn join_macro_args(m: &syn::Macro) -> Vec<Expr> {
    let joins = m
        .path
        .segments
        .last()
        .is_some_and(|s| s.ident == "concatenate" || s.ident == "stack");
    if !joins {
        return Vec::new();
    }
    m.parse_body_with(syn::punctuated::Punctuated::<Expr, syn::Token![,]>::parse_terminated)
        .map(|list| list.into_iter().collect())
        .unwrap_or_default()
}

/// Methods of ndarray arrays that neither floats nor `Vec`s have: a name they are called
/// on is an array.
const ARRAY_ONLY_METHODS: &[&str] = &[
    "dot",
    "t",
    "mapv",
    "sum_axis",
    "mean_axis",
    "slice",
    "row",
    "column",
    "nrows",
    "ncols",
    "dim",
    "shape",
    "view",
];

/// The names `block` indexes with an array or tuple of indices (`w[[i, j]]`,
/// `w[(i, j)]`), reading or writing: ndarray arrays.
pub(super) fn multi_indexed(block: &syn::Block) -> HashSet<String> {
    struct V(HashSet<String>);
    impl<'ast> Visit<'ast> for V {
        fn visit_expr_index(&mut self, ix: &'ast syn::ExprIndex) {
            if let Expr::Path(p) = &*ix.expr
                && let Some(i) = p.path.get_ident()
                && matches!(&*ix.index, Expr::Array(_) | Expr::Tuple(_))
            {
                self.0.insert(i.to_string());
            }
            syn::visit::visit_expr_index(self, ix);
        }
        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            for e in join_macro_args(m) {
                self.visit_expr(&e);
            }
        }
    }
    let mut v = V(HashSet::new());
    v.visit_block(block);
    v.0
}
