//! The scalar rule table (`rule_table.in`), parsed once per compiler process.
//!
//! The table is the one declaration of every differentiable scalar operation: the
//! macro reads each method's inputs and, per input, the rule its pullback calls and the
//! values that rule reads; the runtime reads the same tokens through
//! [`crate::ir::rule_table`]'s `__rule_table!` and generates the rule functions (strong
//! zero, plain, elementwise) from the bodies. See the grammar at the top of the file.

use crate::ir::op::{Need, Prim, Vjp};
use proc_macro2::TokenStream;
use std::sync::OnceLock;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Token};

/// The table's text, compiled into the macro.
pub const SOURCE: &str = include_str!("../rule_table.in");

/// How an operation is spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelled {
    /// `a * b`: the binary and unary operators.
    Operator,
    /// `x.name(args)`: a float method, elementwise on arrays.
    Method,
    /// `x.floor()`: a float method with derivative zero wherever it exists.
    Constant,
}

/// One operation. The macro reads names, inputs and rules; the rest (sources,
/// conventions, docs) is for `docs/RULES.md`, rendered by a test.
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct Entry {
    pub spelled: Spelled,
    pub name: String,
    /// Input names, in call order (a method's receiver first).
    pub inputs: Vec<String>,
    pub output: String,
    pub source: String,
    pub convention: String,
    /// One per input, in the order the entry lists them.
    pub lines: Vec<Line>,
}

/// The pullback of one input.
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct Line {
    pub input: String,
    pub pullback: Pullback,
    /// The doc comment (the rule's documentation in the runtime), joined into one line.
    pub doc: String,
}

#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub enum Pullback {
    Identity,
    Negate,
    Zero,
    /// A rule function, the names of the values it reads (without the cotangent `d`),
    /// and whether this line gives its body (else it is declared by an earlier line).
    Rule {
        name: String,
        reads: Vec<String>,
        defined_here: bool,
    },
}

impl Entry {
    /// What rule `name`'s `k`-th read is: an input or the output.
    fn need(&self, read: &str) -> syn::Result<Need> {
        if read == self.output {
            return Ok(Need::Out);
        }
        match self.inputs.iter().position(|i| i == read) {
            Some(k) => Ok(Need::In(k)),
            None => Err(syn::Error::new(
                proc_macro2::Span::call_site(),
                format!(
                    "rule table: `{}` reads `{read}`, which is neither an input nor the output",
                    self.name
                ),
            )),
        }
    }

    /// The [`Prim`] the macro lowers a use of this operation to.
    fn prim(&self) -> syn::Result<Prim> {
        let mut vjps = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            let Some(line) = self.lines.iter().find(|l| &l.input == input) else {
                return Err(syn::Error::new(
                    proc_macro2::Span::call_site(),
                    format!("rule table: `{}` has no line `d_{input}`", self.name),
                ));
            };
            vjps.push(match &line.pullback {
                Pullback::Identity => Vjp::Identity,
                Pullback::Negate => Vjp::Negate,
                Pullback::Zero => Vjp::Zero,
                Pullback::Rule { name, reads, .. } => {
                    let needs = reads
                        .iter()
                        .map(|r| self.need(r))
                        .collect::<syn::Result<Vec<_>>>()?;
                    Vjp::Rule(leak(name.clone()), Vec::leak(needs))
                }
            });
        }
        Ok(Prim {
            name: leak(self.name.clone()),
            vjps: Vec::leak(vjps),
            tensor: None,
            reduces: false,
        })
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[cfg_attr(not(test), allow(dead_code))]
struct Parsed {
    entries: Vec<Entry>,
    /// The `method` entries as the macro's primitives, in table order.
    methods: Vec<Prim>,
    /// The `constant` entries' names, in table order.
    constants: Vec<&'static str>,
}

fn parsed() -> &'static Parsed {
    static TABLE: OnceLock<Parsed> = OnceLock::new();
    TABLE.get_or_init(|| {
        let table: Table = syn::parse_str(SOURCE).unwrap_or_else(|e| {
            panic!("derive/src/rule_table.in does not parse: {e}");
        });
        let methods = table
            .0
            .iter()
            .filter(|e| e.spelled == Spelled::Method)
            .map(|e| e.prim().unwrap_or_else(|err| panic!("{err}")))
            .collect();
        let constants = table
            .0
            .iter()
            .filter(|e| e.spelled == Spelled::Constant)
            .map(|e| leak(e.name.clone()))
            .collect();
        Parsed {
            entries: table.0,
            methods,
            constants,
        }
    })
}

