//! The reverse of an `if`: both arms' reverse statements, built once (the forward
//! pass saves what they read), and the `match` on the tape's branch tag.

use super::materialize::materialize;
use super::{Line, defined_in, reverse_block};
use crate::analysis::save::Reads;
use crate::emit::context::{ArmReverse, BranchReverse, Emitter, Mode};
use crate::ir::{IfNode, VarId};
use proc_macro2::{Ident, Span, TokenStream};
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
                let x = cx.read(o.def);
                quote!(let #d = ::backprop::__private::tensor::zeros_like(&#x);)
            }
        })
        .collect();
    let tape = cx.tape(def);
    cx.read_name(&tape);
    cx.read_all(&rev.reads);
    cx.captured_tapes.borrow_mut().insert(def);
    cx.sensitive += rev.sensitive;
    // Arms that hand no cotangent on (they add into adjoint buffers) end without a
    // tuple, and the `match` is a statement.
    let unit = rev.outer.is_empty();
    let arm = |a: &ArmReverse| {
        let (saved, recompute, body) = (&a.saved, &a.recompute, &a.body);
        let tuple = if unit { quote!() } else { a.tuple.clone() };
        (quote!(#(#saved,)*), quote!(#(#recompute)* #(#body)* #tuple))
    };
    let ((then_saved, then_body), (else_saved, else_body)) = (arm(&rev.arms[0]), arm(&rev.arms[1]));
    if unit {
        return Line::Raw(quote_spanned! {span=>
            #(#zeros)*
            match #tape {
                ::backprop::__private::Branch::Then((#then_saved)) => { #then_body }
                ::backprop::__private::Branch::Else((#else_saved)) => { #else_body }
            }
        });
    }
    let invoke = quote_spanned! {span=>
        {
            #(#zeros)*
            match #tape {
                ::backprop::__private::Branch::Then((#then_saved)) => { #then_body }
                ::backprop::__private::Branch::Else((#else_saved)) => { #else_body }
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

/// The reverse of both arms of an `if` (built once per mode; the strong one by the
/// forward pass, which saves what it reads, and the plain one by the pullback from the
/// strong one's decisions).
fn build_branch_reverse(
    cx: &mut Emitter<'_>,
    node: &IfNode,
    decided: Option<&BranchReverse>,
) -> BranchReverse {
    let activity = &cx.plan.activity;
    let active_outs: Vec<&crate::ir::IfOut> = node
        .outs
        .iter()
        .filter(|o| activity.is_active(o.def))
        .collect();
    let before = cx.sensitive;
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
        let ((stmts, defined, _), reads) = cx.recording(|cx| reverse_block(cx, body, &[], initial));
        let local = defined_in(body);
        let reaches: BTreeSet<VarId> = defined.into_iter().filter(|v| !local.contains(v)).collect();
        sides.push((body, stmts, reaches, reads));
    }
    let sensitive = cx.sensitive - before;
    cx.sensitive = before;
    let outer: Vec<VarId> = sides[0].2.union(&sides[1].2).copied().collect();
    let ret_ty = cx.func.float_ty.clone();
    let mut arms = Vec::new();
    let mut all_reads = Reads::default();
    for (k, (body, stmts, reaches, reads)) in sides.into_iter().enumerate() {
        all_reads.extend(&reads);
        let mut zero_shapes: Vec<(Ident, Ident)> = Vec::new();
        let (values, tuple_reads) = cx.recording(|cx| -> Vec<TokenStream> {
            outer
                .iter()
                .map(|v| {
                    if reaches.contains(v) {
                        let d = cx.adjoint(*v);
                        quote!(#d)
                    } else if !cx.plan.kinds.scalar[v.0] {
                        // An array this arm does not read: a zero of its shape, which
                        // the arm's forward pass takes (the strong mode names it).
                        let x = cx.var(*v).clone();
                        let shape = match decided {
                            Some(strong) => strong.arms[k]
                                .zero_shapes
                                .iter()
                                .find(|(_, y)| *y == x)
                                .map(|(n, _)| n.clone())
                                .expect("both modes zero the same arrays"),
                            None => cx
                                .names
                                .fresh(&format!("zero_shape_{x}"), Span::call_site()),
                        };
                        zero_shapes.push((shape.clone(), x));
                        quote!(::backprop::__private::tensor::zeros_of_shape(&#shape))
                    } else {
                        quote!(::backprop::__private::zero::<#ret_ty>())
                    }
                })
                .collect()
        });
        all_reads.extend(&tuple_reads);
        let (recompute, saved) = match decided {
            Some(strong) => (
                strong.arms[k].recompute.clone(),
                strong.arms[k].saved.clone(),
            ),
            None => {
                let m = materialize(cx, body, &[], None, &[], &reads);
                all_reads.extend(&m.head_reads);
                let mut saved = m.saved;
                saved.extend(zero_shapes.iter().map(|(n, _)| n.clone()));
                (m.recompute, saved)
            }
        };
        arms.push(ArmReverse {
            saved,
            recompute,
            body: stmts,
            tuple: quote!((#(#values,)*)),
            zero_shapes,
        });
    }
    if let Some(strong) = decided {
        assert_eq!(
            strong.outer, outer,
            "both modes reach the same outer values"
        );
    }
    let else_arm = arms.pop().expect("two arms");
    let then_arm = arms.pop().expect("two arms");
    BranchReverse {
        arms: [then_arm, else_arm],
        outer,
        reads: match decided {
            Some(strong) => strong.reads.clone(),
            None => all_reads,
        },
        sensitive,
    }
}

impl<'a> Emitter<'a> {
    /// The reverse of the `if` defining `def` in the current mode (the strong one built
    /// once, by its forward pass).
    pub fn branch_reverse(
        &mut self,
        def: VarId,
        node: &crate::ir::IfNode,
    ) -> std::rc::Rc<BranchReverse> {
        if !self.branches.contains_key(&def) {
            let mode = std::mem::replace(&mut self.mode, Mode::Strong);
            let built = build_branch_reverse(self, node, None);
            self.branches.insert(def, std::rc::Rc::new(built));
            self.mode = mode;
        }
        if self.mode == Mode::Plain && !self.plain_branches.contains_key(&def) {
            let strong = self.branches[&def].clone();
            let built = build_branch_reverse(self, node, Some(&strong));
            self.plain_branches.insert(def, std::rc::Rc::new(built));
        }
        match self.mode {
            Mode::Strong => self.branches[&def].clone(),
            Mode::Plain => self.plain_branches[&def].clone(),
        }
    }
}
