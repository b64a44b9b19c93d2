//! The forward pass of control flow: a loop (carried values in mutable state, what
//! each iteration's reverse reads pushed onto the loop's stack) and an `if` (each arm
//! returns its values and what its reverse reads, tagged with the branch taken).

use crate::emit::context::Emitter;
use crate::ir::{Operand, Stmt};
use proc_macro2::{Ident, TokenStream};
use quote::{quote, quote_spanned};

impl<'a> Emitter<'a> {
    /// A loop: the carried values live in mutable state named after their value after
    /// the loop; each iteration binds their entry values, runs the body and, when the
    /// loop is active, pushes what its reverse reads onto the loop's tape (a `Vec` of
    /// tuples; `()` when an iteration needs nothing, which allocates nothing).
    pub(super) fn loop_stmt(&mut self, s: &Stmt, node: &crate::ir::LoopNode) -> TokenStream {
        let span = s.span;
        let active = self.plan.activity.is_active(s.def);
        let states: Vec<Ident> = node
            .carried
            .iter()
            .map(|c| self.var(c.out).clone())
            .collect();
        // An array that starts a carried state and is also read by a pullback (`tanh`
        // keeps its output; an earlier loop relays it) is copied into the loop: the
        // loop's state moves.
        let inits: Vec<TokenStream> = node
            .carried
            .iter()
            .map(|c| match c.init.var() {
                Some(v) if !self.plan.kinds.scalar[v.0] && self.read_by_reverse_now(v) => {
                    let x = self.var(v);
                    quote!(::core::clone::Clone::clone(&#x))
                }
                _ => self.operand(&c.init),
            })
            .collect();
        // A `while` that stops hands its state back (entry → state) when it is an array,
        // which the iteration's first line moved out.
        let restores: Vec<TokenStream> = node
            .carried
            .iter()
            .filter(|c| !self.plan.kinds.scalar[c.entry.0])
            .map(|c| {
                let (st, en) = (self.var(c.out), self.var(c.entry));
                quote!(#st = #en;)
            })
            .collect();
        let entries: Vec<Ident> = node
            .carried
            .iter()
            .map(|c| self.var(c.entry).clone())
            .collect();
        let exits: Vec<TokenStream> = node.carried.iter().map(|c| self.operand(&c.exit)).collect();
        let body = self.block(&node.body);
        let stackless = active && self.loop_reverse(s.def, node).stackless(node);
        let (push, hoisted) = if active {
            let rev = self.loop_reverse(s.def, node);
            let tape = self.tape(s.def);
            // An array the iteration saves and also hands to the next iteration (its
            // exit value) is copied onto the stack: the carry moves it.
            let exit_arrays: Vec<Ident> = node
                .carried
                .iter()
                .filter_map(|c| c.exit.var())
                .filter(|v| !self.plan.kinds.scalar[v.0])
                .map(|v| self.var(v).clone())
                .collect();
            let saved: Vec<TokenStream> = rev
                .saved
                .iter()
                .map(|n| {
                    if exit_arrays.contains(n) {
                        quote!(::core::clone::Clone::clone(&#n))
                    } else {
                        quote!(#n)
                    }
                })
                .collect();
            // The stack counts its entries' own bytes; an array or a nested tape in an
            // entry also owns heap, counted as it is pushed.
            let heap_items: Vec<Ident> = rev
                .saved
                .iter()
                .filter(|n| self.tapes.values().any(|t| t == *n) || self.is_array_name(n))
                .cloned()
                .collect();
            let count_heap = if heap_items.is_empty() || stackless {
                quote!()
            } else {
                let counter = self.heap_name();
                quote! {
                    #counter += {
                        #[allow(unused_imports)]
                        use ::backprop::__private::{HeapOfOther as _, HeapOfOwned as _};
                        0 #(+ (&::backprop::__private::Probe(&#heap_items)).heap_bytes())*
                    };
                }
            };
            let push = if stackless {
                quote!()
            } else if matches!(node.head, crate::ir::LoopHead::For { .. }) {
                // A `for` reserved its trip count before it started.
                quote!(#count_heap #tape.push_reserved((#(#saved,)*));)
            } else {
                quote!(#count_heap #tape.push((#(#saved,)*));)
            };
            (push, rev.hoisted.clone())
        } else {
            (quote!(), Vec::new())
        };
        let iteration = |body: &[TokenStream], head: TokenStream| {
            quote! {
                #(let #entries = #states;)*
                #head
                #(#body)*
                #push
                #(#states = #exits;)*
            }
        };
        let lp = match &node.head {
            crate::ir::LoopHead::For { index, range, .. } if active => {
                // One stack per loop for the whole forward pass (declared at its top):
                // a nested loop's runs share it, with no allocation per run. The
                // reverse pass recomputes the index, and the number of iterations, from
                // the range (a `for` that remains a `for` runs its whole range: a `break`
                // in a plain `a..b` loop makes it a `while` over a counter, and in a
                // `rev`/`step_by` loop a flag that skips the rest).
                let i = self.var(*index).clone();
                let it = iteration(&body, quote!());
                let tape = self.tape(s.def);
                let reserve = if stackless {
                    quote!()
                } else {
                    self.stacks.push(s.def);
                    let r = self.range(s.def);
                    quote!(#tape.reserve(::core::iter::Iterator::size_hint(&#r).0);)
                };
                let r = self.range(s.def);
                let after = hoisted.iter().map(|(h, read)| {
                    quote!(let #h = if ::core::iter::Iterator::size_hint(&#r).0 > 0 { #read } else { ::backprop::__private::zero() };)
                });
                quote_spanned! {span=>
                    let #r = #range;
                    #reserve
                    for #i in ::core::clone::Clone::clone(&#r) { #it }
                    #(#after)*
                }
            }
            crate::ir::LoopHead::For { index, range, .. } => {
                let i = self.var(*index).clone();
                let it = iteration(&body, quote!());
                quote_spanned!(span=> for #i in #range { #it })
            }
            crate::ir::LoopHead::While { cond, head_len } => {
                let c = self.operand(cond);
                let (head, rest) = body.split_at(*head_len);
                let it = iteration(rest, quote!(#(#head)* if !#c { #(#restores)* break; }));
                if active {
                    // A `while` counts its iterations for the reverse pass.
                    let tape = self.tape(s.def);
                    self.stacks.push(s.def);
                    let start = self.names.fresh("start", span);
                    let count = self.count(s.def);
                    let after = hoisted.iter().map(|(h, read)| {
                        quote!(let #h = if #count > 0 { #read } else { ::backprop::__private::zero() };)
                    });
                    quote_spanned! {span=>
                        let #start = #tape.len();
                        loop { #it }
                        let #count = #tape.len() - #start;
                        #(#after)*
                    }
                } else {
                    quote_spanned!(span=> loop { #it })
                }
            }
        };
        quote! {
            #(let mut #states = #inits;)*
            #lp
        }
    }

    /// Before:
    /// ```text
    /// let y = if c { x * x } else { x };
    /// ```
    /// After: each branch runs its statements, then returns its values and what its
    /// reverse reads, tagged with the branch taken (the tape's "which way" bit).
    /// ```text
    /// let (y, branch) = if c {
    ///     let t0 = x * x;
    ///     (t0, Branch::Then((x,)))
    /// } else {
    ///     (x, Branch::Else(()))
    /// };
    /// ```
    pub(super) fn if_stmt(&mut self, s: &Stmt, node: &crate::ir::IfNode) -> TokenStream {
        let cond = self.operand(&node.cond);
        let outs: Vec<Ident> = node.outs.iter().map(|o| self.var(o.def).clone()).collect();
        let then_stmts = self.block(&node.then_body);
        let else_stmts = self.block(&node.else_body);
        // An array from before the `if` that an arm hands on unchanged (`h` in the arm
        // that does not reassign it) is copied when a pullback also reads it: handing it
        // on moves it.
        let pass = |this: &Self, o: &Operand, body: &[Stmt]| -> TokenStream {
            match o.var() {
                Some(v)
                    if !this.plan.kinds.scalar[v.0]
                        && this.read_by_reverse_now(v)
                        && !body.iter().any(|st| st.def == v) =>
                {
                    let x = this.var(v);
                    quote!(::core::clone::Clone::clone(&#x))
                }
                _ => this.operand(o),
            }
        };
        let then_vals: Vec<TokenStream> = node
            .outs
            .iter()
            .map(|o| pass(self, &o.then_val, &node.then_body))
            .collect();
        let else_vals: Vec<TokenStream> = node
            .outs
            .iter()
            .map(|o| pass(self, &o.else_val, &node.else_body))
            .collect();
        let span = s.span;
        if !self.plan.activity.is_active(s.def) {
            return quote_spanned! {span=>
                let (#(#outs,)*) = if #cond { #(#then_stmts)* (#(#then_vals,)*) } else { #(#else_stmts)* (#(#else_vals,)*) };
            };
        }
        let rev = self.branch_reverse(s.def, node);
        // The shapes of outer arrays an arm hands a zero cotangent, taken at its top.
        let with_shapes = |arm: &crate::emit::context::ArmReverse, stmts: Vec<TokenStream>| {
            let lets = arm
                .zero_shapes
                .iter()
                .map(|(n, x)| quote!(let #n = ::backprop::__private::tensor::shape_of(&#x);));
            lets.chain(stmts).collect::<Vec<TokenStream>>()
        };
        let then_stmts = with_shapes(&rev.arms[0], then_stmts);
        let else_stmts = with_shapes(&rev.arms[1], else_stmts);
        // An array an arm saves and also returns is copied into the tape, before the
        // returned value moves out of the arm.
        let copied = |saved: &[Ident], vals: &[TokenStream], this: &Self| -> Vec<bool> {
            let returned: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
            saved
                .iter()
                .map(|n| this.is_array_name(n) && returned.contains(&n.to_string()))
                .collect()
        };
        let then_copied = copied(&rev.arms[0].saved, &then_vals, self);
        let else_copied = copied(&rev.arms[1].saved, &else_vals, self);
        let kept_items = |saved: &[Ident], copied: &[bool]| -> Vec<TokenStream> {
            saved
                .iter()
                .zip(copied)
                .map(|(n, c)| {
                    if *c {
                        quote!(::core::clone::Clone::clone(&#n))
                    } else {
                        quote!(#n)
                    }
                })
                .collect()
        };
        let then_saved = kept_items(&rev.arms[0].saved, &then_copied);
        let else_saved = kept_items(&rev.arms[1].saved, &else_copied);
        let tape = self.tape(s.def);
        if then_copied.iter().chain(&else_copied).any(|c| *c) {
            let kept = self.names.fresh("kept", span);
            return quote_spanned! {span=>
                let (#(#outs,)* #tape) = if #cond {
                    #(#then_stmts)*
                    let #kept = (#(#then_saved,)*);
                    (#(#then_vals,)* ::backprop::__private::Branch::Then(#kept))
                } else {
                    #(#else_stmts)*
                    let #kept = (#(#else_saved,)*);
                    (#(#else_vals,)* ::backprop::__private::Branch::Else(#kept))
                };
            };
        }
        let then_tag =
            quote_spanned!(span=> ::backprop::__private::Branch::Then((#(#then_saved,)*)));
        let else_tag =
            quote_spanned!(span=> ::backprop::__private::Branch::Else((#(#else_saved,)*)));
        quote_spanned! {span=>
            let (#(#outs,)* #tape) = if #cond {
                #(#then_stmts)*
                (#(#then_vals,)* #then_tag)
            } else {
                #(#else_stmts)*
                (#(#else_vals,)* #else_tag)
            };
        }
    }
}
