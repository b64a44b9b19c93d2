//! Assembles the companions of a `#[grad]` function `f`:
//!
//! ```text
//! fn f(..) -> R                          unchanged: the inference path, saves nothing
//! struct FGrad { a, b, .. }              one field per active argument, same types
//! fn f_grad(..) -> (R, FGrad)            value and gradient in one call
//! fn f_forward(..) -> (R, impl Pullback<R, Grad = FGrad>)   value and tape
//! fn f_backward(tape, d_out: R) -> FGrad                     the reverse pass
//! struct f {}  +  impl f { forward, grad }                   the rule companion: how
//!     other `#[grad]` functions call `f` (positional cotangents, one per argument)
//! ```

pub mod companions;
pub mod context;
pub mod forward;
mod hvp;
pub mod jvp;
mod nested;
pub mod reverse;
mod shape;
pub mod tangent;

pub use shape::{
    Api, Shape, ShapeParam, grad_struct_ident, strip_lifetimes, tape_generics, taped_inputs,
    type_and_const_args,
};

use crate::analysis::Plan;
use crate::ir::Func;
use crate::names::Names;
use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ItemFn;

/// Whether the function calls code no rule covers (`rand::random()`, a counter, a
/// macro) on constants. Such a call may have effects or differ from one run to the
/// next, so `f_grad` does not run the forward pass twice for it: no plain pass first.
fn calls_outside_rules(func: &Func) -> bool {
    // Constructors of constants (`T::zero()`, `T::from(0.5).unwrap()`), the op table's
    // methods and unwrapping are pure; any other call or macro might not be.
    const PURE_CALLS: &[&str] = &[
        "zero",
        "one",
        "from",
        "from_f64",
        "from_f32",
        "nan",
        "infinity",
        "neg_infinity",
        "epsilon",
        "max_value",
        "min_value",
        "min_positive_value",
        "cast",
    ];
    fn pure_method(name: &str, arity: usize) -> bool {
        matches!(name, "unwrap" | "expect" | "into" | "clone")
            || !matches!(
                crate::ir::op::method(name, arity),
                crate::ir::op::MethodKind::Unknown
            )
    }
    struct Finder(bool);
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
            let pure = matches!(&*c.func, syn::Expr::Path(p)
                if p.path.segments.last().is_some_and(|s| PURE_CALLS.contains(&s.ident.to_string().as_str())));
            self.0 |= !pure;
            syn::visit::visit_expr_call(self, c);
        }
        fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
            self.0 |= !pure_method(&m.method.to_string(), m.args.len() + 1);
            syn::visit::visit_expr_method_call(self, m);
        }
        fn visit_expr_macro(&mut self, _: &'ast syn::ExprMacro) {
            self.0 = true;
        }
    }
    let mut found = false;
    crate::ir::walk(&func.body, &mut |s| {
        // An operation without a rule on constants: operators, casts and indexing are
        // pure; a method or a function might not be. (Operations with derivative 0,
        // `len()`, `floor()`, comparisons, are the op table's, all pure.)
        if let crate::ir::Rhs::NoRule { spelling, .. } = &s.rhs {
            use crate::ir::Spelling as Sp;
            found |= match spelling {
                Sp::Operator(_)
                | Sp::Unary(_)
                | Sp::Cast(_)
                | Sp::Ref
                | Sp::Index
                | Sp::RefIndex
                | Sp::TupleField(_)
                | Sp::Matches(_) => false,
                // (A method reaches `NoRule` only when the op table does not know it.)
                // (A struct literal's fields may call anything: `..Default::default()`.)
                Sp::Method(_)
                | Sp::MethodUnwrap(..)
                | Sp::MethodTurbofish(_)
                | Sp::Join(..)
                | Sp::Template(_) => true,
                Sp::Path(p) => !p
                    .path
                    .segments
                    .last()
                    .is_some_and(|seg| PURE_CALLS.contains(&seg.ident.to_string().as_str())),
            };
        }
        for o in s.rhs.operands() {
            if let crate::ir::Operand::Const(e) = o {
                let mut f = Finder(false);
                syn::visit::Visit::visit_expr(&mut f, e);
                found |= f.0;
            }
        }
    });
    found
}

