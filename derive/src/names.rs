//! Deterministic, collision-free names for everything the expansion introduces.
//!
//! Every identifier the user's function mentions is reserved up front; new names are
//! the user's name (`x`), then `x_1`, `x_2` for later versions, `t0`, `t1` for
//! temporaries, `d_x` for the adjoint of `x` and `tape_x` for a call's tape, each
//! bumped with a counter on collision. No random ids (snapshots stay stable).

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use std::collections::HashSet;

/// The name a method's receiver takes in the free function `#[grad]` makes of it, and
/// of its gradient's field (`g.self_`).
pub const SELF_ARG: &str = "self_";

#[derive(Clone)]
pub struct Names {
    used: HashSet<String>,
    next_temp: usize,
}

impl Names {
    /// Reserves every identifier that appears in `tokens`.
    pub fn new(tokens: TokenStream) -> Self {
        let mut used = HashSet::new();
        collect(tokens, &mut used);
        Names { used, next_temp: 0 }
    }

    /// `base` if free, else `base_1`, `base_2`, ... A raw identifier's base is its
    /// name without `r#`, and a candidate that is a keyword is skipped, so a later
    /// version of `r#loop` is `loop_1`.
    pub fn fresh(&mut self, base: &str, span: Span) -> Ident {
        let base = base.trim_start_matches("r#");
        let mut candidate = base.to_string();
        let mut k = 1;
        while is_keyword(&candidate) || !self.used.insert(candidate.clone()) {
            candidate = format!("{base}_{k}");
            k += 1;
        }
        Ident::new(&candidate, span)
    }

    /// Marks a user binding's first occurrence as taken by us (it was reserved as a
    /// user identifier, which is exactly the name we want for it).
    pub fn claim_user(&mut self, ident: &Ident, first: bool) -> Ident {
        if first {
            // The user's own name (raw or not): reserved already, used as is.
            ident.clone()
        } else {
            self.fresh(&ident.to_string(), ident.span())
        }
    }

    /// Marks every name `other` has taken as taken here too (after two runs from the
    /// same state, such as the two reverse bodies, which may reuse each other's names).
    pub fn absorb(&mut self, other: Names) {
        self.used.extend(other.used);
        self.next_temp = self.next_temp.max(other.next_temp);
    }

    /// Marks `name` as taken (a value's emitted name).
    pub fn reserve(&mut self, name: &str) {
        self.used.insert(name.trim_start_matches("r#").to_string());
    }

    /// `t0`, `t1`, ... skipping anything taken.
    pub fn temp(&mut self, span: Span) -> Ident {
        loop {
            let candidate = format!("t{}", self.next_temp);
            self.next_temp += 1;
            if self.used.insert(candidate.clone()) {
                return Ident::new(&candidate, span);
            }
        }
    }
}

fn collect(tokens: TokenStream, used: &mut HashSet<String>) {
    for tt in tokens {
        match tt {
            TokenTree::Ident(i) => {
                used.insert(i.to_string().trim_start_matches("r#").to_string());
            }
            TokenTree::Group(g) => collect(g.stream(), used),
            _ => {}
        }
    }
}

/// Rust's strict and reserved keywords (2024 edition): never a generated name.
fn is_keyword(s: &str) -> bool {
    matches!(
        s,
        "as" | "break"
            | "const"
            | "continue"
            | "crate"
            | "else"
            | "enum"
            | "extern"
            | "false"
            | "fn"
            | "for"
            | "if"
            | "impl"
            | "in"
            | "let"
            | "loop"
            | "match"
            | "mod"
            | "move"
            | "mut"
            | "pub"
            | "ref"
            | "return"
            | "self"
            | "Self"
            | "static"
            | "struct"
            | "super"
            | "trait"
            | "true"
            | "type"
            | "unsafe"
            | "use"
            | "where"
            | "while"
            | "async"
            | "await"
            | "dyn"
            | "abstract"
            | "become"
            | "box"
            | "do"
            | "final"
            | "macro"
            | "override"
            | "priv"
            | "typeof"
            | "unsized"
            | "virtual"
            | "yield"
            | "try"
            | "gen"
    )
}
