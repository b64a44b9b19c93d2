//! The reverse of an `if`: both arms' reverse statements, built once (the forward
//! pass saves what they read), and the `match` on the tape's branch tag.

use super::materialize::materialize;
use super::{Line, defined_in, reverse_block};
use crate::emit::context::{BranchReverse, Emitter};
use crate::ir::{IfNode, VarId};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use std::collections::{BTreeSet, HashMap};

/// Before (forward):
/// ```text
/// let (y, branch) = if c { let t = x * x; (t, Then((x,))) } else { (x, Else(())) };
/// ```
/// After (reverse): the arm the tape says ran, with the values it saved.
/// ```text
/// let (d_x,) = match branch { Then((x,)) => { ..; (d_x,) }, Else(()) => { ..; (d_x,) } };
/// ```
pub(super) fn branch_line(
    cx: &mut Emitter<'_>,
    def: VarId,
    node: &IfNode,
    count: &HashMap<VarId, usize>,
    span: Span,
) -> Line {
    let rev = cx.branch_reverse(def, node);
    let activity = &cx.plan.activity;
    let ret_ty = cx.func.float_ty.clone();
    // An output nothing after the `if` reads has a zero cotangent.
    let zeros: Vec<TokenStream> = node
        .outs
        .iter()
        .filter(|o| activity.is_active(o.def) && !count.contains_key(&o.def))
        .map(|o| {
            let d = cx.adjoint(o.def);
            if cx.plan.kinds.scalar[o.def.0] {
                quote!(let #d: #ret_ty = ::backprop::__private::zero();)
            } else {
                // An array nothing after the `if` reads: a zero of its shape.
                let x = cx.var(o.def).clone();
                quote!(let #d = ::backprop::__private::tensor::zeros_like(&#x);)
            }
        })
        .collect();
    let tape = cx.tape(def);
    cx.captured_tapes.borrow_mut().insert(def);
    let [(then_saved, then_body), (else_saved, else_body)] = &rev.arms;
    let invoke = quote_spanned! {span=>
        {
            #(#zeros)*
            match #tape {
                ::backprop::__private::Branch::Then((#(#then_saved,)*)) => { #(#then_body)* }
                ::backprop::__private::Branch::Else((#(#else_saved,)*)) => { #(#else_body)* }
            }
        }
    };
    Line::Many {
        invoke,
        slots: rev.outer.iter().map(|v| Some(*v)).collect(),
        span,
        check: false,
    }
}

/// The reverse of both arms of an `if` (built once, by the forward pass that saves
/// what they read, and read again by the reverse pass).
pub fn build_branch_reverse(cx: &mut Emitter<'_>, node: &IfNode) -> BranchReverse {
    let activity = &cx.plan.activity;
    let active_outs: Vec<&crate::ir::IfOut> = node
        .outs
        .iter()
        .filter(|o| activity.is_active(o.def))
        .collect();
    let mut sides = Vec::new();
    for (body, pick) in [(&node.then_body, true), (&node.else_body, false)] {
        let initial: Vec<(VarId, TokenStream)> = active_outs
            .iter()
            .filter_map(|o| {
                let val = if pick { &o.then_val } else { &o.else_val };
                let v = val.var().filter(|v| activity.is_active(*v))?;
                let d = cx.adjoint(o.def);
                Some((v, quote!(#d)))
            })
            .collect();
        let (stmts, defined, _) = reverse_block(cx, body, &[], initial);
        let local = defined_in(body);
        let reaches: BTreeSet<VarId> = defined.into_iter().filter(|v| !local.contains(v)).collect();
        sides.push((body, stmts, reaches));
    }
    let outer: Vec<VarId> = sides[0].2.union(&sides[1].2).copied().collect();
    let ret_ty = cx.func.float_ty.clone();
    let mut arms = Vec::new();
    for (body, stmts, reaches) in sides {
        let values: Vec<TokenStream> = outer
            .iter()
            .map(|v| {
                if reaches.contains(v) {
                    let d = cx.adjoint(*v);
                    quote!(#d)
                } else if !cx.plan.kinds.scalar[v.0] {
                    // An array this arm does not read: a zero of its shape.
                    let x = cx.var(*v).clone();
                    quote!(::backprop::__private::tensor::zeros_like(&#x))
                } else {
                    quote!(::backprop::__private::zero::<#ret_ty>())
                }
            })
            .collect();
        let rev = quote!(#(#stmts)*);
        let (recompute, saved, _) = materialize(cx, body, &[], None, &[], &rev);
        let mut all = recompute;
        all.extend(stmts);
        all.push(quote!((#(#values,)*)));
        arms.push((saved, all));
    }
    let else_arm = arms.pop().expect("two arms");
    let then_arm = arms.pop().expect("two arms");
    BranchReverse {
        arms: [then_arm, else_arm],
        outer,
    }
}

impl<'a> Emitter<'a> {
    /// The reverse of the `if` defining `def` (built once, by its forward pass).
    pub fn branch_reverse(
        &mut self,
        def: VarId,
        node: &crate::ir::IfNode,
    ) -> std::rc::Rc<BranchReverse> {
        if !self.branches.contains_key(&def) {
            let built = build_branch_reverse(self, node);
            self.branches.insert(def, std::rc::Rc::new(built));
        }
        self.branches[&def].clone()
    }
}
