//! A call on buffers or arrays this function made (`block(&x, blk)` after `let x = ..`).
//! The callee's tape would borrow them past the forward pass, which they do not outlive.
//! The forward pass copies them and runs the callee on the copies, and its tape owns
//! both (`__private::keep`):
//! ```text
//! let snapshot_x = Clone::clone(&x);
//! let (y, tape_y) = keep((snapshot_x,), (blk,), |kept, lent, _| {
//!     let (y, tape) = block::forward(&kept.0, lent.0);
//!     (y, boxed(tape))
//! });
//! ```
//! The other arguments go through `keep` rather than being captured: the type of the
//! kept tape then carries each one's lifetime, which must be one of the caller's own.
//! The reverse pass reads `tape_y` as it reads any call's tape. A call in `f_hvp`'s
//! tangent program still keeps only the copies and runs the callee's forward again in
//! reverse (`tangent_rebuild`): that program is differentiated once and is not the hot
//! path.

use crate::emit::context::Emitter;
use crate::ir::{BufOp, Operand, Rhs, Stmt, VarId};
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};

/// How a copied argument reaches the callee.
enum Lent {
    /// `&copy`: a borrow of the whole buffer, array or gradient part.
    Whole,
    /// `&copy[..]`: a view `&h[a..b]`, copied to a `Vec`.
    View,
    /// `&copy`: a borrow of a view of a local array (`&l` after `let l =
    /// z.insert_axis(Axis(0));`), copied to an owned array.
    OwnedView,
    /// `copy.view()`: a view of a local array (`h.view()`, `h.t()`), copied to an
    /// owned array in the view's order.
    ArrayView,
    /// `copy`: the argument was moved into the call.
    Moved,
}

