//! The tangent pass (forward mode): the user's statements in order, each followed by its
//! tangent, `t_y` beside `y`, in one sweep with no tape.
//!
//! Before:
//! ```text
//! let e = (a * b).sin();
//! ```
//! After:
//! ```text
//! let t0 = a * b;
//! let t_t0 = mul_vjp_lhs(b, t_a) + mul_vjp_rhs(a, t_b);
//! let e = t0.sin();
//! let t_e = sin_vjp(t0, t_t0);
//! ```
//! A scalar rule's Jacobian is one number per input, so the rule table's pullback of an
//! input, called with that input's tangent in place of the output cotangent, is its
//! pushforward: the tangent rules are the table's rules, declared once. Buffers get
//! tangent buffers written where they are written; loops carry their tangents beside
//! their values, an `if` returns them beside its values, a call of another function goes
//! to its companion's `jvp`.
//!
//! Covered: the scalar path (floats, buffers of floats, structs of them, loops, branches,
//! calls). Array code takes `f::jvp`'s other body, the gradient paired with the tangents
//! (`emit::jvp`).

use super::context::Emitter;
use crate::ir::op::{Need, Tangent, Vjp};
use crate::ir::{BufOp, Func, IfNode, LoopHead, LoopNode, Operand, ParamKind, Rhs, Stmt, VarId};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use std::collections::HashMap;

/// Whether every active operation of `func` has a tangent rule here.
pub fn supported(func: &Func, plan: &crate::analysis::Plan) -> bool {
    let act = &plan.activity;
    let arrays = used_as_arrays(func, plan);
    if func.params.iter().any(|p| {
        p.active
            && match p.kind {
                ParamKind::Scalar | ParamKind::Buffer | ParamKind::Struct => false,
                ParamKind::Tensor => tensor_param(&p.ty).is_none(),
                ParamKind::Other => true,
            }
    }) {
        return false;
    }
    let mut ok = true;
    crate::ir::walk(&func.body, &mut |s| {
        let active = act.is_active(s.def) || s.rhs.operands().iter().any(|o| act.operand_active(o));
        if !active {
            return;
        }
        match &s.rhs {
            Rhs::Prim { prim, args, .. } if !plan.kinds.scalar_path(s.def) => {
                ok &= !crate::ir::op::is_element_write(prim)
                    && (0..prim.arity()).all(|k| {
                        !act.operand_active(&args[k])
                            || match crate::ir::op::tensor_tangent(prim, k) {
                                Some(Tangent::Elementwise) => {
                                    elementwise_reads(prim, args, plan).is_some()
                                }
                                Some(_) => true,
                                None => false,
                            }
                    });
            }
            Rhs::Prim { prim, .. } => {
                let rules_ok = prim.vjps_on(true).iter().all(|v| match v {
                    Vjp::Rule(_, needs) => {
                        needs.iter().all(|n| matches!(n, Need::In(_) | Need::Out))
                    }
                    _ => true,
                });
                ok &= plan.kinds.scalar[s.def.0]
                    && !crate::ir::op::is_element_write(prim)
                    && rules_ok;
            }
            // A call of another function's gradient has no tangent here (its tangent is
            // a Hessian-vector product): the gradient is paired instead. Another
            // function returning an array, and a runtime op without a `jvp` (layer_norm,
            // attention, ..), have no tangent here yet. An array goes to a callee as a
            // borrow of an array this function holds (its tangent, `&t_h`, then has the
            // callee's parameter type).
            Rhs::Call { path, args, .. } => {
                let runtime_op = crate::ir::op::is_runtime_array_op(&path.path);
                let has_jvp = crate::ir::op::runtime_op_has_jvp(&path.path);
                // Another function's result used as an array (`h = self.body(ids);
                // h.dot(w)`) comes from a function returning an array, which has no
                // `jvp` to call here yet.
                ok &= ((plan.kinds.scalar[s.def.0] && !arrays.contains(&s.def)) || has_jvp)
                    && !func.grad_calls.contains(&s.def)
                    && args.iter().all(|a| match a.var() {
                        Some(v) if act.is_active(v) && !plan.kinds.scalar[v.0] => {
                            (!runtime_op || has_jvp) && lends_array(func, plan, v)
                        }
                        _ => true,
                    });
            }
            Rhs::Buffer { .. } | Rhs::Loop(_) | Rhs::If(_) | Rhs::Copy(_) => {}
            Rhs::ZeroDerivative { .. } => {}
            Rhs::NoRule { .. } => ok = false,
        }
    });
    ok
}

