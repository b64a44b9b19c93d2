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

mod control;
mod kept;

use super::companions::companion_path;
use super::context::Emitter;
use crate::ir::{Operand, Rhs, Spelling, Stmt};
use proc_macro2::TokenStream;
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
                // An array field (of another function's gradient) is copied: the
                // struct stays whole for whatever else reads it.
                BufOp::FieldRead(m) if !self.plan.kinds.scalar[s.def.0] => {
                    let x = &a[0];
                    quote_spanned!(span=> let #def #ty = ::core::clone::Clone::clone(&#x.#m);)
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
        if let Rhs::Call {
            path,
            args,
            tangent,
        } = &s.rhs
        {
            let arg_ops = args;
            // A runtime op's tape keeps its inputs by type: a view of an array this
            // function made (`z.insert_axis(Axis(0))`) would tie the tape to that local,
            // so the op gets an owned copy of the view.
            let runtime_op = crate::ir::op::is_runtime_array_op(&path.path);
            let args: Vec<TokenStream> = args
                .iter()
                .map(|a| match a.var() {
                    Some(v)
                        if runtime_op && self.view_of_local(v, false) && !self.is_local_view(v) =>
                    {
                        let x = self.operand(a);
                        quote!(&::backprop::__private::tensor::owned_view(#x))
                    }
                    // A `Vec` this function made, handed over by value (`f(h, ..)` for
                    // `f(h: Vec<f64>, ..)`): where the reverse pass still reads it (its
                    // values, or the length of one built by `push`, which sizes its
                    // adjoint), the callee gets a copy; otherwise it moves. A tangent
                    // program reads it again in the callee's tangent call.
                    Some(v)
                        if self.moves_local_buffer(v)
                            && (self.read_by_tangent_call(v)
                                || self.read_by_reverse_now(v)
                                || self.sized_by_its_length(v)) =>
                    {
                        let x = self.operand(a);
                        quote!(::core::clone::Clone::clone(&#x))
                    }
                    // An array handed over by value (`act(z)` for `act(z: Array2<f64>)`)
                    // that the callee's tangent call reads next: the primal call gets a
                    // copy (of a borrow or a view, the copy is the borrow or view).
                    Some(v)
                        if !*tangent
                            && !runtime_op
                            && !self.plan.kinds.scalar[v.0]
                            && self.read_by_tangent_call(v) =>
                    {
                        let x = self.operand(a);
                        quote!(::core::clone::Clone::clone(&#x))
                    }
                    _ => self.operand(a),
                })
                .collect();
            // `&h` of a local array only needs a checkpoint for a callee whose tape
            // borrows its inputs (a `#[grad]` function), not for the runtime's ops.
            // So does a view of one (`dense(h.view(), w)` for a callee taking an
            // `ArrayView2`).
            let local_arrays = !crate::ir::op::is_runtime_array_op(&path.path)
                && arg_ops
                    .iter()
                    .any(|a| a.var().is_some_and(|v| self.lends_local_array(v)));
            // A part of another function's gradient (`&g.w`, `&g.p`) is a borrow of the
            // call's value, a local too.
            let gradient_part =
                |v: crate::ir::VarId| self.func.grad_call_root(v).is_some_and(|root| root != v);
            let local_buffers = arg_ops.iter().any(|a| {
                a.var().is_some_and(|v| {
                    self.is_local_buffer(v) || gradient_part(v) || self.is_owned_argument_part(v)
                })
            });
            if self.plan.activity.is_active(s.def) && (local_buffers || local_arrays) {
                return self.kept_call(s, path, arg_ops, &args, *tangent, &gradient_part);
            }
            if self.plan.activity.is_active(s.def) {
                let tape = self.tape(s.def);
                let companion = if *tangent {
                    super::companions::companion_method(path, "tangent_forward")
                } else {
                    companion_path(path)
                };
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
            if *tangent {
                let companion = super::companions::companion_method(path, "tangent_forward");
                return quote_spanned!(span=> let (#def, _) = #companion(#(#args),*););
            }
            return quote_spanned!(span=> let #def #ty = #path(#(#args),*););
        }
        if let Rhs::Prim { prim, args, .. } = &s.rhs
            && crate::ir::op::is_element_write(prim)
        {
            return self.element_write(s, prim, args);
        }
        let value = match &s.rhs {
            Rhs::Copy(Operand::Const(e)) => crate::plain::rewrite_expr(e).to_token_stream(),
            // `a.dot(b)` runs on the crate's matmul kernel (see `tensor::dot`).
            Rhs::Prim { prim, args, .. }
                if prim.name == "dot" && !self.plan.kinds.scalar_path(s.def) =>
            {
                let (a, b) = (self.operand(&args[0]), self.operand(&args[1]));
                quote_spanned!(span=> ::backprop::__private::tensor::dot(&#a, &#b))
            }
            // `x.powf(p)`, `v.max(0.0)` in a `mapv`, with an array operand: the runtime's
            // elementwise form (ndarray has no `max` with a float, nor any of these
            // between two arrays).
            Rhs::Prim { prim, args, .. }
                if crate::ir::op::ELEMENTWISE_WITH_FLOATS.contains(&prim.name)
                    && !self.plan.kinds.scalar_path(s.def) =>
            {
                let f = syn::Ident::new(prim.name, span);
                let x = self.operand(&args[0]);
                let rest: Vec<TokenStream> = args[1..].iter().map(|a| self.operand(a)).collect();
                quote_spanned!(span=> ::backprop::__private::elementwise::#f(&#x #(, &#rest)*))
            }
            // `let y = h;` of an array the reverse also reads as `h` (`tanh` keeps its
            // output) copies it: the new name would move it out from under the tape.
            Rhs::Copy(Operand::Var(v))
                if !self.plan.kinds.scalar[v.0] && self.read_by_reverse_now(*v) =>
            {
                let x = self.var(*v);
                quote_spanned!(span=> ::core::clone::Clone::clone(&#x))
            }
            Rhs::Copy(o) => self.operand(o),
            Rhs::Prim { spelling, args, .. }
                if !self.plan.kinds.scalar_path(s.def)
                    && matches!(spelling, Spelling::Operator(_) | Spelling::Unary(_)) =>
            {
                // An operator consumes an owned array the tape may still read: borrow it.
                let generic_float =
                    !crate::ir::lower::float_type_params(&self.item_generics()).is_empty();
                let ops: Vec<TokenStream> = args
                    .iter()
                    .map(|a| match a.var() {
                        // An owned temporary this operator is the only reader of moves
                        // in: ndarray's `a + &b` then writes into `a`'s buffer, with no
                        // copy and no fresh allocation.
                        Some(v)
                            if self.plan.kinds.owned_array[v.0]
                                && !s.compound
                                && matches!(spelling, Spelling::Operator(_))
                                && self.owns_data(a)
                                && self.dies_here(v, s.def) =>
                        {
                            self.var(v).to_token_stream()
                        }
                        Some(v) if self.plan.kinds.owned_array[v.0] => {
                            let x = self.var(v);
                            // A call's result may be a scalar (every `#[grad]` function
                            // returns one) or an array, and so may `dot`'s (a 1-D·1-D
                            // product is a float): borrow only an array.
                            if self.may_be_scalar(v, 8) && generic_float {
                                // A float type parameter `T` has no `by_ref`: a copy
                                // (of the array, or the float).
                                quote!(::core::clone::Clone::clone(&#x))
                            } else if self.may_be_scalar(v, 8) {
                                quote!(::backprop::__private::tensor::by_ref(&#x))
                            } else {
                                quote!(&#x)
                            }
                        }
                        _ => self.operand(a),
                    })
                    .collect();
                // An owned array the user wrote by value is borrowed above; `&a * v` with
                // a view `v` by value has no ndarray impl (`a * v` has), so the other
                // array operands are lent too (`by_ref` takes `&&Array` back to `&Array`).
                let lent = args
                    .iter()
                    .any(|a| a.var().is_some_and(|v| self.plan.kinds.owned_array[v.0]));
                let ops: Vec<TokenStream> = if lent {
                    args.iter()
                        .zip(ops)
                        .map(|(a, op)| match a.var() {
                            Some(v)
                                if !self.plan.kinds.owned_array[v.0]
                                    && !self.plan.kinds.scalar[v.0] =>
                            {
                                quote!(::backprop::__private::tensor::by_ref(&#op))
                            }
                            _ => op,
                        })
                        .collect()
                } else {
                    ops
                };
                let value = self.spelled_ops(spelling, &ops, span);
                if let (Spelling::Operator(_), [a, b]) = (spelling, &ops[..]) {
                    // ndarray's own panic on a shape mismatch names neither shape; and
                    // `y += x` must keep `y`'s shape, as ndarray's `+=` does. The check
                    // borrows a variable as it is (its operand may be a copy or a move).
                    let checked = |arg: &Operand, op: &TokenStream| match arg.var() {
                        Some(v) => self.var(v).to_token_stream(),
                        None => op.clone(),
                    };
                    let (a, b) = (&checked(&args[0], a), &checked(&args[1], b));
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
                && !self.consumes_receiver(s.def) =>
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

    /// Whether `v`, taken for an array, may be a float: a call's result (every
    /// `#[grad]` function returns one, or an array), `dot`'s (a 1-D·1-D product is a
    /// float), and arithmetic of such values only (a tangent program's
    /// `t_s = t_a.dot(b) + a.dot(t_b)`), looked through `depth` definitions.
    fn may_be_scalar(&self, v: crate::ir::VarId, depth: usize) -> bool {
        match self.func.def_of(v) {
            Some(Stmt {
                rhs: Rhs::Call { .. },
                ..
            }) => true,
            Some(Stmt {
                rhs: Rhs::Prim { prim, .. },
                ..
            }) if prim.name == "dot" => true,
            Some(Stmt {
                rhs: Rhs::Copy(Operand::Var(w)),
                ..
            }) if depth > 0 => self.may_be_scalar(*w, depth - 1),
            Some(Stmt {
                rhs:
                    Rhs::Prim {
                        spelling: Spelling::Operator(_) | Spelling::Unary(_),
                        args,
                        ..
                    },
                ..
            }) if depth > 0 => args.iter().all(|a| {
                a.var()
                    .is_none_or(|w| self.plan.kinds.scalar[w.0] || self.may_be_scalar(w, depth - 1))
            }),
            _ => false,
        }
    }

    /// `a₁ = a₀ with a₀[idx] = v` (or `+= v`): in place on `a₀`, which is moved in unless
    /// a pullback still reads it (then the write goes to a copy).
    fn element_write(&mut self, s: &Stmt, prim: &crate::ir::Prim, args: &[Operand]) -> TokenStream {
        let def = self.var(s.def).clone();
        let span = s.span;
        let array = self.operand(&args[0]);
        let array = match args[0].var() {
            Some(v) if self.plan.saved.contains(&v) => quote!(::core::clone::Clone::clone(&#array)),
            _ => array,
        };
        let v = self.operand(&args[1]);
        let f = syn::Ident::new(prim.name, span);
        let what = format!("`{}`", s.source);
        match args.get(2) {
            Some(idx) => {
                let idx = self.operand(idx);
                quote_spanned!(span=> let #def = ::backprop::__private::tensor::#f(#what, #array, #idx, #v);)
            }
            None => {
                quote_spanned!(span=> let #def = ::backprop::__private::tensor::#f(#array, #v);)
            }
        }
    }
}
