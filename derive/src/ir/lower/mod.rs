//! syn → IR: one operation per `let` (A-normal form), SSA versions for reassigned
//! locals, every unsupported construct reported with its span and what is supported.

mod methods;

use super::op::{self, MethodKind};
use super::{
    BufOp, Carried, Func, IfNode, IfOut, LoopHead, LoopNode, Operand, Param, ParamKind, Rhs,
    Spelling, Stmt, VarId, VarInfo,
};
use crate::attr::GradArgs;
use crate::diag::Ctxt;
use crate::names::Names;
use proc_macro2::{Ident, Span};
use quote::ToTokens;
use std::collections::{HashMap, HashSet};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{BinOp, Expr, FnArg, ItemFn, Pat, ReturnType, Type, UnOp};

/// What `#[grad]` differentiates, for the end of every "not supported" message.
pub const SUPPORTED: &str = "`#[grad]` differentiates `let` bindings (shadowing, `let mut` with `=`, `+=`, `-=`, \
     `*=`, `/=`), `if`/`else` on floats and arrays (as statements and expressions, an early \
     `if c { return v; }`, `if let Some(x) = option`), `for` over integer ranges, over buffers (`x.iter()`, \
     `.enumerate()`, `.zip(..)`) and over lists of structs (`for layer in &p.layers`), `while` and `loop` with `break` (also `break value`) and `continue`, buffers of floats (`&[f64]`, `Vec<f64>`, \
     `[f64; N]`: indexing, `len`, sub-slices `&x[a..b]`, element writes on local buffers, \
     `iter().sum()`, `.map(..).sum()`, `.fold(..)`), arithmetic `+ - * /` and unary `-` (on \
     floats and ndarray arrays, with broadcasting), float methods, the array methods README lists \
     (`dot`, `t`, `sum`, `mean`, `sum_axis`, `select`, `slice`, `mapv`, ...), borrows `&x`, calls of functions that have a rule \
     (`#[grad]` and `#[custom_vjp]` functions, `backprop::sigmoid`, `backprop::ops::relu`, \
     ...), `match` on values without a derivative (arms binding no parts), `matches!`, \
     blocks, a final `return` and `return` from loops; labelled loops and `while let` \
     are not supported yet";

pub fn lower(cx: &Ctxt, item: &ItemFn, args: &GradArgs) -> Option<Func> {
    // Always `Some`: see the comment before the return.
    let generics = float_type_params(&item.sig.generics);
    let mut lw = Lowerer {
        cx,
        names: Names::new(item.to_token_stream()),
        claimed: HashSet::new(),
        vars: Vec::new(),
        scopes: vec![HashMap::new()],
        body: Vec::new(),
        items: Vec::new(),
        generics,
        named_result: None,
        poisoned: HashSet::new(),
        closures: HashMap::new(),
        temps: HashSet::new(),
        buffers: HashSet::new(),
        owner_rhs: HashMap::new(),
        read_cache: HashMap::new(),
        places: HashSet::new(),
        type_params: item
            .sig
            .generics
            .type_params()
            .map(|t| t.ident.to_string())
            .collect(),
        array_params: HashSet::new(),
        struct_params: HashSet::new(),
        field_bases: field_bases(&item.block),
    };
    check_signature(cx, item);
    let ret_ty = lw.return_type(item);
    let params = lw.params(item, args);
    // A refused signature is the one error: the body is not lowered against it (a tuple
    // result would add "tuples not supported" for its tail).
    let ret = if cx.error_count() > 0 {
        dummy()
    } else {
        let body = lift_loop_returns(&item.block.stmts, &lw.names_for_lift(), ret_ty.as_ref());
        lw.block_value(&body, item.block.span(), true)
    };
    // With errors the function is not emitted, but analysing it still reports the
    // errors only analysis finds (an active value reaching an op without a rule), so
    // one compile shows every problem.
    Some(Func {
        params,
        float_ty: ret_ty
            .as_ref()
            .and_then(|t| lw.owned_array_elem(t))
            .or_else(|| ret_ty.clone())
            .unwrap_or_else(|| syn::parse_quote!(f64)),
        ret_ty: ret_ty.unwrap_or_else(|| syn::parse_quote!(f64)),
        vars: lw.vars,
        items: lw.items,
        body: lw.body,
        ret,
        buffers: lw.buffers,
        generics: item.sig.generics.clone(),
        defs: Default::default(),
        name: item.sig.ident.clone(),
    })
}

fn check_signature(cx: &Ctxt, item: &ItemFn) {
    let sig = &item.sig;
    let why = "`#[grad]` differentiates a plain free function (`fn f(a: f64, ...) -> f64`)";
    if let Some(t) = &sig.asyncness {
        cx.error_spanned_by(
            t,
            format!("`#[grad]` cannot differentiate an `async fn`: {why}"),
        );
    }
    if let Some(t) = &sig.unsafety {
        cx.error_spanned_by(
            t,
            format!("`#[grad]` cannot differentiate an `unsafe fn`: {why}"),
        );
    }
    if let Some(t) = &sig.abi {
        cx.error_spanned_by(
            t,
            format!("`#[grad]` cannot differentiate an `extern` function: {why}"),
        );
    }
    if let Some(t) = &sig.constness {
        cx.error_spanned_by(
            t,
            format!("`#[grad]` cannot differentiate a `const fn`: {why}"),
        );
    }
    if let Some(v) = &sig.variadic {
        cx.error_spanned_by(
            v,
            format!("`#[grad]` cannot differentiate a variadic function: {why}"),
        );
    }
}

struct Lowerer<'a> {
    cx: &'a Ctxt,
    names: Names,
    /// User names already given to a value (the next binding gets `x_1`).
    claimed: HashSet<String>,
    vars: Vec<VarInfo>,
    scopes: Vec<HashMap<String, VarId>>,
    body: Vec<Stmt>,
    items: Vec<syn::Item>,
    generics: HashSet<String>,
    /// Values named `t0`, `t1`, ...: operations' results that no user binding named.
    temps: HashSet<VarId>,
    /// The var created for the `want`ed name by the last `define`, so a `let` knows its
    /// initializer already produced the binding (no extra copy).
    named_result: Option<VarId>,
    /// Names whose `let` was refused (see `local`).
    poisoned: HashSet<String>,
    /// Closures bound to a local (`let act = |z: f64| z.tanh();`), inlined at each call.
    closures: HashMap<String, LocalClosure>,
    /// Values that are buffers of floats (see `BufOp`).
    buffers: HashSet<VarId>,
    /// Struct arguments and field views of them (`&p.w`).
    places: HashSet<VarId>,
    /// The function's type parameters (a `T` argument is not a struct).
    type_params: HashSet<String>,
    /// Array arguments taken by value (`p: [f64; 3]`), and copies of arrays.
    array_params: HashSet<VarId>,
    /// Struct arguments.
    struct_params: HashSet<VarId>,
    /// Names the body reads a field of (`layer.w`): a binding of one of them to an
    /// element of a collection of structs (`let layer = &p.layers[i];`) is a place.
    field_bases: HashSet<String>,
    /// How each buffer the function owns was made (found from nested blocks, whose
    /// statements are lowered apart from the enclosing body).
    owner_rhs: HashMap<VarId, Rhs>,
    /// Element reads since the last write or control-flow boundary, by buffer and
    /// index: `q[i] * q[i]` reads (and saves) the element once.
    read_cache: HashMap<(VarId, String), VarId>,
}

