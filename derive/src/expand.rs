//! The pipeline: attribute → lower → analyse → emit; any error → fallback.

use crate::diag::Ctxt;
use crate::{analysis, attr, emit, fallback, ir};
use proc_macro2::TokenStream;
use quote::quote;
use syn::visit_mut::VisitMut;

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
        // A list naming a non-argument (`#[grad(z)]`, its own error above) stands for
        // the default, every float argument, so callers' `g.a` adds no error.
        let names_arguments = |list: &Vec<syn::Ident>| {
            list.iter().all(|n| {
                item_fn.sig.inputs.iter().any(|a| match a {
                    syn::FnArg::Typed(pt) => {
                        matches!(&*pt.pat, syn::Pat::Ident(pi) if pi.ident == *n)
                    }
                    syn::FnArg::Receiver(_) => n == "self",
                })
            })
        };
        let active = args.active.as_ref().filter(|l| names_arguments(l));
        return fallback::expand(&item_fn, active.map(|l| l.as_slice()), errors);
    }
    let (Some(func), Some(plan)) = (func, plan) else {
        // lower() always returns a function; kept total rather than unwrapped.
        return fallback::expand(&item_fn, args.active.as_deref(), Vec::new());
    };
    if std::env::var_os("BACKPROP_DEBUG").is_some_and(|v| v == "1") {
        // The emitter prints what the tape keeps after this.
        eprintln!("#[grad] {}:\n{func}", item_fn.sig.ident);
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