impl<'a> Emitter<'a> {
    /// The call `s` whose arguments include buffers or arrays this function owns (see
    /// the module doc). `args` are the operands as the forward pass writes them.
    pub(super) fn kept_call(
        &mut self,
        s: &Stmt,
        path: &syn::ExprPath,
        arg_ops: &[Operand],
        args: &[TokenStream],
        tangent: bool,
        gradient_part: &dyn Fn(VarId) -> bool,
    ) -> TokenStream {
        let span = s.span;
        let def = self.var(s.def).clone();
        let ty = s.ty.as_ref().map(|t| quote!(: #t));
        let local_arrays = arg_ops
            .iter()
            .any(|a| a.var().is_some_and(|v| self.lends_local_array(v)));
        let mut saves = Vec::new();
        let mut copies = Vec::new();
        let mut names = Vec::new();
        // The arguments whose local moved into its copy (`&zeros`, read by nothing else).
        let mut gone = Vec::new();
        // The callee's arguments inside the closure: `&kept.0` for a copy, `lent.1` for
        // the others, which reach it through `keep` (not captured: see `__private::keep`).
        let mut lent = Vec::new();
        // The other arguments, in order.
        let mut passed = Vec::new();
        // The closure's parameters: fresh names, so they shadow none of the arguments.
        let kept = self.names.fresh("kept", span);
        let others = self.names.fresh("lent", span);
        for (a, arg) in arg_ops.iter().zip(args) {
            let copied = a.var().filter(|&v| {
                self.is_local_buffer(v)
                    || gradient_part(v)
                    || self.is_owned_argument_part(v)
                    || local_arrays && self.lends_local_array(v)
            });
            let Some(v) = copied else {
                names.push(None);
                let j = syn::Index::from(passed.len());
                lent.push(quote!(#others.#j));
                passed.push(arg.clone());
                continue;
            };
            let x = self.var(v).clone();
            let snap = self.names.fresh(
                &format!("snapshot_{}", x.to_string().trim_start_matches("r#")),
                span,
            );
            // The copy has the argument's own type: `&h` lends `&copy` (a `&Vec` or
            // `&[f64; N]`), a view `&h[a..b]` a slice, `h` itself (moved) the copy.
            let how = match self.func.def_of(v) {
                Some(Stmt {
                    rhs:
                        Rhs::Buffer {
                            op: BufOp::Borrow | BufOp::Field(_) | BufOp::Elem,
                            ..
                        },
                    ..
                }) => Lent::Whole,
                Some(Stmt {
                    rhs: Rhs::Prim { prim, .. },
                    ..
                }) if prim.name == "&" && self.view_of_local(v, false) => Lent::OwnedView,
                Some(Stmt {
                    rhs: Rhs::Prim { prim, .. },
                    ..
                }) if prim.name == "&" => Lent::Whole,
                Some(Stmt {
                    rhs:
                        Rhs::Buffer {
                            op: BufOp::View, ..
                        },
                    ..
                }) => Lent::View,
                _ if self.is_local_view(v) => Lent::ArrayView,
                _ => Lent::Moved,
            };
            // A moved argument needs no copy when the callee's tape may own it.
            if matches!(how, Lent::Moved) && !tangent {
                names.push(None);
                let j = syn::Index::from(passed.len());
                lent.push(quote!(#others.#j));
                passed.push(arg.clone());
                continue;
            }
            let moved_in = matches!(how, Lent::Whole) && self.moves_into_call(v, s.def);
            let copy = match how {
                // `&t` of a local nothing else reads: `t` itself moves into the tape.
                Lent::Whole if moved_in => {
                    let Some(Stmt {
                        rhs: Rhs::Prim { args, .. },
                        ..
                    }) = self.func.def_of(v)
                    else {
                        unreachable!("checked by moves_into_call")
                    };
                    let t = self.operand(&args[0]);
                    quote!(#t)
                }
                Lent::Whole => quote!(::core::clone::Clone::clone(#x)),
                Lent::View => quote!(::std::vec::Vec::from(&#x[..])),
                Lent::ArrayView => quote!(::backprop::__private::tensor::owned_view(&#x)),
                Lent::OwnedView => quote!(::backprop::__private::tensor::owned_view(#x)),
                Lent::Moved => quote!(::core::clone::Clone::clone(&#x)),
            };
            saves.push(quote_spanned!(span=> let #snap = #copy;));
            let counter = self.heap_name();
            saves.push(quote_spanned!(span=> #counter += {
                #[allow(unused_imports)]
                use ::backprop::__private::{HeapOfOther as _, HeapOfOwned as _};
                (&::backprop::__private::Probe(&#snap)).heap_bytes()
            };));
            let pass = match how {
                Lent::Whole => quote!(&#snap),
                Lent::View => quote!(&#snap[..]),
                Lent::ArrayView => quote!(#snap.view()),
                Lent::OwnedView => quote!(&#snap),
                Lent::Moved => quote!(#snap),
            };
            let i = syn::Index::from(copies.len());
            lent.push(match how {
                Lent::Whole => quote!(&#kept.#i),
                Lent::View => quote!(&#kept.#i[..]),
                Lent::ArrayView => quote!(#kept.#i.view()),
                Lent::OwnedView => quote!(&#kept.#i),
                Lent::Moved => quote!(#kept.#i),
            });
            copies.push(snap.clone());
            if moved_in {
                gone.push(names.len());
            }
            names.push(Some((snap, pass)));
        }
        if tangent {
            // The tangent program's calls: copies only, the forward pass again in reverse.
            // A borrowed local that moved into its copy (`&zeros`, read by nothing else)
            // is gone: the call reads the copy.
            let call_args: Vec<TokenStream> = args
                .iter()
                .zip(&names)
                .enumerate()
                .map(|(k, (a, n))| match n {
                    Some((_, pass)) if gone.contains(&k) => pass.clone(),
                    _ => a.clone(),
                })
                .collect();
            self.snapshots.insert(s.def, names);
            let companion = super::super::companions::companion_method(path, "tangent_forward");
            return quote_spanned!(span=> #(#saves)* let (#def, _) = #companion(#(#call_args),*););
        }
        let tape = self.tape(s.def);
        let companion = super::super::companions::companion_path(path);
        let value = format_ident!("value", span = span);
        let callee_tape = format_ident!("tape", span = span);
        quote_spanned!(span=>
            #(#saves)*
            let (#def, #tape) = ::backprop::__private::keep((#(#copies,)*), (#(#passed,)*), |#kept, #others, _| {
                let (#value #ty, #callee_tape) = #companion(#(#lent),*);
                (#value, ::backprop::__private::boxed(#callee_tape))
            });
        )
    }
}