/// Every entry, in table order.
#[cfg(test)]
pub fn entries() -> &'static [Entry] {
    &parsed().entries
}

/// The float methods with a rule, in table order.
pub fn methods() -> &'static [Prim] {
    &parsed().methods
}

/// The float methods whose derivative is zero wherever it exists (`floor`, ...).
pub fn constants() -> &'static [&'static str] {
    &parsed().constants
}

/// `__rule_table!(callback)`: `callback! { <the table> }`; `__rule_table!(callback,
/// args..)`: `callback! { args..; <the table> }`. For the runtime.
pub fn expand(input: TokenStream) -> TokenStream {
    struct Call {
        callback: syn::Path,
        args: TokenStream,
    }
    impl Parse for Call {
        fn parse(input: ParseStream) -> syn::Result<Self> {
            let callback = input.parse()?;
            let args = if input.peek(Token![,]) {
                input.parse::<Token![,]>()?;
                let rest: TokenStream = input.parse()?;
                quote::quote!(#rest;)
            } else {
                TokenStream::new()
            };
            Ok(Call { callback, args })
        }
    }
    let Call { callback, args } = match syn::parse2(input) {
        Ok(c) => c,
        Err(e) => return e.to_compile_error(),
    };
    let table: TokenStream = SOURCE.parse().expect("the rule table lexes");
    quote::quote! { #callback! { #args #table } }
}

// ---- parsing --------------------------------------------------------------------------

struct Table(Vec<Entry>);

impl Parse for Table {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut entries = Vec::new();
        while !input.is_empty() {
            entries.push(input.parse()?);
        }
        Ok(Table(entries))
    }
}

/// `name` or `name: Type`.
struct Named(Ident);

impl Parse for Named {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name: Ident = input.parse()?;
        if input.peek(Token![:]) {
            input.parse::<Token![:]>()?;
            input.parse::<syn::Type>()?;
        }
        Ok(Named(name))
    }
}

fn attr_str(attrs: &[syn::Attribute], key: &str) -> syn::Result<Option<String>> {
    let Some(a) = attrs.iter().find(|a| a.path().is_ident(key)) else {
        return Ok(None);
    };
    let nv = a.meta.require_name_value()?;
    match &nv.value {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Ok(Some(s.value())),
        _ => Err(syn::Error::new_spanned(nv, "expected a string")),
    }
}

fn doc_of(attrs: &[syn::Attribute]) -> syn::Result<String> {
    let mut lines = Vec::new();
    for a in attrs.iter().filter(|a| a.path().is_ident("doc")) {
        let nv = a.meta.require_name_value()?;
        if let syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) = &nv.value
        {
            lines.push(s.value().trim().to_string());
        }
    }
    Ok(lines.join(" "))
}

impl Parse for Entry {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(syn::Attribute::parse_outer)?;
        let kind: Ident = input.parse()?;
        let spelled = match kind.to_string().as_str() {
            "operator" => Spelled::Operator,
            "method" => Spelled::Method,
            "constant" => Spelled::Constant,
            _ => {
                return Err(syn::Error::new(
                    kind.span(),
                    "expected `method`, `operator` or `constant`",
                ));
            }
        };
        let name: Ident = input.parse()?;
        let args;
        syn::parenthesized!(args in input);
        let inputs = Punctuated::<Named, Token![,]>::parse_terminated(&args)?
            .into_iter()
            .map(|n| n.0.to_string())
            .collect();
        input.parse::<Token![->]>()?;
        let output: Ident = input.parse()?;
        let body;
        syn::braced!(body in input);
        let mut lines = Vec::new();
        while !body.is_empty() {
            lines.push(body.parse()?);
        }
        let source = attr_str(&attrs, "source")?
            .ok_or_else(|| syn::Error::new(name.span(), "every entry has #[source = \"..\"]"))?;
        Ok(Entry {
            spelled,
            name: name.to_string(),
            inputs,
            output: output.to_string(),
            source,
            convention: attr_str(&attrs, "convention")?.unwrap_or_default(),
            lines,
        })
    }
}