/// Whether `func` is scalar code (floats, buffers, structs) that the tangent pass
/// covers: what the tangent program for Hessian-vector products (`ir::tangent`) takes.
pub fn supported_on_scalars(func: &Func, plan: &crate::analysis::Plan) -> bool {
    let act = &plan.activity;
    if func.params.iter().any(|p| {
        p.active
            && !matches!(
                p.kind,
                ParamKind::Scalar | ParamKind::Buffer | ParamKind::Struct
            )
    }) {
        return false;
    }
    if func.ret.var().is_some_and(|v| !plan.kinds.scalar[v.0]) {
        return false;
    }
    let mut ok = true;
    crate::ir::walk(&func.body, &mut |s| {
        let active = act.is_active(s.def) || s.rhs.operands().iter().any(|o| act.operand_active(o));
        if !active {
            return;
        }
        match &s.rhs {
            Rhs::Prim { prim, .. } => {
                let rules_ok = prim.vjps_on(true).iter().all(|v| match v {
                    Vjp::Rule(_, needs) => {
                        needs.iter().all(|n| matches!(n, Need::In(_) | Need::Out))
                    }
                    _ => true,
                });
                ok &= plan.kinds.scalar_path(s.def)
                    && plan.kinds.scalar[s.def.0]
                    && !crate::ir::op::is_element_write(prim)
                    && rules_ok;
            }
            // A call of another function's gradient has no tangent here (its tangent is
            // a Hessian-vector product): the gradient is paired instead.
            Rhs::Call { .. } => {
                ok &= plan.kinds.scalar[s.def.0] && !func.grad_calls.contains(&s.def)
            }
            Rhs::Buffer { .. } => ok &= plan.kinds.scalar[s.def.0],
            Rhs::Loop(node) => {
                ok &= node
                    .carried
                    .iter()
                    .all(|c| plan.kinds.scalar[c.entry.0] && plan.kinds.scalar[c.out.0]);
            }
            Rhs::If(node) => ok &= node.outs.iter().all(|o| plan.kinds.scalar[o.def.0]),
            Rhs::Copy(_) => ok &= plan.kinds.scalar[s.def.0],
            Rhs::ZeroDerivative { .. } => {}
            Rhs::NoRule { .. } => ok = false,
        }
    });
    ok
}

/// Whether `func` may have a tangent program over arrays (`f_hvp` of ndarray code):
/// its active arguments are floats, buffers, structs or ndarray arrays, it returns a
/// float, and it has no operation without a rule. The tangent program's builder
/// (`ir::tangent`) then decides operation by operation, and refuses (no `f_hvp`) any
/// array operation or call whose second order it does not cover.
pub fn supported_on_arrays(func: &Func, plan: &crate::analysis::Plan) -> bool {
    let act = &plan.activity;
    // (The result is a float: `emit::hvp` is not called for a function returning an
    // array, though the analysis of kinds may not know a call's result is a float.)
    if func
        .params
        .iter()
        .any(|p| p.active && p.kind == ParamKind::Other)
    {
        return false;
    }
    let mut ok = true;
    crate::ir::walk(&func.body, &mut |s| {
        let active = act.is_active(s.def) || s.rhs.operands().iter().any(|o| act.operand_active(o));
        if !active {
            return;
        }
        match &s.rhs {
            Rhs::Call { .. } => ok &= !func.grad_calls.contains(&s.def),
            Rhs::NoRule { .. } => ok = false,
            _ => {}
        }
    });
    ok
}

/// The values an array operation reads (a tensor-path operation's operands, a runtime
/// op's arguments, an array-returning function's result), and what they are copied
/// from or carried as: the analysis of kinds takes another function's result for a
/// float where its arguments are, and this tells the calls that return arrays.
fn used_as_arrays(func: &Func, plan: &crate::analysis::Plan) -> std::collections::HashSet<VarId> {
    let mut arrays = std::collections::HashSet::new();
    if crate::ir::is_owned_array_type(&func.ret_ty)
        && let Some(v) = func.ret.var()
    {
        arrays.insert(v);
    }
    crate::ir::walk(&func.body, &mut |s| match &s.rhs {
        Rhs::Prim { args, .. } if !plan.kinds.scalar_path(s.def) => {
            arrays.extend(args.iter().filter_map(Operand::var));
        }
        Rhs::Call { path, args, .. } if crate::ir::op::is_runtime_array_op(&path.path) => {
            arrays.extend(args.iter().filter_map(Operand::var));
        }
        _ => {}
    });
    // Back through copies, borrows, branches and loops, to a fixpoint.
    loop {
        let before = arrays.len();
        crate::ir::walk(&func.body, &mut |s| match &s.rhs {
            Rhs::Copy(o) if arrays.contains(&s.def) => arrays.extend(o.var()),
            Rhs::Prim { prim, args, .. } if prim.name == "&" && arrays.contains(&s.def) => {
                arrays.extend(args[0].var());
            }
            Rhs::If(node) => {
                for o in &node.outs {
                    if arrays.contains(&o.def) {
                        arrays.extend(o.then_val.var());
                        arrays.extend(o.else_val.var());
                    }
                }
            }
            Rhs::Loop(node) => {
                for c in &node.carried {
                    if arrays.contains(&c.out) || arrays.contains(&c.entry) {
                        arrays.extend(c.init.var());
                        arrays.extend(c.exit.var());
                        arrays.insert(c.entry);
                        arrays.insert(c.out);
                    }
                }
            }
            _ => {}
        });
        if arrays.len() == before {
            return arrays;
        }
    }
}

