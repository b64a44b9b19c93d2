//! The reverse pass: the pullback closure. One line per contribution, in reverse
//! program order, adjoints named `d_<x>`; the first contribution to an adjoint
//! defines it, later ones add to it.
//!
//! Before (forward):
//! ```text
//! let t0 = a * b;
//! let e = t0 + c;
//! let t1 = e * e;
//! ```
//! After:
//! ```text
//! move |d_t1: f64| {
//!     let mut d_e = mul_vjp_lhs(e, d_t1);     // t1 = e * e
//!     d_e = d_e + mul_vjp_rhs(e, d_t1);
//!     let d_t0 = d_e;                         // e = t0 + c
//!     let d_c = d_e;
//!     let d_a = mul_vjp_lhs(b, d_t0);         // t0 = a * b
//!     let d_b = mul_vjp_rhs(a, d_t0);
//!     (d_a, d_b, d_c)
//! }
//! ```
//! The closure captures exactly the values its rule calls read (`a`, `b`, `e`): that
//! capture *is* the tape (see `analysis::record`).

use super::context::{BranchReverse, Emitter, LoopReverse, Reversible};
use crate::ir::op::{Need, Vjp};
use crate::ir::{BufOp, IfNode, LoopNode, Operand, Rhs, Spelling, Stmt, VarId};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use std::collections::{BTreeSet, HashMap, HashSet};

/// One step of the reverse pass.
enum Line {
    /// `d_target (+)= expr`.
    Contrib {
        target: VarId,
        expr: TokenStream,
        span: Span,
    },
    /// `let (d_x, _, d_y) = <invoke>`: cotangents for several values at once, from a
    /// call's tape (one per argument) or a branch's (one per outer value it reads).
    Many {
        invoke: TokenStream,
        slots: Vec<Option<VarId>>,
        span: Span,
        check: bool,
    },
    /// A statement on adjoint buffers (`d_x[i] += d_t;`), emitted as it is.
    Raw(TokenStream),
}