impl Lowerer<'_> {
    // ---- signature ------------------------------------------------------------------

    fn is_float_type(&self, ty: &Type) -> bool {
        self.param_kind(ty) == ParamKind::Scalar && !matches!(ty, Type::Reference(_))
    }

    /// Classifies an argument's type by its spelling: floats, ndarray arrays (and
    /// references to them), everything else.
    fn param_kind(&self, ty: &Type) -> ParamKind {
        match ty {
            Type::Path(p) if p.qself.is_none() => {
                if let Some(i) = p.path.get_ident()
                    && (i == "f32" || i == "f64" || self.generics.contains(&i.to_string()))
                {
                    return ParamKind::Scalar;
                }
                let last = p
                    .path
                    .segments
                    .last()
                    .map(|s| s.ident.to_string())
                    .unwrap_or_default();
                if is_array_type_name(&last) {
                    ParamKind::Tensor
                } else if last == "Vec" && self.buffer_elem(ty).is_some() {
                    ParamKind::Buffer
                } else if last == "Vec" && self.struct_elem(ty) {
                    // `Vec<Layer>`: a collection of structs of parameters.
                    ParamKind::Struct
                } else if is_struct_type_name(&last) && !self.type_params.contains(&last) {
                    ParamKind::Struct
                } else {
                    ParamKind::Other
                }
            }
            Type::Reference(r) if r.mutability.is_none() => match self.param_kind(&r.elem) {
                ParamKind::Tensor => ParamKind::Tensor,
                ParamKind::Buffer => ParamKind::Buffer,
                ParamKind::Struct => ParamKind::Struct,
                _ if matches!(&*r.elem, Type::Slice(_)) && self.buffer_elem(ty).is_some() => {
                    ParamKind::Buffer
                }
                _ if matches!(&*r.elem, Type::Slice(_)) && self.struct_elem(ty) => {
                    ParamKind::Struct
                }
                _ => ParamKind::Other,
            },
            Type::Array(_) if self.buffer_elem(ty).is_some() => ParamKind::Buffer,
            Type::Array(_) if self.struct_elem(ty) => ParamKind::Struct,
            Type::Paren(p) => self.param_kind(&p.elem),
            Type::Group(g) => self.param_kind(&g.elem),
            _ => ParamKind::Other,
        }
    }

    /// Whether `ty` is a collection of structs of parameters: `&[Layer]`, `Vec<Layer>`,
    /// `[Layer; N]` (and references to them).
    fn struct_elem(&self, ty: &Type) -> bool {
        collection_elem(ty).is_some_and(|e| self.param_kind(e) == ParamKind::Struct)
    }

    /// The float element type of a buffer type: `f64` for `&[f64]`, `&Vec<f64>`,
    /// `[f64; N]`, `Vec<f64>`.
    fn buffer_elem(&self, ty: &Type) -> Option<Type> {
        collection_elem(ty)
            .filter(|e| self.is_float_type(e))
            .cloned()
    }

    fn return_type(&self, item: &ItemFn) -> Option<Type> {
        match &item.sig.output {
            ReturnType::Default => {
                self.cx.error_at(
                    item.sig.ident.span(),
                    "`#[grad]` differentiates a function that returns one float (`f32`, `f64` or a generic `T: Float`); this one returns nothing",
                );
                None
            }
            ReturnType::Type(_, ty) if self.is_float_type(ty) || is_primitive_float_path(ty) => {
                Some((**ty).clone())
            }
            // A layer: an owned ndarray array of floats (`Array2<f64>`, `Array<T, Ix3>`).
            ReturnType::Type(_, ty) if self.owned_array_elem(ty).is_some() => Some((**ty).clone()),
            ReturnType::Type(_, ty) => {
                self.cx.error_spanned_by(
                    ty,
                    format!(
                        "`#[grad]` differentiates a function that returns one float (`f32`, `f64` or a generic `T: Float`), the loss, or an owned ndarray array of floats (`Array2<f64>`, a layer); this one returns `{}`",
                        ty.to_token_stream()
                    ),
                );
                None
            }
        }
    }

    /// The element type of an owned ndarray array of floats (`f64` for `Array2<f64>`,
    /// `T` for `Array<T, Ix2>`); `None` for anything else (views and references too).
    fn owned_array_elem(&self, ty: &Type) -> Option<Type> {
        let Type::Path(p) = ty else { return None };
        let last = p.path.segments.last()?;
        let name = last.ident.to_string();
        if !(name == "Array"
            || name == "ArrayD"
            || name.starts_with("Array") && name[5..].parse::<u8>().is_ok())
        {
            return None;
        }
        let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        match args.args.first()? {
            syn::GenericArgument::Type(t) if self.is_float_type(t) => Some(t.clone()),
            _ => None,
        }
    }

    fn params(&mut self, item: &ItemFn, args: &GradArgs) -> Vec<Param> {
        let mut params = Vec::new();
        for input in &item.sig.inputs {
            let pt = match input {
                FnArg::Receiver(r) => {
                    self.cx.error_spanned_by(
                        r,
                        "`#[grad]` cannot differentiate a method taking `self`: write a free function and pass the value as an argument",
                    );
                    continue;
                }
                FnArg::Typed(pt) => pt,
            };
            let ident = match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
                other => {
                    self.cx.error_spanned_by(
                        other,
                        "`#[grad]` needs each argument to be a plain name (`x: f64` or `mut x: f64`); destructure inside the body",
                    );
                    continue;
                }
            };
            let kind = self.param_kind(&pt.ty);
            if let Type::Reference(r) = &*pt.ty
                && r.mutability.is_none()
                && self.is_float_type(&r.elem)
            {
                self.cx.error_spanned_by(
                    &pt.ty,
                    format!(
                        "`#[grad]` differentiates floats taken by value: write `{ident}: {}`; a `{}` argument would silently get no gradient",
                        r.elem.to_token_stream(),
                        pt.ty.to_token_stream().to_string().replace("& ", "&")
                    ),
                );
            }
            let var = self.new_var(ident.clone());
            self.claimed.insert(ident.to_string());
            self.scopes[0].insert(ident.to_string(), var);
            let elem = self
                .buffer_elem(&pt.ty)
                .filter(|_| kind == ParamKind::Buffer);
            if kind == ParamKind::Buffer {
                self.buffers.insert(var);
            }
            if kind == ParamKind::Struct {
                self.places.insert(var);
                self.struct_params.insert(var);
            }
            if kind == ParamKind::Buffer && matches!(&*pt.ty, Type::Array(_)) {
                self.array_params.insert(var);
            }
            params.push(Param {
                ident,
                ty: (*pt.ty).clone(),
                kind,
                active: false,
                var,
                elem,
            });
        }
        match &args.active {
            None => {
                for p in &mut params {
                    p.active = p.kind != ParamKind::Other;
                    // A type the macro cannot see into is differentiated as a struct of
                    // parameters, unless the body treats it as data: an enum matched on
                    // or compared (`match mode { .. }`, `mode == Mode::Train`).
                    if p.kind == ParamKind::Struct && used_as_data(&item.block, &p.ident) {
                        p.active = false;
                    }
                    // A buffer of buffers would silently stay data.
                    let inner = match &p.ty {
                        Type::Reference(r) => &*r.elem,
                        other => other,
                    };
                    let nested = match inner {
                        Type::Slice(sl) => self.buffer_elem(&sl.elem).is_some(),
                        Type::Array(a) => self.buffer_elem(&a.elem).is_some(),
                        _ => false,
                    };
                    if nested {
                        self.cx.error_spanned_by(
                            &p.ty,
                            format!(
                                "`#[grad]` does not differentiate nested buffers (`{}`) yet: flatten it into one `&[f64]` (row-major), or name the differentiated arguments in `#[grad(...)]` to keep `{}` as data",
                                p.ty.to_token_stream().to_string().replace(' ', ""),
                                p.ident
                            ),
                        );
                    }
                }
            }
            Some(list) => {
                let mut seen: HashSet<String> = HashSet::new();
                for name in list {
                    if !seen.insert(name.to_string()) {
                        self.cx.error_spanned_by(
                            name,
                            format!("`{name}` is named twice in `#[grad(...)]`"),
                        );
                        continue;
                    }
                    match params.iter_mut().find(|p| p.ident == *name) {
                        None => {
                            let all: Vec<String> =
                                params.iter().map(|p| format!("`{}`", p.ident)).collect();
                            self.cx.error_spanned_by(
                                name,
                                format!(
                                    "`{name}` is not an argument of `{}`; `#[grad(...)]` names the arguments to differentiate, which are among: {}",
                                    item.sig.ident,
                                    if all.is_empty() { String::from("(none)") } else { all.join(", ") }
                                ),
                            );
                        }
                        Some(p) if p.kind == ParamKind::Other => {
                            self.cx.error_spanned_by(
                                name,
                                format!(
                                    "`{name}` has type `{}`, which `#[grad]` cannot differentiate: active arguments are floats (`f32`, `f64` or a generic `T: Float`), buffers of floats (`&[f64]`, `&Vec<f32>`, `[f64; N]`) and ndarray arrays (`&Array2<f32>`, `ArrayView1<f64>`, ...); integers, bools and other data stay constants",
                                    p.ty.to_token_stream()
                                ),
                            );
                        }
                        Some(p) => p.active = true,
                    }
                }
            }
        }
        params
    }

    // ---- values and scopes ----------------------------------------------------------

    fn new_var(&mut self, name: Ident) -> VarId {
        self.vars.push(VarInfo { name });
        VarId(self.vars.len() - 1)
    }

    /// A new value for user name `ident` (first use keeps the name, later ones `x_1`).
    /// A binding inside a nested block is always renamed: the forward pass is one flat
    /// scope, where the block's name must not shadow an outer item used after it.
    fn user_var(&mut self, ident: &Ident) -> VarId {
        let first = self.scopes.len() == 1 && self.claimed.insert(ident.to_string());
        let name = self.names.claim_user(ident, first);
        self.new_var(name)
    }

    /// A temporary defined by the last statement and not bound to any name.
    fn is_fresh_temp(&self, v: VarId) -> bool {
        self.body
            .last()
            .is_some_and(|s| s.def == v && !matches!(s.rhs, Rhs::If(_) | Rhs::Loop(_)))
            && !self
                .scopes
                .iter()
                .any(|scope| scope.values().any(|b| *b == v))
            && self.temps.contains(&v)
    }

    fn lookup(&self, name: &str) -> Option<VarId> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    /// Rebinds an existing user name in the scope that holds it (assignment).
    fn rebind(&mut self, name: &str, var: VarId) {
        for scope in self.scopes.iter_mut().rev() {
            if let Some(slot) = scope.get_mut(name) {
                *slot = var;
                return;
            }
        }
    }

    fn define(&mut self, want: Option<&Ident>, rhs: Rhs, span: Span) -> Operand {
        let def = match want {
            Some(ident) => {
                let v = self.user_var(ident);
                self.named_result = Some(v);
                v
            }
            None => {
                let name = self.names.temp(span);
                let v = self.new_var(name);
                self.temps.insert(v);
                v
            }
        };
        self.body.push(Stmt {
            def,
            rhs,
            span,
            ty: None,
            source: String::new(),
            compound: false,
        });
        Operand::Var(def)
    }

    /// Does `e` read any local value? If not, it is a constant and is kept verbatim.
    /// A name this function binds: a local, a closure bound to a local (`act(2.0)` is
    /// the closure's call, not a constant expression), or a refused `let`.
    fn is_local_name(&self, n: &str) -> bool {
        self.lookup(n).is_some() || self.closures.contains_key(n) || self.poisoned.contains(n)
    }

    fn mentions_local(&self, e: &Expr) -> bool {
        struct Finder<'s, 'a> {
            lw: &'s Lowerer<'a>,
            found: bool,
        }
        impl<'ast> Visit<'ast> for Finder<'_, '_> {
            fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
                if p.qself.is_none()
                    && let Some(i) = p.path.get_ident()
                {
                    self.found |= self.lw.is_local_name(&i.to_string());
                }
            }
            fn visit_macro(&mut self, m: &'ast syn::Macro) {
                fn scan(ts: proc_macro2::TokenStream, lw: &Lowerer<'_>) -> bool {
                    ts.into_iter().any(|tt| match tt {
                        proc_macro2::TokenTree::Ident(i) => lw.is_local_name(&i.to_string()),
                        proc_macro2::TokenTree::Group(g) => scan(g.stream(), lw),
                        _ => false,
                    })
                }
                self.found |= scan(m.tokens.clone(), self.lw);
            }
        }
        let mut f = Finder {
            lw: self,
            found: false,
        };
        f.visit_expr(e);
        f.found
    }

    // ---- statements -----------------------------------------------------------------

    /// Lowers a block's statements and returns the value of its tail expression.
    fn block_value(&mut self, stmts: &[syn::Stmt], span: Span, is_body: bool) -> Operand {
        let split;
        let stmts = if is_body {
            split = split_returning_lets(stmts);
            &split[..]
        } else {
            stmts
        };
        let mut tail = None;
        for (k, stmt) in stmts.iter().enumerate() {
            let last = k + 1 == stmts.len();
            // `if c { ...; return v; } rest` in the function body is
            // `if c { ...; v } else { rest }`: the early return becomes a branch.
            if is_body
                && !last
                && let syn::Stmt::Expr(Expr::If(i), _) = stmt
                && i.else_branch.is_none()
                && let Some(syn::Stmt::Expr(Expr::Return(r), _)) = i.then_branch.stmts.last()
                && let Some(value) = &r.expr
            {
                let mut rewritten = i.clone();
                let n = rewritten.then_branch.stmts.len();
                rewritten.then_branch.stmts[n - 1] = syn::Stmt::Expr((**value).clone(), None);
                let rest = syn::Block {
                    brace_token: Default::default(),
                    stmts: stmts[k + 1..].to_vec(),
                };
                let else_expr = Expr::Block(syn::ExprBlock {
                    attrs: Vec::new(),
                    label: None,
                    block: rest,
                });
                rewritten.else_branch = Some((Default::default(), Box::new(else_expr)));
                return self.if_expr(&rewritten, None, true, true);
            }
            match stmt {
                syn::Stmt::Expr(Expr::Return(_), _) | syn::Stmt::Expr(_, None) if last => {}
                other => {
                    self.block_stmt(other, is_body);
                    continue;
                }
            }
            match stmt {
                syn::Stmt::Local(local) => self.local(local),
                syn::Stmt::Item(item) if is_body => self.body_item(item),
                syn::Stmt::Item(item) => self.cx.error_spanned_by(
                    item,
                    "`#[grad]` does not support items (`const`, `fn`, `use`, ...) inside a nested block: declare them at the top level of the function body",
                ),
                syn::Stmt::Macro(m) => self.unsupported_macro(&m.mac),
                syn::Stmt::Expr(Expr::Return(r), _) if last && is_body => {
                    tail = Some(match &r.expr {
                        Some(e) => self.expr(e, None),
                        None => {
                            self.cx.error_spanned_by(r, "`#[grad]` needs the function to return a float; this `return` has no value");
                            dummy()
                        }
                    });
                }
                syn::Stmt::Expr(e, None) if last => tail = Some(self.expr(e, None)),
                syn::Stmt::Expr(e, _) => self.expr_stmt(e),
            }
        }
        tail.unwrap_or_else(|| {
            // A block that ends in a refused `return` has had its error.
            if let Some(syn::Stmt::Expr(Expr::Return(_), _)) = stmts.last() {
                return dummy();
            }
            let what = if is_body { "the function body" } else { "this block" };
            self.cx.error_at(
                stmts.last().map_or(span, |s| s.span()),
                format!("`#[grad]` needs {what} to end with the float value it returns (a tail expression or a final `return`)"),
            );
            dummy()
        })
    }

    /// One statement that is not the block's tail.
    /// An item in the function body, hoisted as it is. A helper `fn` returning a float
    /// is differentiated too (it gets `#[grad]`), so the function can call it.
    fn body_item(&mut self, item: &syn::Item) {
        let mut item = item.clone();
        if let syn::Item::Fn(f) = &mut item
            && let ReturnType::Type(_, ty) = &f.sig.output
            && (is_primitive_float_path(ty)
                || matches!(&**ty, Type::Path(p) if p.path.get_ident().is_some_and(|i| i == "f32" || i == "f64")))
            && !f.attrs.iter().any(|a| {
                a.path()
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "grad" || s.ident == "custom_vjp")
            })
        {
            f.attrs.push(syn::parse_quote!(#[::backprop::grad]));
        }
        self.items.push(item);
    }

    fn block_stmt(&mut self, stmt: &syn::Stmt, is_body: bool) {
        match stmt {
            syn::Stmt::Local(local) => self.local(local),
            syn::Stmt::Item(item) if is_body => self.body_item(item),
            syn::Stmt::Item(item) => self.cx.error_spanned_by(
                item,
                "`#[grad]` does not support items (`const`, `fn`, `use`, ...) inside a nested block: declare them at the top level of the function body",
            ),
            syn::Stmt::Macro(m) => self.unsupported_macro(&m.mac),
            syn::Stmt::Expr(e, _) => self.expr_stmt(e),
        }
    }

    /// A `let`. Statements nest (the loop an iterator reduction becomes, inside a
    /// `vec![..]` literal): each leaves `named_result` as it found it, so the `let`
    /// around it still recognises its own binding.
    fn local(&mut self, local: &syn::Local) {
        let mut names = Vec::new();
        pattern_names(&local.pat, &mut names);
        for n in &names {
            self.closures.remove(n);
        }
        match self.local_closure(local) {
            Ok(Some(closure)) => {
                // The closure shadows a local of its name bound before it in this scope.
                if let Some(scope) = self.scopes.last_mut() {
                    scope.remove(&names[0]);
                }
                self.closures.insert(names[0].clone(), closure);
                return;
            }
            Ok(None) => {}
            Err(()) => {
                self.poisoned.extend(names);
                return;
            }
        }
        let outer = self.named_result;
        let errors = self.cx.error_count();
        self.local_binding(local);
        self.named_result = outer;
        // A refused `let` poisons its name: later reads and assignments of it are
        // consequences of the one error, not errors of their own.
        for n in names {
            if self.cx.error_count() > errors {
                self.poisoned.insert(n);
            } else {
                self.poisoned.remove(&n);
            }
        }
    }

    /// `let act = |z: f64| z.tanh();`: a closure of plain parameters bound to a name is
    /// kept as syntax, with the locals it reads as they are now, and inlined where it is
    /// called (`act(x)` is `{ let z = x; z.tanh() }`), so each call is differentiated
    /// like the code it stands for.
    fn local_closure(&mut self, local: &syn::Local) -> Result<Option<LocalClosure>, ()> {
        let Pat::Ident(pi) = &local.pat else {
            return Ok(None);
        };
        let Some(init) = &local.init else {
            return Ok(None);
        };
        let mut init = &*init.expr;
        while let Expr::Paren(p) = init {
            init = &p.expr;
        }
        let Expr::Closure(c) = init else {
            return Ok(None);
        };
        let mut params = Vec::new();
        for input in &c.inputs {
            let p = match input {
                Pat::Type(pt) => &*pt.pat,
                other => other,
            };
            match p {
                Pat::Ident(i) if i.by_ref.is_none() && i.subpat.is_none() => {
                    params.push(i.ident.clone())
                }
                _ => {
                    self.cx.error_spanned_by(
                        input,
                        "`#[grad]` inlines a closure bound to a local at its calls; its parameters must be plain names (`|z: f64| ..`, `|a, b| ..`)",
                    );
                    return Err(());
                }
            }
        }
        if c.asyncness.is_some() || c.lifetimes.is_some() {
            return Ok(None);
        }
        // The body reads the captured locals as they are here (a `move` closure's copy;
        // a borrowing one sees the same values, since rustc allows no assignment while
        // it is borrowed). A closure that assigns to what it captured (`FnMut`) is not
        // the expression it stands for.
        let assigned = self.assigned_in(&syn::parse_quote!({ #c; }));
        if let Some(n) = assigned.first() {
            self.cx.error_spanned_by(
                c,
                format!("`#[grad]` inlines a closure bound to a local at its calls; this one assigns to `{n}`, which it captured: write the update where the closure is called"),
            );
            return Err(());
        }
        let mut reads = Vec::new();
        free_names(&c.body, &mut reads);
        let captures = reads
            .into_iter()
            .filter(|n| !params.iter().any(|p| p == n))
            .filter_map(|n| Some((n.clone(), self.lookup(&n)?)))
            .collect();
        Ok(Some(LocalClosure {
            name: pi.ident.clone(),
            params,
            body: (*c.body).clone(),
            captures,
        }))
    }

    /// A call of a closure bound to a local: its body, lowered with the parameters bound
    /// to the arguments.
    fn inline_closure(
        &mut self,
        cl: &LocalClosure,
        c: &syn::ExprCall,
        args: Vec<Operand>,
        want: Option<&Ident>,
    ) -> Operand {
        let name = &cl.name;
        if cl.params.len() != args.len() {
            self.cx.error_spanned_by(
                c,
                format!(
                    "the closure `{name}` takes {} argument(s), this call passes {}",
                    cl.params.len(),
                    args.len()
                ),
            );
            return dummy();
        }
        let span = c.span();
        let mut scope = HashMap::new();
        for (p, a) in cl.params.iter().zip(args) {
            let v = match a {
                Operand::Var(v) => v,
                other => match self.define(None, Rhs::Copy(other), span) {
                    Operand::Var(v) => v,
                    Operand::Const(_) => unreachable!("define makes a var"),
                },
            };
            scope.insert(p.to_string(), v);
        }
        // The body sees the locals it captured, then the parameters; a captured local
        // or a parameter named like a closure hides that closure (`let f = x * 2.0;
        // let f = |z| z * f;` reads the float).
        let saved = std::mem::take(&mut self.scopes);
        let mut outer: HashMap<String, VarId> = cl.captures.iter().cloned().collect();
        outer.extend(scope);
        let hidden: Vec<(String, LocalClosure)> = outer
            .keys()
            .filter_map(|n| Some((n.clone(), self.closures.remove(n)?)))
            .collect();
        self.scopes = vec![outer];
        let value = self.expr(&cl.body, want);
        self.scopes = saved;
        self.closures.extend(hidden);
        value
    }

    fn reads_poisoned(&self, e: &Expr) -> bool {
        use syn::visit::Visit;
        struct Find<'a> {
            poisoned: &'a HashSet<String>,
            found: bool,
        }
        impl<'v> Visit<'v> for Find<'_> {
            fn visit_expr_path(&mut self, p: &'v syn::ExprPath) {
                if let Some(i) = p.path.get_ident() {
                    self.found |= self.poisoned.contains(&i.to_string());
                }
            }
        }
        if self.poisoned.is_empty() {
            return false;
        }
        let mut f = Find {
            poisoned: &self.poisoned,
            found: false,
        };
        f.visit_expr(e);
        f.found
    }

    fn local_binding(&mut self, local: &syn::Local) {
        if let Some(init) = &local.init
            && let Some((_, diverge)) = &init.diverge
        {
            self.cx.error_spanned_by(
                diverge,
                format!("`let ... else` is not supported yet; {SUPPORTED}"),
            );
            return;
        }
        let (ident, ty) = match &local.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => (Some(&pi.ident), None),
            Pat::Type(pt) => match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                    (Some(&pi.ident), Some((*pt.ty).clone()))
                }
                Pat::Wild(_) => (None, Some((*pt.ty).clone())),
                other => return self.bad_pattern(other),
            },
            Pat::Wild(_) => (None, None),
            Pat::Tuple(t) if local.init.is_some() && t.elems.iter().all(is_plain_binding) => {
                return self.tuple_of_data(t, local);
            }
            other => return self.bad_pattern(other),
        };
        let Some(init) = &local.init else {
            self.cx.error_spanned_by(
                local,
                "`#[grad]` needs every `let` to have an initial value (`let x = ...;`); declare and assign in one statement",
            );
            return;
        };
        self.named_result = None;
        let value = self.expr(&init.expr, ident);
        let Some(ident) = ident else { return };
        let var = match value {
            Operand::Var(v) if self.named_result == Some(v) => v,
            // The tail of a block (`let y = { z.exp() };`): a temporary defined just now
            // and read nowhere else takes the binding's name instead of being moved into
            // a copy (the tape may still read it).
            Operand::Var(v) if self.is_fresh_temp(v) => {
                let fresh = self.user_var(ident);
                self.vars[v.0].name = self.vars[fresh.0].name.clone();
                v
            }
            // `let b = a;` copies an array (`[f64; N]`): a new buffer, as `to_vec` makes.
            Operand::Var(b) if self.buffers.contains(&b) && self.is_array_valued(b) => {
                let span = init.expr.span();
                let len = self.define(
                    None,
                    Rhs::ZeroDerivative {
                        spelling: Spelling::Method(Ident::new("len", span)),
                        args: vec![Operand::Var(b)],
                    },
                    span,
                );
                let v = self.new_buffer_var(
                    Some(ident),
                    BufOp::ToVec,
                    vec![Operand::Var(b), len],
                    span,
                );
                let v = v.var().expect("a new value");
                self.array_params.insert(v);
                v
            }
            // `let y = x;` of a `Vec` or a slice: another name for the same elements.
            Operand::Var(b) if self.buffers.contains(&b) => {
                let v = self.alias(Operand::Var(b), Some(ident), init.expr.span());
                v.var().expect("a new value")
            }
            other => {
                let v = self.user_var(ident);
                self.body.push(Stmt {
                    def: v,
                    rhs: Rhs::Copy(other),
                    span: init.expr.span(),
                    ty: None,
                    source: String::new(),
                    compound: false,
                });
                v
            }
        };
        if let Some(stmt) = self.body.last_mut()
            && stmt.def == var
        {
            stmt.ty = ty;
        }
        self.scopes
            .last_mut()
            .expect("scope")
            .insert(ident.to_string(), var);
    }

    /// `let (n, d) = x.dim();`: each name is an element of the tuple, data without a
    /// derivative (a tuple of active values is refused where it is made).
    fn tuple_of_data(&mut self, t: &syn::PatTuple, local: &syn::Local) {
        let init = &local.init.as_ref().expect("checked by the caller").expr;
        let span = init.span();
        let tuple = self.expr(init, None);
        for (k, elem) in t.elems.iter().enumerate() {
            let Pat::Ident(pi) = elem else { continue };
            let index = syn::Index {
                index: k as u32,
                span,
            };
            let v = self.define(
                Some(&pi.ident),
                Rhs::NoRule {
                    spelling: Spelling::TupleField(index),
                    at: init.to_token_stream(),
                    args: vec![tuple.clone()],
                    why: format!(
                        "`#[grad]` destructures a tuple of data (`let (n, d) = x.dim();`); `{}` carries a derivative",
                        pretty(&init.to_token_stream())
                    ),
                },
                pi.ident.span(),
            );
            if let Operand::Var(v) = v {
                self.scopes
                    .last_mut()
                    .expect("scope")
                    .insert(pi.ident.to_string(), v);
            }
        }
    }

    fn bad_pattern(&self, pat: &Pat) {
        self.cx.error_spanned_by(
            pat,
            format!("`#[grad]` supports `let` with a name (`let x`, `let mut x`, `let x: f64`) or `_`; this pattern is not supported yet; {SUPPORTED}"),
        );
    }

    fn expr_stmt(&mut self, e: &Expr) {
        if self.reads_poisoned(e) {
            return;
        }
        let outer = self.named_result;
        self.expr_stmt_inner(e);
        self.named_result = outer;
    }

    fn expr_stmt_inner(&mut self, e: &Expr) {
        match e {
            Expr::Assign(a) if matches!(&*a.left, Expr::Index(_)) => {
                self.store(&a.left, None, &a.right, e);
            }
            Expr::Binary(b) if compound(&b.op).is_some() && matches!(&*b.left, Expr::Index(_)) => {
                self.store(&b.left, compound(&b.op), &b.right, e);
            }
            Expr::Assign(a) => {
                let Some(name) = self.assign_target(&a.left) else {
                    return;
                };
                let value = self.expr(&a.right, Some(&name));
                let var = match value {
                    Operand::Var(v) if self.named_result == Some(v) => v,
                    other => {
                        let v = self.user_var(&name);
                        self.body.push(Stmt {
                            def: v,
                            rhs: Rhs::Copy(other),
                            span: a.right.span(),
                            ty: None,
                            source: String::new(),
                            compound: false,
                        });
                        v
                    }
                };
                self.named_result = None;
                self.rebind(&name.to_string(), var);
            }
            Expr::Binary(b) if compound(&b.op).is_some() => {
                let (prim, op) = compound(&b.op).expect("checked");
                let Some(name) = self.assign_target(&b.left) else {
                    return;
                };
                let old = Operand::Var(
                    self.lookup(&name.to_string())
                        .expect("assign_target checks"),
                );
                let rhs = self.expr(&b.right, None);
                let out = self.define(
                    Some(&name),
                    Rhs::Prim {
                        prim,
                        spelling: Spelling::Operator(op),
                        args: vec![old, rhs],
                    },
                    e.span(),
                );
                if let Some(last) = self.body.last_mut() {
                    last.compound = true;
                    last.source = pretty(&e.to_token_stream());
                }
                self.named_result = None;
                if let Operand::Var(v) = out {
                    self.rebind(&name.to_string(), v);
                }
            }
            Expr::Return(r) => {
                self.cx.error_spanned_by(
                    r,
                    format!("`#[grad]` supports `return` as the last statement of the function, as the last statement of an `if` without `else` in the function body (`if c {{ return v; }}`), and as a statement inside a loop of the function body; {SUPPORTED}"),
                );
            }
            Expr::If(i) if self.mentions_local(e) => {
                let _ = self.if_expr(i, None, false, false);
            }
            Expr::ForLoop(f) if f.label.is_none() => {
                let _ = self.loop_with_jumps(LoopSyntax::For(f), None);
            }
            Expr::While(w) if w.label.is_none() => {
                let _ = self.loop_with_jumps(LoopSyntax::While(w), None);
            }
            Expr::Loop(l) if l.label.is_none() => {
                let _ = self.loop_with_jumps(LoopSyntax::Loop(l), None);
            }
            Expr::Match(m) => {
                let _ = self.match_expr(m, None, false);
            }
            Expr::ForLoop(syn::ExprForLoop { label: Some(l), .. })
            | Expr::While(syn::ExprWhile { label: Some(l), .. })
            | Expr::Loop(syn::ExprLoop { label: Some(l), .. }) => {
                self.cx.error_spanned_by(
                    l,
                    "`#[grad]` does not support labelled loops yet (a labelled `break` leaves several loops at once); restructure with a flag, or move the inner loop into a `#[grad]` helper",
                );
            }
            Expr::Block(b) if b.label.is_none() => {
                // A block used as a statement: its value (if any) is discarded.
                self.scopes.push(HashMap::new());
                for (k, stmt) in b.block.stmts.iter().enumerate() {
                    match stmt {
                        syn::Stmt::Expr(e, None) if k + 1 == b.block.stmts.len() => {
                            self.expr_stmt(e)
                        }
                        _ => self.block_stmt(stmt, false),
                    }
                }
                self.scopes.pop();
            }
            other => {
                let _ = self.expr(other, None);
            }
        }
    }

    fn assign_target(&self, left: &Expr) -> Option<Ident> {
        if let Expr::Path(p) = left
            && let Some(i) = p.path.get_ident()
            && p.qself.is_none()
            && self.lookup(&i.to_string()).is_some()
        {
            return Some(i.clone());
        }
        self.cx.error_spanned_by(
            left,
            format!("`#[grad]` supports assignment to a local variable (`x = ...`, `x += ...`); assigning to `{}` is not supported yet", left.to_token_stream()),
        );
        None
    }

    // ---- expressions ----------------------------------------------------------------

    /// Lowers `e` to an operand; the operation at its top (if any) defines `want`.
    fn expr(&mut self, e: &Expr, want: Option<&Ident>) -> Operand {
        // A local whose `let` was refused has had its error; what reads it has none.
        if self.reads_poisoned(e) {
            return dummy();
        }
        if let Expr::Path(p) = e
            && let Some(i) = p.path.get_ident()
            && self.closures.contains_key(&i.to_string())
        {
            self.cx.error_spanned_by(
                e,
                format!("`{i}` is a closure bound to a local: `#[grad]` inlines it where it is called (`{i}(x)`), and cannot pass it as a value; call it, or make it a `#[grad]` function"),
            );
            return dummy();
        }
        if let Some(v) = self.new_buffer(e, want) {
            return v;
        }
        if let Expr::Macro(m) = e
            && let Some(v) = self.join_macro(m, want)
        {
            return v;
        }
        if let Expr::Macro(m) = e
            && m.mac
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "matches")
        {
            return self.matches_macro(m, want);
        }
        if let Expr::Match(m) = e {
            return self.match_expr(m, want, true);
        }
        if !self.mentions_local(e) {
            return match e {
                Expr::Return(_)
                | Expr::Macro(_)
                | Expr::Break(_)
                | Expr::Continue(_)
                | Expr::Yield(_) => self.unsupported(e),
                _ if is_inline_constant(e) => Operand::Const(e.clone()),
                // Evaluated once, where the user wrote it: the reverse pass reads the
                // value, never re-runs the expression (it may have effects: a call, an
                // RNG draw), and statements keep their order.
                _ => self.define(want, Rhs::Copy(Operand::Const(e.clone())), e.span()),
            };
        }
        let span = e.span();
        match e {
            Expr::Path(p) => match p.path.get_ident().and_then(|i| self.lookup(&i.to_string())) {
                Some(v) => Operand::Var(v),
                None => Operand::Const(e.clone()),
            },
            Expr::Paren(p) => self.expr(&p.expr, want),
            Expr::Group(g) => self.expr(&g.expr, want),
            Expr::Binary(b) => self.binary(b, want),
            Expr::Unary(u) => match u.op {
                UnOp::Neg(_) => {
                    let x = self.expr(&u.expr, None);
                    self.define(
                        want,
                        Rhs::Prim {
                            prim: op::NEG,
                            spelling: Spelling::Unary(u.op),
                            args: vec![x],
                        },
                        span,
                    )
                }
                // `*v` (an element reached through an iterator, or a borrow): the value.
                UnOp::Deref(_) => self.expr(&u.expr, want),
                UnOp::Not(_) => {
                    let x = self.expr(&u.expr, None);
                    self.define(
                        want,
                        Rhs::ZeroDerivative {
                            spelling: Spelling::Unary(u.op),
                            args: vec![x],
                        },
                        span,
                    )
                }
                _ => self.unsupported(e),
            },
            Expr::Reference(r) if r.mutability.is_none() && self.is_field_of_place(&r.expr) => {
                self.place(&r.expr, want)
            }
            // `let layer = &p.layers[i];` with `layer.w` read later: a struct place.
            Expr::Reference(r)
                if r.mutability.is_none()
                    && matches!(&*r.expr, Expr::Index(_))
                    && want.is_some_and(|w| self.field_bases.contains(&w.to_string()))
                    && self.is_place_expr(&r.expr) =>
            {
                self.place(&r.expr, want)
            }
            Expr::Reference(r) if r.mutability.is_none() && self.is_buffer_expr(&r.expr) => {
                if is_range_index(&r.expr) {
                    return self.expr(&r.expr, want);
                }
                let x = self.expr(&r.expr, None);
                self.new_buffer_var(want, BufOp::Borrow, vec![x], span)
            }
            Expr::Index(ix) if self.is_buffer_expr(&ix.expr) => self.index(ix, want),
            // `p.b`: the value of a field of a struct argument.
            Expr::Field(f) if self.is_place_expr(&f.base) => {
                let base = self.place(&f.base, None);
                self.define(
                    want,
                    Rhs::Buffer {
                        op: BufOp::FieldRead(f.member.clone()),
                        args: vec![base],
                    },
                    span,
                )
            }
            Expr::Index(_) => self.data_index(e, Spelling::Index, want),
            // `&labels[1..]`: borrowed together, since the place alone has no size.
            Expr::Reference(r) if r.mutability.is_none() && matches!(&*r.expr, Expr::Index(_)) => {
                self.data_index(&r.expr, Spelling::RefIndex, want)
            }
            Expr::Reference(r) if r.mutability.is_none() => {
                let x = self.expr(&r.expr, None);
                self.define(
                    want,
                    Rhs::Prim {
                        prim: op::REF,
                        spelling: Spelling::Ref,
                        args: vec![x],
                    },
                    span,
                )
            }
            Expr::MethodCall(m) => self.method_call(m, want),
            Expr::Call(c) => self.call(c, want),
            Expr::Cast(c) => {
                let x = self.expr(&c.expr, None);
                let spelling = Spelling::Cast(c.ty.clone());
                let to_int = matches!(&*c.ty, Type::Path(p) if p.path.get_ident().is_some_and(|i| op::is_integer_type_name(&i.to_string())));
                let rhs = if to_int {
                    Rhs::ZeroDerivative {
                        spelling,
                        args: vec![x],
                    }
                } else {
                    Rhs::NoRule {
                        spelling,
                        at: e.to_token_stream(),
                        args: vec![x],
                        why: format!(
                            "`{}` converts an active value with `as`, which `#[grad]` cannot differentiate yet (casts to integers are fine: their derivative is 0); keep the whole function in one float type",
                            e.to_token_stream()
                        ),
                    }
                };
                self.define(want, rhs, span)
            }
            Expr::Block(b) if b.label.is_none() => {
                self.scopes.push(HashMap::new());
                let v = self.block_value(&b.block.stmts, b.block.span(), false);
                self.scopes.pop();
                v
            }
            Expr::If(i) => self.if_expr(i, want, true, false),
            Expr::Loop(l) if l.label.is_none() => self.loop_with_jumps(LoopSyntax::Loop(l), want),
            _ => self.unsupported(e),
        }
    }

    /// `if c { .. } else { .. }` in SSA form: each branch is lowered into its own body,
    /// starting from the same bindings; every local either branch reassigns, and the
    /// branch's value when it is used as an expression, becomes an output (a φ-node)
    /// rebound after the `if`. `else_is_body` marks the rewritten rest of the function
    /// after an early `return` (its own `return`s are allowed).
    fn if_expr(
        &mut self,
        i: &syn::ExprIf,
        want: Option<&Ident>,
        needs_value: bool,
        else_is_body: bool,
    ) -> Operand {
        let span = i.span();
        if let Expr::Let(l) = &*i.cond {
            // `if let Some(m) = mask { .. }` on an `Option` of data (an argument of
            // type `Option<&Array2<f64>>` is never differentiated): the `if` it means,
            // `if opt.is_some() { let m = opt.unwrap(); .. }`.
            if let Pat::TupleStruct(ts) = &*l.pat
                && ts.path.is_ident("Some")
                && ts.elems.len() == 1
                && let Some(Pat::Ident(bind)) = ts.elems.first()
                && bind.by_ref.is_none()
                && bind.subpat.is_none()
            {
                let opt = self.names.fresh("option", span);
                let e = &l.expr;
                let value = quote::quote!(::backprop::__private::option_ref(#e));
                let local: syn::Stmt = syn::parse_quote_spanned!(span=> let #opt = #value;);
                self.block_stmt(&local, false);
                let x = &bind.ident;
                let then_stmts = &i.then_branch.stmts;
                let mut rewritten = i.clone();
                *rewritten.cond = syn::parse_quote_spanned!(span=> #opt.is_some());
                rewritten.then_branch =
                    syn::parse_quote_spanned!(span=> { let #x = #opt.unwrap(); #(#then_stmts)* });
                return self.if_expr(&rewritten, want, needs_value, else_is_body);
            }
            self.cx.error_spanned_by(
                l,
                format!("`#[grad]` supports `if let Some(x) = option` on an `Option` of data (an argument is never differentiated through an `Option`); other `if let` patterns are not supported: write a `match` on a value without a derivative, or `if`; {SUPPORTED}"),
            );
            return dummy();
        }
        let cond = self.expr(&i.cond, None);
        self.read_cache.clear();
        let before = self.scopes.clone();
        let outer_body = std::mem::take(&mut self.body);
        // then
        self.scopes.push(HashMap::new());
        let then_val = if needs_value {
            Some(self.block_value(&i.then_branch.stmts, i.then_branch.span(), false))
        } else {
            for stmt in &i.then_branch.stmts {
                match stmt {
                    syn::Stmt::Expr(e, None) => self.expr_stmt(e),
                    other => self.block_stmt(other, false),
                }
            }
            None
        };
        self.scopes.pop();
        let then_body = std::mem::take(&mut self.body);
        self.read_cache.clear();
        let then_scopes = std::mem::replace(&mut self.scopes, before.clone());
        // else
        let else_val = match &i.else_branch {
            Some((_, else_expr)) => match (&**else_expr, needs_value) {
                // The rest of the body after an early `return` is a scope of its own:
                // its `let`s (a buffer shadowed, say) are not rebindings the `if` merges.
                (Expr::Block(b), true) if else_is_body => {
                    self.scopes.push(HashMap::new());
                    let v = self.block_value(&b.block.stmts, b.block.span(), true);
                    self.scopes.pop();
                    Some(v)
                }
                (e, true) => Some(self.expr(e, None)),
                (e, false) => {
                    self.expr_stmt(e);
                    None
                }
            },
            None if needs_value => {
                self.cx.error_spanned_by(
                    i,
                    "`#[grad]` needs an `if` used as a value to have an `else` branch",
                );
                Some(dummy())
            }
            None => None,
        };
        let else_body = std::mem::replace(&mut self.body, outer_body);
        self.read_cache.clear();
        let else_scopes = std::mem::replace(&mut self.scopes, before.clone());
        // φ-nodes: the value, then every outer local a branch rebound.
        let mut outs = Vec::new();
        let mut value = None;
        if let (Some(t), Some(e)) = (then_val, else_val) {
            let def = match want {
                Some(ident) => {
                    let v = self.user_var(ident);
                    self.named_result = Some(v);
                    v
                }
                None => {
                    let name = self.names.temp(span);
                    self.new_var(name)
                }
            };
            outs.push(IfOut {
                def,
                then_val: t,
                else_val: e,
            });
            value = Some(def);
        }
        let mut rebinds = Vec::new();
        for (level, scope) in before.iter().enumerate() {
            let mut names: Vec<&String> = scope.keys().collect();
            names.sort();
            for name in names {
                let old = scope[name];
                let t = then_scopes[level][name];
                let e = else_scopes[level][name];
                if t == old && e == old {
                    continue;
                }
                if self.buffers.contains(&old) {
                    self.cx.error_at(
                        span,
                        format!("`#[grad]` does not support assigning a whole buffer (`{name} = ...`) inside a branch yet; write its elements instead (`{name}.copy_from_slice(&new)`, `{name}[i] = ...`)"),
                    );
                }
                let ident = if let Some(raw) = name.strip_prefix("r#") {
                    Ident::new_raw(raw, span)
                } else {
                    Ident::new(name, span)
                };
                let first = false;
                let fresh = self.names.claim_user(&ident, first);
                let def = self.new_var(fresh);
                outs.push(IfOut {
                    def,
                    then_val: Operand::Var(t),
                    else_val: Operand::Var(e),
                });
                rebinds.push((level, name.clone(), def));
            }
        }
        for (level, name, def) in rebinds {
            self.scopes[level].insert(name, def);
        }
        let tape = self.names.fresh("branch", span);
        let def = self.new_var(tape);
        self.body.push(Stmt {
            def,
            rhs: Rhs::If(Box::new(IfNode {
                cond,
                then_body,
                else_body,
                outs,
            })),
            span,
            ty: None,
            source: String::new(),
            compound: false,
        });
        value.map_or_else(dummy, Operand::Var)
    }

    /// The outer locals a loop body assigns to (`x = ...`, `x += ...`), sorted: the
    /// values the loop carries from one iteration to the next.
    fn assigned_in(&self, body: &syn::Block) -> Vec<String> {
        struct Finder<'s, 'a> {
            lw: &'s Lowerer<'a>,
            found: std::collections::BTreeSet<String>,
        }
        impl<'ast> Visit<'ast> for Finder<'_, '_> {
            fn visit_expr_assign(&mut self, a: &'ast syn::ExprAssign) {
                if let Expr::Path(p) = &*a.left
                    && let Some(i) = p.path.get_ident()
                    && self.lw.lookup(&i.to_string()).is_some()
                {
                    self.found.insert(i.to_string());
                }
                syn::visit::visit_expr_assign(self, a);
            }
            fn visit_expr_binary(&mut self, b: &'ast syn::ExprBinary) {
                if compound(&b.op).is_some()
                    && let Expr::Path(p) = &*b.left
                    && let Some(i) = p.path.get_ident()
                    && self.lw.lookup(&i.to_string()).is_some()
                {
                    self.found.insert(i.to_string());
                }
                syn::visit::visit_expr_binary(self, b);
            }
        }
        let mut f = Finder {
            lw: self,
            found: Default::default(),
        };
        f.visit_block(body);
        f.found.into_iter().collect()
    }

    fn ident_of(name: &str, span: Span) -> Ident {
        match name.strip_prefix("r#") {
            Some(raw) => Ident::new_raw(raw, span),
            None => Ident::new(name, span),
        }
    }

    /// Lowers a loop: binds each carried local to its `entry` value in a new scope,
    /// lowers `head` (a `while` condition) then the body, and rebinds the carried
    /// locals to their `out` values after the loop.
    fn lower_loop(
        &mut self,
        body: &syn::Block,
        span: Span,
        head: impl FnOnce(&mut Self) -> LoopHeadDraft,
    ) {
        let carried_names = self.assigned_in(body);
        let inits: Vec<(String, VarId)> = carried_names
            .iter()
            .filter_map(|n| Some((n.clone(), self.lookup(n)?)))
            .collect();
        for (name, v) in &inits {
            if self.buffers.contains(v) {
                self.cx.error_at(
                    span,
                    format!("`#[grad]` does not support assigning a whole buffer (`{name} = ...`) inside a loop yet; write its elements instead (`{name}.copy_from_slice(&new)`, `{name}[i] = ...`)"),
                );
            }
        }
        let outer_body = std::mem::take(&mut self.body);
        self.read_cache.clear();
        self.scopes.push(HashMap::new());
        let mut entries = Vec::new();
        for (name, _) in &inits {
            let ident = Self::ident_of(name, span);
            let fresh = self.names.claim_user(&ident, false);
            let v = self.new_var(fresh);
            self.scopes
                .last_mut()
                .expect("scope")
                .insert(name.clone(), v);
            entries.push(v);
        }
        let draft = head(self);
        let head_len = self.body.len();
        // The body's own `let`s live in a scope of their own: `let c = ..;` in the body
        // shadows the carried `c` for the rest of that iteration only, while `c = ..;`
        // before it assigns the carried value.
        self.scopes.push(HashMap::new());
        for stmt in &body.stmts {
            match stmt {
                syn::Stmt::Expr(e, None) => self.expr_stmt(e),
                other => self.block_stmt(other, false),
            }
        }
        self.scopes.pop();
        let exits: Vec<VarId> = inits
            .iter()
            .map(|(n, _)| self.lookup(n).expect("carried local"))
            .collect();
        self.scopes.pop();
        self.read_cache.clear();
        let body_stmts = std::mem::replace(&mut self.body, outer_body);
        let mut carried = Vec::new();
        for ((name, init), (entry, exit)) in inits.iter().zip(entries.into_iter().zip(exits)) {
            let ident = Self::ident_of(name, span);
            let fresh = self.names.claim_user(&ident, false);
            let out = self.new_var(fresh);
            carried.push(Carried {
                init: Operand::Var(*init),
                entry,
                exit: Operand::Var(exit),
                out,
            });
            self.rebind(name, out);
        }
        let head = match draft {
            LoopHeadDraft::For {
                index,
                range,
                double_ended,
            } => {
                let names = super::idents(&range);
                let bounds: Vec<VarId> = (0..self.vars.len())
                    .filter(|v| names.contains(&self.vars[*v].name.to_string()))
                    .map(VarId)
                    .collect();
                LoopHead::For {
                    index,
                    range,
                    bounds,
                    double_ended,
                }
            }
            LoopHeadDraft::While(cond) => LoopHead::While { cond, head_len },
        };
        let tape = self.names.fresh("iterations", span);
        let def = self.new_var(tape);
        self.body.push(Stmt {
            def,
            rhs: Rhs::Loop(Box::new(LoopNode {
                head,
                body: body_stmts,
                carried,
            })),
            span,
            ty: None,
            source: String::new(),
            compound: false,
        });
    }

    /// `for i in a..b`, `a..=b`, `(a..b).rev()`, `(a..b).step_by(k)`: the bounds are
    /// lowered (they may read locals), the index is a new (inactive) local.
    fn for_loop(&mut self, f: &syn::ExprForLoop) {
        let span = f.span();
        if let Some(indexed) = self.struct_collection_loop(f) {
            return self.for_loop(&indexed);
        }
        if let Some(chain) = self.chain(&f.expr, true) {
            return self.for_over_chain(chain, &f.pat, &f.body.stmts, span);
        }
        if let Expr::MethodCall(m) = &*f.expr
            && let Some(bad) = self.unsupported_adaptor(m)
        {
            self.cx.error_spanned_by(
                &bad.method,
                format!(
                    "`.{}()` on an iterator over a buffer is not supported by `#[grad]`; a `for` loop runs over `x`, `x.iter()` with `.copied()`, `.cloned()`, `.rev()`, `.enumerate()`, `.zip(..)`, `.map(|v| ..)`, or an integer range",
                    bad.method
                ),
            );
            return;
        }
        let Some(range) = self.range_tokens(&f.expr) else {
            self.cx.error_spanned_by(
                &f.expr,
                format!("`#[grad]` supports `for` over integer ranges (`a..b`, `a..=b`, `(a..b).rev()`, `(a..b).step_by(k)`) and over buffers of floats (`for v in x`, `x.iter()`, `.copied()`, `.rev()`, `.enumerate()`, `.zip(y)`, `.map(|v| ..)`); {SUPPORTED}"),
            );
            return;
        };
        let index_ident = match &*f.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => Some(pi.ident.clone()),
            Pat::Wild(_) => None,
            other => {
                self.cx.error_spanned_by(
                    other,
                    "`#[grad]` needs a `for` over a range to bind its index to a name or `_`",
                );
                return;
            }
        };
        self.lower_loop(&f.body, span, move |lw| {
            let name = match &index_ident {
                Some(i) => lw.names.claim_user(i, false),
                None => lw.names.fresh("_i", span),
            };
            let index = lw.new_var(name);
            if let Pat::Ident(pi) = &*f.pat {
                lw.scopes
                    .last_mut()
                    .expect("scope")
                    .insert(pi.ident.to_string(), index);
            }
            LoopHeadDraft::For {
                index,
                range,
                double_ended: double_ended(&f.expr),
            }
        });
    }

    /// `for layer in &p.layers { .. layer.w .. }` (also `p.layers.iter()`, and
    /// `for (i, layer) in p.layers.iter().enumerate()`) over a collection of structs
    /// of parameters: the index loop it means, `for i in 0..p.layers.len() { let layer =
    /// &p.layers[i]; .. }`, whose `layer` is a place (its adjoint is `d_p.layers[i]`).
    /// Recognised when the loop variable's fields are read (a float has none).
    fn struct_collection_loop(&mut self, f: &syn::ExprForLoop) -> Option<syn::ExprForLoop> {
        let (index, elem, enumerated) = match &*f.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                (None, pi.ident.clone(), false)
            }
            Pat::Tuple(t) if t.elems.len() == 2 => {
                let Pat::Ident(x) = &t.elems[1] else {
                    return None;
                };
                let i = match &t.elems[0] {
                    Pat::Ident(i) => Some(i.ident.clone()),
                    Pat::Wild(_) => None,
                    _ => return None,
                };
                (i, x.ident.clone(), true)
            }
            _ => return None,
        };
        if !self.field_bases.contains(&elem.to_string()) {
            return None;
        }
        let mut e = &*f.expr;
        if enumerated {
            match e {
                Expr::MethodCall(m) if m.method == "enumerate" && m.args.is_empty() => {
                    e = &m.receiver
                }
                _ => return None,
            }
        }
        let coll = match e {
            Expr::Reference(r) if r.mutability.is_none() => &*r.expr,
            Expr::MethodCall(m) if m.method == "iter" && m.args.is_empty() => &*m.receiver,
            other => other,
        };
        if !self.is_place_expr(coll) {
            return None;
        }
        let span = f.span();
        let k = index.unwrap_or_else(|| self.names.fresh("layer_index", span));
        let stmts = &f.body.stmts;
        let label = &f.label;
        Some(syn::parse_quote_spanned! {span=>
            #label for #k in 0..#coll.len() {
                let #elem = &#coll[#k];
                #(#stmts)*
            }
        })
    }

    /// The tokens of a supported range, with its bounds lowered to operands.
    fn range_tokens(&mut self, e: &Expr) -> Option<proc_macro2::TokenStream> {
        match e {
            Expr::Paren(p) => self.range_tokens(&p.expr).map(|t| quote::quote!((#t))),
            // A range passed through a `macro_rules!` `$r:expr` arrives in an invisible group.
            Expr::Group(g) => self.range_tokens(&g.expr).map(|t| quote::quote!((#t))),
            Expr::Range(r) => {
                let start = r.start.as_ref().map(|s| self.expr(s, None));
                let end = r.end.as_ref().map(|s| self.expr(s, None));
                let (start, end) = (start?, end?);
                let [a, b] = [start, end].map(|o| match o {
                    Operand::Var(v) => self.vars[v.0].name.to_token_stream(),
                    Operand::Const(c) => quote::quote!((#c)),
                });
                let limits = &r.limits;
                Some(quote::quote!(#a #limits #b))
            }
            Expr::MethodCall(m) if m.method == "rev" && m.args.is_empty() => {
                let inner = self.range_tokens(&m.receiver)?;
                Some(quote::quote!((#inner).rev()))
            }
            Expr::MethodCall(m) if m.method == "step_by" && m.args.len() == 1 => {
                let inner = self.range_tokens(&m.receiver)?;
                let k = match self.expr(&m.args[0], None) {
                    Operand::Var(v) => self.vars[v.0].name.to_token_stream(),
                    Operand::Const(c) => quote::quote!((#c)),
                };
                Some(quote::quote!((#inner).step_by(#k)))
            }
            _ => None,
        }
    }

    /// `while cond { .. }`: the condition is re-evaluated at the top of every iteration.
    fn while_loop(&mut self, w: &syn::ExprWhile) {
        if let Expr::Let(l) = &*w.cond {
            self.cx.error_spanned_by(
                l,
                format!("`while let` is not supported by `#[grad]` yet; {SUPPORTED}"),
            );
            return;
        }
        let cond = (*w.cond).clone();
        self.lower_loop(&w.body, w.span(), move |lw| {
            LoopHeadDraft::While(lw.expr(&cond, None))
        });
    }

    /// `matches!(x, PAT)`: a bool with derivative 0 (`x` is evaluated once).
    fn matches_macro(&mut self, m: &syn::ExprMacro, want: Option<&Ident>) -> Operand {
        let parsed = m.mac.parse_body_with(|input: syn::parse::ParseStream<'_>| {
            let e: Expr = input.parse()?;
            let _: syn::Token![,] = input.parse()?;
            let pat = Pat::parse_multi_with_leading_vert(input)?;
            let _: Option<syn::Token![,]> = input.parse()?;
            if !input.is_empty() {
                return Err(input.error("a guard"));
            }
            Ok((e, pat))
        });
        let Ok((scrutinee, pat)) = parsed else {
            self.cx.error_spanned_by(
                m,
                "`#[grad]` supports `matches!(value, PATTERN)` without a guard; write the guard with `&&` after it",
            );
            return dummy();
        };
        let x = self.expr(&scrutinee, None);
        self.define(
            want,
            Rhs::ZeroDerivative {
                spelling: Spelling::Matches(pat.to_token_stream()),
                args: vec![x],
            },
            m.span(),
        )
    }

    /// `match` on a value that carries no derivative (an integer, an enum, a
    /// comparison), as the `if` chain it is: arm k runs when
    /// `matches!(x, PAT_k) && guard_k` and no earlier arm did. A last arm whose pattern
    /// always matches (`_`, a name) is the `else`. Arms may bind the whole value to a
    /// name (`n => ..`), not parts of it.
    fn match_expr(
        &mut self,
        m: &syn::ExprMatch,
        want: Option<&Ident>,
        needs_value: bool,
    ) -> Operand {
        let span = m.span();
        let scrutinee = self.names.fresh("scrutinee", span);
        let value = &m.expr;
        let local: syn::Stmt = syn::parse_quote_spanned!(span=> let #scrutinee = #value;);
        self.block_stmt(&local, false);
        let mut arms: Vec<(Option<Expr>, Expr)> = Vec::new();
        for (k, arm) in m.arms.iter().enumerate() {
            let last = k + 1 == m.arms.len();
            let (binding, pat) = match &arm.pat {
                Pat::Ident(pi)
                    if pi.subpat.is_none()
                        && pi.by_ref.is_none()
                        && !pi.ident.to_string().starts_with(char::is_uppercase) =>
                {
                    (Some(pi.ident.clone()), None)
                }
                Pat::Wild(_) => (None, None),
                p => (None, Some(p.clone())),
            };
            if let Some(p) = &pat
                && binds_names(p)
            {
                self.cx.error_spanned_by(
                    p,
                    "`#[grad]` supports `match` arms whose patterns bind no names (literals, ranges, `_`, enum variants without fields, `|`), or bind the whole value (`n => ..`); take the parts apart before the `match`",
                );
                return dummy();
            }
            let body = &arm.body;
            let body: Expr = match &binding {
                Some(b) => {
                    syn::parse_quote_spanned!(arm.body.span()=> { let #b = #scrutinee; #body })
                }
                None => syn::parse_quote_spanned!(arm.body.span()=> { #body }),
            };
            let cond: Option<Expr> = match (&pat, &arm.guard) {
                (None, None) => None,
                (Some(p), None) => {
                    Some(syn::parse_quote_spanned!(span=> ::core::matches!(#scrutinee, #p)))
                }
                (Some(p), Some((_, g))) => {
                    Some(syn::parse_quote_spanned!(span=> ::core::matches!(#scrutinee, #p) && (#g)))
                }
                (None, Some((_, g))) => match &binding {
                    Some(b) => Some(syn::parse_quote_spanned!(span=> { let #b = #scrutinee; #g })),
                    None => Some(syn::parse_quote_spanned!(span=> #g)),
                },
            };
            let cond = if last && arm.guard.is_none() {
                None
            } else {
                cond
            };
            let catch_all = cond.is_none();
            arms.push((cond, body));
            if catch_all {
                if !last {
                    self.cx.error_spanned_by(
                        &m.arms[k + 1].pat,
                        "`#[grad]`: this arm is unreachable (an earlier arm matches every value)",
                    );
                    return dummy();
                }
                break;
            }
        }
        // Fold from the last arm: `if c1 { b1 } else if c2 { b2 } else { b3 }`.
        let mut iter = arms.into_iter().rev();
        let Some((last_cond, last_body)) = iter.next() else {
            self.cx
                .error_spanned_by(m, "`#[grad]` needs a `match` to have an arm");
            return dummy();
        };
        let mut chain: Expr = match last_cond {
            // Exhaustive without a catch-all (rustc checks the original function): the
            // last arm is the `else`.
            Some(_) | None => last_body,
        };
        for (cond, body) in iter {
            let cond = cond.expect("only the last arm may match everything");
            chain = syn::parse_quote_spanned!(span=> if #cond #body else #chain);
        }
        match chain {
            Expr::If(i) => self.if_expr(&i, want, needs_value, false),
            Expr::Block(b) if needs_value => self.expr(&Expr::Block(b), want),
            Expr::Block(b) => {
                self.expr_stmt(&Expr::Block(b));
                dummy()
            }
            _ => unreachable!("arms are blocks"),
        }
    }

    /// Loops with `break` (also `break value` out of a `loop`) and `continue`, as the
    /// flags they mean: `break` sets `done`, `continue` sets `skip`, and every
    /// statement after a jump runs under `if !done && !skip { .. }`. A `while` then
    /// tests `!done` first, a `loop` is `while !done`, and a `for` runs its remaining
    /// iterations without doing anything (each records one skipped branch).
    fn loop_with_jumps(&mut self, syntax: LoopSyntax<'_>, want: Option<&Ident>) -> Operand {
        let body = match syntax {
            LoopSyntax::For(f) => &f.body,
            LoopSyntax::While(w) => &w.body,
            LoopSyntax::Loop(l) => &l.body,
        };
        let span = body.span();
        let mut found = JumpFinder::default();
        found.visit_block(body);
        for bad in &found.labelled {
            self.cx.error_spanned_by(
                bad,
                "`#[grad]` does not support labelled `break`/`continue` yet; restructure the loops so each `break` leaves the innermost one",
            );
        }
        for bad in &found.in_expression {
            self.cx.error_spanned_by(
                bad,
                "`#[grad]` supports `break` and `continue` as statements (`if c { break; }`), not inside an expression",
            );
        }
        if !found.labelled.is_empty() || !found.in_expression.is_empty() {
            return dummy();
        }
        let plain_while = |lw: &mut Self| {
            match syntax {
                LoopSyntax::For(f) => lw.for_loop(f),
                LoopSyntax::While(w) => lw.while_loop(w),
                LoopSyntax::Loop(_) => unreachable!("a loop without break never ends"),
            }
            dummy()
        };
        if !found.breaks && !found.continues {
            if let LoopSyntax::Loop(l) = syntax {
                self.cx.error_spanned_by(
                    l.loop_token,
                    "`#[grad]` needs a `loop` to end with `break`; this one never does",
                );
                return dummy();
            }
            return plain_while(self);
        }
        let flags = JumpFlags {
            done: found.breaks.then(|| self.names.fresh("done", span)),
            skip: found.continues.then(|| self.names.fresh("skip", span)),
            out: found
                .break_value
                .then(|| self.names.fresh("loop_value", span)),
        };
        let mut prelude: Vec<syn::Stmt> = Vec::new();
        if let Some(done) = &flags.done {
            prelude.push(syn::parse_quote_spanned!(span=> let mut #done = false;));
        }
        if let Some(out) = &flags.out {
            // `break value` leaves the loop's value; it starts as the type's 0.
            prelude.push(
                syn::parse_quote_spanned!(span=> let mut #out = ::backprop::__private::zero();),
            );
        }
        let mut new_body: Vec<syn::Stmt> = Vec::new();
        if let Some(skip) = &flags.skip {
            new_body.push(syn::parse_quote_spanned!(span=> let mut #skip = false;));
        }
        new_body.extend(guard(&body.stmts, &flags));
        let looped: syn::Stmt = match (syntax, &flags.done) {
            // `for i in a..b` with a `break`: a `while` over a counter, so it stops where
            // the `break` happens (the counter runs backwards in reverse: nothing saved).
            (LoopSyntax::For(f), Some(done))
                if matches!(&*f.expr, Expr::Range(r) if r.start.is_some() && r.end.is_some() && matches!(r.limits, syn::RangeLimits::HalfOpen(_)))
                    && matches!(&*f.pat, Pat::Ident(_) | Pat::Wild(_)) =>
            {
                let Expr::Range(r) = &*f.expr else {
                    unreachable!("matched above")
                };
                let (start, end) = (
                    r.start.as_ref().expect("checked"),
                    r.end.as_ref().expect("checked"),
                );
                let counter = self.names.fresh("next_index", span);
                let end_v = self.names.fresh("end", span);
                prelude.push(syn::parse_quote_spanned!(span=> let mut #counter = #start;));
                prelude.push(syn::parse_quote_spanned!(span=> let #end_v = #end;));
                let bind: Option<syn::Stmt> = match &*f.pat {
                    Pat::Ident(pi) => {
                        let i = &pi.ident;
                        Some(syn::parse_quote_spanned!(span=> let #i = #counter;))
                    }
                    _ => None,
                };
                syn::parse_quote_spanned!(span=> while !#done && #counter < #end_v {
                    #bind
                    #counter += 1;
                    #(#new_body)*
                })
            }
            (LoopSyntax::For(f), Some(done)) => {
                let (pat, expr) = (&f.pat, &f.expr);
                syn::parse_quote_spanned!(span=> for #pat in #expr { if !#done { #(#new_body)* } })
            }
            (LoopSyntax::For(f), None) => {
                let (pat, expr) = (&f.pat, &f.expr);
                syn::parse_quote_spanned!(span=> for #pat in #expr { #(#new_body)* })
            }
            (LoopSyntax::While(w), Some(done)) => {
                let cond = &w.cond;
                syn::parse_quote_spanned!(span=> while !#done && (#cond) { #(#new_body)* })
            }
            (LoopSyntax::While(w), None) => {
                let cond = &w.cond;
                syn::parse_quote_spanned!(span=> while #cond { #(#new_body)* })
            }
            (LoopSyntax::Loop(_), Some(done)) => {
                syn::parse_quote_spanned!(span=> while !#done { #(#new_body)* })
            }
            (LoopSyntax::Loop(l), None) => {
                self.cx.error_spanned_by(
                    l.loop_token,
                    "`#[grad]` needs a `loop` to end with `break`; this one never does",
                );
                return dummy();
            }
        };
        for st in prelude.iter().chain(std::iter::once(&looped)) {
            self.block_stmt(st, false);
        }
        match &flags.out {
            Some(out) => {
                let v = self.lookup(&out.to_string()).expect("bound above");
                match want {
                    Some(w) => self.define(Some(w), Rhs::Copy(Operand::Var(v)), span),
                    None => Operand::Var(v),
                }
            }
            None => dummy(),
        }
    }

    fn binary(&mut self, b: &syn::ExprBinary, want: Option<&Ident>) -> Operand {
        let span = b.span();
        let op_text = b.op.to_token_stream().to_string();
        let is_assign =
            op_text.ends_with('=') && !matches!(op_text.as_str(), "==" | "!=" | "<=" | ">=");
        if is_assign && compound(&b.op).is_none() {
            self.cx.error_spanned_by(
                b,
                format!("`{op_text}` is not supported by `#[grad]`; the compound assignments it differentiates are `+=`, `-=`, `*=` and `/=`"),
            );
            return dummy();
        }
        if compound(&b.op).is_some() {
            self.cx.error_spanned_by(
                b,
                "`#[grad]` supports compound assignment (`x += ...`) as a statement on a `let mut` local, not inside an expression",
            );
            return dummy();
        }
        // `a && b`, `a || b` evaluate `b` only when needed (`j > 0 && v[j - 1] < v[j]`
        // must not index with `j - 1` when `j == 0`): lowered as the `if` they are.
        if matches!(b.op, BinOp::And(_) | BinOp::Or(_)) && self.mentions_local(&b.right) {
            let (l, r) = (&b.left, &b.right);
            let i: syn::ExprIf = if matches!(b.op, BinOp::And(_)) {
                syn::parse_quote_spanned!(span=> if #l { #r } else { false })
            } else {
                syn::parse_quote_spanned!(span=> if #l { true } else { #r })
            };
            return self.if_expr(&i, want, true, false);
        }
        let prim = match b.op {
            BinOp::Add(_) => Some(op::ADD),
            BinOp::Sub(_) => Some(op::SUB),
            BinOp::Mul(_) => Some(op::MUL),
            BinOp::Div(_) => Some(op::DIV),
            _ => None,
        };
        let l = self.expr(&b.left, None);
        let r = self.expr(&b.right, None);
        let spelling = Spelling::Operator(b.op);
        let rhs = match (prim, b.op) {
            (Some(prim), _) => Rhs::Prim {
                prim,
                spelling,
                args: vec![l, r],
            },
            (
                None,
                BinOp::Eq(_)
                | BinOp::Ne(_)
                | BinOp::Lt(_)
                | BinOp::Le(_)
                | BinOp::Gt(_)
                | BinOp::Ge(_)
                | BinOp::And(_)
                | BinOp::Or(_),
            ) => Rhs::ZeroDerivative {
                spelling,
                args: vec![l, r],
            },
            (None, op) => Rhs::NoRule {
                spelling,
                at: b.to_token_stream(),
                args: vec![l, r],
                why: format!(
                    "`{}` has no derivative rule in `#[grad]`; the differentiable operators are `+ - * /` and unary `-`",
                    op.to_token_stream()
                ),
            },
        };
        let out = self.define(want, rhs, span);
        if let Some(last) = self.body.last_mut() {
            last.source = pretty(&b.to_token_stream());
        }
        out
    }

    fn method_call(&mut self, m: &syn::ExprMethodCall, want: Option<&Ident>) -> Operand {
        if let Some(v) = self.buffer_method(m, want) {
            return v;
        }
        if let Some(v) = self.array_method(m, want) {
            return v;
        }
        if let Some(bad) = self.unsupported_adaptor(m) {
            self.cx.error_spanned_by(
                &bad.method,
                format!(
                    "`.{}()` on an iterator over a buffer is not supported by `#[grad]`; the iterator forms it differentiates are `x.iter()` with `.copied()`, `.cloned()`, `.rev()`, `.enumerate()`, `.zip(..)`, `.map(|v| ..)`, in a `for` loop or ended by `.sum()`, `.product()` or `.fold(init, |acc, v| ..)`",
                    bad.method
                ),
            );
            return dummy();
        }
        // `x.mean().unwrap()`: ndarray's mean returns `Option`; the pair is one operation.
        if (m.method == "unwrap" || m.method == "expect")
            && let Expr::MethodCall(inner) = &*m.receiver
        {
            let fused = match (inner.method.to_string().as_str(), inner.args.len()) {
                ("mean", 0) => Some("mean_unwrap"),
                ("mean_axis", 1) => Some("mean_axis_unwrap"),
                _ => None,
            };
            if let (Some(name), None) = (fused, &inner.turbofish) {
                let mut args = vec![self.expr(&inner.receiver, None)];
                for a in &inner.args {
                    args.push(self.expr(a, None));
                }
                let method = &m.method;
                let margs = &m.args;
                let tail = quote::quote!(.#method(#margs));
                let MethodKind::Prim(prim) = op::method(name, args.len()) else {
                    unreachable!("fused means are in the table")
                };
                let spelling = Spelling::MethodUnwrap(inner.method.clone(), tail);
                return self.define(
                    want,
                    Rhs::Prim {
                        prim,
                        spelling,
                        args,
                    },
                    m.span(),
                );
            }
        }
        if let (Some(t), MethodKind::Prim(_)) = (
            &m.turbofish,
            op::method(&m.method.to_string(), m.args.len() + 1),
        ) {
            self.cx.error_spanned_by(
                t,
                format!(
                    "`#[grad]` does not support turbofish on `.{}::<...>()`; write it without",
                    m.method
                ),
            );
            return dummy();
        }
        let mut args = vec![self.receiver(&m.receiver, &m.method)];
        for a in &m.args {
            args.push(self.expr(a, None));
        }
        let name = m.method.to_string();
        let spelling = match &m.turbofish {
            None => Spelling::Method(m.method.clone()),
            Some(t) => {
                let method = &m.method;
                Spelling::MethodTurbofish(quote::quote!(#method #t))
            }
        };
        let rhs = match op::method(&name, args.len()) {
            MethodKind::Prim(prim) => Rhs::Prim {
                prim,
                spelling,
                args,
            },
            MethodKind::ZeroDerivative => Rhs::ZeroDerivative { spelling, args },
            MethodKind::Unknown if args[0].var().is_some_and(|v| self.buffers.contains(&v)) => {
                Rhs::NoRule {
                    spelling,
                    at: m.to_token_stream(),
                    args,
                    why: format!(
                        "`.{name}()` on a buffer of floats has no derivative rule in `#[grad]`: buffers support indexing `x[i]`, `len()`, sub-slices `&x[a..b]`, `to_vec()`, on buffers the function creates `swap`, `fill`, `copy_from_slice` and `reverse`, and the iterators `x.iter()` (with `.copied()`, `.rev()`, `.enumerate()`, `.zip(..)`, `.map(|v| ..)`) in a `for` loop or ended by `.sum()`, `.product()` or `.fold(init, |acc, v| ..)`"
                    ),
                }
            }
            // `m.loss(x)` on a struct argument: a method, whose rule (if it is a `#[grad]`
            // method) only the functions of its own `#[grad] impl` can name.
            MethodKind::Unknown
                if args[0]
                    .var()
                    .is_some_and(|v| self.struct_params.contains(&v)) =>
            {
                Rhs::NoRule {
                    spelling,
                    at: m.to_token_stream(),
                    args,
                    why: format!(
                        "`#[grad]` cannot differentiate a call of the method `.{name}()` of a struct argument here: a `#[grad]` method is called with its rule by the `#[grad]` functions of its own `#[grad] impl` (`self.{name}(..)`, or `m.{name}(..)` on an argument `m: &Self`); make this function an associated function of that impl, or wrap a value that needs no gradient in `backprop::stop_gradient(...)`"
                    ),
                }
            }
            MethodKind::Unknown => Rhs::NoRule {
                spelling,
                at: m.to_token_stream(),
                args,
                why: format!(
                    "`.{name}()` with {} argument(s) has no derivative rule in `#[grad]`: {}; to use another function, give it a rule, or wrap a value that needs no gradient in `backprop::stop_gradient(...)`",
                    m.args.len(),
                    op::supported_methods()
                ),
            },
        };
        self.define(want, rhs, m.span())
    }

    fn call(&mut self, c: &syn::ExprCall, want: Option<&Ident>) -> Operand {
        if let Some(v) = self.bare_join(c) {
            return v;
        }
        let Expr::Path(path) = &*c.func else {
            self.cx.error_spanned_by(&c.func, format!("`#[grad]` supports calls of a function by its path (`f(x)`, `backprop::sigmoid(x)`); {SUPPORTED}"));
            return dummy();
        };
        let segs: Vec<String> = path
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        let last = segs.last().cloned().unwrap_or_default();
        let span = c.span();
        let spelling = Spelling::Path(path.clone());
        let seg_strs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let is_stop_gradient = matches!(
            seg_strs.as_slice(),
            ["stop_gradient"] | [.., "backprop", "stop_gradient"]
        );
        if is_stop_gradient && path.qself.is_none() {
            // Nothing inside `stop_gradient(..)` is differentiated: it is kept as written
            // (closures, methods without rules and all), reading the locals' current
            // versions.
            let args: Vec<Operand> = c.args.iter().map(|a| self.data_arg(a)).collect();
            return self.define(want, Rhs::ZeroDerivative { spelling, args }, span);
        }
        // `dense(&h, &p.layers[i])`: one struct of a list, passed whole (a float of a
        // buffer would be passed by value, never as `&x[i]`, to a `#[grad]` function).
        let args: Vec<Operand> = c
            .args
            .iter()
            .map(|a| match a {
                Expr::Reference(r)
                    if r.mutability.is_none()
                        && matches!(&*r.expr, Expr::Index(_))
                        && !is_range_index(&r.expr)
                        && self.is_place_expr(&r.expr) =>
                {
                    self.place(&r.expr, None)
                }
                _ => self.expr(a, None),
            })
            .collect();
        if let Some(q) = &path.qself {
            self.cx.error_spanned_by(
                &c.func,
                format!(
                    "`#[grad]` does not support qualified paths (`<{} as ...>::f(x)`); write the method call (`x.exp()`) or `f64::exp(x)`",
                    q.ty.to_token_stream()
                ),
            );
            return dummy();
        }
        if let Some(i) = path.path.get_ident()
            && let Some(cl) = self.closures.get(&i.to_string()).cloned()
        {
            return self.inline_closure(&cl, c, args, want);
        }
        if let Some(i) = path.path.get_ident()
            && self.lookup(&i.to_string()).is_some()
        {
            self.cx.error_spanned_by(
                &c.func,
                format!("`#[grad]` cannot differentiate a call of `{i}`, a closure or function pointer stored in a variable; call a function that has a rule by its path; {SUPPORTED}"),
            );
            return dummy();
        }
        // `f64::max(a, b)`, `T::exp(x)`, `Float::sqrt(x)`: a float method called by path.
        if segs.len() >= 2 && path.qself.is_none() {
            let owner = &segs[segs.len() - 2];
            let is_float_owner = owner == "f32"
                || owner == "f64"
                || owner == "Float"
                || self.generics.contains(owner);
            if is_float_owner {
                return match op::method(&last, args.len()) {
                    MethodKind::Prim(prim) => self.define(
                        want,
                        Rhs::Prim {
                            prim,
                            spelling,
                            args,
                        },
                        span,
                    ),
                    MethodKind::ZeroDerivative => {
                        self.define(want, Rhs::ZeroDerivative { spelling, args }, span)
                    }
                    MethodKind::Unknown => {
                        let why = format!(
                            "`{}` has no derivative rule in `#[grad]`: {}",
                            path.to_token_stream().to_string().replace(' ', ""),
                            op::supported_methods()
                        );
                        self.define(
                            want,
                            Rhs::NoRule {
                                spelling,
                                at: c.to_token_stream(),
                                args,
                                why,
                            },
                            span,
                        )
                    }
                };
            }
            // `Type::function(x)`: an associated function, which cannot carry a rule.
            if owner.chars().next().is_some_and(char::is_uppercase) {
                let why = format!(
                    "`{}` is an associated function, which `#[grad]` cannot differentiate; call a free function that has a rule (`#[grad]` or a declared rule)",
                    path.to_token_stream().to_string().replace(' ', "")
                );
                return self.define(
                    want,
                    Rhs::NoRule {
                        spelling,
                        at: c.to_token_stream(),
                        args,
                        why,
                    },
                    span,
                );
            }
        }
        self.define(
            want,
            Rhs::Call {
                path: path.clone(),
                args,
            },
            span,
        )
    }

    // ---- buffers --------------------------------------------------------------------

    /// Whether `e` names a buffer of floats: a local or argument that is one, a borrow
    /// of one, or a sub-slice `x[a..b]` of one.
    fn is_buffer_expr(&self, e: &Expr) -> bool {
        match e {
            Expr::Path(p) => {
                p.qself.is_none()
                    && p.path
                        .get_ident()
                        .and_then(|i| self.lookup(&i.to_string()))
                        .is_some_and(|v| self.buffers.contains(&v) || self.is_field_view_var(v))
            }
            Expr::Paren(p) => self.is_buffer_expr(&p.expr),
            Expr::Group(g) => self.is_buffer_expr(&g.expr),
            Expr::Reference(r) => r.mutability.is_none() && self.is_buffer_expr(&r.expr),
            Expr::Index(ix) => is_range_index(e) && self.is_buffer_expr(&ix.expr),
            // `p.w` of a struct argument: indexed, it is a buffer.
            Expr::Field(_) => self.is_field_of_place(e),
            _ => false,
        }
    }

    /// A struct argument, or a field (at any depth) of one.
    fn is_place_expr(&self, e: &Expr) -> bool {
        match e {
            Expr::Path(p) => {
                p.qself.is_none()
                    && p.path
                        .get_ident()
                        .and_then(|i| self.lookup(&i.to_string()))
                        .is_some_and(|v| self.places.contains(&v))
            }
            Expr::Paren(p) => self.is_place_expr(&p.expr),
            Expr::Field(f) => self.is_place_expr(&f.base),
            // `p.layers[i]` in `p.layers[i].w`: one struct of a collection of structs
            // (a float buffer's element has no fields, so this is only asked of bases).
            Expr::Index(ix) => !is_range_index(e) && self.is_place_expr(&ix.expr),
            _ => false,
        }
    }

    /// `p.w`, `p.layer1.w`: a field of a struct argument.
    fn is_field_of_place(&self, e: &Expr) -> bool {
        match e {
            Expr::Paren(p) => self.is_field_of_place(&p.expr),
            Expr::Field(f) => self.is_place_expr(&f.base),
            _ => false,
        }
    }

    /// A struct argument or a view of a field of one (`let t = &p.w;`), whose adjoint is
    /// the same field of the argument's adjoint.
    fn place(&mut self, e: &Expr, want: Option<&Ident>) -> Operand {
        match e {
            Expr::Paren(p) => self.place(&p.expr, want),
            Expr::Field(f) if self.is_place_expr(&f.base) => {
                let base = self.place(&f.base, None);
                let v = self.define(
                    want,
                    Rhs::Buffer {
                        op: BufOp::Field(f.member.clone()),
                        args: vec![base],
                    },
                    f.span(),
                );
                if let Operand::Var(b) = v {
                    self.places.insert(b);
                }
                v
            }
            Expr::Index(ix) if !is_range_index(e) && self.is_place_expr(&ix.expr) => {
                let base = self.place(&ix.expr, None);
                let i = self.expr(&ix.index, None);
                let v = self.define(
                    want,
                    Rhs::Buffer {
                        op: BufOp::Elem,
                        args: vec![base, i],
                    },
                    ix.span(),
                );
                if let Operand::Var(b) = v {
                    self.places.insert(b);
                }
                v
            }
            _ => self.expr(e, want),
        }
    }

    /// A method's receiver: a field of a struct argument is borrowed (`p.w.len()`,
    /// `p.w.dot(&x)`), except for float methods, which take the value (`p.b.exp()`).
    fn receiver(&mut self, e: &Expr, method: &Ident) -> Operand {
        if self.is_field_of_place(e) && !op::is_float_method(&method.to_string()) {
            self.place(e, None)
        } else {
            self.expr(e, None)
        }
    }

    /// Two fresh names for `lift_loop_returns`.
    fn names_for_lift(&mut self) -> (Ident, Ident) {
        let span = Span::call_site();
        (
            self.names.fresh("returned_value", span),
            self.names.fresh("returned", span),
        )
    }

    /// A buffer whose value is an array (`[f64; N]`, made by `[v; N]` or `[a, b]`, or an
    /// array argument taken by value): `let b = a;` and `for v in a` copy it.
    fn is_array_valued(&self, v: VarId) -> bool {
        matches!(
            self.owner_rhs.get(&v),
            Some(Rhs::Buffer {
                op: BufOp::FillArray,
                ..
            })
        ) || self.array_params.contains(&v)
    }

    fn is_field_view_var(&self, v: VarId) -> bool {
        self.places.contains(&v) && !self.struct_params.contains(&v)
    }

    fn new_buffer_var(
        &mut self,
        want: Option<&Ident>,
        op: BufOp,
        args: Vec<Operand>,
        span: Span,
    ) -> Operand {
        let v = self.define(
            want,
            Rhs::Buffer {
                op: op.clone(),
                args,
            },
            span,
        );
        if let Operand::Var(b) = v {
            self.buffers.insert(b);
            if matches!(
                op,
                BufOp::Fill | BufOp::FillArray | BufOp::ToVec | BufOp::NewVec
            ) {
                self.owner_rhs.insert(
                    b,
                    Rhs::Buffer {
                        op,
                        args: Vec::new(),
                    },
                );
            }
        }
        v
    }

    /// `&x`, `let y = x;`: another name for buffer `x`'s elements.
    fn alias(&mut self, x: Operand, want: Option<&Ident>, span: Span) -> Operand {
        self.new_buffer_var(want, BufOp::Alias, vec![x], span)
    }

    /// `x[i]` (an element) or `x[a..b]` (a view) of a buffer.
    fn index(&mut self, ix: &syn::ExprIndex, want: Option<&Ident>) -> Operand {
        let span = ix.span();
        let base = self.place(&ix.expr, None);
        if let Expr::Range(r) = &*ix.index {
            if matches!(r.limits, syn::RangeLimits::Closed(_)) {
                self.cx.error_spanned_by(
                    r,
                    "`#[grad]` supports sub-slices `&x[a..b]`, `&x[a..]` and `&x[..b]`; write `a..=b` as `a..b + 1`",
                );
                return dummy();
            }
            let start = match &r.start {
                Some(a) => self.expr(a, None),
                None => Operand::Const(syn::parse_quote!(0)),
            };
            let mut args = vec![base, start];
            if let Some(b) = &r.end {
                args.push(self.expr(b, None));
            }
            return self.new_buffer_var(want, BufOp::View, args, span);
        }
        let idx = self.expr(&ix.index, None);
        let key = base.var().map(|b| {
            let i = match &idx {
                Operand::Var(v) => format!("v{}", v.0),
                Operand::Const(c) => c.to_token_stream().to_string(),
            };
            (b, i)
        });
        if want.is_none()
            && let Some(key) = &key
            && let Some(v) = self.read_cache.get(key)
        {
            return Operand::Var(*v);
        }
        let out = self.define(
            want,
            Rhs::Buffer {
                op: BufOp::Read,
                args: vec![base, idx],
            },
            span,
        );
        if let (Some(key), Operand::Var(v)) = (key, &out) {
            self.read_cache.insert(key, *v);
        }
        out
    }

    /// Indexing something that is not a float buffer (data: `labels[i]`, with `&` when
    /// `spelling` is `RefIndex`): an operation without a rule, fine on inactive values.
    fn data_index(&mut self, e: &Expr, spelling: Spelling, want: Option<&Ident>) -> Operand {
        let Expr::Index(ix) = e else {
            unreachable!("callers pass an index")
        };
        let span = e.span();
        let base = self.expr(&ix.expr, None);
        // `&ys[t..t + 1]`: a range of data, kept as written (its bounds renamed).
        let idx = match &*ix.index {
            Expr::Range(_) => self.data_arg(&ix.index),
            _ => self.expr(&ix.index, None),
        };
        let why = format!(
            "`#[grad]` differentiates indexing into buffers of floats (`&[f64]`, `Vec<f64>`, `[f64; N]`, their sub-slices `&x[a..b]`); `{}` indexes something else",
            pretty(&e.to_token_stream())
        );
        self.define(
            want,
            Rhs::NoRule {
                spelling,
                at: e.to_token_stream(),
                args: vec![base, idx],
                why,
            },
            span,
        )
    }

    /// A buffer the function creates: `vec![v; n]`, `vec![a, b, c]`, `[v; N]`, `[a, b, c]`.
    fn new_buffer(&mut self, e: &Expr, want: Option<&Ident>) -> Option<Operand> {
        let span = e.span();
        // `Vec::new()`, `Vec::with_capacity(n)`: a buffer built by `push`.
        if let Expr::Call(c) = e
            && let Expr::Path(p) = &*c.func
            && p.qself.is_none()
            && p.path.segments.len() == 2
            && p.path.segments[0].ident == "Vec"
            && p.path.segments[0].arguments.is_empty()
        {
            let f = p.path.segments[1].ident.to_string();
            let args = match (f.as_str(), c.args.len()) {
                ("new", 0) => Vec::new(),
                ("with_capacity", 1) => vec![self.expr(&c.args[0], None)],
                _ => return None,
            };
            return Some(self.new_buffer_var(want, BufOp::NewVec, args, span));
        }
        let (op, fill, len) = match e {
            Expr::Macro(m) if m.mac.path.is_ident("vec") => {
                let repeat = m.mac.parse_body_with(|input: syn::parse::ParseStream<'_>| {
                    let v: Expr = input.parse()?;
                    let _: syn::Token![;] = input.parse()?;
                    let n: Expr = input.parse()?;
                    Ok((v, n))
                });
                match repeat {
                    Ok((v, n)) => (BufOp::Fill, v, n),
                    Err(_) => {
                        let list = m
                            .mac
                            .parse_body_with(
                                syn::punctuated::Punctuated::<Expr, syn::Token![,]>::parse_terminated,
                            )
                            .ok()?;
                        let elems: Vec<Expr> = list.into_iter().collect();
                        return Some(self.buffer_from_list(&elems, BufOp::Fill, want, span));
                    }
                }
            }
            Expr::Repeat(r) => (BufOp::FillArray, (*r.expr).clone(), (*r.len).clone()),
            Expr::Array(a) if !a.elems.is_empty() => {
                let elems: Vec<Expr> = a.elems.iter().cloned().collect();
                return Some(self.buffer_from_list(&elems, BufOp::FillArray, want, span));
            }
            _ => return None,
        };
        let fill = self.expr(&fill, None);
        let len = self.expr(&len, None);
        Some(self.new_buffer_var(want, op, vec![fill, len], span))
    }

    /// `vec![a, b, c]` is `vec![a; 3]` followed by `v[1] = b; v[2] = c;` (exact in
    /// reverse too: the writes zero the adjoints of the elements they replace).
    fn buffer_from_list(
        &mut self,
        elems: &[Expr],
        op: BufOp,
        want: Option<&Ident>,
        span: Span,
    ) -> Operand {
        let Some(first) = elems.first() else {
            self.cx.error_at(span, "`#[grad]` needs a buffer literal to have at least one element (`vec![0.0; n]` makes an empty one)");
            return dummy();
        };
        let fill = self.expr(first, None);
        let n = elems.len();
        let v = self.new_buffer_var(
            want,
            op,
            vec![fill, Operand::Const(syn::parse_quote!(#n))],
            span,
        );
        for (k, e) in elems.iter().enumerate().skip(1) {
            let value = self.expr(e, None);
            self.write(
                v.clone(),
                Operand::Const(syn::parse_quote!(#k)),
                value,
                e.span(),
            );
        }
        v
    }

    fn write(&mut self, base: Operand, index: Operand, value: Operand, span: Span) {
        self.read_cache.clear();
        let name = self.names.temp(span);
        let def = self.new_var(name);
        self.body.push(Stmt {
            def,
            rhs: Rhs::Buffer {
                op: BufOp::Write,
                args: vec![base, index, value],
            },
            span,
            ty: None,
            source: String::new(),
            compound: false,
        });
    }

    /// `x[i] = v` and `x[i] += v` (`-=`, `*=`, `/=`) on a buffer the function owns.
    fn store(
        &mut self,
        target: &Expr,
        op: Option<(super::Prim, BinOp)>,
        value: &Expr,
        whole: &Expr,
    ) {
        let span = whole.span();
        let Expr::Index(ix) = target else {
            unreachable!("callers match an index")
        };
        let base_ok = !is_range_index(target)
            && matches!(&*ix.expr, Expr::Path(_))
            && self.is_buffer_expr(&ix.expr);
        let base = if base_ok {
            self.expr(&ix.expr, None)
        } else {
            dummy()
        };
        let owned = base.var().is_some_and(|b| {
            matches!(
                self.body_def(b),
                Some(Rhs::Buffer {
                    op: BufOp::Fill | BufOp::FillArray | BufOp::ToVec | BufOp::NewVec,
                    ..
                })
            )
        });
        if !owned && matches!(&*ix.index, Expr::Array(_) | Expr::Tuple(_)) {
            // `a[[i, j]] = v`: an element of an ndarray array.
            self.cx.error_spanned_by(
                target,
                "`#[grad]` does not differentiate element writes into ndarray arrays (`a[[i, j]] = v`); write the array operation instead: for a causal mask on attention scores `backprop::ops::softmax_causal(&scores)` (or `softmax_masked(&scores, &mask)` with a constant `bool` mask built outside the function), for a constant array an argument marked constant in `#[grad(..)]`, and `ndarray::concatenate`/`stack` or `select` to assemble rows",
            );
            return;
        }
        if !owned {
            self.cx.error_spanned_by(
                target,
                format!(
                    "`#[grad]` supports writing elements (`x[i] = ...`, `x[i] += ...`) of a buffer of floats the function creates (`let mut h = vec![0.0; n];`, `let mut v = x.to_vec();`, `let mut a = [0.0; N];`); `{}` is not one: copy it first with `.to_vec()`",
                    pretty(&ix.expr.to_token_stream())
                ),
            );
            return;
        }
        let idx = self.expr(&ix.index, None);
        let value = match op {
            None => self.expr(value, None),
            Some((prim, bop)) => {
                let old = self.define(
                    None,
                    Rhs::Buffer {
                        op: BufOp::Read,
                        args: vec![base.clone(), idx.clone()],
                    },
                    span,
                );
                let rhs = self.expr(value, None);
                let out = self.define(
                    None,
                    Rhs::Prim {
                        prim,
                        spelling: Spelling::Operator(bop),
                        args: vec![old, rhs],
                    },
                    span,
                );
                if let Some(last) = self.body.last_mut() {
                    last.source = pretty(&whole.to_token_stream());
                }
                out
            }
        };
        self.write(base, idx, value, span);
    }

    /// How buffer `v` was made, if the function made it.
    fn body_def(&self, v: VarId) -> Option<&Rhs> {
        self.owner_rhs.get(&v)
    }

    /// `x.to_vec()`, `x.clone()`, `x.to_owned()` of a buffer; `.sum()`, `.product()`,
    /// `.fold(..)` over an iterator of one.
    fn buffer_method(&mut self, m: &syn::ExprMethodCall, want: Option<&Ident>) -> Option<Operand> {
        let span = m.span();
        let name = m.method.to_string();
        if matches!(name.as_str(), "to_vec" | "clone" | "to_owned")
            && m.args.is_empty()
            && self.is_buffer_expr(&m.receiver)
        {
            let src = self.place(&m.receiver, None);
            let len = self.define(
                None,
                Rhs::ZeroDerivative {
                    spelling: Spelling::Method(Ident::new("len", span)),
                    args: vec![src.clone()],
                },
                span,
            );
            return Some(self.new_buffer_var(want, BufOp::ToVec, vec![src, len], span));
        }
        // `h.fill(v)`, `h[a..b].copy_from_slice(src)`, `h.reverse()` on a buffer the
        // function owns: the element writes they are.
        if matches!(
            (name.as_str(), m.args.len()),
            ("fill", 1) | ("copy_from_slice", 1) | ("reverse", 0)
        ) && self.is_buffer_expr(&m.receiver)
        {
            let (base, start, end): (Expr, Expr, Option<Expr>) = match &*m.receiver {
                Expr::Index(ix) => match &*ix.index {
                    Expr::Range(r) if !matches!(r.limits, syn::RangeLimits::Closed(_)) => (
                        (*ix.expr).clone(),
                        r.start
                            .as_deref()
                            .cloned()
                            .unwrap_or_else(|| syn::parse_quote!(0)),
                        r.end.as_deref().cloned(),
                    ),
                    _ => return None,
                },
                other => ((*other).clone(), syn::parse_quote!(0), None),
            };
            let start_v = self.names.fresh("start", span);
            let len_v = self.names.fresh("len", span);
            let k = self.names.fresh("k", span);
            let end: Expr = end.unwrap_or_else(|| syn::parse_quote!(#base.len()));
            let mut stmts: Vec<syn::Stmt> = vec![
                syn::parse_quote_spanned!(span=> let #start_v = #start;),
                syn::parse_quote_spanned!(span=> let #len_v = #end - #start_v;),
            ];
            match name.as_str() {
                "fill" => {
                    let v = &m.args[0];
                    let fill_v = self.names.fresh("fill_value", span);
                    stmts.push(syn::parse_quote_spanned!(span=> let #fill_v = #v;));
                    stmts.push(syn::parse_quote_spanned!(span=> for #k in 0..#len_v { #base[#start_v + #k] = #fill_v; }));
                }
                "copy_from_slice" => {
                    let src = &m.args[0];
                    let src_v = self.names.fresh("source", span);
                    stmts.push(syn::parse_quote_spanned!(span=> let #src_v = #src;));
                    stmts.push(syn::parse_quote_spanned!(span=> for #k in 0..#len_v { #base[#start_v + #k] = #src_v[#k]; }));
                }
                _ => {
                    stmts.push(syn::parse_quote_spanned!(span=> for #k in 0..#len_v / 2 { #base.swap(#start_v + #k, #start_v + #len_v - 1 - #k); }));
                }
            }
            for st in &stmts {
                self.block_stmt(st, false);
            }
            return Some(dummy());
        }
        // `v.swap(a, b)` on a buffer the function owns: two reads, two writes.
        // `h.push(v)` on a buffer made by `Vec::new()`.
        if name == "push"
            && m.args.len() == 1
            && let Expr::Path(p) = &*m.receiver
            && let Some(h) = p.path.get_ident().and_then(|i| self.lookup(&i.to_string()))
            && matches!(
                self.owner_rhs.get(&h),
                Some(Rhs::Buffer {
                    op: BufOp::NewVec,
                    ..
                })
            )
        {
            let v = self.expr(&m.args[0], None);
            self.read_cache.clear();
            let name = self.names.temp(span);
            let def = self.new_var(name);
            self.body.push(Stmt {
                def,
                rhs: Rhs::Buffer {
                    op: BufOp::Push,
                    args: vec![Operand::Var(h), v],
                },
                span,
                ty: None,
                source: String::new(),
                compound: false,
            });
            return Some(dummy());
        }
        if name == "swap" && m.args.len() == 2 && self.is_buffer_expr(&m.receiver) {
            let (a, b) = (&m.args[0], &m.args[1]);
            let recv = &m.receiver;
            let ia = self.names.fresh("swap_a", span);
            let ib = self.names.fresh("swap_b", span);
            let ta = self.names.fresh("swap_va", span);
            let stmts: Vec<syn::Stmt> = vec![
                syn::parse_quote_spanned!(span=> let #ia = #a;),
                syn::parse_quote_spanned!(span=> let #ib = #b;),
                syn::parse_quote_spanned!(span=> let #ta = #recv[#ia];),
                syn::parse_quote_spanned!(span=> #recv[#ia] = #recv[#ib];),
                syn::parse_quote_spanned!(span=> #recv[#ib] = #ta;),
            ];
            for st in &stmts {
                self.block_stmt(st, false);
            }
            return Some(dummy());
        }
        let (init, fold): (Expr, Option<&Expr>) = match (name.as_str(), m.args.len()) {
            // A float literal, or the float type's own 0 and 1 in generic code. A sum
            // starts from −0.0, as std's `Sum` for floats does: it is the neutral element
            // (−0 + x = x for every x, +0 included), so an empty sum is −0.0 in both.
            ("sum", 0) if !self.generics.is_empty() => (
                syn::parse_quote_spanned!(span=> ::backprop::__private::neg_zero()),
                None,
            ),
            ("product", 0) if !self.generics.is_empty() => (
                syn::parse_quote_spanned!(span=> ::backprop::__private::one()),
                None,
            ),
            ("sum", 0) => (syn::parse_quote_spanned!(span=> -0.0), None),
            ("product", 0) => (syn::parse_quote_spanned!(span=> 1.0), None),
            ("fold", 2) => (m.args[0].clone(), Some(&m.args[1])),
            _ => return None,
        };
        let chain = self.chain(&m.receiver, false)?;
        let acc = self.names.fresh("acc", span);
        let elem_ident = self.names.fresh("elem", span);
        let step: Expr = match (name.as_str(), fold) {
            ("sum", _) => syn::parse_quote_spanned!(span=> #acc + #elem_ident),
            ("product", _) => syn::parse_quote_spanned!(span=> #acc * #elem_ident),
            (_, Some(Expr::Closure(c))) if c.inputs.len() == 2 => {
                let mut stmts = bind_pattern(&c.inputs[0], &syn::parse_quote!(#acc))?;
                stmts.extend(bind_pattern(&c.inputs[1], &syn::parse_quote!(#elem_ident))?);
                let body = &c.body;
                syn::parse_quote_spanned!(span=> { #(#stmts)* #body })
            }
            (_, Some(f @ Expr::Path(_))) => syn::parse_quote_spanned!(span=> #f(#acc, #elem_ident)),
            _ => {
                self.cx.error_spanned_by(
                    &m.args[1],
                    "`#[grad]` supports `fold` with a closure of two arguments (`|acc, v| acc + v * v`) or a function path (`f64::max`)",
                );
                return Some(dummy());
            }
        };
        let elem_pat: Pat = syn::parse_quote!(#elem_ident);
        let mut body: Vec<syn::Stmt> = Vec::new();
        body.push(syn::parse_quote_spanned!(span=> #acc = #step;));
        // `let mut acc = init; for elem in chain { acc = step; } acc`, lowered as written.
        // `sum::<f64>()` says the accumulator's type; without it, inference does.
        let local: syn::Stmt = match m.turbofish.as_ref().and_then(|t| t.args.first()) {
            Some(syn::GenericArgument::Type(ty)) => {
                syn::parse_quote_spanned!(span=> let mut #acc: #ty = #init;)
            }
            _ => syn::parse_quote_spanned!(span=> let mut #acc = #init;),
        };
        let syn::Stmt::Local(local) = local else {
            unreachable!("a let")
        };
        self.local(&local);
        self.for_over_chain(chain, &elem_pat, &body, span);
        let acc_var = self.lookup(&acc.to_string()).expect("bound above");
        Some(match want {
            Some(w) => self.define(Some(w), Rhs::Copy(Operand::Var(acc_var)), span),
            None => Operand::Var(acc_var),
        })
    }

    /// An iterator over buffers: `x.iter()`, `x.iter().copied()`, `.enumerate()`,
    /// `.zip(y.iter())`, `.map(|v| ...)`. `bare` also accepts a buffer itself (`for v in
    /// x`, `for v in &x`).
    fn chain(&self, e: &Expr, bare: bool) -> Option<Chain> {
        match e {
            Expr::Paren(p) => self.chain(&p.expr, bare),
            Expr::MethodCall(m) => match (m.method.to_string().as_str(), m.args.len()) {
                ("iter" | "into_iter", 0)
                    if self.is_buffer_expr(&m.receiver) || self.is_local_path(&m.receiver) =>
                {
                    Some(Chain::Elems((*m.receiver).clone()))
                }
                ("copied" | "cloned", 0) => self.chain(&m.receiver, false),
                ("enumerate", 0) => {
                    Some(Chain::Enumerate(Box::new(self.chain(&m.receiver, false)?)))
                }
                ("rev", 0) => Some(Chain::Rev(Box::new(self.chain(&m.receiver, false)?))),
                ("zip", 1) => Some(Chain::Zip(
                    Box::new(self.chain(&m.receiver, false)?),
                    Box::new(self.chain(&m.args[0], true)?),
                )),
                ("map", 1) => match &m.args[0] {
                    Expr::Closure(c) if c.inputs.len() == 1 => Some(Chain::Map(
                        Box::new(self.chain(&m.receiver, false)?),
                        c.clone(),
                    )),
                    _ => None,
                },
                _ => None,
            },
            _ if bare && (self.is_buffer_expr(e) || self.is_local_path(e)) => {
                Some(Chain::Elems(e.clone()))
            }
            // `for k in [1.0, 2.0, 3.0]`: the literal is bound to a local first.
            Expr::Array(_) | Expr::Repeat(_) if bare => Some(Chain::Elems(e.clone())),
            _ => None,
        }
    }

    /// In `x.iter().skip(1).sum()`, the first adaptor (from `iter`) that `chain` does
    /// not know, to name it in the error.
    fn unsupported_adaptor<'m>(
        &self,
        m: &'m syn::ExprMethodCall,
    ) -> Option<&'m syn::ExprMethodCall> {
        let mut calls = vec![m];
        let mut cur = m;
        while let Expr::MethodCall(inner) = &*cur.receiver {
            calls.push(inner);
            cur = inner;
        }
        // The innermost call must be `iter`/`into_iter` on a buffer.
        let bottom = calls.pop()?;
        if !matches!(bottom.method.to_string().as_str(), "iter" | "into_iter")
            || !(self.is_buffer_expr(&bottom.receiver) || self.is_local_path(&bottom.receiver))
        {
            return None;
        }
        const ADAPTORS: &[&str] = &["copied", "cloned", "rev", "enumerate", "zip", "map"];
        // From `iter` outwards: adaptors, then a consumer ends the iterator (what comes
        // after works on its float result).
        for c in calls.into_iter().rev() {
            let name = c.method.to_string();
            if matches!(name.as_str(), "sum" | "product" | "fold") {
                return None;
            }
            if !ADAPTORS.contains(&name.as_str()) {
                return Some(c);
            }
        }
        None
    }

    fn is_local_path(&self, e: &Expr) -> bool {
        matches!(e, Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some_and(|i| self.lookup(&i.to_string()).is_some()))
    }

    /// `for pat in chain { body }` as the loop over indices it is:
    /// `for k in 0..x.len() { let pat = x[k]; body }`.
    fn for_over_chain(&mut self, chain: Chain, pat: &Pat, body: &[syn::Stmt], span: Span) {
        let chain = self.bind_sources(chain, span);
        let k = self.names.fresh("k", span);
        let len = chain.len();
        let elem = chain.elem(&syn::parse_quote!(#k));
        let Some(mut stmts) = bind_pattern(pat, &elem) else {
            self.cx.error_spanned_by(
                pat,
                "`#[grad]` supports a name (`v`, `&v`), `_` or a tuple of those (`(i, v)`, `(a, b)`) as the pattern of a loop over a buffer",
            );
            return;
        };
        stmts.extend(body.iter().cloned());
        let f: syn::ExprForLoop =
            syn::parse_quote_spanned!(span=> for #k in 0..#len { #(#stmts)* });
        self.for_loop(&f);
    }

    /// Binds every source of the chain that is not a plain name (`&z[a..b]`, `&x`) to
    /// a local, so the loop evaluates it once.
    fn bind_sources(&mut self, chain: Chain, span: Span) -> Chain {
        match chain {
            // `for v in a` over an array iterates a copy of it (the body may write `a`).
            Chain::Elems(Expr::Path(p))
                if p.path.get_ident().is_some_and(|i| {
                    self.lookup(&i.to_string())
                        .is_some_and(|v| self.is_array_valued(v))
                }) =>
            {
                let src = self.names.fresh("src", span);
                let local: syn::Stmt = syn::parse_quote_spanned!(span=> let #src = #p;);
                let syn::Stmt::Local(local) = local else {
                    unreachable!("a let")
                };
                self.local(&local);
                Chain::Elems(syn::parse_quote!(#src))
            }
            Chain::Elems(e) if matches!(e, Expr::Path(_)) => Chain::Elems(e),
            // `&x` of a named buffer iterates `x` itself: a local reference to an owned
            // argument would be captured beside the argument it borrows.
            Chain::Elems(Expr::Reference(r))
                if r.mutability.is_none() && matches!(&*r.expr, Expr::Path(_)) =>
            {
                self.bind_sources(Chain::Elems(*r.expr), span)
            }
            Chain::Elems(e) => {
                let src = self.names.fresh("src", span);
                let local: syn::Stmt =
                    if matches!(e, Expr::Reference(_)) || !self.is_buffer_expr(&e) {
                        syn::parse_quote_spanned!(span=> let #src = #e;)
                    } else {
                        syn::parse_quote_spanned!(span=> let #src = &#e;)
                    };
                let syn::Stmt::Local(local) = local else {
                    unreachable!("a let")
                };
                self.local(&local);
                Chain::Elems(syn::parse_quote!(#src))
            }
            Chain::Enumerate(c) => Chain::Enumerate(Box::new(self.bind_sources(*c, span))),
            Chain::Zip(a, b) => Chain::Zip(
                Box::new(self.bind_sources(*a, span)),
                Box::new(self.bind_sources(*b, span)),
            ),
            Chain::Map(c, f) => Chain::Map(Box::new(self.bind_sources(*c, span)), f),
            Chain::Rev(c) => Chain::Rev(Box::new(self.bind_sources(*c, span))),
        }
    }

    // ---- errors ---------------------------------------------------------------------

    fn unsupported_macro(&self, m: &syn::Macro) {
        self.cx.error_spanned_by(
            m,
            format!(
                "macro invocations (`{}!`) are not supported inside `#[grad]` functions: the macro cannot see what they expand to; {SUPPORTED}",
                m.path.to_token_stream().to_string().replace(' ', "")
            ),
        );
    }

    fn unsupported(&self, e: &Expr) -> Operand {
        let what = match e {
            Expr::If(_) => "`if`",
            Expr::Match(_) => "`match`",
            Expr::ForLoop(_) => "`for` loops",
            Expr::While(_) => "`while` loops",
            Expr::Loop(_) => "`loop`",
            Expr::Break(_) => "`break`",
            Expr::Continue(_) => "`continue`",
            Expr::Return(_) => "an early `return`",
            Expr::Closure(_) => "closures",
            Expr::Index(_) => "indexing",
            Expr::Field(_) => "field access",
            Expr::Tuple(_) => "tuples",
            Expr::Array(_) | Expr::Repeat(_) => "arrays",
            Expr::Reference(_) => "references (`&x`)",
            Expr::Unary(_) => "dereferencing (`*x`)",
            Expr::Range(_) => "ranges",
            Expr::Macro(m) => {
                self.unsupported_macro(&m.mac);
                return dummy();
            }
            Expr::Unsafe(_) => "`unsafe` blocks",
            Expr::Async(_) | Expr::Await(_) => "`async`/`.await`",
            Expr::Try(_) | Expr::TryBlock(_) => "the `?` operator",
            Expr::Struct(_) => "struct literals",
            Expr::Let(_) => "`let` in conditions",
            Expr::Block(_) => "labelled blocks",
            _ => "this expression",
        };
        self.cx.error_spanned_by(
            e,
            format!("{what} not supported by `#[grad]` yet; {SUPPORTED}"),
        );
        dummy()
    }
}

/// ndarray's array types, by the last segment of their path.
pub(crate) fn is_array_type_name(name: &str) -> bool {
    matches!(
        name,
        "Array"
            | "Array0"
            | "Array1"
            | "Array2"
            | "Array3"
            | "Array4"
            | "Array5"
            | "Array6"
            | "ArrayD"
            | "ArrayBase"
            | "ArrayView"
            | "ArrayView0"
            | "ArrayView1"
            | "ArrayView2"
            | "ArrayView3"
            | "ArrayView4"
            | "ArrayView5"
            | "ArrayView6"
            | "ArrayViewD"
            | "CowArray"
            | "ArcArray"
            | "ArcArray1"
            | "ArcArray2"
    )
}

/// A loop head while its body is being lowered.
enum LoopHeadDraft {
    For {
        index: VarId,
        range: proc_macro2::TokenStream,
        double_ended: bool,
    },
    While(Operand),
}

/// Whether a supported range (see `range_tokens`) can run backwards: `step_by` over
/// `a..=b` cannot (an inclusive range of `usize` is not an exact-size iterator, so the
/// step adaptor is not double-ended); every other form can.
fn double_ended(e: &Expr) -> bool {
    fn inclusive(e: &Expr) -> bool {
        match e {
            Expr::Paren(p) => inclusive(&p.expr),
            Expr::Group(g) => inclusive(&g.expr),
            Expr::Range(r) => matches!(r.limits, syn::RangeLimits::Closed(_)),
            Expr::MethodCall(m) => inclusive(&m.receiver),
            _ => false,
        }
    }
    match e {
        Expr::Paren(p) => double_ended(&p.expr),
        Expr::Group(g) => double_ended(&g.expr),
        Expr::MethodCall(m) if m.method == "step_by" => !inclusive(&m.receiver),
        Expr::MethodCall(m) => double_ended(&m.receiver),
        _ => true,
    }
}

fn compound(op: &BinOp) -> Option<(super::Prim, BinOp)> {
    let s = op.span();
    match op {
        BinOp::AddAssign(_) => Some((op::ADD, BinOp::Add(syn::Token![+](s)))),
        BinOp::SubAssign(_) => Some((op::SUB, BinOp::Sub(syn::Token![-](s)))),
        BinOp::MulAssign(_) => Some((op::MUL, BinOp::Mul(syn::Token![*](s)))),
        BinOp::DivAssign(_) => Some((op::DIV, BinOp::Div(syn::Token![/](s)))),
        _ => None,
    }
}

/// A placeholder operand after an error (the function is not emitted then).
fn dummy() -> Operand {
    Operand::Const(syn::parse_quote!(0.0))
}

/// A constant kept inline where it is used (re-evaluating it is free and pure): a
/// literal, a path (`K`, `PI`), or a negated or parenthesised one.
fn is_inline_constant(e: &Expr) -> bool {
    match e {
        Expr::Lit(_) | Expr::Path(_) => true,
        Expr::Paren(p) => is_inline_constant(&p.expr),
        Expr::Group(g) => is_inline_constant(&g.expr),
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => is_inline_constant(&u.expr),
        _ => false,
    }
}

/// `std::primitive::f64`, `core::primitive::f32`.
fn is_primitive_float_path(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none()
        && p.path.segments.len() > 1
        && p.path.segments.last().is_some_and(|s| s.arguments.is_empty() && (s.ident == "f32" || s.ident == "f64"))
        && p.path.segments.iter().rev().nth(1).is_some_and(|s| s.ident == "primitive"))
}

/// The type parameters that are floats: those bounded by a trait named `Float`, `Real`
/// or `Scalar` (`T: num_traits::Float`, `T: backprop::Real`), inline or in the where
/// clause. Other type parameters (labels, integers, containers) are data.
pub fn float_type_params(generics: &syn::Generics) -> HashSet<String> {
    let is_float_bound = |b: &syn::TypeParamBound| match b {
        syn::TypeParamBound::Trait(t) => t
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Float" || s.ident == "Real" || s.ident == "Scalar"),
        _ => false,
    };
    let mut out = HashSet::new();
    for tp in generics.type_params() {
        if tp.bounds.iter().any(is_float_bound) {
            out.insert(tp.ident.to_string());
        }
    }
    if let Some(wc) = &generics.where_clause {
        for pred in &wc.predicates {
            if let syn::WherePredicate::Type(pt) = pred
                && let Type::Path(p) = &pt.bounded_ty
                && let Some(i) = p.path.get_ident()
                && pt.bounds.iter().any(is_float_bound)
            {
                out.insert(i.to_string());
            }
        }
    }
    out
}

/// Tokens as text with Rust's usual spacing (`x.dot(w1) + b1`, not `x . dot (w1) + b1`),
/// for messages shown at run time.
fn pretty(ts: &proc_macro2::TokenStream) -> String {
    let raw = ts.to_string();
    let mut out = String::with_capacity(raw.len());
    let chars: Vec<char> = raw.chars().collect();
    for (k, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let prev = out.chars().last().unwrap_or(' ');
            let next = chars.get(k + 1).copied().unwrap_or(' ');
            if matches!(prev, '.' | '(' | '[' | '&' | '!')
                || matches!(next, '.' | '(' | ')' | '[' | ']' | ',' | ';' | '?')
            {
                continue;
            }
            // `- x` after an operator or an opening bracket is a unary minus.
            if prev == '-'
                && out
                    .trim_end_matches('-')
                    .trim_end()
                    .ends_with(['(', ',', '=', '+', '*', '/'])
            {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// `x[a..b]`: indexing with a range.
fn is_range_index(e: &Expr) -> bool {
    match e {
        Expr::Index(ix) => matches!(&*ix.index, Expr::Range(_)),
        Expr::Paren(p) => is_range_index(&p.expr),
        Expr::Group(g) => is_range_index(&g.expr),
        _ => false,
    }
}

/// An iterator over buffers, as `for` loops and `sum`/`fold` see it.
enum Chain {
    /// The elements of a buffer (an expression naming it).
    Elems(Expr),
    /// `(index, element)`.
    Enumerate(Box<Chain>),
    /// `(a, b)`, as long as the shorter.
    Zip(Box<Chain>, Box<Chain>),
    /// The closure applied to each element.
    Map(Box<Chain>, syn::ExprClosure),
    /// Back to front.
    Rev(Box<Chain>),
}

impl Chain {
    fn len(&self) -> Expr {
        match self {
            Chain::Elems(e) => syn::parse_quote!(#e.len()),
            Chain::Enumerate(c) | Chain::Map(c, _) | Chain::Rev(c) => c.len(),
            Chain::Zip(a, b) => {
                let (a, b) = (a.len(), b.len());
                syn::parse_quote!(#a.min(#b))
            }
        }
    }

    /// The element at index `k`, as an expression (tuples for `enumerate`/`zip`).
    fn elem(&self, k: &Expr) -> Expr {
        match self {
            Chain::Elems(e) => syn::parse_quote!(#e[#k]),
            Chain::Rev(c) => {
                let len = c.len();
                c.elem(&syn::parse_quote!((#len - 1 - #k)))
            }
            Chain::Enumerate(c) => {
                let v = c.elem(k);
                syn::parse_quote!((#k, #v))
            }
            Chain::Zip(a, b) => {
                let (a, b) = (a.elem(k), b.elem(k));
                syn::parse_quote!((#a, #b))
            }
            Chain::Map(c, f) => {
                let v = c.elem(k);
                let body = &f.body;
                match bind_pattern(&f.inputs[0], &v) {
                    Some(stmts) => syn::parse_quote!({ #(#stmts)* #body }),
                    // Reported by the caller's pattern check on the same closure.
                    None => syn::parse_quote!({ #body }),
                }
            }
        }
    }
}

/// `let pat = value;` as `let`s of plain names: `&v` binds `v`, `(a, b)` against a
/// tuple expression binds each part, `_` binds nothing. `None` for other patterns.
fn bind_pattern(pat: &Pat, value: &Expr) -> Option<Vec<syn::Stmt>> {
    // Every part is read before any name is bound, so a pattern `(y, x)` over elements
    // of buffers named `x` and `y` reads the buffers, not the new bindings.
    let mut leaves = Vec::new();
    pattern_leaves(pat, value, &mut leaves)?;
    if leaves.len() <= 1 {
        return Some(
            leaves
                .into_iter()
                .map(|(i, v)| syn::parse_quote!(let #i = #v;))
                .collect(),
        );
    }
    let temps: Vec<Ident> = leaves
        .iter()
        .map(|(i, _)| {
            quote::format_ident!("__backprop_elem_{}", i.to_string().trim_start_matches("r#"))
        })
        .collect();
    let mut out: Vec<syn::Stmt> = leaves
        .iter()
        .zip(&temps)
        .map(|((_, v), t)| syn::parse_quote!(let #t = #v;))
        .collect();
    out.extend(
        leaves
            .iter()
            .zip(&temps)
            .map(|((i, _), t)| -> syn::Stmt { syn::parse_quote!(let #i = #t;) }),
    );
    Some(out)
}

/// The names a pattern binds, each with the part of `value` it binds.
fn pattern_leaves(pat: &Pat, value: &Expr, out: &mut Vec<(Ident, Expr)>) -> Option<()> {
    match pat {
        Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
            out.push((pi.ident.clone(), value.clone()));
            Some(())
        }
        Pat::Reference(r) => pattern_leaves(&r.pat, value, out),
        Pat::Type(t) => pattern_leaves(&t.pat, value, out),
        Pat::Paren(p) => pattern_leaves(&p.pat, value, out),
        Pat::Wild(_) => Some(()),
        Pat::Tuple(t) => {
            let Expr::Tuple(parts) = value else {
                return None;
            };
            if parts.elems.len() != t.elems.len() {
                return None;
            }
            for (p, v) in t.elems.iter().zip(parts.elems.iter()) {
                pattern_leaves(p, v, out)?;
            }
            Some(())
        }
        _ => None,
    }
}

/// The three loop forms, as written.
#[derive(Clone, Copy)]
enum LoopSyntax<'a> {
    For(&'a syn::ExprForLoop),
    While(&'a syn::ExprWhile),
    Loop(&'a syn::ExprLoop),
}

/// The flags a loop's `break`/`continue` become.
struct JumpFlags {
    done: Option<Ident>,
    skip: Option<Ident>,
    out: Option<Ident>,
}

impl JumpFlags {
    /// `!done && !skip`: the loop body goes on.
    fn running(&self) -> Expr {
        match (&self.done, &self.skip) {
            (Some(d), Some(s)) => syn::parse_quote!(!#d && !#s),
            (Some(d), None) => syn::parse_quote!(!#d),
            (None, Some(s)) => syn::parse_quote!(!#s),
            (None, None) => syn::parse_quote!(true),
        }
    }
}

/// Finds the `break`/`continue` of one loop (not of loops nested in it, nor inside
/// closures), and the ones it cannot rewrite.
#[derive(Default)]
struct JumpFinder {
    breaks: bool,
    continues: bool,
    break_value: bool,
    labelled: Vec<proc_macro2::TokenStream>,
    in_expression: Vec<proc_macro2::TokenStream>,
}

impl<'ast> Visit<'ast> for JumpFinder {
    fn visit_expr_break(&mut self, b: &'ast syn::ExprBreak) {
        if b.label.is_some() {
            self.labelled.push(b.to_token_stream());
        }
        self.breaks = true;
        self.break_value |= b.expr.is_some();
        syn::visit::visit_expr_break(self, b);
    }
    fn visit_expr_continue(&mut self, c: &'ast syn::ExprContinue) {
        if c.label.is_some() {
            self.labelled.push(c.to_token_stream());
        }
        self.continues = true;
    }
    fn visit_expr_for_loop(&mut self, f: &'ast syn::ExprForLoop) {
        self.visit_expr(&f.expr);
        self.labelled_inside(&f.body);
    }
    fn visit_expr_while(&mut self, w: &'ast syn::ExprWhile) {
        self.visit_expr(&w.cond);
        self.labelled_inside(&w.body);
    }
    fn visit_expr_loop(&mut self, l: &'ast syn::ExprLoop) {
        self.labelled_inside(&l.body);
    }
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_block(&mut self, b: &'ast syn::Block) {
        for st in &b.stmts {
            match st {
                syn::Stmt::Expr(e, _) if statement_position(e) => self.visit_expr(e),
                syn::Stmt::Expr(e, _) => self.in_expression_check(e),
                syn::Stmt::Local(l) => {
                    if let Some(init) = &l.init {
                        self.in_expression_check(&init.expr);
                    }
                }
                other => syn::visit::visit_stmt(self, other),
            }
        }
    }
}

impl JumpFinder {
    /// A nested loop's own jumps are its business; only labelled ones could reach out.
    fn labelled_inside(&mut self, body: &syn::Block) {
        let mut inner = JumpFinder::default();
        inner.visit_block(body);
        self.labelled.extend(inner.labelled);
        self.in_expression.extend(inner.in_expression);
    }

    /// A jump inside an expression (`let x = if c { break } else { 1.0 };`).
    fn in_expression_check(&mut self, e: &Expr) {
        let mut inner = JumpFinder::default();
        inner.visit_expr(e);
        if inner.breaks || inner.continues {
            self.in_expression.push(e.to_token_stream());
        }
        self.labelled.extend(inner.labelled);
    }
}

/// Expressions whose jumps the rewrite can reach: a jump itself, an `if` (its
/// branches are blocks of statements) and a block.
fn statement_position(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Break(_)
            | Expr::Continue(_)
            | Expr::If(_)
            | Expr::Block(_)
            | Expr::Match(_)
            | Expr::ForLoop(_)
            | Expr::While(_)
            | Expr::Loop(_)
    )
}

/// Whether `s` jumps out of the loop being rewritten (not counting nested loops).
fn jumps(s: &syn::Stmt) -> bool {
    let mut f = JumpFinder::default();
    f.visit_stmt(s);
    f.breaks || f.continues
}

/// Statements with their jumps turned into flags, and everything after a statement
/// that may jump guarded by `if !done && !skip { .. }`.
fn guard(stmts: &[syn::Stmt], flags: &JumpFlags) -> Vec<syn::Stmt> {
    let mut out = Vec::new();
    for (k, st) in stmts.iter().enumerate() {
        if !jumps(st) {
            out.push(st.clone());
            continue;
        }
        out.push(rewrite_jump(st, flags));
        let rest = guard(&stmts[k + 1..], flags);
        if !rest.is_empty() {
            let running = flags.running();
            out.push(syn::parse_quote!(if #running { #(#rest)* }));
        }
        break;
    }
    out
}

fn rewrite_jump(st: &syn::Stmt, flags: &JumpFlags) -> syn::Stmt {
    let syn::Stmt::Expr(e, _) = st else {
        return st.clone();
    };
    let e = rewrite_jump_expr(e, flags);
    syn::Stmt::Expr(e, Some(Default::default()))
}

fn rewrite_jump_expr(e: &Expr, flags: &JumpFlags) -> Expr {
    match e {
        Expr::Break(b) => {
            let done = flags.done.as_ref().expect("a break sets done");
            match (&b.expr, &flags.out) {
                (Some(v), Some(out)) => {
                    syn::parse_quote_spanned!(b.span()=> { #out = #v; #done = true; })
                }
                _ => syn::parse_quote_spanned!(b.span()=> { #done = true; }),
            }
        }
        Expr::Continue(c) => {
            let skip = flags.skip.as_ref().expect("a continue sets skip");
            syn::parse_quote_spanned!(c.span()=> { #skip = true; })
        }
        Expr::If(i) => {
            let mut i = i.clone();
            i.then_branch.stmts = guard(&i.then_branch.stmts, flags);
            if let Some((_, else_expr)) = &mut i.else_branch {
                **else_expr = rewrite_jump_expr(else_expr, flags);
            }
            Expr::If(i)
        }
        Expr::Block(b) => {
            let mut b = b.clone();
            b.block.stmts = guard(&b.block.stmts, flags);
            Expr::Block(b)
        }
        Expr::Match(m) => {
            let mut m = m.clone();
            for arm in &mut m.arms {
                *arm.body = rewrite_jump_expr(&arm.body, flags);
            }
            Expr::Match(m)
        }
        other => other.clone(),
    }
}

/// Whether a pattern binds a name (`Some(v)`, `x @ 1..=3`); constants (`K`, `Mode::Fast`)
/// and literals do not.
fn binds_names(p: &Pat) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_pat_ident(&mut self, pi: &'ast syn::PatIdent) {
            if pi.subpat.is_some() || !pi.ident.to_string().starts_with(char::is_uppercase) {
                self.0 = true;
            }
            syn::visit::visit_pat_ident(self, pi);
        }
    }
    let mut f = Finder(false);
    f.visit_pat(p);
    f.0
}

/// A type that names a struct of parameters: capitalised, and not one of the
/// standard containers or ndarray types `#[grad]` knows otherwise.
pub(crate) fn is_struct_type_name(name: &str) -> bool {
    name.starts_with(char::is_uppercase)
        && !is_array_type_name(name)
        && !matches!(
            name,
            "Vec"
                | "Option"
                | "Result"
                | "String"
                | "Box"
                | "Rc"
                | "Arc"
                | "HashMap"
                | "BTreeMap"
                | "HashSet"
                | "BTreeSet"
                | "VecDeque"
                | "Cow"
                | "Range"
                | "PhantomData"
                | "Self"
        )
}

/// `return v` inside a loop in the function body, as the flags it means: the `return`
/// becomes `{ returned_value = v; returned = true; break; }`, every loop it crosses is
/// left with `if returned { break; }`, and after the outermost one
/// `if returned { return returned_value; }` is an early return like any other. Other
/// statements are returned as they are.
fn lift_loop_returns(
    stmts: &[syn::Stmt],
    names: &(Ident, Ident),
    ret_ty: Option<&Type>,
) -> Vec<syn::Stmt> {
    use syn::visit_mut::VisitMut;
    struct Lift<'a> {
        ret: &'a Ident,
        flag: &'a Ident,
        found: bool,
        /// What a `break` out of the innermost loop carries: nothing, or (in a loop
        /// whose value is bound, `let r = loop { .. }`) a placeholder of its type,
        /// never read, since the function returns right after.
        break_value: Option<Expr>,
    }
    impl Lift<'_> {
        fn brk(&self) -> Expr {
            match &self.break_value {
                Some(v) => syn::parse_quote!(break #v),
                None => syn::parse_quote!(break),
            }
        }
        fn in_loop(&mut self, value: Option<Expr>, body: &mut syn::Block) {
            let saved = std::mem::replace(&mut self.break_value, value);
            self.visit_block_mut(body);
            self.break_value = saved;
        }
    }
    impl VisitMut for Lift<'_> {
        fn visit_block_mut(&mut self, b: &mut syn::Block) {
            let mut out = Vec::new();
            for mut st in std::mem::take(&mut b.stmts) {
                if let syn::Stmt::Expr(Expr::Return(r), _) = &st
                    && let Some(v) = &r.expr
                {
                    let (ret, flag, brk) = (self.ret, self.flag, self.brk());
                    out.push(
                        syn::parse_quote_spanned!(r.span()=> { #ret = #v; #flag = true; #brk; }),
                    );
                    self.found = true;
                    continue;
                }
                let is_loop = matches!(
                    st,
                    syn::Stmt::Expr(Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_), _)
                ) || value_loop(&mut st).is_some();
                let before = std::mem::replace(&mut self.found, false);
                syn::visit_mut::visit_stmt_mut(self, &mut st);
                let inner = self.found;
                self.found |= before;
                out.push(st);
                if is_loop && inner {
                    let (flag, brk) = (self.flag, self.brk());
                    out.push(syn::parse_quote!(if #flag { #brk; }));
                }
            }
            b.stmts = out;
        }
        fn visit_local_mut(&mut self, l: &mut syn::Local) {
            match value_loop_of(l) {
                Some(body) => self.in_loop(Some(placeholder()), body),
                None => syn::visit_mut::visit_local_mut(self, l),
            }
        }
        fn visit_expr_for_loop_mut(&mut self, f: &mut syn::ExprForLoop) {
            self.in_loop(None, &mut f.body);
        }
        fn visit_expr_while_mut(&mut self, w: &mut syn::ExprWhile) {
            self.in_loop(None, &mut w.body);
        }
        fn visit_expr_loop_mut(&mut self, l: &mut syn::ExprLoop) {
            self.in_loop(None, &mut l.body);
        }
        fn visit_expr_closure_mut(&mut self, _: &mut syn::ExprClosure) {}
        fn visit_item_mut(&mut self, _: &mut syn::Item) {}
    }
    /// `let r = loop { .. };`: the loop's body.
    fn value_loop_of(l: &mut syn::Local) -> Option<&mut syn::Block> {
        match l.init.as_mut().map(|i| &mut *i.expr) {
            Some(Expr::Loop(lp)) => Some(&mut lp.body),
            _ => None,
        }
    }
    fn value_loop(st: &mut syn::Stmt) -> Option<&mut syn::Block> {
        match st {
            syn::Stmt::Local(l) => value_loop_of(l),
            _ => None,
        }
    }
    fn placeholder() -> Expr {
        syn::parse_quote!(::backprop::__private::zero())
    }
    let (ret, flag) = names;
    let mut out = Vec::new();
    let mut lifted = false;
    for st in stmts {
        let mut st = st.clone();
        let (body, break_value) = match &mut st {
            syn::Stmt::Expr(Expr::ForLoop(f), _) => (Some(&mut f.body), None),
            syn::Stmt::Expr(Expr::While(w), _) => (Some(&mut w.body), None),
            syn::Stmt::Expr(Expr::Loop(l), _) => (Some(&mut l.body), None),
            other => (value_loop(other), Some(placeholder())),
        };
        let mut found = false;
        if let Some(body) = body {
            let mut lift = Lift {
                ret,
                flag,
                found: false,
                break_value,
            };
            lift.visit_block_mut(body);
            found = lift.found;
        }
        out.push(st);
        if found {
            lifted = true;
            out.push(syn::parse_quote!(if #flag { return #ret; }));
        }
    }
    // A body that ends with a `loop` left only by `return`: its value is the returned one.
    if lifted
        && matches!(stmts.last(), Some(syn::Stmt::Expr(Expr::Loop(_), _)))
        && matches!(out.last(), Some(syn::Stmt::Expr(Expr::If(_), _)))
    {
        out.pop();
        out.push(syn::Stmt::Expr(syn::parse_quote!(#ret), None));
    }
    if !lifted {
        return stmts.to_vec();
    }
    let ty = ret_ty.map_or_else(|| quote::quote!(f64), |t| t.to_token_stream());
    let mut with_flags: Vec<syn::Stmt> = vec![
        syn::parse_quote!(let mut #ret: #ty = ::backprop::__private::zero();),
        syn::parse_quote!(let mut #flag = false;),
    ];
    with_flags.extend(out);
    with_flags
}

/// Whether the body matches on `x` or compares it (`match x`, `matches!(x, ..)`,
/// `if let P = x`, `x == y`, `x != y`): what a program does with an enum or other data,
/// never with a struct of parameters.
pub(crate) fn used_as_data(body: &syn::Block, x: &Ident) -> bool {
    use syn::visit::Visit;
    struct Find<'a> {
        x: &'a Ident,
        found: bool,
    }
    impl Find<'_> {
        fn is_x(&self, e: &Expr) -> bool {
            match e {
                Expr::Path(p) => p.path.is_ident(self.x),
                Expr::Reference(r) => self.is_x(&r.expr),
                Expr::Paren(p) => self.is_x(&p.expr),
                Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => self.is_x(&u.expr),
                _ => false,
            }
        }
    }
    impl<'a> Visit<'a> for Find<'_> {
        fn visit_expr(&mut self, e: &'a Expr) {
            match e {
                Expr::Match(m) if self.is_x(&m.expr) => self.found = true,
                Expr::Let(l) if self.is_x(&l.expr) => self.found = true,
                Expr::Binary(b)
                    if matches!(b.op, BinOp::Eq(_) | BinOp::Ne(_))
                        && (self.is_x(&b.left) || self.is_x(&b.right)) =>
                {
                    self.found = true
                }
                Expr::Macro(m) if m.mac.path.is_ident("matches") => {
                    let first = m.mac.parse_body_with(|input: syn::parse::ParseStream<'_>| {
                        let e: Expr = input.parse()?;
                        let _: proc_macro2::TokenStream = input.parse()?;
                        Ok(e)
                    });
                    if first.is_ok_and(|e| self.is_x(&e)) {
                        self.found = true;
                    }
                }
                _ => {}
            }
            syn::visit::visit_expr(self, e);
        }
    }
    let mut f = Find { x, found: false };
    f.visit_block(body);
    f.found
}

/// `let v = if c { ..; return r; } else { e };` in the function body is
/// `if c { ..; return r; } let v = { e };` (and `else { ..; return r; }` likewise, with
/// the condition negated): the early return the body supports, then a plain `let`.
fn split_returning_lets(stmts: &[syn::Stmt]) -> Vec<syn::Stmt> {
    fn returns(b: &syn::Block) -> bool {
        matches!(b.stmts.last(), Some(syn::Stmt::Expr(Expr::Return(r), _)) if r.expr.is_some())
    }
    let mut out = Vec::with_capacity(stmts.len());
    for st in stmts {
        if let syn::Stmt::Local(l) = st
            && let Some(init) = &l.init
            && init.diverge.is_none()
            && let Expr::If(i) = &*init.expr
            && let Some((_, else_expr)) = &i.else_branch
            && let Expr::Block(else_block) = &**else_expr
            && else_block.label.is_none()
            && returns(&i.then_branch) != returns(&else_block.block)
        {
            let cond = &i.cond;
            let (guard, value): (syn::Stmt, &syn::Block) = if returns(&i.then_branch) {
                let then = &i.then_branch;
                (
                    syn::parse_quote_spanned!(i.if_token.span=> if #cond #then),
                    &else_block.block,
                )
            } else {
                let els = &else_block.block;
                (
                    syn::parse_quote_spanned!(i.if_token.span=> if !(#cond) #els),
                    &i.then_branch,
                )
            };
            let mut plain = l.clone();
            plain.init = Some(syn::LocalInit {
                eq_token: init.eq_token,
                expr: Box::new(syn::parse_quote!(#value)),
                diverge: None,
            });
            out.push(guard);
            out.push(syn::Stmt::Local(plain));
            continue;
        }
        out.push(st.clone());
    }
    out
}

/// The names a `let` pattern binds.
fn pattern_names(pat: &Pat, out: &mut Vec<String>) {
    match pat {
        Pat::Ident(pi) => out.push(pi.ident.to_string()),
        Pat::Type(pt) => pattern_names(&pt.pat, out),
        Pat::Tuple(t) => t.elems.iter().for_each(|p| pattern_names(p, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| pattern_names(p, out)),
        Pat::Reference(r) => pattern_names(&r.pat, out),
        Pat::Paren(p) => pattern_names(&p.pat, out),
        Pat::Slice(s) => s.elems.iter().for_each(|p| pattern_names(p, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| pattern_names(&f.pat, out)),
        _ => {}
    }
}

/// A closure bound to a local, kept for inlining at its calls (see `local_closure`).
#[derive(Clone)]
struct LocalClosure {
    name: Ident,
    params: Vec<Ident>,
    body: Expr,
    /// The locals the body reads, as they were where the closure was made (inlining
    /// reads these, not what the names mean at the call).
    captures: Vec<(String, VarId)>,
}

/// The single-segment paths an expression reads (`x`, `w` in `w * x.exp()`).
fn free_names(e: &Expr, out: &mut Vec<String>) {
    use syn::visit::Visit;
    struct Find<'a>(&'a mut Vec<String>);
    impl<'v> Visit<'v> for Find<'_> {
        fn visit_expr_path(&mut self, p: &'v syn::ExprPath) {
            if let Some(i) = p.path.get_ident() {
                let n = i.to_string();
                if !self.0.contains(&n) {
                    self.0.push(n);
                }
            }
        }
    }
    Find(out).visit_expr(e);
}

/// A pattern that binds one name as it is (`n`, `mut n`) or nothing (`_`).
fn is_plain_binding(p: &Pat) -> bool {
    match p {
        Pat::Ident(pi) => pi.by_ref.is_none() && pi.subpat.is_none(),
        Pat::Wild(_) => true,
        _ => false,
    }
}

/// The names the block reads a field of (`layer.w`, `layer.0`), or passes as they are
/// to a function (`dense(&h, layer)`: a reference to a struct; a float reached through
/// an iterator is passed as `*v`).
fn field_bases(block: &syn::Block) -> HashSet<String> {
    struct V(HashSet<String>);
    impl<'ast> Visit<'ast> for V {
        fn visit_expr_field(&mut self, f: &'ast syn::ExprField) {
            if let Expr::Path(p) = &*f.base
                && let Some(i) = p.path.get_ident()
            {
                self.0.insert(i.to_string());
            }
            syn::visit::visit_expr_field(self, f);
        }
        fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
            for a in &c.args {
                if let Expr::Path(p) = a
                    && let Some(i) = p.path.get_ident()
                {
                    self.0.insert(i.to_string());
                }
            }
            syn::visit::visit_expr_call(self, c);
        }
    }
    let mut v = V(HashSet::new());
    v.visit_block(block);
    v.0
}

/// The element type of a slice, array or `Vec` type (through references, parentheses
/// and invisible groups): `Layer` for `&[Layer]`, `f64` for `Vec<f64>`.
pub(crate) fn collection_elem(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => collection_elem(&r.elem),
        Type::Paren(p) => collection_elem(&p.elem),
        Type::Group(g) => collection_elem(&g.elem),
        Type::Slice(s) => Some(&s.elem),
        Type::Array(a) => Some(&a.elem),
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            if last.ident != "Vec" {
                return None;
            }
            let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            match args.args.first()? {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            }
        }
        _ => None,
    }
}