/// How an array argument's tangent is taken: `&Array..` (borrowed), `ArrayView..`, or
/// `Array..` (owned); `None` for any other array type (a generic `ArrayBase<S, D>`).
fn tensor_param(ty: &syn::Type) -> Option<TensorParam> {
    let last = |ty: &syn::Type| match ty {
        syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    };
    match ty {
        syn::Type::Reference(r)
            if r.mutability.is_none() && crate::ir::is_owned_array_type(&r.elem) =>
        {
            Some(TensorParam::Borrowed)
        }
        _ if crate::ir::is_owned_array_type(ty) => Some(TensorParam::Owned),
        _ => last(ty)
            .filter(|n| {
                n == "ArrayViewD"
                    || n.strip_prefix("ArrayView")
                        .is_some_and(|d| d.parse::<u8>().is_ok())
            })
            .map(|_| TensorParam::View),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TensorParam {
    Borrowed,
    View,
    Owned,
}

/// Whether `v`, an array passed to another function, is `&h` of an array this function
/// made or of an owned argument, or a borrowed argument itself: its tangent is then
/// `&Array`, as the argument.
fn lends_array(func: &Func, plan: &crate::analysis::Plan, v: VarId) -> bool {
    if let Some(p) = func.params.iter().find(|p| p.var == v) {
        return tensor_param(&p.ty) == Some(TensorParam::Borrowed);
    }
    match func.def_of(v) {
        Some(Stmt {
            rhs: Rhs::Prim { prim, args, .. },
            ..
        }) if prim.name == "&" => args[0].var().is_some_and(|x| {
            plan.kinds.owned_array[x.0]
                || func
                    .params
                    .iter()
                    .any(|p| p.var == x && tensor_param(&p.ty) == Some(TensorParam::Owned))
        }),
        _ => false,
    }
}

/// An elementwise method's rule on the tensor path, as a closure over one saved value:
/// the rule's name, the position among its reads of the value it saves (the input or
/// the output, an array), and the others (scalar data such as `powi`'s exponent).
/// `None` where the rule reads two arrays or a varying scalar.
fn elementwise_reads(
    prim: &crate::ir::op::Prim,
    args: &[Operand],
    plan: &crate::analysis::Plan,
) -> Option<(&'static str, usize, &'static [Need])> {
    let Vjp::Rule(rule, needs) = prim.vjps_on(false)[0] else {
        return None;
    };
    let mut saved = None;
    for (i, n) in needs.iter().enumerate() {
        match n {
            Need::In(0) | Need::Out => {
                if saved.replace(i).is_some() {
                    return None;
                }
            }
            Need::In(j) => {
                let data = args[*j]
                    .var()
                    .is_none_or(|v| plan.kinds.scalar[v.0] && !plan.activity.is_active(v));
                if !data {
                    return None;
                }
            }
            Need::Shape(_) => return None,
        }
    }
    Some((rule, saved?, needs))
}

/// Builds the body of `f::jvp`: the arguments are in scope by their names, and the
/// tangent slots in a tuple named by the returned identifier.
///
/// With `plain_first` (arguments that can be passed twice, no calls outside the rules),
/// the pass runs first with the plain rules, whose products do not test for a zero
/// tangent (a branch in every product, which keeps loops from vectorising), and again
/// with strong zeros only if the tangent is NaN: the two agree otherwise, as for
/// `f_grad`'s plain pass (`backprop::rules::scalar::plain`).
pub fn body(
    func: &Func,
    plan: &crate::analysis::Plan,
    names: &crate::names::Names,
    plain_first: bool,
) -> (Ident, TokenStream) {
    let mut names = names.clone();
    let tangents = names.fresh("__tangents", Span::call_site());
    let run = |plain: bool| {
        let mut em = Emitter::new(func, plan, names.clone());
        let mut pass = TangentPass {
            t: HashMap::new(),
            tangents: tangents.clone(),
            plain,
            em: &mut em,
        };
        pass.run()
    };
    let strong = run(false);
    if !plain_first {
        return (tangents, strong);
    }
    let plain = run(true);
    let (value, tangent) = (
        names.fresh("__value", Span::call_site()),
        names.fresh("__tangent", Span::call_site()),
    );
    let body = quote! {
        let (#value, #tangent) = { #plain };
        if ::backprop::__private::is_nan(&#tangent) {
            #strong
        } else {
            (#value, #tangent)
        }
    };
    (tangents, body)
}

struct TangentPass<'e, 'a> {
    em: &'e mut Emitter<'a>,
    /// `t_x`: the tangent of each active value, named on first use.
    t: HashMap<VarId, Ident>,
    tangents: Ident,
    /// The plain rules (no test for a zero tangent) rather than the strong ones.
    plain: bool,
}

impl<'a> TangentPass<'_, 'a> {
    fn func(&self) -> &'a Func {
        self.em.func
    }

    fn active(&self, v: VarId) -> bool {
        self.em.plan.activity.is_active(v)
    }

    fn operand_active(&self, o: &Operand) -> bool {
        self.em.plan.activity.operand_active(o)
    }

    /// `t_x`, the tangent of `x`.
    fn t(&mut self, v: VarId) -> Ident {
        if let Some(t) = self.t.get(&v) {
            return t.clone();
        }
        let name = self.em.var(v).clone();
        let fresh = self.em.names.fresh(
            &format!("t_{}", name.to_string().trim_start_matches("r#")),
            name.span(),
        );
        self.t.insert(v, fresh.clone());
        fresh
    }

    /// The tangent of an operand: `t_x`, or a zero for a constant.
    fn tangent(&mut self, o: &Operand) -> TokenStream {
        match o.var() {
            Some(v) if self.active(v) => {
                let t = self.t(v);
                quote!(#t)
            }
            // The zero of the value's own type, which inference then needs from nowhere
            // else (a loop's tangent state starting at a constant).
            _ => {
                let x = self.primal(o);
                if o.var().is_some_and(|v| !self.em.plan.kinds.scalar[v.0]) {
                    quote!(::backprop::__private::tangent::zeros_like(&#x))
                } else {
                    quote!(::backprop::__private::jvp::zero_of(&#x))
                }
            }
        }
    }

    /// A value a tangent rule reads, looking through `&` (rules take floats by value).
    fn primal(&self, o: &Operand) -> TokenStream {
        if let Some(v) = o.var()
            && let Some(Stmt {
                rhs: Rhs::Prim { prim, args, .. },
                ..
            }) = self.func().def_of(v)
            && prim.name == "&"
        {
            return self.primal(&args[0]);
        }
        self.em.operand(o)
    }

    fn run(&mut self) -> TokenStream {
        let tangents = self.tangents.clone();
        let mut slots = Vec::new();
        let mut prologue = Vec::new();
        let params: Vec<crate::ir::Param> = self.func().params.clone();
        for p in &params {
            let slot = self.em.names.fresh("__slot", Span::call_site());
            slots.push(slot.clone());
            if !p.active || !self.active(p.var) {
                continue;
            }
            let x = &p.ident;
            let t = self.t(p.var);
            prologue.push(match p.kind {
                ParamKind::Buffer => {
                    let zeros = self.em.names.fresh("__zeros", Span::call_site());
                    let name = x.to_string().trim_start_matches("r#").to_string();
                    let given = quote! {
                        ::backprop::__private::jvp::buffer_or_zero(#slot, #x.len(), &mut #zeros, #name)
                    };
                    if self.em.written.contains(&p.var) {
                        quote! {
                            let mut #zeros = ::std::vec::Vec::new();
                            let mut #t = #given.to_vec();
                        }
                    } else {
                        quote! {
                            let mut #zeros = ::std::vec::Vec::new();
                            let #t = #given;
                        }
                    }
                }
                ParamKind::Struct => {
                    // A zero where no tangent is given, made as the reverse pass makes
                    // its adjoint (the same call on the same span: a struct that is not
                    // `Differentiable` is still one error).
                    let zero = self.em.names.fresh("__zero", Span::call_site());
                    let (arg, list) = match &p.ty {
                        syn::Type::Reference(r) => {
                            (quote!(#x), matches!(*r.elem, syn::Type::Slice(_)))
                        }
                        _ => (quote!(&#x), false),
                    };
                    let make = if list {
                        quote_spanned!(x.span()=> ::backprop::__private::zero_like_slice(#arg))
                    } else {
                        quote_spanned!(x.span()=> ::backprop::__private::zero_like(#arg))
                    };
                    let check = self.em.names.fresh("__check", Span::call_site());
                    let zero_ref = if list { quote!(&#zero[..]) } else { quote!(&#zero) };
                    quote! {
                        let (#zero, _, #check) = #make;
                        let #t = ::backprop::__private::struct_tangent(#slot, #arg, #zero_ref, #check);
                    }
                }
                ParamKind::Tensor => {
                    let name = x.to_string().trim_start_matches("r#").to_string();
                    if tensor_param(&p.ty) == Some(TensorParam::Owned) {
                        quote! {
                            let #t = ::backprop::__private::tangent::owned_or_zero(#slot, &#x, #name);
                        }
                    } else {
                        let zeros = self.em.names.fresh("__zeros", Span::call_site());
                        quote! {
                            let mut #zeros = ::core::option::Option::None;
                            let #t = ::backprop::__private::tangent::array_or_zero(#slot, &#x, &mut #zeros, #name);
                        }
                    }
                }
                _ => quote!(let #t = ::backprop::__private::jvp::scalar_or_zero(#slot);),
            });
        }
        let items = &self.func().items;
        let items = quote!(#(#items)*);
        let body = self.block(&self.func().body);
        let ret = self.em.operand(&self.func().ret.clone());
        let t_ret = self.tangent(&self.func().ret.clone());
        quote! {
            let (#(#slots,)*) = #tangents;
            #(#prologue)*
            #items
            #(#body)*
            (#ret, #t_ret)
        }
    }

    fn block(&mut self, stmts: &[Stmt]) -> Vec<TokenStream> {
        stmts.iter().map(|s| self.stmt(s)).collect()
    }

    fn stmt(&mut self, s: &Stmt) -> TokenStream {
        match &s.rhs {
            Rhs::If(node) => return self.if_stmt(s, node),
            Rhs::Loop(node) => return self.loop_stmt(s, node),
            Rhs::Call { path, args, .. } if self.active(s.def) => return self.call(s, path, args),
            _ => {}
        }
        let primal = self.em.simple_stmt(s);
        let tangent = self.tangent_line(s);
        if self.tangent_first(s) {
            // The primal may consume what the tangent reads (`x.into_shape_with_order(
            // x.raw_dim())` moves its shape), and the tangent does not read the result.
            quote!(#tangent #primal)
        } else {
            quote!(#primal #tangent)
        }
    }

    /// Whether a tensor-path statement's tangent reads nothing of its result, so it can
    /// be written before the statement.
    fn tangent_first(&self, s: &Stmt) -> bool {
        let Rhs::Prim { prim, args, .. } = &s.rhs else {
            return false;
        };
        if self.em.plan.kinds.scalar_path(s.def) || !self.active(s.def) {
            return false;
        }
        (0..prim.arity())
            .filter(|&k| self.operand_active(&args[k]))
            .all(|k| match crate::ir::op::tensor_tangent(prim, k) {
                Some(Tangent::Rule(_, needs)) => !needs.contains(&Need::Out),
                Some(Tangent::Dot) => true,
                _ => false,
            })
    }

    /// The tangent of a tensor-path operation: one term per varying input, summed.
    fn tensor_line(
        &mut self,
        s: &Stmt,
        prim: &crate::ir::op::Prim,
        args: &[Operand],
    ) -> TokenStream {
        let span = s.span;
        let t = self.t(s.def);
        let y = self.em.var(s.def).clone();
        let mut terms = Vec::new();
        for k in 0..prim.arity() {
            if !self.operand_active(&args[k]) {
                continue;
            }
            let tk = self.tangent(&args[k]);
            let rule = crate::ir::op::tensor_tangent(prim, k).expect("checked by `supported`");
            terms.push(match rule {
                Tangent::Borrow => return quote_spanned!(span=> let #t = &#tk;),
                Tangent::Rule(name, needs) => {
                    let f = Ident::new(name, span);
                    let reads: Vec<TokenStream> = needs
                        .iter()
                        .map(|n| match n {
                            // A float constant takes the tangent's element type (`x / 4.0`
                            // on f32 arrays), as in the reverse pass; data stays as written.
                            Need::In(j)
                                if args[*j].var().is_none()
                                    && prim.vjps_on(false)[*j] != Vjp::Zero =>
                            {
                                let c = self.primal(&args[*j]);
                                quote!(&::backprop::__private::tensor::like(&#tk, #c))
                            }
                            Need::In(j) => {
                                let x = self.primal(&args[*j]);
                                quote!(&#x)
                            }
                            Need::Out => quote!(&#y),
                            Need::Shape(_) => unreachable!("tangent rules read no shapes"),
                        })
                        .collect();
                    quote_spanned!(span=> ::backprop::__private::tangent::#f(#(#reads,)* &#tk))
                }
                Tangent::Dot => {
                    let (a, b) = if k == 0 {
                        (quote!(#tk), self.primal(&args[1]))
                    } else {
                        (self.primal(&args[0]), quote!(#tk))
                    };
                    quote_spanned!(span=> ::backprop::__private::tensor::dot(&#a, &#b))
                }
                Tangent::Elementwise => {
                    let (rule, at, needs) =
                        elementwise_reads(prim, args, self.em.plan).expect("checked by `supported`");
                    let f = Ident::new(rule, span);
                    let (sv, tv) = (
                        Ident::new("__saved", Span::mixed_site()),
                        Ident::new("__tangent", Span::mixed_site()),
                    );
                    let mut saved = quote!();
                    let reads: Vec<TokenStream> = needs
                        .iter()
                        .enumerate()
                        .map(|(i, n)| {
                            let x = match n {
                                Need::Out => quote!(#y),
                                Need::In(j) => self.primal(&args[*j]),
                                Need::Shape(_) => unreachable!("checked by `supported`"),
                            };
                            if i == at {
                                saved = x;
                                quote!(#sv)
                            } else {
                                x
                            }
                        })
                        .collect();
                    quote_spanned! {span=>
                        ::backprop::__private::tangent::elementwise(&#saved, &#tk, |#sv, #tv| ::backprop::__private::#f(#(#reads,)* #tv))
                    }
                }
            });
        }
        let sum = match terms.split_first() {
            Some((first, rest)) => quote!(#first #(+ #rest)*),
            None => quote!(::backprop::__private::tangent::zeros_like(&#y)),
        };
        quote_spanned!(span=> let #t = #sum;)
    }

    /// The tangent of a statement without control flow, after its primal line.
    fn tangent_line(&mut self, s: &Stmt) -> TokenStream {
        let span = s.span;
        if let Rhs::Buffer { op, args } = &s.rhs {
            return self.buffer_line(s, op, args);
        }
        if !self.active(s.def) {
            return quote!();
        }
        let t = self.t(s.def);
        match &s.rhs {
            Rhs::Copy(o) => {
                let to = self.tangent(o);
                quote_spanned!(span=> let #t = #to;)
            }
            Rhs::Prim { prim, args, .. } if !self.em.plan.kinds.scalar_path(s.def) => {
                self.tensor_line(s, prim, args)
            }
            Rhs::Prim { prim, args, .. } => {
                let mut terms = Vec::new();
                for (k, vjp) in prim.vjps_on(true).iter().enumerate() {
                    if !self.operand_active(&args[k]) {
                        continue;
                    }
                    let tk = self.tangent(&args[k]);
                    terms.push(match vjp {
                        Vjp::Identity => quote!(#tk),
                        Vjp::Negate => quote!((-#tk)),
                        Vjp::Zero => continue,
                        Vjp::Rule(rule, needs) => {
                            let f = Ident::new(rule, span);
                            let reads: Vec<TokenStream> = needs
                                .iter()
                                .map(|n| match n {
                                    Need::In(j) => self.primal(&args[*j]),
                                    Need::Out => {
                                        let y = self.em.var(s.def);
                                        quote!(#y)
                                    }
                                    Need::Shape(_) => {
                                        unreachable!("the scalar path reads no shapes")
                                    }
                                })
                                .collect();
                            if self.plain {
                                quote_spanned!(span=> ::backprop::__private::plain::#f(#(#reads,)* #tk))
                            } else {
                                quote_spanned!(span=> ::backprop::__private::#f(#(#reads,)* #tk))
                            }
                        }
                    });
                }
                let sum = match terms.split_first() {
                    Some((first, rest)) => quote!(#first #(+ #rest)*),
                    None => quote!(::backprop::__private::zero()),
                };
                quote_spanned!(span=> let #t = #sum;)
            }
            _ => quote!(),
        }
    }

    /// A buffer operation's tangent: the same operation on the tangent buffers.
    fn buffer_line(&mut self, s: &Stmt, op: &BufOp, args: &[Operand]) -> TokenStream {
        let span = s.span;
        // A write or a push changes its buffer, not a new value.
        if matches!(op, BufOp::Write | BufOp::Push) {
            let Some(buf) = args[0].var().filter(|b| self.active(*b)) else {
                return quote!();
            };
            let tb = self.t(buf);
            return match op {
                BufOp::Write => {
                    let i = self.em.operand(&args[1]);
                    let tv = self.tangent(&args[2]);
                    quote_spanned!(span=> #tb[#i] = #tv;)
                }
                _ => {
                    let tv = self.tangent(&args[1]);
                    quote_spanned!(span=> #tb.push(#tv);)
                }
            };
        }
        if !self.active(s.def) {
            return quote!();
        }
        let t = self.t(s.def);
        let mutability = if self.em.written.contains(&s.def) {
            quote!(mut)
        } else {
            quote!()
        };
        // The tangent of the buffer operated on: zeros where it is a constant that a
        // later write makes vary (`let mut s = state.to_vec();`).
        let tx = |this: &mut Self| match args[0].var() {
            Some(v) if this.active(v) => {
                let t = this.t(v);
                quote!(#t)
            }
            _ => {
                let x = this.em.operand(&args[0]);
                quote!(::backprop::__private::jvp::zeros_of(&#x[..]))
            }
        };
        match op {
            BufOp::Read => {
                let x = tx(self);
                let i = self.em.operand(&args[1]);
                quote_spanned!(span=> let #t = #x[#i];)
            }
            BufOp::Fill => {
                let v = self.tangent(&args[0]);
                let n = self.em.operand(&args[1]);
                quote_spanned!(span=> let #mutability #t = ::std::vec![#v; #n];)
            }
            BufOp::FillArray => {
                let v = self.tangent(&args[0]);
                let n = self.em.operand(&args[1]);
                quote_spanned!(span=> let #mutability #t = [#v; #n];)
            }
            BufOp::ToVec => {
                let x = tx(self);
                quote_spanned!(span=> let #mutability #t = #x.to_vec();)
            }
            BufOp::View => {
                let x = tx(self);
                let start = self.em.operand(&args[1]);
                match args.get(2) {
                    Some(end) => {
                        let end = self.em.operand(end);
                        quote_spanned!(span=> let #t = &#x[#start..#end];)
                    }
                    None => quote_spanned!(span=> let #t = &#x[#start..];),
                }
            }
            BufOp::Alias => {
                let x = tx(self);
                quote_spanned!(span=> let #mutability #t = #x;)
            }
            BufOp::Borrow => {
                let x = tx(self);
                quote_spanned!(span=> let #t = &#x;)
            }
            BufOp::Field(m) => {
                let x = tx(self);
                quote_spanned!(span=> let #t = &#x.#m;)
            }
            BufOp::FieldRead(m) => {
                let x = tx(self);
                quote_spanned!(span=> let #t = #x.#m;)
            }
            BufOp::Elem => {
                let x = tx(self);
                let i = self.em.operand(&args[1]);
                quote_spanned!(span=> let #t = &#x[#i];)
            }
            BufOp::NewVec => match args.first() {
                Some(n) => {
                    let n = self.em.operand(n);
                    quote_spanned!(span=> let mut #t = ::std::vec::Vec::with_capacity(#n);)
                }
                None => quote_spanned!(span=> let mut #t = ::std::vec::Vec::new();),
            },
            BufOp::Write | BufOp::Push => unreachable!("handled above"),
        }
    }

    /// Whether `v` is a struct of parameters (an argument, a field or an element of a
    /// list of them), and whether it is held by reference.
    fn struct_value(&self, v: VarId) -> Option<bool> {
        if let Some(p) = self.func().params.iter().find(|p| p.var == v) {
            return (p.kind == ParamKind::Struct)
                .then_some(matches!(p.ty, syn::Type::Reference(_)));
        }
        match self.func().def_of(v) {
            Some(Stmt {
                rhs:
                    Rhs::Buffer {
                        op: BufOp::Field(_) | BufOp::Elem,
                        ..
                    },
                ..
            }) if !self.func().is_buffer(v) => Some(true),
            Some(Stmt {
                rhs:
                    Rhs::Buffer {
                        op: BufOp::Borrow,
                        args,
                    },
                ..
            }) => args[0]
                .var()
                .and_then(|x| self.struct_value(x))
                .map(|_| true),
            _ => None,
        }
    }

    /// `let (y, t_y) = g::jvp(args.., (Some(t_x), None, ..));`
    fn call(&mut self, s: &Stmt, path: &syn::ExprPath, args: &[Operand]) -> TokenStream {
        let span = s.span;
        let y = self.em.var(s.def).clone();
        let t = self.t(s.def);
        let values: Vec<TokenStream> = args.iter().map(|a| self.em.operand(a)).collect();
        let mut slots = Vec::new();
        for a in args {
            let slot = match a.var() {
                Some(v) if self.active(v) => {
                    let tv = self.t(v);
                    if self.func().is_buffer(v) {
                        quote!(::core::option::Option::Some(&#tv[..]))
                    } else {
                        match self.struct_value(v) {
                            Some(false) => quote!(::core::option::Option::Some(&#tv)),
                            _ => quote!(::core::option::Option::Some(#tv)),
                        }
                    }
                }
                _ => quote!(::core::option::Option::None),
            };
            slots.push(slot);
        }
        let jvp = super::companions::jvp_path(path);
        let ty = s.ty.as_ref().map(|ty| quote!(: (#ty, #ty)));
        quote_spanned!(span=> let (#y, #t) #ty = #jvp(#(#values,)* (#(#slots,)*));)
    }

    fn if_stmt(&mut self, s: &Stmt, node: &IfNode) -> TokenStream {
        let cond = self.em.operand(&node.cond);
        // Tangents first in the arms' tuples: a zero of a constant array's shape reads
        // the array, which its own slot then moves.
        let with_t: Vec<&crate::ir::IfOut> =
            node.outs.iter().filter(|o| self.active(o.def)).collect();
        let mut outs: Vec<TokenStream> = Vec::new();
        for o in &with_t {
            let t = self.t(o.def);
            outs.push(quote!(#t));
        }
        for o in &node.outs {
            let x = self.em.var(o.def);
            outs.push(quote!(#x));
        }
        let then_stmts = self.block(&node.then_body);
        let else_stmts = self.block(&node.else_body);
        let arm_vals = |this: &mut Self, pick: fn(&crate::ir::IfOut) -> &Operand| {
            let mut vals: Vec<TokenStream> = Vec::new();
            for o in &with_t {
                vals.push(this.tangent(pick(o)));
            }
            vals.extend(node.outs.iter().map(|o| this.em.operand(pick(o))));
            vals
        };
        let then_vals = arm_vals(self, |o| &o.then_val);
        let else_vals = arm_vals(self, |o| &o.else_val);
        quote_spanned! {s.span=>
            let (#(#outs,)*) = if #cond { #(#then_stmts)* (#(#then_vals,)*) } else { #(#else_stmts)* (#(#else_vals,)*) };
        }
    }

    fn loop_stmt(&mut self, s: &Stmt, node: &LoopNode) -> TokenStream {
        let span = s.span;
        let mut inits = Vec::new();
        let mut entries = Vec::new();
        let mut updates = Vec::new();
        // A `while` that stops hands an array state back (entry → state), which the
        // iteration's first line moved out, as the forward pass does.
        let mut restores = Vec::new();
        for c in &node.carried {
            if !self.em.plan.kinds.scalar[c.entry.0] {
                let (st, en) = (self.em.var(c.out).clone(), self.em.var(c.entry).clone());
                restores.push(quote!(#st = #en;));
                if self.active(c.entry) || self.active(c.out) {
                    let (t_st, t_en) = (self.t(c.out), self.t(c.entry));
                    restores.push(quote!(#t_st = #t_en;));
                }
            }
        }
        for c in &node.carried {
            let (st, en) = (self.em.var(c.out).clone(), self.em.var(c.entry).clone());
            let init = self.em.operand(&c.init);
            let exit = self.em.operand(&c.exit);
            if self.active(c.entry) || self.active(c.out) {
                // The tangent state is named after the value after the loop, as the state.
                // Its start is taken first: a zero of a constant array's shape reads the
                // array, which the state's own start then takes.
                let (t_st, t_en) = (self.t(c.out), self.t(c.entry));
                let t_init = self.tangent(&c.init);
                let t_exit = self.tangent(&c.exit);
                inits.push(quote!(let mut #t_st = #t_init;));
                entries.push(quote!(let #t_en = #t_st;));
                updates.push(quote!(#t_st = #t_exit;));
            }
            inits.push(quote!(let mut #st = #init;));
            entries.push(quote!(let #en = #st;));
            updates.push(quote!(#st = #exit;));
        }
        let body = self.block(&node.body);
        let lp = match &node.head {
            LoopHead::For { index, range, .. } => {
                let i = self.em.var(*index).clone();
                quote_spanned!(span=> for #i in #range { #(#entries)* #(#body)* #(#updates)* })
            }
            LoopHead::While { cond, head_len } => {
                let c = self.em.operand(cond);
                let (head, rest) = body.split_at(*head_len);
                quote_spanned! {span=>
                    loop {
                        #(#entries)*
                        #(#head)*
                        if !#c { #(#restores)* break; }
                        #(#rest)*
                        #(#updates)*
                    }
                }
            }
        };
        quote!(#(#inits)* #lp)
    }
}

#[cfg(test)]
mod tests {
    use crate::diag::Ctxt;

    fn supported(src: &str) -> bool {
        let item: syn::ItemFn = syn::parse_str(src).expect("a function");
        let args = crate::attr::parse(proc_macro2::TokenStream::new()).expect("no arguments");
        let cx = Ctxt::new();
        let func = crate::ir::lower::lower(&cx, &item, &args).expect("lowered");
        let plan = crate::analysis::analyse(&cx, &func);
        cx.check().expect("supported by the reverse pass");
        super::supported(&func, &plan)
    }

    /// What takes the tangent pass and what the gradient-paired fallback: the tests of
    /// `tests/grad/forward_mode*.rs` check the values, this which body computed them.
    #[test]
    fn scalar_and_array_code_have_a_tangent_pass() {
        for src in [
            "fn f(a: f64, b: f64) -> f64 { (a * b).sin() + a.exp() }",
            "fn f(x: &[f64]) -> f64 { let mut s = 0.0; for i in 0..x.len() { s += x[i].powi(2); } s }",
            "fn f(x: &[f64]) -> f64 { let mut h = vec![0.0; x.len()]; for i in 0..x.len() { h[i] = if x[i] > 0.0 { x[i] } else { sigmoid(x[i]) }; } h.iter().sum() }",
            "fn f(p: &Poly, x: f64) -> f64 { let mut y = 0.0; for c in p.coef.iter().rev() { y = y * x + c; } y + p.shift }",
            "fn f(s: &Stack, x: f64) -> f64 { let mut h = x; for layer in &s.layers { h = poly(layer, h).tanh(); } h }",
            "fn f(x: &[f64]) -> f64 { let mut ys = Vec::new(); for v in x { ys.push(v * 2.0); } let z = ys.to_vec(); z[0] * z[1] }",
            "fn f(x: &Array2<f64>, w: &Array2<f64>) -> f64 { x.dot(w).sum() }",
            "fn f(w: &Array1<f64>) -> f64 { (w * w).sum() }",
            "fn f(x: &Array2<f64>, w: &Array2<f64>) -> Array2<f64> { x.dot(w).mapv(|v| v.tanh()) }",
            "fn f(x: &Array2<f64>) -> f64 { backprop::ops::relu(x).sum() }",
        ] {
            assert!(supported(src), "expected a tangent pass: {src}");
        }
        for src in [
            // A runtime op without a `jvp`, and a call returning an array, have no
            // tangent here yet.
            "fn f(x: &Array2<f64>) -> f64 { backprop::ops::layer_norm(x, &g, &b, 1e-5).sum() }",
            "fn f(x: &Array2<f64>, w: &Array2<f64>) -> f64 { layer(x, w).sum() }",
            // Nor an element write.
            "fn f(x: &Array1<f64>) -> f64 { let mut a = x.to_owned(); a[0] = 2.0 * a[1]; a.sum() }",
        ] {
            assert!(!supported(src), "expected the gradient-paired body: {src}");
        }
    }
}
