//! Collects every error with its span, so one compile shows all problems.

use std::cell::RefCell;
use std::fmt::Display;

/// An error collector that must be checked: dropping it with errors unread is a bug
/// in the macro (caught in tests by the panic in `Drop`).
pub struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Records an error spanned on `tokens` (the user's offending code).
    pub fn error_spanned_by<T: quote::ToTokens, M: Display>(&self, tokens: T, message: M) {
        self.push(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Records an error at `span`.
    pub fn error_at<M: Display>(&self, span: proc_macro2::Span, message: M) {
        self.push(syn::Error::new(span, message));
    }

    pub fn push(&self, err: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("Ctxt used after check")
            .push(err);
    }

    /// How many errors were recorded so far (a stage that finds new ones can stop
    /// before it reports their consequences).
    pub fn error_count(&self) -> usize {
        self.errors.borrow().as_ref().map_or(0, Vec::len)
    }

    /// Consumes the collector: `Err` with all errors combined, if there were any. An
    /// error whose message repeats an earlier one (a closure called twice) is dropped:
    /// one refusal, one error.
    pub fn check(self) -> Result<(), Vec<syn::Error>> {
        let mut errors = self.errors.borrow_mut().take().expect("Ctxt checked twice");
        let mut seen = std::collections::HashSet::new();
        errors.retain(|e| seen.insert(e.to_string()));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("backprop-derive: Ctxt dropped without check()");
        }
    }
}
