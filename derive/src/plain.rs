//! The plain function `f` beside its companions: the body as written, except that each
//! matrix product `a.dot(b)` runs where the forward pass runs it, on the runtime's
//! matmul, whenever both operands are 2-D ndarray arrays of a `Real` element type.
//! ndarray's own `dot` (matrixmultiply) is AVX2-only and threads up to four cores, so
//! inference through `f` was slower than the taped `f_forward` (issue 16); with one
//! kernel, `f`'s value also equals `f_grad`'s.
//!
//! Which `dot` runs is decided by the types, at compile time, with no analysis of the
//! body: `a.dot(b)` becomes
//!
//! ```text
//! {
//!     use ::backprop::__private::tensor::{PlainDotKernel as _, PlainDotMethod as _};
//!     (&::backprop::__private::tensor::plain_dot(&(a), b, |a, b| a.dot(b))).product()
//! }
//! ```
//!
//! `PlainDotKernel` is implemented for two matrices and is found first; any other pair
//! (vectors, another crate's types with a `dot` method) finds `PlainDotMethod`, which
//! calls the closure: the method as written, type-checked as written.

use proc_macro2::Span;
use syn::visit_mut::VisitMut;

/// `block` with each `recv.dot(arg)` (one argument, no turbofish, no attributes) in
/// the dispatching form above, products inside its operands included. The generated
/// tokens get the call-site span (lints treat them as generated); the operands and the
/// method name keep theirs, so a type error in the method as written points at it.
pub fn rewrite(block: &mut syn::Block) {
    struct Rewrite;
    impl VisitMut for Rewrite {
        fn visit_expr_mut(&mut self, e: &mut syn::Expr) {
            syn::visit_mut::visit_expr_mut(self, e);
            let syn::Expr::MethodCall(m) = e else {
                return;
            };
            if m.method != "dot"
                || m.args.len() != 1
                || m.turbofish.is_some()
                || !m.attrs.is_empty()
            {
                return;
            }
            let (a, b, dot) = (&m.receiver, &m.args[0], &m.method);
            let s = Span::call_site();
            *e = syn::parse_quote_spanned!(s=> {
                use ::backprop::__private::tensor::{PlainDotKernel as _, PlainDotMethod as _};
                (&::backprop::__private::tensor::plain_dot(
                    &(#a),
                    #b,
                    |__a, __b| __a.#dot(__b),
                ))
                .product()
            });
        }
    }
    Rewrite.visit_block_mut(block);
}