impl Parse for Line {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(syn::Attribute::parse_outer)?;
        let d: Ident = input.parse()?;
        let d_text = d.to_string();
        let Some(name) = d_text.strip_prefix("d_") else {
            return Err(syn::Error::new(d.span(), "a line starts `d_<input> =`"));
        };
        input.parse::<Token![=]>()?;
        let rule: Ident = input.parse()?;
        let pullback = if input.peek(syn::token::Paren) {
            let args;
            syn::parenthesized!(args in input);
            let mut reads: Vec<String> = Punctuated::<Named, Token![,]>::parse_terminated(&args)?
                .into_iter()
                .map(|n| n.0.to_string())
                .collect();
            if reads.pop().as_deref() != Some("d") {
                return Err(syn::Error::new(
                    rule.span(),
                    "a rule's last argument is `d`",
                ));
            }
            let defined_here = input.peek(Token![=>]);
            if defined_here {
                input.parse::<Token![=>]>()?;
                input.parse::<syn::Expr>()?;
            }
            Pullback::Rule {
                name: rule.to_string(),
                reads,
                defined_here,
            }
        } else {
            match rule.to_string().as_str() {
                "identity" => Pullback::Identity,
                "negate" => Pullback::Negate,
                "zero" => Pullback::Zero,
                _ => {
                    return Err(syn::Error::new(
                        rule.span(),
                        "expected `identity`, `negate`, `zero` or `rule(reads.., d)`",
                    ));
                }
            }
        };
        input.parse::<Token![;]>()?;
        Ok(Line {
            input: name.to_string(),
            pullback,
            doc: doc_of(&attrs)?,
        })
    }
}

// ---- docs/RULES.md ------------------------------------------------------------------------

/// The markers around the generated table in `docs/RULES.md`.
#[cfg(test)]
pub const RULES_MD_BEGIN: &str = "<!-- BEGIN generated from derive/src/rule_table.in -->";
#[cfg(test)]
pub const RULES_MD_END: &str = "<!-- END generated -->";

