//! The reverse of a loop: one iteration's reverse (built once, by the forward pass
//! that pushes what it reads), loop-invariant reads hoisted out of it, and the loop that
//! walks the iterations backwards in the enclosing reverse pass.

use super::buffers::{add_assign, buffer_elem};
use super::materialize::{Materialized, materialize};
use super::{Line, defined_in, reverse_block};
use crate::analysis::save::Reads;
use crate::emit::context::{Emitter, LoopReverse, Mode, Reversible};
use crate::ir::{BufOp, LoopNode, Operand, Rhs, Spelling, Stmt, VarId};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use std::collections::{BTreeSet, HashMap, HashSet};

impl<'a> Emitter<'a> {
    /// The reverse of one iteration of the loop defining `def` in the current mode (the
    /// strong one built once, by its forward pass; the plain one from its decisions).
    pub fn loop_reverse(
        &mut self,
        def: VarId,
        node: &crate::ir::LoopNode,
    ) -> std::rc::Rc<LoopReverse> {
        if !self.loops.contains_key(&def) {
            let mode = std::mem::replace(&mut self.mode, Mode::Strong);
            let built = build_loop_reverse(self, node);
            self.loops.insert(def, std::rc::Rc::new(built));
            self.mode = mode;
        }
        if self.mode == Mode::Plain && !self.plain_loops.contains_key(&def) {
            let strong = self.loops[&def].clone();
            let mut built = (*strong).clone();
            let it = iteration_reverse(self, node, &strong.params);
            assert_eq!(
                it.outer, strong.outer,
                "both modes reach the same outer values"
            );
            built.body = it.stmts;
            built.tuple = it.tuple;
            built.sensitive = it.sensitive;
            self.plain_loops.insert(def, std::rc::Rc::new(built));
        }
        match self.mode {
            Mode::Strong => self.loops[&def].clone(),
            Mode::Plain => self.plain_loops[&def].clone(),
        }
    }
}

/// The active carried values of a loop (indices into `carried`).
fn active_carried(cx: &Emitter<'_>, node: &LoopNode) -> Vec<usize> {
    let activity = &cx.plan.activity;
    (0..node.carried.len())
        .filter(|k| {
            activity.is_active(node.carried[*k].entry) || activity.is_active(node.carried[*k].out)
        })
        .collect()
}

