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
            let err = syn::Error::new(
                proc_macro2::Span::call_site(),
                "`#[grad]` goes on a free function of floats, such as `fn loss(w: f64, x: f64) -> f64 { ... }`",
            )
            .to_compile_error();
            return quote!(#err #item);
        }
    };
    // A method (`self`) sits in an impl block, where the stub companions (free functions
    // and structs) cannot go: report the error on the original item alone.
    if let Some(syn::FnArg::Receiver(r)) = item_fn.sig.inputs.first() {
        let err = syn::Error::new_spanned(
            r,
            "`#[grad]` cannot differentiate a method taking `self`: write a free function and pass the value as an argument",
        )
        .to_compile_error();
        return quote!(#err #item_fn);
    }
    // An associated function: the companions are items an `impl` cannot hold, so say
    // that once instead of letting rustc report each of them.
    if crate::context::in_impl_or_trait(item_fn.sig.fn_token.span) == Some(true) {
        let err = syn::Error::new_spanned(
            &item_fn.sig.ident,
            "`#[grad]` on an associated function (inside an `impl` or `trait`) is not supported yet: what it generates (`FGrad`, `f_grad`, the rule companion) are items an `impl` cannot hold; write a free function (`fn loss(m: &Model, ..)`) and call it from the method",
        )
        .to_compile_error();
        return quote!(#err #item_fn);
    }
    let conds = match crate::cfg::conditions(&item_fn.block) {
        Ok(c) => c,
        Err(e) => {
            let active = attr::parse(attr).ok().and_then(|a| a.active);
            return fallback::expand(&item_fn, active.as_deref(), vec![e]);
        }
    };
    if !conds.is_empty() {
        return per_configuration(attr, &item_fn, &conds);
    }
    pipeline(attr, &item_fn)
}

/// One expansion per combination of the body's `#[cfg]` conditions (see `cfg.rs`):
/// `f` once as written, and each combination's companions under its own `#[cfg]`.
fn per_configuration(
    attr: TokenStream,
    item_fn: &syn::ItemFn,
    conds: &[TokenStream],
) -> TokenStream {
    let mut out = quote!(#item_fn);
    for mask in 0..1u32 << conds.len() {
        let keep: Vec<bool> = (0..conds.len()).map(|k| mask >> k & 1 == 1).collect();
        let pruned = crate::cfg::prune(item_fn, conds, &keep);
        let expansion = pipeline(attr.clone(), &pruned);
        let pred = crate::cfg::predicate(conds, &keep);
        out.extend(crate::cfg::guard(expansion, &pred, &item_fn.sig.ident));
    }
    out
}

/// attribute → lower → analyse → emit, for a body without `#[cfg]`.
fn pipeline(attr: TokenStream, item_fn: &syn::ItemFn) -> TokenStream {
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