/// The markdown table of every entry, one row per input.
#[cfg(test)]
pub fn rules_md() -> String {
    let mut out = String::from(
        "| op | input | pullback | rule (reads) | convention | source |\n|---|---|---|---|---|---|\n",
    );
    for e in entries() {
        let spelling = match e.spelled {
            Spelled::Operator => match e.name.as_str() {
                "add" => "`a + b`".to_string(),
                "sub" => "`a - b`".to_string(),
                "neg" => "`-x`".to_string(),
                "mul" => "`a * b`".to_string(),
                "div" => "`a / b`".to_string(),
                other => format!("`{other}`"),
            },
            Spelled::Method | Spelled::Constant => {
                let args = e.inputs[1..].join(", ");
                format!("`{}.{}({args})`", e.inputs[0], e.name)
            }
        };
        for (k, line) in e.lines.iter().enumerate() {
            let (what, rule) = match &line.pullback {
                Pullback::Identity => ("`d`".to_string(), "—".to_string()),
                Pullback::Negate => ("`−d`".to_string(), "—".to_string()),
                Pullback::Zero if e.spelled == Spelled::Constant => (
                    "0 (not differentiated through)".to_string(),
                    "—".to_string(),
                ),
                Pullback::Zero => ("nothing".to_string(), "—".to_string()),
                Pullback::Rule { name, reads, .. } => {
                    let doc = if line.doc.is_empty() {
                        format!("as `{name}`")
                    } else {
                        line.doc.replace('|', "\\|")
                    };
                    (doc, format!("`{name}({})`", reads.join(", ")))
                }
            };
            let first = k == 0;
            out.push_str(&format!(
                "| {} | `{}` | {what} | {rule} | {} | {} |\n",
                if first { spelling.as_str() } else { "" },
                line.input,
                if first { e.convention.as_str() } else { "" },
                if first { e.source.as_str() } else { "" },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_and_every_method_has_a_line_per_input() {
        assert!(methods().len() >= 30, "{} methods", methods().len());
        for e in entries() {
            assert_eq!(e.lines.len(), e.inputs.len(), "{}", e.name);
        }
    }

    #[test]
    fn constants_are_the_zero_derivative_methods() {
        assert_eq!(
            constants(),
            &[
                "floor",
                "ceil",
                "round",
                "round_ties_even",
                "trunc",
                "signum"
            ]
        );
    }

    #[test]
    fn rule_reads_become_needs() {
        let tanh = methods().iter().find(|p| p.name == "tanh").unwrap();
        assert_eq!(tanh.vjps, &[Vjp::Rule("tanh_vjp", &[Need::Out])]);
        let powi = methods().iter().find(|p| p.name == "powi").unwrap();
        assert_eq!(
            powi.vjps,
            &[
                Vjp::Rule("powi_vjp", &[Need::In(0), Need::In(1)]),
                Vjp::Zero
            ]
        );
        let log = methods().iter().find(|p| p.name == "log").unwrap();
        assert_eq!(
            log.vjps,
            &[
                Vjp::Rule("log_vjp_x", &[Need::In(0), Need::In(1)]),
                Vjp::Rule("log_vjp_base", &[Need::In(1), Need::Out])
            ]
        );
        let mul_add = methods().iter().find(|p| p.name == "mul_add").unwrap();
        assert_eq!(
            mul_add.vjps,
            &[
                Vjp::Rule("mul_vjp_lhs", &[Need::In(1)]),
                Vjp::Rule("mul_vjp_rhs", &[Need::In(0)]),
                Vjp::Identity
            ]
        );
    }

    /// Every rule a line names without a body is defined by an earlier line.
    #[test]
    fn every_rule_is_defined_once() {
        let mut defined = std::collections::HashSet::new();
        for e in entries() {
            for l in &e.lines {
                if let Pullback::Rule {
                    name, defined_here, ..
                } = &l.pullback
                {
                    if *defined_here {
                        assert!(defined.insert(name.clone()), "{name} defined twice");
                    } else {
                        assert!(defined.contains(name), "{name} used before its definition");
                    }
                }
            }
        }
    }

    /// The operators' scalar rules in `ir::op` are the table's (the array path's
    /// un-broadcasting overrides live there, beside them).
    #[test]
    fn operator_consts_match_the_table() {
        use crate::ir::op;
        for (name, prim) in [
            ("add", op::ADD),
            ("sub", op::SUB),
            ("neg", op::NEG),
            ("mul", op::MUL),
            ("div", op::DIV),
        ] {
            let e = entries().iter().find(|e| e.name == name).unwrap();
            assert_eq!(e.prim().unwrap().vjps, prim.vjps, "{name}");
        }
    }

    /// `docs/RULES.md` holds the table as rendered now (`BLESS=1` rewrites it).
    #[test]
    fn rules_md_is_fresh() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/RULES.md");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return; // a packaged crate has no docs/
        };
        let (Some(b), Some(e)) = (text.find(RULES_MD_BEGIN), text.find(RULES_MD_END)) else {
            panic!("docs/RULES.md lacks the markers {RULES_MD_BEGIN} .. {RULES_MD_END}");
        };
        let start = b + RULES_MD_BEGIN.len();
        let want = format!("\n{}", rules_md());
        if std::env::var_os("BLESS").is_some() {
            let new = format!("{}{want}{}", &text[..start], &text[e..]);
            std::fs::write(&path, new).expect("write docs/RULES.md");
        } else {
            assert!(
                text[start..e] == want,
                "docs/RULES.md's rule table is stale: run `BLESS=1 cargo test -p backprop-derive`"
            );
        }
    }
}
