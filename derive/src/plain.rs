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
//! (&::backprop::__private::tensor::plain_dot(&(a), b, |__a, __b| __a.dot(__b)))
//!     .plain_dot_product()
//! ```
//!
//! with [`IMPORT`] beside the item. `PlainDotKernel` is implemented for two matrices and
//! is found first; any other pair (vectors, another crate's types with a `dot` method)
//! finds `PlainDotMethod`, which calls the closure: the method as written, type-checked
//! as written. The expression is not wrapped in a block, so its temporaries live as
//! long as the original's (a `dot` may return a borrow of its receiver).

use proc_macro2::{Span, TokenStream};
use quote::quote_spanned;
use syn::visit_mut::VisitMut;

/// The import the rewritten products need, emitted once beside each item that has one
/// (underscore imports never clash, so several `#[grad]` items may each bring it).
pub fn import() -> TokenStream {
    quote_spanned!(Span::call_site()=>
        #[allow(unused_imports)]
        use ::backprop::__private::tensor::{PlainDotKernel as _, PlainDotMethod as _};
    )
}

/// Rewrites `recv.dot(arg)` (one argument, no turbofish, no attributes) in the form
/// above, products inside its operands included; says whether it rewrote any. The
/// generated tokens get the call-site span (lints treat them as generated); the
/// operands and the method name keep theirs, so a type error in the method as written
/// points at it.
struct Rewrite(bool);

impl VisitMut for Rewrite {
    fn visit_expr_mut(&mut self, e: &mut syn::Expr) {
        syn::visit_mut::visit_expr_mut(self, e);
        let syn::Expr::MethodCall(m) = e else {
            return;
        };
        if m.method != "dot" || m.args.len() != 1 || m.turbofish.is_some() || !m.attrs.is_empty() {
            return;
        }
        let (a, b, dot) = (&m.receiver, &m.args[0], &m.method);
        let s = Span::call_site();
        *e = syn::parse_quote_spanned!(s=>
            (&::backprop::__private::tensor::plain_dot(&(#a), #b, |__a, __b| __a.#dot(__b)))
                .plain_dot_product()
        );
        self.0 = true;
    }
}

/// `block`'s products rewritten; whether there were any (then [`import`] is needed).
pub fn rewrite(block: &mut syn::Block) -> bool {
    let mut r = Rewrite(false);
    r.visit_block_mut(block);
    r.0
}

/// An expression of the body the companions keep as written (a constant operand, such
/// as `basis().dot(&proj())`): its products rewritten as in `f`, so both agree.
pub fn rewrite_expr(e: &syn::Expr) -> syn::Expr {
    let mut e = e.clone();
    Rewrite(false).visit_expr_mut(&mut e);
    e
}