/// One iteration's reverse statements in the current mode, ending with the tuple of
/// the cotangents it returns (the active carried values' at the start of the
/// iteration, the outer values', the accumulated reads'), given the names of the
/// carried values' cotangents at its end. Returns the statements, the tuple, the outer
/// values, and the number of mode-dependent lines.
fn iteration_reverse(cx: &mut Emitter<'_>, node: &LoopNode, params: &[Ident]) -> Iteration {
    let activity = &cx.plan.activity;
    let active = active_carried(cx, node);
    let mut initial = Vec::new();
    for (&k, p) in active.iter().zip(params) {
        let c = &node.carried[k];
        if let Some(v) = c.exit.var().filter(|v| activity.is_active(*v)) {
            initial.push((v, quote!(#p)));
        }
    }
    let accumulate: Vec<VarId> = invariant_reads(cx, node)
        .into_iter()
        .filter(|v| activity.is_active(*v))
        .collect();
    cx.accumulated_reads.extend(accumulate.iter().copied());
    let before = cx.sensitive;
    let ((stmts, defined, _), body_reads) =
        cx.recording(|cx| reverse_block(cx, &node.body, &[], initial));
    let sensitive = cx.sensitive - before;
    cx.sensitive = before;
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
    let (values, tuple_reads) = cx.recording(|cx| {
        let mut values = Vec::new();
        for &k in &active {
            let e = node.carried[k].entry;
            if defined.contains(&e) {
                let d = cx.adjoint(e);
                values.push(quote!(#d));
            } else if !cx.plan.kinds.scalar[e.0] {
                // An array carried into an iteration that does not read it: a zero of the
                // shape it had there.
                let x = cx.read(e);
                values.push(quote!(::backprop::__private::tensor::zeros_like(&#x)));
            } else {
                values.push(quote!(::backprop::__private::zero::<#ret_ty>()));
            }
        }
        for v in &outer {
            let d = cx.adjoint(*v);
            values.push(quote!(#d));
        }
        for &v in &accumulate {
            if defined.contains(&v) {
                let d = cx.adjoint(v);
                values.push(quote!(#d));
            } else {
                values.push(quote!(::backprop::__private::zero::<#ret_ty>()));
            }
        }
        values
    });
    Iteration {
        stmts,
        tuple: quote!((#(#values,)*)),
        outer,
        sensitive,
        body_reads,
        tuple_reads,
    }
}

/// One iteration's reverse in one mode (see `iteration_reverse`).
struct Iteration {
    stmts: Vec<TokenStream>,
    tuple: TokenStream,
    outer: Vec<VarId>,
    sensitive: usize,
    /// What `stmts` read.
    body_reads: Reads,
    /// What `tuple` reads.
    tuple_reads: Reads,
}

/// The reverse of one iteration: from the cotangents of the carried values at the end
/// of the iteration to those at its start, plus what flows to values read from outside
/// the loop; and what the forward pass saves for it.
fn build_loop_reverse(cx: &mut Emitter<'_>, node: &LoopNode) -> LoopReverse {
    let activity = &cx.plan.activity;
    let active = active_carried(cx, node);
    let mut params = Vec::new();
    for &k in &active {
        let c = &node.carried[k];
        let name = format!(
            "d_{}_next",
            cx.var(c.out).to_string().trim_start_matches("r#")
        );
        params.push(cx.names.fresh(&name, Span::call_site()));
    }
    let invariant = invariant_reads(cx, node);
    let Iteration {
        stmts: body,
        tuple,
        outer,
        sensitive,
        body_reads,
        tuple_reads,
    } = iteration_reverse(cx, node, &params);
    let mut reads = body_reads.clone();
    reads.extend(&tuple_reads);
    let mut accumulated = Vec::new();
    for &v in invariant.iter().filter(|v| activity.is_active(**v)) {
        let Some(Stmt {
            rhs: Rhs::Buffer { args, .. },
            ..
        }) = node.body.iter().find(|s| s.def == v)
        else {
            unreachable!("an invariant read is a statement of the loop body")
        };
        let buf = args[0].var().expect("a buffer");
        // (Added after the loop, in the enclosing reverse: what it reads counts there.)
        let (elem, elem_reads) = cx.recording(|cx| buffer_elem(cx, buf, &args[1]));
        reads.extend(&elem_reads);
        accumulated.push((cx.var(v).clone(), elem));
    }
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
    let mut m = materialize(cx, &node.body, &entries, index, &given, &body_reads);
    // An array state saved both at the top of an iteration (its entry) and at the end
    // (its exit, `tanh` keeping its output) would be on the stack twice: the exit of
    // iteration k is the entry of iteration k + 1. Keep the entries only.
    let relayed: Vec<(VarId, VarId, VarId)> = node
        .carried
        .iter()
        .filter(|c| !cx.plan.kinds.scalar[c.entry.0])
        .filter_map(|c| {
            let exit = c.exit.var()?;
            let is_saved = |v: VarId| m.saved.contains(cx.var(v));
            (exit != c.entry
                && is_saved(exit)
                && is_saved(c.entry)
                && defined_in(&node.body).contains(&exit))
            .then_some((exit, c.entry, c.out))
        })
        .collect();
    if !relayed.is_empty() {
        given.extend(relayed.iter().map(|r| r.0));
        m = materialize(cx, &node.body, &entries, index, &given, &body_reads);
        for r in &relayed {
            cx.captured.borrow_mut().insert(r.2);
        }
    }
    let Materialized {
        recompute,
        mut saved,
        index: index_needed,
        head_reads,
    } = m;
    reads.extend(&head_reads);
    let reversible: Vec<Reversible> = reversible
        .into_iter()
        .filter(|r| body_reads.values.contains(&r.entry) || head_reads.values.contains(&r.entry))
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
        reads.names.insert(h.to_string());
        prelude.push(quote!(let #name = #h;));
    }
    let mut head = prelude;
    head.extend(recompute);
    LoopReverse {
        active,
        params,
        head,
        body,
        tuple,
        sensitive,
        reads,
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
pub(super) fn loop_line(
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
    cx.read_all(&rev.reads);
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
            let x = cx.read(c.out);
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
    let (head, body, tuple) = (&rev.head, &rev.body, &rev.tuple);
    cx.sensitive += rev.sensitive;
    // This run's iterations are the last `n` entries of the loop's stack.
    let n = match &node.head {
        crate::ir::LoopHead::For { .. } => {
            let range = cx.range(def);
            cx.read_name(&range);
            quote!(::core::iter::Iterator::size_hint(&#range).0)
        }
        crate::ir::LoopHead::While { .. } => {
            let count = cx.count(def);
            cx.read_name(&count);
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
        let (exit, entry, out) = (cx.var(exit).clone(), cx.read(entry), cx.read(out));
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
        let out = cx.read(r.out);
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
        cx.read_name(&tape);
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
                let x = cx.read(*v);
                quote!(::backprop::__private::tensor::sum_or_zeros_like(#sum, &#x))
            } else {
                quote!(#sum)
            }
        })
        .collect();
    // An iteration that hands no cotangent on runs its reverse in the loop's body.
    let step = if step_names.is_empty() {
        quote!(#(#head)* #(#body)*)
    } else {
        quote!(let (#(#step_names,)*) = { #(#head)* #(#body)* #tuple };)
    };
    let the_loop = quote_spanned! {span=>
        #(#counter_init)*
        for #walk {
            #pop
            #index
            #(#counter_step)*
            #(let #params = #carry_names;)*
            #step
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
    if rev.active.is_empty() && rev.outer.is_empty() {
        // No cotangent leaves the loop (it adds into adjoint buffers): its statements,
        // inline.
        return Line::Raw(quote_spanned! {span=>
            #(let mut #acc_names: #ret_ty = ::backprop::__private::zero();)*
            #the_loop
            #acc_after
        });
    }
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