/// The full expansion of a function that passed every check, and the signature facts
/// methods forwarding to its companions need.
pub fn emit(item: &ItemFn, func: &Func, plan: &Plan) -> (TokenStream, Api) {
    let mut names = Names::new(item.to_token_stream());
    for v in &func.vars {
        names.reserve(&v.name.to_string());
    }
    let is_tensor = |p: &crate::ir::Param| p.kind == crate::ir::ParamKind::Tensor;
    let shape = Shape {
        item,
        params: func
            .params
            .iter()
            .map(|p| ShapeParam {
                name: p.ident.clone(),
                ty: p.ty.clone(),
                active: p.active,
                tensor: is_tensor(p),
                elem: p.elem.clone(),
                strukt: p.kind == crate::ir::ParamKind::Struct,
            })
            .collect(),
        ret_ty: func.ret_ty.clone(),
        tensor: plan.kinds.any_tensor() || func.params.iter().any(|p| p.active && is_tensor(p)),
    };
    // Mention `f` itself, so a user who only calls `f_grad` gets no "never used"
    // warning on `f` (its companions replace it, they do not abandon it).
    let fn_name = &item.sig.ident;
    let has_impl_trait_arg =
        item.sig.inputs.iter().any(
            |i| matches!(i, syn::FnArg::Typed(pt) if matches!(*pt.ty, syn::Type::ImplTrait(_))),
        );
    let tf = shape.turbofish();
    let keep_used = if has_impl_trait_arg {
        quote!()
    } else {
        quote!(#[allow(deprecated)] let _ = #fn_name #tf;)
    };
    // The tangent pass is built first, by its own emitter over the same IR (it keeps no
    // tape, and shares no state with the forward and reverse passes).
    let jvp_body = tangent::supported(func, plan).then(|| {
        let plain_first = shape.plain_first() && !calls_outside_rules(func);
        tangent::body(func, plan, &names, plain_first)
    });
    let hvp = hvp::emit(item, func, plan, &names, &shape);
    // A layer with an operation forward mode has no rule for (`layer_norm`, a call of
    // another layer) still has `f_jvp` where it has a tangent program: its tangent.
    let jvp_body = jvp_body.or_else(|| {
        (shape.returns_array() && hvp.program)
            .then(|| shape.jvp_through_tangent_program(&mut Names::new(item.to_token_stream())))
            .flatten()
    });
    let (body, dual) = forward_body(func, plan, names, &shape, keep_used, None);
    let plain_first = dual && shape.plain_first() && !calls_outside_rules(func);
    let mut api = shape.api();
    api.jvp = !shape.returns_array() || jvp_body.is_some();
    let companions = shape.companions(body, None, plain_first, jvp_body, hvp.methods);
    let (hvp_free, nested) = (hvp.free, hvp.nested);
    // `f` as written, its matrix products on the runtime's matmul (`plain.rs`).
    let mut item = item.clone();
    let import = crate::plain::rewrite(&mut item.block).then(crate::plain::import);
    api.emitted = true;
    let out = quote! {
        #import
        #item
        #companions
        #hvp_free
        #nested
    };
    (out, api)
}

/// The body of `f::forward`: the forward pass, then `(value, tape)`. With `extra`, a
/// value of the function to return first, as `(extra, value, tape)` (the tangent
/// program returns the primal result beside its tangent).
fn forward_body(
    func: &Func,
    plan: &Plan,
    names: Names,
    shape: &Shape,
    keep_used: TokenStream,
    extra: Option<&crate::ir::Operand>,
) -> (TokenStream, bool) {
    let mut ctx = context::Emitter::new(func, plan, names);
    // The tangent program (`extra`) keeps one reverse body: see `Emitter::one_body`.
    ctx.one_body = extra.is_some();
    let forward = ctx.forward();
    let (pullback, dual) = reverse::pullback(&mut ctx, &shape.tuple_ty());
    if ctx.debug && extra.is_none() {
        // What the tape keeps: the values and nested tapes the pullback captures, and
        // what each loop body or arm saves (`analysis::save`).
        let top: std::collections::HashSet<crate::ir::VarId> = func
            .body
            .iter()
            .map(|s| s.def)
            .chain(func.params.iter().map(|p| p.var))
            .collect();
        let mut kept: Vec<String> = ctx
            .captured
            .borrow()
            .iter()
            .filter(|v| top.contains(v))
            .map(|v| func.name(*v).to_string())
            .collect();
        let tapes: Vec<crate::ir::VarId> = ctx.captured_tapes.borrow().iter().copied().collect();
        kept.extend(tapes.into_iter().map(|v| ctx.tape(v).to_string()));
        eprintln!("tape: {}", kept.join(", "));
        for line in &ctx.debug_plans {
            eprintln!("  {line}");
        }
        eprintln!();
    }
    let tape_ty = if dual { quote!(DualTape) } else { quote!(Tape) };
    // Loops' stacks count their heap into `tape_heap` (declared below).
    if !ctx.stacks.is_empty() {
        let _ = ctx.heap_name();
    }
    let pullback_name = ctx.names.fresh("pullback", proc_macro2::Span::call_site());
    let items = &func.items;
    // The primal result of a tangent program (`extra`), an array the tape may also read
    // (a layer's `tanh` output, a loop's carried value): a copy, as below.
    let mut extra_copy = quote!();
    let extra_value = extra.map(|o| {
        let x = ctx.operand(o);
        match o.var() {
            Some(_) if shape.returns_array() => {
                let copy = ctx.names.fresh("primal", proc_macro2::Span::call_site());
                extra_copy = quote!(let #copy = ::core::clone::Clone::clone(&#x););
                quote!(#copy,)
            }
            _ => quote!(#x,),
        }
    });
    let ret = ctx.operand(&func.ret);
    // An array result the tape also reads (`z.tanh()` saves its output) is returned as
    // a copy: the pullback owns the original.
    let (ret_copy, ret) = match func.ret.var() {
        Some(v) if shape.returns_array() && ctx.captured.borrow().contains(&v) => {
            let copy = ctx.names.fresh("value", proc_macro2::Span::call_site());
            (
                quote!(let #copy = ::core::clone::Clone::clone(&#ret);),
                quote!(#copy),
            )
        }
        _ => (quote!(), ret),
    };
    // The tape's size: the closure's own bytes are measured by the runtime; what its
    // captured arrays and nested tapes own on the heap is added here. Scalar code has
    // nothing on the heap and keeps the plain constructor.
    let mut has_calls = false;
    crate::ir::walk(&func.body, &mut |s| {
        has_calls |= matches!(
            s.rhs,
            crate::ir::Rhs::Call { .. } | crate::ir::Rhs::If(_) | crate::ir::Rhs::Loop(_)
        )
    });
    let (heap, tape) = if shape.tensor || has_calls {
        // Only values in scope at the top of the forward pass: a branch's own values
        // live in that branch's pullback, which its tape (counted here) holds.
        let mut visible: std::collections::HashSet<crate::ir::VarId> =
            func.params.iter().map(|p| p.var).collect();
        for s in &func.body {
            visible.insert(s.def);
            match &s.rhs {
                crate::ir::Rhs::If(node) => visible.extend(node.outs.iter().map(|o| o.def)),
                crate::ir::Rhs::Loop(node) => visible.extend(node.carried.iter().map(|c| c.out)),
                _ => {}
            }
        }
        // A float owns no heap: no probe for it (which also keeps a failed call's result,
        // whose type rustc no longer knows, from adding a second error to the first).
        let heapless = |v: &crate::ir::VarId| {
            plan.kinds.scalar[v.0]
                && !func.is_buffer(*v)
                && !func
                    .params
                    .iter()
                    .any(|p| p.var == *v && p.kind == crate::ir::ParamKind::Struct)
        };
        let mut names: Vec<syn::Ident> = ctx
            .captured
            .borrow()
            .iter()
            .filter(|v| visible.contains(v) && !heapless(v))
            .map(|v| ctx.var(*v).clone())
            .collect();
        // Loops count their stacks themselves (`tape_heap`), nested runs included.
        let tapes: Vec<crate::ir::VarId> = ctx
            .captured_tapes
            .borrow()
            .iter()
            .copied()
            .filter(|v| visible.contains(v))
            .filter(|v| {
                !matches!(
                    func.def_of(*v),
                    Some(crate::ir::Stmt {
                        rhs: crate::ir::Rhs::Loop(_),
                        ..
                    })
                )
            })
            .collect();
        names.extend(tapes.into_iter().map(|v| ctx.tape(v)));
        let mut captured: Vec<TokenStream> = names
            .iter()
            .map(|x| quote!((&::backprop::__private::Probe(&#x)).heap_bytes()))
            .collect();
        if let Some(h) = &ctx.heap {
            captured.push(quote!(#h));
        }
        let sum = if captured.is_empty() {
            quote!(0)
        } else {
            quote!(#(#captured)+*)
        };
        let heap_name = ctx
            .names
            .fresh("heap_bytes", proc_macro2::Span::call_site());
        (
            quote! {
                let #heap_name = {
                    use ::backprop::__private::{HeapOfOther as _, HeapOfOwned as _};
                    #sum
                };
            },
            quote!(::backprop::__private::#tape_ty::with_heap_bytes(#heap_name, #pullback_name)),
        )
    } else {
        (
            quote!(),
            quote!(::backprop::__private::#tape_ty::new(#pullback_name)),
        )
    };
    // Each loop's stack, for the whole forward pass.
    let stacks: Vec<syn::Ident> = ctx
        .stacks
        .clone()
        .into_iter()
        .map(|v| ctx.tape(v))
        .collect();
    let heap_decl = ctx.heap.as_ref().map(|h| quote!(let mut #h: usize = 0;));
    let stack_decls = stacks
        .iter()
        .map(|t| quote!(let mut #t = ::backprop::__private::Stack::new();));
    let stack_heap: Vec<TokenStream> = match &ctx.heap {
        Some(h) => stacks
            .iter()
            .map(|t| quote!(#h += ::backprop::__private::HeapOfOwned::heap_bytes(&::backprop::__private::Probe(&#t));))
            .collect(),
        None => Vec::new(),
    };
    let body = quote! {
        #keep_used
        #(#items)*
        #heap_decl
        #(#stack_decls)*
        #forward
        #(#stack_heap)*
        #heap
        #ret_copy
        #extra_copy
        let #pullback_name = #pullback;
        (#extra_value #ret, #tape)
    };
    (body, dual)
}
