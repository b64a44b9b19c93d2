//! The pipeline: attribute → lower → analyse → emit; any error → fallback.

use crate::diag::Ctxt;
use crate::{analysis, attr, emit, fallback, ir};
use proc_macro2::TokenStream;
use quote::quote;
use syn::visit_mut::VisitMut;

pub fn grad(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item_fn: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            // `#[grad] impl Model { #[grad] fn loss(&self, ..) .. }`: see `methods.rs`.
            if let Ok(item_impl) = syn::parse2::<syn::ItemImpl>(item.clone()) {
                return crate::methods::grad_impl(attr, item_impl);
            }
            let err = syn::Error::new(
                proc_macro2::Span::call_site(),
                "`#[grad]` goes on a free function of floats, such as `fn loss(w: f64, x: f64) -> f64 { ... }`",
            )
            .to_compile_error();
            return quote!(#err #item);
        }
    };
    // A method or an associated function without `#[grad]` on its `impl`: the
    // companions (structs, free functions) cannot go in the impl block. One error, and
    // stub methods so that call sites add none (see `methods.rs`).
    let receiver = matches!(item_fn.sig.inputs.first(), Some(syn::FnArg::Receiver(_)));
    let context = crate::context::enclosing_block(item_fn.sig.fn_token.span);
    if receiver || context.is_some_and(|c| c != crate::context::Block::Other) {
        return crate::methods::refuse_without_impl_attr(&item_fn, context);
    }
    grad_fn(attr, &item_fn).0
}

/// `#[grad]` on a free function (or on a method turned into one by `methods.rs`): the
/// expansion, and what methods forwarding to its companions need.
pub fn grad_fn(attr: TokenStream, item_fn: &syn::ItemFn) -> (TokenStream, emit::Api) {
    let conds = match crate::cfg::conditions(&item_fn.block) {
        Ok(c) => c,
        Err(e) => {
            let active = attr::parse(attr).ok().and_then(|a| a.active);
            return fallback::expand(item_fn, active.as_deref(), vec![e]);
        }
    };
    if !conds.is_empty() {
        return per_configuration(attr, item_fn, &conds);
    }
    pipeline(attr, item_fn)
}

/// One expansion per combination of the body's `#[cfg]` conditions (see `cfg.rs`):
/// `f` once as written, and each combination's companions under its own `#[cfg]`.
fn per_configuration(
    attr: TokenStream,
    item_fn: &syn::ItemFn,
    conds: &[TokenStream],
) -> (TokenStream, emit::Api) {
    let mut out = quote!(#item_fn);
    let mut api = None;
    for mask in 0..1u32 << conds.len() {
        let keep: Vec<bool> = (0..conds.len()).map(|k| mask >> k & 1 == 1).collect();
        let pruned = crate::cfg::prune(item_fn, conds, &keep);
        let (expansion, a) = pipeline(attr.clone(), &pruned);
        // (Every combination has the same signature; the first one's gradient type
        // stands for all.)
        api.get_or_insert(a);
        let pred = crate::cfg::predicate(conds, &keep);
        out.extend(crate::cfg::guard(expansion, &pred, &item_fn.sig.ident));
    }
    (out, api.expect("at least one combination"))
}

/// attribute → lower → analyse → emit, for a body without `#[cfg]`.
fn pipeline(attr: TokenStream, item_fn: &syn::ItemFn) -> (TokenStream, emit::Api) {
    let mut item_fn = item_fn.clone();
    // An empty statement (`let y = x;;`) is nothing to rustc; syn keeps it as an empty
    // expression, which the generated code must not repeat.
    EmptyStatements.visit_block_mut(&mut item_fn.block);
    let args = match attr::parse(attr) {
        Ok(a) => a,
        Err(e) => return fallback::expand(&item_fn, Some(&[]), vec![e]),
    };
    let cx = Ctxt::new();
    let func = ir::lower::lower(&cx, &item_fn, &args);
    let plan = func.as_ref().map(|f| analysis::analyse(&cx, f));
    if let Err(errors) = cx.check() {
        return fallback::expand(&item_fn, args.active.as_deref(), errors);
    }
    let (Some(func), Some(plan)) = (func, plan) else {
        // lower() always returns a function; kept total rather than unwrapped.
        return fallback::expand(&item_fn, args.active.as_deref(), Vec::new());
    };
    if std::env::var_os("BACKPROP_DEBUG").is_some_and(|v| v == "1") {
        let saved: Vec<String> = plan
            .saved
            .iter()
            .map(|v| func.name(*v).to_string())
            .collect();
        eprintln!(
            "#[grad] {}:\n{func}tape: {}\n",
            item_fn.sig.ident,
            saved.join(", ")
        );
    }
    emit::emit(&item_fn, &func, &plan)
}

struct EmptyStatements;

impl syn::visit_mut::VisitMut for EmptyStatements {
    fn visit_block_mut(&mut self, b: &mut syn::Block) {
        b.stmts
            .retain(|s| !matches!(s, syn::Stmt::Expr(syn::Expr::Verbatim(t), _) if t.is_empty()));
        syn::visit_mut::visit_block_mut(self, b);
    }
}