/// The reverse pass over `stmts`, in reverse order. `seeds` already have their adjoint
/// bound (closure parameters); `initial` are contributions made before the first
/// statement is undone (a branch's outputs flowing into its values). Returns the
/// statements and the set of values whose adjoint it defined.
fn reverse_block(
    cx: &mut Emitter<'_>,
    stmts: &[Stmt],
    seeds: &[VarId],
    initial: Vec<(VarId, TokenStream)>,
) -> (Vec<TokenStream>, HashSet<VarId>, HashMap<VarId, usize>) {
    let func = cx.func;
    let activity = &cx.plan.activity;
    let mut count: HashMap<VarId, usize> = seeds.iter().map(|v| (*v, 1)).collect();
    let mut lines: Vec<Line> = initial
        .into_iter()
        .map(|(target, expr)| Line::Contrib {
            target,
            expr,
            span: Span::call_site(),
        })
        .collect();
    count_contributions(&lines, &mut count);
    // The adjoint of each buffer this block creates, zero until the reverse pass
    // reaches back to its reads and writes.
    let ret_ty = func.float_ty.clone();
    for s in stmts {
        if let Rhs::Buffer {
            op: op @ (BufOp::Fill | BufOp::FillArray | BufOp::ToVec | BufOp::NewVec),
            args,
        } = &s.rhs
            && activity.is_active(s.def)
        {
            let d = cx.adjoint(s.def);
            // A buffer built by `push` has its final length when the reverse pass
            // reaches the end of its block.
            let n = if *op == BufOp::NewVec {
                let h = cx.var(s.def).clone();
                quote!(#h.len())
            } else {
                cx.operand(&args[1])
            };
            lines.push(Line::Raw(
                quote_spanned!(s.span=> let mut #d: ::std::vec::Vec<#ret_ty> = ::std::vec![::backprop::__private::zero(); #n];),
            ));
        }
    }
    for s in stmts.iter().rev() {
        let first_new = lines.len();
        let active = |o: &Operand| o.var().filter(|v| activity.is_active(*v));
        if let Rhs::If(node) = &s.rhs {
            if activity.is_active(s.def)
                && (node.outs.iter().any(|o| count.contains_key(&o.def))
                    || activity.touches_buffers(s.def))
            {
                lines.push(branch_line(cx, s.def, node, &count, s.span));
            }
            count_contributions(&lines[first_new..], &mut count);
            continue;
        }
        if let Rhs::Loop(node) = &s.rhs {
            if activity.is_active(s.def)
                && (node.carried.iter().any(|c| count.contains_key(&c.out))
                    || activity.touches_buffers(s.def))
            {
                lines.push(loop_line(cx, s.def, node, &count, s.span));
            }
            count_contributions(&lines[first_new..], &mut count);
            continue;
        }
        if let Rhs::Buffer { op, args } = &s.rhs {
            buffer_lines(cx, s, op, args, &count, &mut lines);
            count_contributions(&lines[first_new..], &mut count);
            continue;
        }
        if !activity.is_active(s.def) || !count.contains_key(&s.def) {
            continue;
        }
        let args = s.rhs.operands();
        match &s.rhs {
            Rhs::Copy(o) => {
                if let Some(t) = active(o) {
                    let d = cx.adjoint(s.def);
                    lines.push(Line::Contrib {
                        target: t,
                        expr: quote!(#d),
                        span: s.span,
                    });
                }
            }
            Rhs::Prim { prim, .. } => {
                let scalar_path = cx.plan.kinds.scalar_path(s.def);
                let single = prim.arity() == 1;
                let vjps = prim.vjps_on(scalar_path);
                for (k, vjp) in vjps.iter().enumerate() {
                    let Some(t) = active(&args[k]) else { continue };
                    if cx.in_place_reads.contains(&t) {
                        // The old element of an in-place update: see `in_place_updates`.
                        continue;
                    }
                    let d = cx.adjoint(s.def);
                    let expr = match vjp {
                        // A one-input op is the only reader of its cotangent: move it.
                        Vjp::Identity if scalar_path || single => quote!(#d),
                        Vjp::Identity => {
                            quote_spanned!(s.span=> ::backprop::__private::tensor::identity_vjp(&#d))
                        }
                        Vjp::Negate if scalar_path || single => quote!(-#d),
                        Vjp::Negate => {
                            quote_spanned!(s.span=> ::backprop::__private::tensor::neg_vjp(&#d))
                        }
                        Vjp::Zero => continue,
                        Vjp::Rule(name, needs) => {
                            let rule = syn::Ident::new(name, s.span);
                            let needs: Vec<TokenStream> = needs
                                .iter()
                                .map(|n| {
                                    let value = match n {
                                        // A float constant on the tensor path takes the
                                        // element type of the cotangent (`x / 3.0` on f32
                                        // arrays); an input nothing flows to is data (the
                                        // `i32` exponent of `powi`) and stays as written.
                                        Need::In(j)
                                            if !scalar_path
                                                && args[*j].var().is_none()
                                                && vjps[*j] != Vjp::Zero =>
                                        {
                                            let c = cx.operand(&args[*j]);
                                            let d = cx.adjoint(s.def);
                                            return quote!(&::backprop::__private::tensor::like(&#d, #c));
                                        }
                                        Need::In(j) => cx.saved_operand(&args[*j]),
                                        Need::Out => {
                                            cx.captured.borrow_mut().insert(s.def);
                                            let out = cx.var(s.def);
                                            quote!(#out)
                                        }
                                        Need::Shape(j) => {
                                            let v = args[*j]
                                                .var()
                                                .expect("shapes are saved for active operands");
                                            let shape = cx.stmt_shape(s.def, v);
                                            quote!(#shape)
                                        }
                                    };
                                    if scalar_path { value } else { quote!(&#value) }
                                })
                                .collect();
                            if scalar_path {
                                quote_spanned!(s.span=> ::backprop::__private::#rule(#(#needs,)* #d))
                            } else {
                                quote_spanned!(s.span=> ::backprop::__private::tensor::#rule(#(#needs,)* &#d))
                            }
                        }
                    };
                    lines.push(Line::Contrib {
                        target: t,
                        expr,
                        span: s.span,
                    });
                }
            }
            Rhs::Call { path, .. } => {
                let slots: Vec<Option<VarId>> = args.iter().map(active).collect();
                let tape = cx.tape(s.def);
                let d_def = cx.adjoint(s.def);
                let invoke = if let Some(snaps) = cx.snapshots.get(&s.def).cloned() {
                    // A checkpointed call: its forward runs again on the saved copies.
                    let call_args: Vec<TokenStream> = args
                        .iter()
                        .zip(&snaps)
                        .map(|(a, snap)| match snap {
                            Some((_, pass)) => pass.clone(),
                            None => cx.operand(a),
                        })
                        .collect();
                    // `rebuild` gets the value the call returned too: a hand-written
                    // rule's pullback needs only that and the arguments, a `#[grad]`
                    // function runs its forward pass again.
                    let rebuild = super::companions::rebuild_path(path);
                    cx.captured.borrow_mut().insert(s.def);
                    let value = cx.var(s.def).clone();
                    quote_spanned!(s.span=> {
                        let (_, #tape) = #rebuild(#(#call_args,)* #value);
                        ::backprop::__private::Pullback::backward(#tape, #d_def)
                    })
                } else {
                    cx.captured_tapes.borrow_mut().insert(s.def);
                    quote_spanned!(s.span=> ::backprop::__private::Pullback::backward(#tape, #d_def))
                };
                lines.push(Line::Many {
                    invoke,
                    slots,
                    span: s.span,
                    check: true,
                });
            }
            Rhs::ZeroDerivative { .. }
            | Rhs::NoRule { .. }
            | Rhs::If(_)
            | Rhs::Loop(_)
            | Rhs::Buffer { .. } => {}
        }
        count_contributions(&lines[first_new..], &mut count);
    }

    let generic = func.params.iter().any(|p| {
        p.kind == crate::ir::ParamKind::Scalar
            && !matches!(&p.ty, syn::Type::Path(t) if t.path.get_ident().is_some_and(|i| i == "f32" || i == "f64"))
    });
    let mut defined: HashSet<VarId> = seeds.iter().copied().collect();
    let mut out = Vec::new();
    for line in &lines {
        match line {
            Line::Contrib { target, expr, span } if is_place(cx, *target) => {
                let place = adjoint_place(cx, *target);
                out.push(
                    quote_spanned!(*span=> ::backprop::__private::accumulate(&mut #place, #expr);),
                );
            }
            Line::Contrib { target, expr, span } => {
                let d = cx.adjoint(*target);
                if defined.insert(*target) {
                    let mutability = if count[target] > 1 {
                        quote!(mut)
                    } else {
                        quote!()
                    };
                    out.push(quote_spanned!(*span=> let #mutability #d = #expr;));
                } else {
                    out.push(quote_spanned!(*span=> #d = #d + #expr;));
                }
            }
            Line::Raw(ts) => out.push(ts.clone()),
            Line::Many {
                invoke,
                slots,
                span,
                check,
            } => {
                let mut pats = Vec::new();
                let mut accum = Vec::new();
                for slot in slots {
                    match slot {
                        None => pats.push(quote!(_)),
                        // A struct's (or a field's) cotangent: added into its place.
                        Some(t) if is_place(cx, *t) && !func.is_buffer(*t) => {
                            let part = cx.names.fresh("d_part", *span);
                            pats.push(quote!(#part));
                            let place = adjoint_place(cx, *t);
                            accum.push(quote_spanned!(*span=> ::backprop::__private::accumulate(&mut #place, #part);));
                        }
                        // A buffer argument's cotangent is a `Vec`: added into the
                        // adjoint of the buffer it views, in place.
                        Some(t) if func.is_buffer(*t) => {
                            let part = cx.names.fresh("d_part", *span);
                            pats.push(quote!(#part));
                            let target = buffer_slice(cx, *t);
                            accum.push(quote_spanned!(*span=> ::backprop::__private::add_into(#target, &#part);));
                        }
                        Some(t) => {
                            let d = cx.adjoint(*t);
                            if defined.insert(*t) {
                                let mutability = if count[t] > 1 { quote!(mut) } else { quote!() };
                                pats.push(quote!(#mutability #d));
                            } else {
                                let part = cx.names.fresh(&format!("{d}_part"), *span);
                                pats.push(quote!(#part));
                                accum.push(quote_spanned!(*span=> #d = #d + #part;));
                            }
                        }
                    }
                }
                out.push(quote_spanned!(*span=> let (#(#pats,)*) = #invoke;));
                // An active value passed where the callee takes a constant would get an
                // `Inactive` slot: say so at the call, not where the types clash later.
                // (Only for concrete float types: the check's trait cannot name a generic
                // `T: Float` without overlapping its array impl.)
                if *check && !generic {
                    let plain: Vec<VarId> = slots
                        .iter()
                        .flatten()
                        .copied()
                        .filter(|t| !func.is_buffer(*t) && !is_place(cx, *t))
                        .collect();
                    for slot in &plain {
                        let d = cx.adjoint(*slot);
                        out.push(
                            quote_spanned!(*span=> ::backprop::__private::expect_cotangent(&#d);),
                        );
                    }
                }
                out.extend(accum);
            }
        }
    }
    (out, defined, count)
}

/// The values a block defines (its statements and its branches' outputs).
fn defined_in(stmts: &[Stmt]) -> HashSet<VarId> {
    let mut set = HashSet::new();
    crate::ir::walk(stmts, &mut |s| {
        set.insert(s.def);
        match &s.rhs {
            Rhs::If(node) => set.extend(node.outs.iter().map(|o| o.def)),
            Rhs::Loop(node) => set.extend(node.carried.iter().flat_map(|c| [c.entry, c.out])),
            _ => {}
        }
    });
    set
}

/// What a block's reverse pass (`rev`) reads of the values the block defines, and how
/// each is made available: recomputed at the top of the reverse block when that is
/// cheap and exact (index arithmetic, copies, reads of argument slices, which cannot
/// change while the tape borrows them), saved by the forward pass otherwise (Tapenade's
/// TBR: needed *and* overwritten, since the block runs again or its values go out of
/// scope). `entries` are values defined at the block's top that are never recomputed
/// (a loop's carried values); `index` is a loop's index, recomputed from its range.
///
/// Returns the recomputing statements, the names to save, and whether the index is
/// read.
fn materialize(
    cx: &mut Emitter<'_>,
    stmts: &[Stmt],
    entries: &[VarId],
    index: Option<VarId>,
    given: &[VarId],
    rev: &TokenStream,
) -> (Vec<TokenStream>, Vec<Ident>, bool) {
    let func = cx.func;
    let provided = |v: VarId| Some(v) == index || given.contains(&v);
    // Values defined at the top of this block (nested blocks save their own).
    let mut local: HashSet<VarId> = entries.iter().copied().collect();
    local.extend(index);
    let mut extra_names: Vec<Ident> = Vec::new();
    for s in stmts {
        local.insert(s.def);
        match &s.rhs {
            Rhs::If(node) => local.extend(node.outs.iter().map(|o| o.def)),
            Rhs::Loop(_) => {
                local.extend(match &s.rhs {
                    Rhs::Loop(node) => node.carried.iter().map(|c| c.out).collect::<Vec<_>>(),
                    _ => Vec::new(),
                });
                // A `while`'s iteration count is saved; a `for`'s range is rebuilt
                // below when its bounds are at hand, saved otherwise. Its stack is
                // the function's, not the block's.
                extra_names.extend(cx.count_if_any(s.def));
                extra_names.extend(cx.hoisted_names(s.def));
                continue;
            }
            _ => {}
        }
        // Shapes taken in this block for its broadcasting rules.
        if let Some(shapes) = cx.shapes_at.get(&s.def) {
            extra_names.extend(shapes.iter().cloned());
        }
        // A checkpointed call keeps its copies; its tape is made again in reverse.
        match cx.snapshots.get(&s.def) {
            Some(snaps) => extra_names.extend(snaps.iter().flatten().map(|(x, _)| x.clone())),
            None => extra_names.extend(cx.tape_if_any(s.def)),
        }
    }
    // Which are recomputable, in program order (SSA: operands come first).
    let mut recomputable: HashSet<VarId> = HashSet::new();
    let mut cheap_kind: HashSet<VarId> = HashSet::new();
    for s in stmts {
        let avail =
            |v: VarId, r: &HashSet<VarId>| !local.contains(&v) || r.contains(&v) || provided(v);
        let ops_ok = s
            .rhs
            .operands()
            .iter()
            .all(|o| o.var().is_none_or(|v| avail(v, &recomputable)));
        let cheap = match &s.rhs {
            Rhs::Copy(Operand::Var(_)) => true,
            // (`h.len()` of a buffer built by `push` changes as it grows: saved.)
            Rhs::ZeroDerivative { spelling, args } => {
                !matches!(spelling, Spelling::Path(_)) && !args.iter().any(|a| growable(cx, a))
            }
            // One flop from values the reverse has anyway: cheaper than a save.
            Rhs::Prim {
                spelling: Spelling::Operator(_) | Spelling::Unary(_),
                ..
            } => cx.plan.kinds.scalar_path(s.def),
            // Arguments (and fields of struct arguments) are borrowed by the tape and
            // cannot change before the reverse pass: read them again.
            Rhs::Buffer {
                op: BufOp::Read,
                args,
            } => {
                let (root, _) = func.buffer_root(args[0].var().expect("a buffer"));
                func.params.iter().any(|p| p.var == root)
                    || func.is_field_view(root)
                    || cx.stable_reads.contains(&s.def)
            }
            Rhs::Buffer {
                op:
                    BufOp::View
                    | BufOp::Alias
                    | BufOp::Borrow
                    | BufOp::Field(_)
                    | BufOp::Elem
                    | BufOp::FieldRead(_),
                ..
            } => true,
            _ => false,
        };
        if cheap && !entries.contains(&s.def) {
            cheap_kind.insert(s.def);
        }
        if cheap && ops_ok && !entries.contains(&s.def) {
            recomputable.insert(s.def);
        }
    }
    let mentioned = crate::ir::idents(rev);
    let mut needed: BTreeSet<VarId> = local
        .iter()
        .copied()
        .filter(|v| mentioned.contains(&cx.var(*v).to_string()))
        .collect();
    // Ranges of nested `for` loops: rebuilt from their bounds when those are at hand.
    let mut rebuilt_ranges: HashSet<VarId> = HashSet::new();
    for s in stmts {
        let Rhs::Loop(node) = &s.rhs else { continue };
        let crate::ir::LoopHead::For { bounds, .. } = &node.head else {
            continue;
        };
        let Some(r) = cx.range_if_any(s.def) else {
            continue;
        };
        if !mentioned.contains(&r.to_string()) {
            continue;
        }
        let at_hand = bounds
            .iter()
            .all(|v| !local.contains(v) || recomputable.contains(v) || provided(*v));
        if at_hand {
            rebuilt_ranges.insert(s.def);
            needed.extend(bounds.iter().copied().filter(|v| local.contains(v)));
        } else {
            extra_names.push(r);
        }
    }
    // A recomputed value needs its operands.
    let mut work: Vec<VarId> = needed.iter().copied().collect();
    while let Some(v) = work.pop() {
        if !recomputable.contains(&v) {
            continue;
        }
        let s = stmts
            .iter()
            .find(|s| s.def == v)
            .expect("a local statement");
        for o in s.rhs.operands() {
            if let Some(w) = o.var()
                && local.contains(&w)
                && needed.insert(w)
            {
                work.push(w);
            }
        }
    }
    // A cheap value whose operands are saved anyway (`icf[li]` when `li` is saved) is
    // recomputed from them rather than saved beside them.
    for s in stmts {
        if !needed.contains(&s.def) || recomputable.contains(&s.def) || !cheap_kind.contains(&s.def)
        {
            continue;
        }
        let from_saved = s.rhs.operands().iter().all(|o| {
            o.var().is_none_or(|w| {
                !local.contains(&w)
                    || recomputable.contains(&w)
                    || provided(w)
                    || (needed.contains(&w) && w != s.def)
            })
        });
        if from_saved {
            recomputable.insert(s.def);
        }
    }
    // Their operands are needed too (recomputed in turn, or saved).
    let mut work: Vec<VarId> = needed
        .iter()
        .copied()
        .filter(|v| recomputable.contains(v))
        .collect();
    while let Some(v) = work.pop() {
        let Some(s) = stmts.iter().find(|s| s.def == v) else {
            continue;
        };
        for o in s.rhs.operands() {
            if let Some(w) = o.var()
                && local.contains(&w)
                && needed.insert(w)
                && recomputable.contains(&w)
            {
                work.push(w);
            }
        }
    }
    let mut recompute: Vec<TokenStream> = Vec::new();
    for s in stmts {
        if needed.contains(&s.def) && recomputable.contains(&s.def) {
            recompute.push(cx.simple_stmt(s));
        }
        if rebuilt_ranges.contains(&s.def)
            && let Rhs::Loop(node) = &s.rhs
            && let crate::ir::LoopHead::For { range, .. } = &node.head
        {
            let r = cx.range(s.def);
            recompute.push(quote!(let #r = #range;));
        }
    }
    let mut saved: Vec<Ident> = needed
        .iter()
        .filter(|v| !recomputable.contains(v) && !provided(**v))
        .map(|v| cx.var(*v).clone())
        .collect();
    saved.extend(
        extra_names
            .into_iter()
            .filter(|n| mentioned.contains(&n.to_string())),
    );
    let index_needed = index.is_some_and(|i| needed.contains(&i));
    (recompute, saved, index_needed)
}

/// Before (forward):
/// ```text
/// let (y, branch) = if c { let t = x * x; (t, Then((x,))) } else { (x, Else(())) };
/// ```
/// After (reverse): the arm the tape says ran, with the values it saved.
/// ```text
/// let (d_x,) = match branch { Then((x,)) => { ..; (d_x,) }, Else(()) => { ..; (d_x,) } };
/// ```
fn branch_line(
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

    /// The reverse of one iteration of the loop defining `def` (built once, by its
    /// forward pass).
    pub fn loop_reverse(
        &mut self,
        def: VarId,
        node: &crate::ir::LoopNode,
    ) -> std::rc::Rc<LoopReverse> {
        if !self.loops.contains_key(&def) {
            let built = build_loop_reverse(self, node);
            self.loops.insert(def, std::rc::Rc::new(built));
        }
        self.loops[&def].clone()
    }
}

/// The gradient of every argument, and the adjoint buffers of the buffer arguments.
/// The pullback closure, and whether it has two reverse bodies (with and without strong
/// zeros; see `plain_body`).
pub fn pullback(cx: &mut Emitter<'_>, tuple_ty: &TokenStream) -> (TokenStream, bool) {
    let func = cx.func;
    let seed = func.ret.var().filter(|v| cx.plan.activity.is_active(*v));
    let seeds: Vec<VarId> = seed.into_iter().collect();
    // `let mut d_w = vec![0.0; w.len()];` for each active buffer argument: reads add
    // into it in place.
    let buffers: Vec<TokenStream> = func
        .params
        .iter()
        .filter(|p| p.kind == crate::ir::ParamKind::Buffer && cx.plan.activity.is_active(p.var))
        .map(|p| {
            let d = cx.adjoint(p.var);
            let x = &p.ident;
            let elem = p.elem.as_ref().expect("a buffer's element type");
            quote!(let mut #d: ::std::vec::Vec<#elem> = ::std::vec![::backprop::__private::zero(); #x.len()];)
        })
        .collect();
    // `let mut d_p = zero_like(p);` for each struct argument: its fields' contributions
    // are added in place.
    let structs: Vec<TokenStream> = func
        .params
        .iter()
        .filter(|p| p.kind == crate::ir::ParamKind::Struct && p.active)
        .map(|p| {
            let d = cx.adjoint(p.var);
            let x = &p.ident;
            let arg = if matches!(p.ty, syn::Type::Reference(_)) {
                quote!(#x)
            } else {
                quote!(&#x)
            };
            let slice = matches!(&p.ty, syn::Type::Reference(r) if matches!(*r.elem, syn::Type::Slice(_)));
            let fill = format_ident!("fill_{}", d);
            if slice {
                quote_spanned!(x.span()=> let (mut #d, #fill) = ::backprop::__private::zero_like_slice(#arg);)
            } else {
                quote_spanned!(x.span()=> let (mut #d, #fill) = ::backprop::__private::zero_like(#arg);)
            }
        })
        .collect();
    let buffers: Vec<TokenStream> = buffers.into_iter().chain(structs).collect();
    let (out, defined, count) = reverse_block(cx, &func.body, &seeds, Vec::new());
    // The gradient: one slot per argument.
    let grads: Vec<TokenStream> = func
        .params
        .iter()
        .map(|p| {
            if !p.active {
                quote!(::backprop::__private::Inactive)
            } else if p.kind == crate::ir::ParamKind::Struct {
                // Arrays no cotangent reached were left unallocated: zeros now.
                let d = cx.adjoint(p.var);
                let x = &p.ident;
                let by_ref = matches!(p.ty, syn::Type::Reference(_));
                let arg = if by_ref { quote!(#x) } else { quote!(&#x) };
                let fill = format_ident!("fill_{}", d);
                quote!(#fill(#d, #arg))
            } else if p.kind == crate::ir::ParamKind::Buffer {
                if cx.plan.activity.is_active(p.var) {
                    let d = cx.adjoint(p.var);
                    quote!(#d)
                } else {
                    let x = &p.ident;
                    quote!(::std::vec![::backprop::__private::zero(); #x.len()])
                }
            } else if defined.contains(&p.var) {
                let d = cx.adjoint(p.var);
                quote!(#d)
            } else if p.kind == crate::ir::ParamKind::Tensor {
                let x = &p.ident;
                quote!(::backprop::__private::tensor::zeros_like(&#x))
            } else {
                quote!(::backprop::__private::zero())
            }
        })
        .collect();
    // A view of a buffer this function owns (`let tail = &v[1..];`) borrows a local of
    // the forward pass: the pullback takes the buffer and makes the view again.
    let body = quote!(#(#out)*);
    let mentioned = crate::ir::idents(&body);
    let view_stmts: Vec<&Stmt> = func
        .body
        .iter()
        .filter(|s| {
            matches!(
                &s.rhs,
                Rhs::Buffer {
                    op: BufOp::View | BufOp::Borrow,
                    ..
                }
            ) && mentioned.contains(&func.name(s.def).to_string())
                && !func
                    .params
                    .iter()
                    .any(|p| p.var == func.buffer_root(s.def).0)
                && !func.is_field_view(func.buffer_root(s.def).0)
        })
        .collect();
    let views: Vec<TokenStream> = view_stmts.into_iter().map(|s| cx.simple_stmt(s)).collect();
    // Loops (and calls, whose callees may loop) are where the reverse pass's speed is:
    // only there is it worth the two rewrites below, which make the expansion longer.
    let mut loops = false;
    crate::ir::walk(&func.body, &mut |s| {
        loops |= matches!(s.rhs, Rhs::Loop(_) | Rhs::Call { .. });
    });
    // The arguments the reverse pass reads, moved out of the closure's state into
    // locals first: a slice or number read through the closure's state is loaded
    // again after every store to an adjoint (the compiler cannot tell the two apart),
    // a local stays in registers.
    let read_args: Vec<&Ident> = func
        .params
        .iter()
        .map(|p| &p.ident)
        .filter(|x| mentioned.contains(&x.to_string()))
        .collect();
    // The loops' stacks likewise: a pop then keeps the stack's length in a register
    // instead of storing it back to the closure's state every iteration.
    let stacks: Vec<Ident> = cx
        .stacks
        .clone()
        .into_iter()
        .map(|v| cx.tape(v).clone())
        .filter(|t| mentioned.contains(&t.to_string()))
        .collect();
    let rebind = if (read_args.is_empty() && stacks.is_empty()) || !loops {
        quote!()
    } else {
        quote!(let (#(#read_args,)* #(mut #stacks,)*) = (#(#read_args,)* #(#stacks,)*);)
    };
    let buffers: Vec<TokenStream> = std::iter::once(rebind)
        .chain(buffers)
        .chain(views)
        .collect();
    let ret_ty = &func.ret_ty;
    let param = match seed {
        Some(v) => {
            let d = cx.adjoint(v);
            if count[&v] > 1 {
                quote!(mut #d)
            } else {
                quote!(#d)
            }
        }
        None => {
            let unused = cx.names.fresh("_d_out", Span::call_site());
            quote!(#unused)
        }
    };
    // Tensor code keeps one body: its rules are kernels with their own zero handling,
    // so a second body would only double its size.
    let tensor = cx.plan.kinds.any_tensor()
        || func
            .params
            .iter()
            .any(|p| p.kind == crate::ir::ParamKind::Tensor);
    // Straight-line code keeps one body too: its few products cost little, and its
    // expansion stays one derivation to read.
    let (plain, rewritten) = if tensor || !loops {
        (quote!(), 0)
    } else {
        plain_body(body.clone())
    };
    if rewritten == 0 {
        return (
            quote! {
                move |#param: #ret_ty| -> #tuple_ty {
                    #(#buffers)*
                    #body
                    (#(#grads,)*)
                }
            },
            false,
        );
    }
    // Two reverse bodies: the closure's second argument picks one. The adjoints of
    // the arguments each body defines leave it as a tuple; buffers' and structs'
    // adjoints are declared above both and filled in place.
    let results: Vec<Ident> = func
        .params
        .iter()
        .filter(|p| {
            p.active
                && defined.contains(&p.var)
                && !matches!(
                    p.kind,
                    crate::ir::ParamKind::Buffer | crate::ir::ParamKind::Struct
                )
        })
        .map(|p| cx.adjoint(p.var).clone())
        .collect();
    let strong = cx.names.fresh("strong_zeros", Span::call_site());
    (
        quote! {
            move |#param: #ret_ty, #strong: bool| -> #tuple_ty {
                #(#buffers)*
                let (#(#results,)*) = if #strong {
                    #body
                    (#(#results,)*)
                } else {
                    #plain
                    (#(#results,)*)
                };
                (#(#grads,)*)
            }
        },
        true,
    )
}

/// The reverse body without strong zeros: each scalar rule `::backprop::__private::r`
/// becomes `::backprop::__private::plain::r` (the same formula with `d · local` a
/// plain product) and each nested pullback runs its own plain body
/// (`Pullback::backward_unguarded`). Returns the body and how many paths it changed
/// (none: the function has no scalar rule, and keeps one body).
///
/// Why the gradient is the same when it has no NaN: `backprop::rules::scalar::plain`.
fn plain_body(body: TokenStream) -> (TokenStream, usize) {
    use proc_macro2::{Group, TokenTree};
    fn is_rule(name: &str) -> bool {
        name.ends_with("_vjp") || name.contains("_vjp_")
    }
    fn is_colon(t: Option<&TokenTree>) -> bool {
        matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == ':')
    }
    fn rewrite(ts: TokenStream, count: &mut usize) -> TokenStream {
        let tokens: Vec<TokenTree> = ts.into_iter().collect();
        let mut out: Vec<TokenTree> = Vec::with_capacity(tokens.len() + 8);
        let mut k = 0;
        while k < tokens.len() {
            let tt = &tokens[k];
            k += 1;
            if let TokenTree::Group(g) = tt {
                let mut inner = Group::new(g.delimiter(), rewrite(g.stream(), count));
                inner.set_span(g.span());
                out.push(TokenTree::Group(inner));
                continue;
            }
            out.push(tt.clone());
            // `__private ::` then a rule's name, or `Pullback :: backward`.
            let after_private = matches!(tt, TokenTree::Ident(i) if i == "__private")
                && is_colon(tokens.get(k))
                && is_colon(tokens.get(k + 1));
            if !after_private {
                continue;
            }
            let colons = [tokens[k].clone(), tokens[k + 1].clone()];
            match tokens.get(k + 2) {
                // `__private::rule` → `__private::plain::rule`
                Some(TokenTree::Ident(name)) if is_rule(&name.to_string()) => {
                    out.extend(colons.iter().cloned());
                    out.push(TokenTree::Ident(Ident::new("plain", name.span())));
                    out.extend(colons);
                    out.push(TokenTree::Ident(name.clone()));
                    *count += 1;
                    k += 3;
                }
                // `__private::Pullback::backward` → `...::backward_unguarded`
                Some(TokenTree::Ident(name))
                    if name == "Pullback"
                        && is_colon(tokens.get(k + 3))
                        && is_colon(tokens.get(k + 4))
                        && matches!(tokens.get(k + 5), Some(TokenTree::Ident(m)) if m == "backward") =>
                {
                    out.extend(tokens[k..k + 5].iter().cloned());
                    out.push(TokenTree::Ident(Ident::new(
                        "backward_unguarded",
                        tokens[k + 5].span(),
                    )));
                    *count += 1;
                    k += 6;
                }
                _ => {}
            }
        }
        out.into_iter().collect()
    }
    let mut count = 0;
    let body = rewrite(body, &mut count);
    (body, count)
}

/// A buffer built by `push` (or a view of one).
fn growable(cx: &Emitter<'_>, o: &Operand) -> bool {
    o.var().is_some_and(|v| {
        cx.func.is_buffer(v)
            && matches!(
                cx.func.def_of(cx.func.buffer_root(v).0),
                Some(Stmt {
                    rhs: Rhs::Buffer {
                        op: BufOp::NewVec,
                        ..
                    },
                    ..
                })
            )
    })
}

/// `target += d`, or `target = target + d` in a function generic over its float type
/// (`T: Float` has no `+=`).
fn add_assign(cx: &Emitter<'_>, target: &TokenStream, d: &Ident, span: Span) -> TokenStream {
    let generic = !crate::ir::lower::float_type_params(&cx.item_generics()).is_empty();
    if generic {
        quote_spanned!(span=> #target = #target + #d;)
    } else {
        quote_spanned!(span=> #target += #d;)
    }
}

/// A struct argument or a field view: its adjoint is a place updated in place.
fn is_place(cx: &Emitter<'_>, v: VarId) -> bool {
    cx.func.is_field_view(v)
        || cx
            .func
            .params
            .iter()
            .any(|p| p.var == v && p.kind == crate::ir::ParamKind::Struct)
}

/// `d_x[off + i]`: the adjoint element of element `i` of buffer `buf` (a view adds its
/// offset into the buffer that owns the elements).
fn buffer_elem(cx: &mut Emitter<'_>, buf: VarId, index: &Operand) -> TokenStream {
    let (root, offsets) = cx.func.buffer_root(buf);
    let d = adjoint_place(cx, root);
    let i = cx.operand(index);
    let offs: Vec<TokenStream> = offsets.iter().map(|o| cx.operand(o)).collect();
    quote!(#d[#(#offs +)* #i])
}

/// `&mut d_x[off..]`: the adjoint elements of buffer (or view) `buf`.
fn buffer_slice(cx: &mut Emitter<'_>, buf: VarId) -> TokenStream {
    let (root, offsets) = cx.func.buffer_root(buf);
    let d = adjoint_place(cx, root);
    if offsets.is_empty() {
        quote!(&mut #d[..])
    } else {
        let offs: Vec<TokenStream> = offsets.iter().map(|o| cx.operand(o)).collect();
        quote!(&mut #d[#(#offs)+*..])
    }
}

/// The reverse of a buffer operation:
/// - `t = x[i]`: `d_x[i] += d_t;` (a read adds to the element's adjoint);
/// - `x[i] = v`: `let d_v = d_x[i]; d_x[i] = 0;` (the old element no longer reaches the result);
/// - `h = vec![v; n]`: `d_v = Σ d_h`; `h = x.to_vec()`: `d_x += d_h`;
/// - views and borrows: nothing (their adjoint *is* a part of the owner's).
fn buffer_lines(
    cx: &mut Emitter<'_>,
    s: &Stmt,
    op: &BufOp,
    args: &[Operand],
    count: &HashMap<VarId, usize>,
    lines: &mut Vec<Line>,
) {
    let activity = &cx.plan.activity;
    let span = s.span;
    let active = |o: &Operand| o.var().filter(|v| activity.is_active(*v));
    match op {
        BufOp::Read => {
            if cx.in_place_reads.contains(&s.def) {
                return;
            }
            if cx.accumulated_reads.contains(&s.def) {
                // Summed over the iterations by the loop (`build_loop_reverse`).
                return;
            }
            if activity.is_active(s.def) && count.contains_key(&s.def) {
                let buf = args[0].var().expect("a buffer");
                let elem = buffer_elem(cx, buf, &args[1]);
                let d = cx.adjoint(s.def);
                lines.push(Line::Raw(add_assign(cx, &elem, &d, span)));
            }
        }
        BufOp::Write => {
            let Some(buf) = active(&args[0]) else { return };
            let elem = buffer_elem(cx, buf, &args[1]);
            if let Some(v) = active(&args[2]) {
                lines.push(Line::Contrib {
                    target: v,
                    expr: elem.clone(),
                    span,
                });
            }
            if cx.in_place_writes.contains(&s.def) {
                // `x[i] = x[i] ± e`: the old element reaches the result through the new
                // one, so its adjoint stays (no zeroing, and its read adds nothing back).
                return;
            }
            lines.push(Line::Raw(
                quote_spanned!(span=> #elem = ::backprop::__private::zero();),
            ));
        }
        BufOp::Fill | BufOp::FillArray => {
            if let Some(v) = active(&args[0])
                && activity.is_active(s.def)
            {
                let d = cx.adjoint(s.def);
                lines.push(Line::Contrib {
                    target: v,
                    expr: quote_spanned!(span=> ::backprop::__private::sum_of(&#d)),
                    span,
                });
            }
        }
        BufOp::ToVec => {
            if let Some(src) = active(&args[0])
                && activity.is_active(s.def)
            {
                let d = cx.adjoint(s.def);
                let target = buffer_slice(cx, src);
                lines.push(Line::Raw(
                    quote_spanned!(span=> ::backprop::__private::add_into(#target, &#d);),
                ));
            }
        }
        BufOp::FieldRead(m) => {
            if activity.is_active(s.def) && count.contains_key(&s.def) {
                let base = args[0].var().expect("a struct");
                let place = adjoint_place(cx, base);
                let d = cx.adjoint(s.def);
                let target = quote!(#place.#m);
                lines.push(Line::Raw(add_assign(cx, &target, &d, span)));
            }
        }
        BufOp::Push => {
            let Some(buf) = active(&args[0]) else { return };
            let d = adjoint_place(cx, buf);
            let popped = quote_spanned!(span=> ::backprop::__private::pop_last(&mut #d));
            match active(&args[1]) {
                Some(v) => lines.push(Line::Contrib {
                    target: v,
                    expr: popped,
                    span,
                }),
                None => lines.push(Line::Raw(quote_spanned!(span=> #popped;))),
            }
        }
        BufOp::View
        | BufOp::Alias
        | BufOp::Borrow
        | BufOp::Field(_)
        | BufOp::Elem
        | BufOp::NewVec => {}
    }
}

/// The adjoint of a struct argument or of a field view of one: `d_p`, `d_p.layer1.w`.
pub fn adjoint_place(cx: &mut Emitter<'_>, v: VarId) -> TokenStream {
    match cx.func.def_of(v) {
        Some(Stmt {
            rhs:
                Rhs::Buffer {
                    op: BufOp::Field(m),
                    args,
                },
            ..
        }) => {
            let base = args[0].var().expect("a struct");
            let m = m.clone();
            let place = adjoint_place(cx, base);
            quote!(#place.#m)
        }
        Some(Stmt {
            rhs: Rhs::Buffer {
                op: BufOp::Elem,
                args,
            },
            ..
        }) => {
            let base = args[0].var().expect("a collection of structs");
            let i = cx.operand(&args[1]);
            let place = adjoint_place(cx, base);
            quote!(#place[#i])
        }
        Some(Stmt {
            rhs:
                Rhs::Buffer {
                    op: BufOp::Alias | BufOp::Borrow,
                    args,
                },
            ..
        }) => {
            let base = args[0].var().expect("a struct");
            adjoint_place(cx, base)
        }
        _ => {
            let d = cx.adjoint(v);
            quote!(#d)
        }
    }
}

/// Adds the contributions in `lines` to each adjoint's count.
fn count_contributions(lines: &[Line], count: &mut HashMap<VarId, usize>) {
    for l in lines {
        match l {
            Line::Contrib { target, .. } => *count.entry(*target).or_insert(0) += 1,
            Line::Many { slots, .. } => {
                for t in slots.iter().flatten() {
                    *count.entry(*t).or_insert(0) += 1;
                }
            }
            Line::Raw(_) => {}
        }
    }
}

/// The reverse of one iteration: from the cotangents of the carried values at the end
/// of the iteration to those at its start, plus what flows to values read from outside
/// the loop.
pub fn build_loop_reverse(cx: &mut Emitter<'_>, node: &LoopNode) -> LoopReverse {
    let activity = &cx.plan.activity;
    let active: Vec<usize> = (0..node.carried.len())
        .filter(|k| {
            activity.is_active(node.carried[*k].entry) || activity.is_active(node.carried[*k].out)
        })
        .collect();
    let mut params = Vec::new();
    let mut initial = Vec::new();
    for &k in &active {
        let c = &node.carried[k];
        let name = format!(
            "d_{}_next",
            cx.var(c.out).to_string().trim_start_matches("r#")
        );
        let p = cx.names.fresh(&name, Span::call_site());
        if let Some(v) = c.exit.var().filter(|v| activity.is_active(*v)) {
            initial.push((v, quote!(#p)));
        }
        params.push(p);
    }
    let invariant = invariant_reads(cx, node);
    let accumulate: Vec<VarId> = invariant
        .iter()
        .copied()
        .filter(|v| activity.is_active(*v))
        .collect();
    cx.accumulated_reads.extend(accumulate.iter().copied());
    let (stmts, defined, _) = reverse_block(cx, &node.body, &[], initial);
    let mut local = defined_in(&node.body);
    local.extend(node.carried.iter().map(|c| c.entry));
    let outer: Vec<VarId> = defined
        .iter()
        .filter(|v| !local.contains(v))
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ret_ty = cx.func.float_ty.clone();
    let mut values = Vec::new();
    for &k in &active {
        let e = node.carried[k].entry;
        if defined.contains(&e) {
            let d = cx.adjoint(e);
            values.push(quote!(#d));
        } else if !cx.plan.kinds.scalar[e.0] {
            // An array carried into an iteration that does not read it: a zero of the
            // shape it had there.
            let x = cx.var(e).clone();
            values.push(quote!(::backprop::__private::tensor::zeros_like(&#x)));
        } else {
            values.push(quote!(::backprop::__private::zero::<#ret_ty>()));
        }
    }
    for v in &outer {
        let d = cx.adjoint(*v);
        values.push(quote!(#d));
    }
    let mut accumulated = Vec::new();
    for &v in &accumulate {
        if defined.contains(&v) {
            let d = cx.adjoint(v);
            values.push(quote!(#d));
        } else {
            values.push(quote!(::backprop::__private::zero::<#ret_ty>()));
        }
        let Some(Stmt {
            rhs: Rhs::Buffer { args, .. },
            ..
        }) = node.body.iter().find(|s| s.def == v)
        else {
            unreachable!("an invariant read is a statement of the loop body")
        };
        let buf = args[0].var().expect("a buffer");
        let elem = buffer_elem(cx, buf, &args[1]);
        accumulated.push((cx.var(v).clone(), elem));
    }
    let rev = quote!(#(#stmts)*);
    let entries: Vec<VarId> = node.carried.iter().map(|c| c.entry).collect();
    let index = match &node.head {
        crate::ir::LoopHead::For { index, .. } => Some(*index),
        crate::ir::LoopHead::While { .. } => None,
    };
    // Integer counters stepped by a literal (`li += 1`, `j -= 1`) are run backwards in
    // the reverse pass (entry = exit − step) instead of saved per iteration.
    let reversible: Vec<Reversible> = node
        .carried
        .iter()
        .filter(|c| !activity.is_active(c.entry))
        .filter_map(|c| {
            let x = c.exit.var()?;
            let st = node.body.iter().find(|s| s.def == x)?;
            let Rhs::Prim {
                prim,
                spelling: Spelling::Operator(_),
                args,
            } = &st.rhs
            else {
                return None;
            };
            let is_int = |o: &Operand| {
                matches!(
                    o,
                    Operand::Const(syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Int(_),
                        ..
                    }))
                )
            };
            let (step, undo) = match (prim.name, &args[..]) {
                ("+", [Operand::Var(e), k]) if *e == c.entry && is_int(k) => (k.clone(), quote!(-)),
                ("+", [k, Operand::Var(e)]) if *e == c.entry && is_int(k) => (k.clone(), quote!(-)),
                ("-", [Operand::Var(e), k]) if *e == c.entry && is_int(k) => (k.clone(), quote!(+)),
                _ => return None,
            };
            Some(Reversible {
                entry: c.entry,
                out: c.out,
                step: cx.operand(&step),
                undo,
            })
        })
        .collect();
    let mut given: Vec<VarId> = reversible.iter().map(|r| r.entry).collect();
    let (mut recompute, mut saved, mut index_needed) =
        materialize(cx, &node.body, &entries, index, &given, &rev);
    // An array state saved both at the top of an iteration (its entry) and at the end
    // (its exit, `tanh` keeping its output) would be on the stack twice: the exit of
    // iteration k is the entry of iteration k + 1. Keep the entries only.
    let relayed: Vec<(VarId, VarId, VarId)> = node
        .carried
        .iter()
        .filter(|c| !cx.plan.kinds.scalar[c.entry.0])
        .filter_map(|c| {
            let exit = c.exit.var()?;
            let is_saved = |v: VarId| saved.contains(cx.var(v));
            (exit != c.entry
                && is_saved(exit)
                && is_saved(c.entry)
                && defined_in(&node.body).contains(&exit))
            .then_some((exit, c.entry, c.out))
        })
        .collect();
    if !relayed.is_empty() {
        given.extend(relayed.iter().map(|r| r.0));
        (recompute, saved, index_needed) =
            materialize(cx, &node.body, &entries, index, &given, &rev);
        for r in &relayed {
            cx.captured.borrow_mut().insert(r.2);
        }
    }
    let used = crate::ir::idents(&quote!(#(#recompute)* #rev));
    let reversible: Vec<Reversible> = reversible
        .into_iter()
        .filter(|r| used.contains(&cx.var(r.entry).to_string()))
        .collect();
    // A read every iteration makes of the same element of a buffer the loop does not
    // write (`xcentered[i]` inside `for j`) is the same value each time: read once after
    // the loop (when it ran) instead of saved per iteration.
    let mut hoisted = Vec::new();
    let mut prelude = Vec::new();
    for st in node.body.iter().filter(|st| invariant.contains(&st.def)) {
        let Rhs::Buffer { args, .. } = &st.rhs else {
            unreachable!("invariant reads are buffer reads")
        };
        let name = cx.var(st.def).clone();
        let Some(pos) = saved.iter().position(|n| *n == name) else {
            continue;
        };
        saved.remove(pos);
        let h = cx.names.fresh(
            &format!("{}_hoisted", name.to_string().trim_start_matches("r#")),
            name.span(),
        );
        let (b, i) = (cx.operand(&args[0]), cx.operand(&args[1]));
        hoisted.push((h.clone(), quote!(#b[#i])));
        prelude.push(quote!(let #name = #h;));
    }
    let mut body = prelude;
    body.extend(recompute);
    body.extend(stmts);
    body.push(quote!((#(#values,)*)));
    LoopReverse {
        active,
        params,
        body,
        outer,
        saved,
        index: index_needed,
        reversible,
        hoisted,
        accumulated,
        relayed,
    }
}

/// The reads at the top level of a loop's body whose buffer and index come from outside
/// the loop and whose buffer the loop never writes: the same element every iteration.
fn invariant_reads(cx: &Emitter<'_>, node: &LoopNode) -> Vec<VarId> {
    let mut written = HashSet::new();
    crate::ir::walk(&node.body, &mut |st| {
        if let Rhs::Buffer {
            op: BufOp::Write | BufOp::Push,
            args,
        } = &st.rhs
            && let Some(b) = args[0].var()
        {
            written.insert(cx.func.buffer_root(b).0);
        }
    });
    let index = match &node.head {
        crate::ir::LoopHead::For { index, .. } => Some(*index),
        crate::ir::LoopHead::While { .. } => None,
    };
    let mut body_defs = defined_in(&node.body);
    body_defs.extend(node.carried.iter().map(|c| c.entry));
    let from_outside = |o: &Operand| {
        o.var()
            .is_none_or(|v| !body_defs.contains(&v) && Some(v) != index)
    };
    node.body
        .iter()
        .filter(|st| match &st.rhs {
            Rhs::Buffer {
                op: BufOp::Read,
                args,
            } => {
                let base = args[0].var().expect("a buffer");
                from_outside(&args[0])
                    && from_outside(&args[1])
                    && !written.contains(&cx.func.buffer_root(base).0)
            }
            _ => false,
        })
        .map(|st| st.def)
        .collect()
}

/// Before (forward): every iteration pushes what its reverse reads.
/// ```text
/// let mut v_1 = v;
/// let mut iterations = Vec::with_capacity(n);
/// for _ in 0..n { let v_2 = v_1; let v_3 = v_2 * v_2; iterations.push((v_2,)); v_1 = v_3; }
/// ```
/// After (reverse): the iterations run again last-in first-out, inline.
/// ```text
/// let (d_v,) = { let mut d_v_1_carry = d_v_1;
///     for (v_2,) in iterations.into_iter().rev() { let d_v_1_next = d_v_1_carry; ..; d_v_1_carry = d_v_2; }
///     (d_v_1_carry,) };
/// ```
fn loop_line(
    cx: &mut Emitter<'_>,
    def: VarId,
    node: &LoopNode,
    count: &HashMap<VarId, usize>,
    span: Span,
) -> Line {
    let rev = cx.loop_reverse(def, node);
    let ret_ty = cx.func.float_ty.clone();
    let activity = &cx.plan.activity;
    let tape = cx.tape(def);
    cx.captured_tapes.borrow_mut().insert(def);
    let mut carry_names = Vec::new();
    let mut inits = Vec::new();
    for &k in &rev.active {
        let c = &node.carried[k];
        let name = cx.names.fresh(
            &format!(
                "d_{}_carry",
                cx.var(c.out).to_string().trim_start_matches("r#")
            ),
            span,
        );
        let tensor = !cx.plan.kinds.scalar[c.out.0];
        let start = if count.contains_key(&c.out) {
            let d = cx.adjoint(c.out);
            quote!(#d)
        } else if tensor {
            // Nothing after the loop reads the array: a zero of its final shape.
            let x = cx.var(c.out).clone();
            quote!(::backprop::__private::tensor::zeros_like(&#x))
        } else {
            quote!(::backprop::__private::zero())
        };
        if tensor {
            inits.push(quote!(let mut #name = #start;));
        } else {
            inits.push(quote!(let mut #name: #ret_ty = #start;));
        }
        carry_names.push(name);
    }
    // An array read from outside the loop sums its cotangents over the iterations
    // from the first one on (its zero needs its shape: made only if the loop never ran).
    let outer_tensor: Vec<bool> = rev
        .outer
        .iter()
        .map(|v| !cx.plan.kinds.scalar[v.0])
        .collect();
    let outer_names: Vec<Ident> = rev
        .outer
        .iter()
        .map(|v| {
            cx.names.fresh(
                &format!("d_{}_sum", cx.var(*v).to_string().trim_start_matches("r#")),
                span,
            )
        })
        .collect();
    let acc_names: Vec<Ident> = rev
        .accumulated
        .iter()
        .map(|(read, _)| {
            let name = format!("d_{}_sum", read.to_string().trim_start_matches("r#"));
            cx.names.fresh(&name, span)
        })
        .collect();
    let step_names: Vec<Ident> = (0..carry_names.len() + outer_names.len() + acc_names.len())
        .map(|k| cx.names.fresh(&format!("step_{k}"), span))
        .collect();
    let (carry_steps, rest) = step_names.split_at(carry_names.len());
    let (outer_steps, acc_steps) = rest.split_at(outer_names.len());
    let params = &rev.params;
    let saved = &rev.saved;
    let body = &rev.body;
    // This run's iterations are the last `n` entries of the loop's stack.
    let n = match &node.head {
        crate::ir::LoopHead::For { .. } => {
            let range = cx.range(def);
            quote!(::core::iter::Iterator::size_hint(&#range).0)
        }
        crate::ir::LoopHead::While { .. } => {
            let count = cx.count(def);
            quote!(#count)
        }
    };
    let k = cx.names.fresh("k", span);
    // The index: the reverse walks the range backwards (`range.rev()`), or, for a range
    // that cannot run backwards (`step_by` over `a..=b`: not double-ended), counts down
    // and takes the k-th element (`nth`, O(1) for ranges).
    let (index, walk) = match &node.head {
        crate::ir::LoopHead::For {
            index,
            double_ended,
            ..
        } if rev.index => {
            let i = cx.var(*index).clone();
            let range = cx.range(def);
            if *double_ended {
                (
                    quote!(),
                    quote!(#i in ::core::iter::Iterator::rev(::core::clone::Clone::clone(&#range))),
                )
            } else {
                (
                    quote!(let #i = ::backprop::__private::nth(&#range, #k);),
                    quote!(#k in (0..#n).rev()),
                )
            }
        }
        _ => (quote!(), quote!(#k in (0..#n).rev())),
    };
    let mut counter_init = Vec::new();
    let mut counter_step = Vec::new();
    let mut relay_after = Vec::new();
    for &(exit, entry, out) in &rev.relayed {
        let (exit, entry, out) = (
            cx.var(exit).clone(),
            cx.var(entry).clone(),
            cx.var(out).clone(),
        );
        let state = cx.names.fresh(
            &format!("{}_relayed", exit.to_string().trim_start_matches("r#")),
            span,
        );
        counter_init.push(quote!(let mut #state = #out;));
        counter_step.push(quote!(let #exit = #state;));
        relay_after.push(quote!(#state = #entry;));
    }
    for r in &rev.reversible {
        let entry = cx.var(r.entry).clone();
        let out = cx.var(r.out).clone();
        let state = cx.names.fresh(
            &format!("{}_backwards", out.to_string().trim_start_matches("r#")),
            span,
        );
        let (step, undo) = (&r.step, &r.undo);
        counter_init.push(quote!(let mut #state = #out;));
        counter_step.push(quote!(let #entry = #state #undo #step; #state = #entry;));
    }
    let pop = if rev.stackless(node) {
        quote!()
    } else {
        quote!(let (#(#saved,)*) = ::backprop::__private::pop(&mut #tape);)
    };
    let outer_updates: Vec<TokenStream> = outer_names
        .iter()
        .zip(outer_steps)
        .zip(&outer_tensor)
        .map(|((sum, step), tensor)| {
            if *tensor {
                quote!(#sum = ::backprop::__private::tensor::lazy_add(#sum, #step);)
            } else {
                quote!(#sum = #sum + #step;)
            }
        })
        .collect();
    let outer_inits: Vec<TokenStream> = outer_names
        .iter()
        .zip(&outer_tensor)
        .map(|(sum, tensor)| {
            if *tensor {
                quote!(let mut #sum = ::core::option::Option::None;)
            } else {
                quote!(let mut #sum: #ret_ty = ::backprop::__private::zero();)
            }
        })
        .collect();
    let outer_results: Vec<TokenStream> = outer_names
        .iter()
        .zip(&outer_tensor)
        .zip(&rev.outer)
        .map(|((sum, tensor), v)| {
            if *tensor {
                let x = cx.var(*v).clone();
                quote!(::backprop::__private::tensor::sum_or_zeros_like(#sum, &#x))
            } else {
                quote!(#sum)
            }
        })
        .collect();
    let the_loop = quote_spanned! {span=>
        #(#counter_init)*
        for #walk {
            #pop
            #index
            #(#counter_step)*
            #(let #params = #carry_names;)*
            let (#(#step_names,)*) = { #(#body)* };
            #(#relay_after)*
            #(#carry_names = #carry_steps;)*
            #(#outer_updates)*
            #(#acc_names = #acc_names + #acc_steps;)*
        }
    };
    // Each invariant read's summed cotangent goes to its element once (only when the
    // loop ran: the forward pass never read the element otherwise).
    let acc_adds: Vec<TokenStream> = rev
        .accumulated
        .iter()
        .zip(&acc_names)
        .map(|((_, elem), sum)| add_assign(cx, elem, sum, span))
        .collect();
    let acc_after = if acc_adds.is_empty() {
        quote!()
    } else {
        quote!(if #n > 0 { #(#acc_adds)* })
    };
    let invoke = quote_spanned! {span=>
        {
            #(#inits)*
            #(#outer_inits)*
            #(let mut #acc_names: #ret_ty = ::backprop::__private::zero();)*
            #the_loop
            #acc_after
            (#(#carry_names,)* #(#outer_results,)*)
        }
    };
    let mut slots: Vec<Option<VarId>> = rev
        .active
        .iter()
        .map(|&k| {
            node.carried[k]
                .init
                .var()
                .filter(|v| activity.is_active(*v))
        })
        .collect();
    slots.extend(rev.outer.iter().map(|v| Some(*v)));
    Line::Many {
        invoke,
        slots,
        span,
        check: false,
    }
}
