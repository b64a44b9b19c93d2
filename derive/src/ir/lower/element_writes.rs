//! Element reads `a[[i, j]]` of ndarray arrays, and element writes into ndarray arrays
//! the function owns: `a[[i, j]] = v`, `+=`, `-=`, `*=`, `/=` (and `a[i] = v` on a
//! 1-D array). Unlike buffers of
//! floats, an ndarray array stays SSA: a write is a new version of the array
//! (`op::INDEX_SET`, `op::INDEX_ADD`), so loops and branches carry it like any array
//! state, and the forward pass and the pullback both work in place on the one array.

use super::{Lowerer, pretty};
use crate::ir::op::{FILL, INDEX_ADD, INDEX_GET, INDEX_SET, NEG};
use crate::ir::{Operand, Rhs, Spelling, VarId};
use proc_macro2::Ident;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Expr, ExprIndex, ExprMethodCall};

impl Lowerer<'_> {
    /// The local a write `a[..] = v` targets, when it is an ndarray array (a local that
    /// is neither a buffer of floats nor a struct): its name and current version.
    pub(super) fn array_write_target(&self, ix: &ExprIndex) -> Option<(Ident, VarId)> {
        if matches!(&*ix.index, Expr::Range(_)) {
            return None;
        }
        self.array_local(&ix.expr)
    }

    /// `e` names a local or argument that is neither a buffer of floats nor a struct (an
    /// ndarray array, where it is indexed or written): its name and current version.
    fn array_local(&self, e: &Expr) -> Option<(Ident, VarId)> {
        let Expr::Path(p) = e else {
            return None;
        };
        let name = p.path.get_ident().filter(|_| p.qself.is_none())?;
        let v = self.lookup(&name.to_string())?;
        (!self.buffers.contains(&v) && !self.places.contains(&v)).then(|| (name.clone(), v))
    }

    /// Refuses a write into an argument (the caller's data, which the reverse pass may
    /// read): `true` when `old` is one.
    fn refuse_argument_write(&self, (name, old): (&Ident, VarId), at: &Expr) -> bool {
        if !self.tensor_params.contains(&old) {
            return false;
        }
        self.cx.error_spanned_by(
            at,
            format!(
                "`#[grad]` writes only into an array the function owns; `{name}` is an argument: copy it first (`let mut {name} = {name}.to_owned();`)"
            ),
        );
        true
    }

    /// `name` becomes `rhs`, a new version of the array, made by the statement `whole`.
    fn new_version(&mut self, name: &Ident, rhs: Rhs, whole: &Expr) {
        let out = self.define(Some(name), rhs, whole.span());
        if let Some(last) = self.body.last_mut() {
            last.source = pretty(&whole.to_token_stream());
        }
        self.named_result = None;
        if let Operand::Var(v) = out {
            self.rebind(&name.to_string(), v);
        }
    }

    /// `a[idx] = v` (`op` `None`), `a[idx] += v` or `a[idx] -= v`: `a` becomes a new
    /// version of itself.
    pub(super) fn array_element_write(
        &mut self,
        (name, old): (Ident, VarId),
        ix: &ExprIndex,
        op: Option<(crate::ir::Prim, syn::BinOp)>,
        value: &Expr,
        whole: &Expr,
    ) {
        let span = whole.span();
        if self.refuse_argument_write((&name, old), &ix.expr) {
            return;
        }
        // The index is data (integers), kept as written with its locals renamed.
        let idx = if self.mentions_local(&ix.index) {
            self.data_arg(&ix.index)
        } else {
            Operand::Const((*ix.index).clone())
        };
        let (prim, mut v) = match op {
            None => (INDEX_SET, self.expr(value, None)),
            Some((p, _)) if matches!(p.name, "+" | "-") => (INDEX_ADD, self.expr(value, None)),
            // `a[idx] *= v`: the element is read (`INDEX_GET`), multiplied, written back.
            Some((p, bop)) => {
                let elem = self.define(
                    None,
                    Rhs::Prim {
                        prim: INDEX_GET,
                        spelling: Spelling::Index,
                        args: vec![Operand::Var(old), idx.clone()],
                    },
                    span,
                );
                let rhs = self.expr(value, None);
                let new = self.define(
                    None,
                    Rhs::Prim {
                        prim: p,
                        spelling: Spelling::Operator(bop),
                        args: vec![elem, rhs],
                    },
                    span,
                );
                (INDEX_SET, new)
            }
        };
        if op.as_ref().is_some_and(|(p, _)| p.name == "-") {
            v = self.define(
                None,
                Rhs::Prim {
                    prim: NEG,
                    spelling: Spelling::Unary(syn::UnOp::Neg(syn::Token![-](span))),
                    args: vec![v],
                },
                span,
            );
        }
        let rhs = Rhs::Prim {
            prim,
            spelling: Spelling::Index,
            args: vec![Operand::Var(old), v, idx],
        };
        self.new_version(&name, rhs, whole);
    }

    /// Whether `a[idx]` reads an element of an ndarray array: a local or argument that is
    /// neither a buffer of floats nor a struct, indexed by something other than a range.
    /// (Indexing data, `labels[i]`, is the same operation on an inactive value.)
    pub(super) fn array_read_target(&self, ix: &ExprIndex) -> bool {
        self.array_write_target(ix).is_some()
    }

    /// `a[idx]` of an ndarray array: `op::INDEX_GET`.
    pub(super) fn array_element_read(&mut self, ix: &ExprIndex, want: Option<&Ident>) -> Operand {
        let span = ix.span();
        let base = self.expr(&ix.expr, None);
        let idx = if self.mentions_local(&ix.index) {
            self.data_arg(&ix.index)
        } else {
            Operand::Const((*ix.index).clone())
        };
        self.define(
            want,
            Rhs::Prim {
                prim: INDEX_GET,
                spelling: Spelling::Index,
                args: vec![base, idx],
            },
            span,
        )
    }

    /// `a.fill(v)` where `a` names an ndarray array (a local that is neither a buffer of
    /// floats nor a struct): its name and current version.
    pub(super) fn array_fill_target(&self, m: &ExprMethodCall) -> Option<(Ident, VarId)> {
        if m.method != "fill" || m.args.len() != 1 {
            return None;
        }
        self.array_local(&m.receiver)
    }

    /// `a.fill(v)`: `a` becomes a new version of itself, every element `v`.
    pub(super) fn array_fill(
        &mut self,
        (name, old): (Ident, VarId),
        m: &ExprMethodCall,
        whole: &Expr,
    ) {
        if self.refuse_argument_write((&name, old), &m.receiver) {
            return;
        }
        let v = self.expr(&m.args[0], None);
        let rhs = Rhs::Prim {
            prim: FILL,
            spelling: Spelling::Method(m.method.clone()),
            args: vec![Operand::Var(old), v],
        };
        self.new_version(&name, rhs, whole);
    }
}
