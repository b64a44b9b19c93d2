//! The forward pass: the user's statements in source order, one operation per `let`,
//! each spanned to the user expression it came from.
//!
//! Before:
//! ```text
//! let e = a * b + c;
//! e * e
//! ```
//! After:
//! ```text
//! let t0 = a * b;
//! let e = t0 + c;
//! let t1 = e * e;
//! ```
//! An active call `sigmoid(z)` becomes `let (p, tape_p) = sigmoid::forward(z);`: the
//! callee's tape is kept for the reverse pass; an inactive one stays a plain call.

use super::companions::companion_path;
use super::context::Emitter;
use crate::ir::{Operand, Rhs, Spelling, Stmt};
use proc_macro2::{Ident, TokenStream};
use quote::{ToTokens, quote, quote_spanned};

impl<'a> Emitter<'a> {
    /// A statement without control flow, as the forward pass writes it (for values
    /// the reverse pass recomputes).
    pub fn simple_stmt(&mut self, s: &Stmt) -> TokenStream {
        self.stmt(s)
    }

    pub fn forward(&mut self) -> TokenStream {
        let out = self.block(&self.func.body);
        quote!(#(#out)*)
    }

    fn block(&mut self, stmts: &[Stmt]) -> Vec<TokenStream> {
        self.scopes.push(self.next_scope);
        self.next_scope += 1;
        let mut out = Vec::new();
        for s in stmts {
            // Shapes first: the operation may consume its operands.
            out.extend(self.shape_saves(s));
            out.push(self.stmt(s));
        }
        self.scopes.pop();
        out
    }

    /// A loop: the carried values live in mutable state named after their value after
    /// the loop; each iteration binds their entry values, runs the body and, when the
    /// loop is active, pushes what its reverse reads onto the loop's tape (a `Vec` of
    /// tuples; `()` when an iteration needs nothing, which allocates nothing).
    fn loop_stmt(&mut self, s: &Stmt, node: &crate::ir::LoopNode) -> TokenStream {
        let span = s.span;
        let active = self.plan.activity.is_active(s.def);
        let states: Vec<Ident> = node
            .carried
            .iter()
            .map(|c| self.var(c.out).clone())
            .collect();
        // An array that starts a carried state and is also read by a pullback (`tanh`
        // keeps its output) is copied into the loop: the loop's state moves.
        let inits: Vec<TokenStream> = node
            .carried
            .iter()
            .map(|c| match c.init.var() {
                Some(v) if !self.plan.kinds.scalar[v.0] && self.plan.saved.contains(&v) => {
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
    fn if_stmt(&mut self, s: &Stmt, node: &crate::ir::IfNode) -> TokenStream {
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
                        && this.plan.saved.contains(&v)
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
        // An array an arm saves and also returns is copied into the tape, before the
        // returned value moves out of the arm.
        let copied = |saved: &[Ident], vals: &[TokenStream], this: &Self| -> Vec<bool> {
            let returned: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
            saved
                .iter()
                .map(|n| this.is_array_name(n) && returned.contains(&n.to_string()))
                .collect()
        };
        let then_copied = copied(&rev.arms[0].0, &then_vals, self);
        let else_copied = copied(&rev.arms[1].0, &else_vals, self);
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
        let then_saved = kept_items(&rev.arms[0].0, &then_copied);
        let else_saved = kept_items(&rev.arms[1].0, &else_copied);
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

    /// On the tensor path, `let shape_a = shape_of(&a);` for each operand whose
    /// cotangent a broadcasting rule must sum back to its shape.
    fn shape_saves(&mut self, s: &Stmt) -> Vec<TokenStream> {
        let Rhs::Prim { prim, args, .. } = &s.rhs else {
            return Vec::new();
        };
        let scalar_path = self.plan.kinds.scalar_path(s.def);
        if scalar_path || !self.plan.activity.is_active(s.def) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (k, vjp) in prim.vjps_on(false).iter().enumerate() {
            if !self.plan.activity.operand_active(&args[k]) {
                continue;
            }
            let crate::ir::op::Vjp::Rule(_, needs) = vjp else {
                continue;
            };
            for need in *needs {
                if let crate::ir::op::Need::Shape(j) = need {
                    let Some(v) = args[*j].var() else { continue };
                    let in_scope = self
                        .shape_scope
                        .get(&v)
                        .is_some_and(|sc| self.scopes.contains(sc));
                    if in_scope {
                        let shape = self.shapes[&v].clone();
                        self.stmt_shapes.insert((s.def, v), shape);
                        continue;
                    }
                    // Taken in a block that has ended (a loop body, an arm): again here.
                    let shape = if self.shapes.contains_key(&v) {
                        let (base, span) = self.derived_name("shape", v);
                        let fresh = self.names.fresh(&base, span);
                        self.shapes.insert(v, fresh.clone());
                        fresh
                    } else {
                        self.shape(v)
                    };
                    self.shape_scope
                        .insert(v, *self.scopes.last().expect("inside a block"));
                    self.stmt_shapes.insert((s.def, v), shape.clone());
                    self.shapes_at.entry(s.def).or_default().push(shape.clone());
                    let x = self.var(v).clone();
                    out.push(quote_spanned!(s.span=> let #shape = ::backprop::__private::tensor::shape_of(&#x);));
                }
            }
        }
        out
    }

    fn stmt(&mut self, s: &Stmt) -> TokenStream {
        if let Rhs::If(node) = &s.rhs {
            return self.if_stmt(s, node);
        }
        if let Rhs::Loop(node) = &s.rhs {
            return self.loop_stmt(s, node);
        }
        let def = self.var(s.def).clone();
        let ty = s.ty.as_ref().map(|t| quote!(: #t));
        let span = s.span;
        if let Rhs::Buffer { op, args } = &s.rhs {
            use crate::ir::BufOp;
            let a: Vec<TokenStream> = args.iter().map(|o| self.operand(o)).collect();
            let mutability = if self.written.contains(&s.def) {
                quote!(mut)
            } else {
                quote!()
            };
            return match op {
                BufOp::Read => {
                    let (x, i) = (&a[0], &a[1]);
                    quote_spanned!(span=> let #def #ty = #x[#i];)
                }
                BufOp::Write => {
                    let (x, i, v) = (&a[0], &a[1], &a[2]);
                    quote_spanned!(span=> #x[#i] = #v;)
                }
                BufOp::Fill => {
                    let (v, n) = (&a[0], &a[1]);
                    quote_spanned!(span=> let #mutability #def #ty = ::std::vec![#v; #n];)
                }
                BufOp::FillArray => {
                    let (v, n) = (&a[0], &a[1]);
                    quote_spanned!(span=> let #mutability #def #ty = [#v; #n];)
                }
                BufOp::ToVec => {
                    let x = &a[0];
                    quote_spanned!(span=> let #mutability #def #ty = #x.to_vec();)
                }
                BufOp::View => {
                    let (x, start) = (&a[0], &a[1]);
                    match a.get(2) {
                        Some(end) => quote_spanned!(span=> let #def #ty = &#x[#start..#end];),
                        None => quote_spanned!(span=> let #def #ty = &#x[#start..];),
                    }
                }
                BufOp::Alias => {
                    let x = &a[0];
                    quote_spanned!(span=> let #mutability #def #ty = #x;)
                }
                BufOp::Borrow => {
                    let x = &a[0];
                    quote_spanned!(span=> let #def #ty = &#x;)
                }
                BufOp::Field(m) => {
                    let x = &a[0];
                    quote_spanned!(span=> let #def #ty = &#x.#m;)
                }
                BufOp::FieldRead(m) => {
                    let x = &a[0];
                    quote_spanned!(span=> let #def #ty = #x.#m;)
                }
                BufOp::Elem => {
                    let (x, i) = (&a[0], &a[1]);
                    quote_spanned!(span=> let #def #ty = &#x[#i];)
                }
                BufOp::NewVec => match a.first() {
                    Some(n) => {
                        quote_spanned!(span=> let mut #def #ty = ::std::vec::Vec::with_capacity(#n);)
                    }
                    None => quote_spanned!(span=> let mut #def #ty = ::std::vec::Vec::new();),
                },
                BufOp::Push => {
                    let (h, v) = (&a[0], &a[1]);
                    quote_spanned!(span=> #h.push(#v);)
                }
            };
        }
        if let Rhs::Call { path, args } = &s.rhs {
            let arg_ops = args;
            // A runtime op's tape keeps its inputs by type: a view of an array this
            // function made (`z.insert_axis(Axis(0))`) would tie the tape to that local,
            // so the op gets an owned copy of the view.
            let runtime_op = crate::ir::op::is_runtime_array_op(&path.path);
            let args: Vec<TokenStream> = args
                .iter()
                .map(|a| match a.var() {
                    Some(v) if runtime_op && self.view_of_local(v, false) => {
                        let x = self.operand(a);
                        quote!(&::backprop::__private::tensor::owned_view(#x))
                    }
                    _ => self.operand(a),
                })
                .collect();
            // `&h` of a local array only needs a checkpoint for a callee whose tape
            // borrows its inputs (a `#[grad]` function), not for the runtime's ops.
            let local_arrays = !crate::ir::op::is_runtime_array_op(&path.path)
                && arg_ops
                    .iter()
                    .any(|a| a.var().is_some_and(|v| self.is_local_array_ref(v)));
            let local_buffers = arg_ops
                .iter()
                .any(|a| a.var().is_some_and(|v| self.is_local_buffer(v)));
            if self.plan.activity.is_active(s.def) && (local_buffers || local_arrays) {
                // The callee's tape would borrow a buffer of this function, which ends
                // with the forward pass (and may be written after the call): keep a
                // copy instead, and run the callee's forward again in the reverse pass
                // (a checkpoint of the call).
                let mut saves = Vec::new();
                let mut names = Vec::new();
                for a in arg_ops {
                    match a.var() {
                        Some(v)
                            if self.is_local_buffer(v)
                                || local_arrays && self.is_local_array_ref(v) =>
                        {
                            let x = self.var(v).clone();
                            let snap = self.names.fresh(
                                &format!("snapshot_{}", x.to_string().trim_start_matches("r#")),
                                span,
                            );
                            let counter = self.heap_name();
                            // The copy has the argument's own type: `&h` passes `&copy`
                            // (a `&Vec` or `&[f64; N]`), a view `&h[a..b]` a slice, `h`
                            // itself (moved) the copy itself.
                            let (copy, pass) = match self.func.def_of(v) {
                                Some(Stmt {
                                    rhs:
                                        Rhs::Buffer {
                                            op: crate::ir::BufOp::Borrow,
                                            ..
                                        },
                                    ..
                                }) => (quote!(::core::clone::Clone::clone(#x)), quote!(&#snap)),
                                // `&h` of a local array: a copy of the array, lent.
                                Some(Stmt {
                                    rhs: Rhs::Prim { prim, .. },
                                    ..
                                }) if prim.name == "&" => {
                                    (quote!(::core::clone::Clone::clone(#x)), quote!(&#snap))
                                }
                                Some(Stmt {
                                    rhs:
                                        Rhs::Buffer {
                                            op: crate::ir::BufOp::View,
                                            ..
                                        },
                                    ..
                                }) => (quote!(::std::vec::Vec::from(&#x[..])), quote!(&#snap[..])),
                                _ => (quote!(::core::clone::Clone::clone(&#x)), quote!(#snap)),
                            };
                            saves.push(quote_spanned!(span=> let #snap = #copy;));
                            saves.push(quote_spanned!(span=> #counter += {
                                #[allow(unused_imports)]
                                use ::backprop::__private::{HeapOfOther as _, HeapOfOwned as _};
                                (&::backprop::__private::Probe(&#snap)).heap_bytes()
                            };));
                            names.push(Some((snap, pass)));
                        }
                        _ => names.push(None),
                    }
                }
                self.snapshots.insert(s.def, names);
                return quote_spanned!(span=> #(#saves)* let #def #ty = #path(#(#args),*););
            }
            if self.plan.activity.is_active(s.def) {
                let tape = self.tape(s.def);
                let companion = companion_path(path);
                let ty = s.ty.as_ref().map(|t| quote!(: (#t, _)));
                // A call of the function itself: its tape is behind a pointer (the
                // tape of this call would otherwise contain its own type).
                if path.path.get_ident() == Some(&self.func.name) {
                    return quote_spanned!(span=>
                        let (#def, #tape) #ty = #companion(#(#args),*);
                        let #tape = ::backprop::__private::boxed(#tape);
                    );
                }
                return quote_spanned!(span=> let (#def, #tape) #ty = #companion(#(#args),*););
            }
            return quote_spanned!(span=> let #def #ty = #path(#(#args),*););
        }
        let value = match &s.rhs {
            Rhs::Copy(Operand::Const(e)) => e.to_token_stream(),
            // `a.dot(b)` runs on the crate's matmul kernel (see `tensor::dot`).
            Rhs::Prim { prim, args, .. }
                if prim.name == "dot" && !self.plan.kinds.scalar_path(s.def) =>
            {
                let (a, b) = (self.operand(&args[0]), self.operand(&args[1]));
                quote_spanned!(span=> ::backprop::__private::tensor::dot(&#a, &#b))
            }
            Rhs::Copy(o) => self.operand(o),
            Rhs::Prim { spelling, args, .. }
                if !self.plan.kinds.scalar_path(s.def)
                    && matches!(spelling, Spelling::Operator(_) | Spelling::Unary(_)) =>
            {
                // An operator consumes an owned array the tape may still read: borrow it.
                let ops: Vec<TokenStream> = args
                    .iter()
                    .map(|a| match a.var() {
                        Some(v) if self.plan.kinds.owned_array[v.0] => {
                            let x = self.var(v);
                            // A call's result may be a scalar (every `#[grad]` function
                            // returns one) or an array: borrow only an array.
                            if matches!(
                                self.func.def_of(v),
                                Some(Stmt {
                                    rhs: Rhs::Call { .. },
                                    ..
                                })
                            ) {
                                quote!(::backprop::__private::tensor::by_ref(&#x))
                            } else {
                                quote!(&#x)
                            }
                        }
                        _ => self.operand(a),
                    })
                    .collect();
                let value = self.spelled_ops(spelling, &ops, span);
                if let (Spelling::Operator(_), [a, b]) = (spelling, &ops[..]) {
                    // ndarray's own panic on a shape mismatch names neither shape; and
                    // `y += x` must keep `y`'s shape, as ndarray's `+=` does.
                    let what = format!("`{}`", s.source);
                    let check = if s.compound {
                        quote_spanned!(span=> ::backprop::__private::tensor::check_assign(#what, &#a, &#b);)
                    } else {
                        quote_spanned!(span=> ::backprop::__private::tensor::check_broadcast(#what, &#a, &#b);)
                    };
                    return quote!(#check let #def #ty = #value;);
                }
                value
            }
            // A consuming view method (`insert_axis`, `into_shape_with_order`) on an
            // array this function owns takes a view of it instead: a rule may still read
            // the array, which the method would have moved away.
            Rhs::Prim {
                prim,
                spelling,
                args,
            } if crate::ir::op::CONSUMING_VIEW_METHODS.contains(&prim.name)
                && self.owns_data(&args[0])
                && self.func.ret.var() != Some(s.def) =>
            {
                let mut ops: Vec<TokenStream> = args.iter().map(|a| self.operand(a)).collect();
                let recv = &ops[0];
                ops[0] = quote!((#recv).view());
                self.spelled_ops(spelling, &ops, span)
            }
            Rhs::Prim { spelling, args, .. }
            | Rhs::ZeroDerivative { spelling, args }
            | Rhs::NoRule { spelling, args, .. } => self.spelled(spelling, args, span),
            Rhs::Call { .. } | Rhs::If(_) | Rhs::Loop(_) | Rhs::Buffer { .. } => {
                unreachable!("handled above")
            }
        };
        quote_spanned!(span=> let #def #ty = #value;)
    }
}
