//! Expressions: the dispatch on syn's expression kinds, and the mapping of binary
//! and unary operators, methods and calls to the op table's operations.

use super::loops::LoopSyntax;
use super::places::is_range_index;
use super::{Lowerer, SUPPORTED, dummy, pretty};
use crate::ir::op::{self, MethodKind};
use crate::ir::{BufOp, Operand, Rhs, Spelling};
use proc_macro2::Ident;
use quote::ToTokens;
use std::collections::HashMap;
use syn::spanned::Spanned;
use syn::{BinOp, Expr, Type, UnOp};

impl Lowerer<'_> {
    /// Lowers `e` to an operand; the operation at its top (if any) defines `want`.
    pub(super) fn expr(&mut self, e: &Expr, want: Option<&Ident>) -> Operand {
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
            // `let layer = &p.layers[i];` with `layer.w` read later, `&p.ws[i]` of a list of
            // arrays: one element of a list in a struct argument, a place. (A float
            // element is read by value, `p.v[i]`, not borrowed.)
            Expr::Reference(r)
                if r.mutability.is_none()
                    && matches!(&*r.expr, Expr::Index(_))
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
            // `q.dim().0`: an element of a tuple of data.
            Expr::Field(f) if matches!(f.member, syn::Member::Unnamed(_)) => {
                let syn::Member::Unnamed(index) = &f.member else {
                    unreachable!("matched above")
                };
                let tuple = self.expr(&f.base, None);
                self.define(
                    want,
                    Rhs::NoRule {
                        spelling: Spelling::TupleField(index.clone()),
                        at: e.to_token_stream(),
                        args: vec![tuple],
                        why: format!(
                            "`#[grad]` reads elements of a tuple of data (`x.dim().0`); `{}` carries a derivative",
                            pretty(&f.base.to_token_stream())
                        ),
                    },
                    span,
                )
            }
            Expr::Index(ix) if self.array_read_target(ix) => self.array_element_read(ix, want),
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
            Expr::Struct(st) => self.struct_literal(st, want),
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
                let mut args = vec![self.receiver(&inner.receiver, &inner.method)];
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
            args.push(match a {
                Expr::Tuple(t) => self.tuple_argument(t),
                _ => self.expr(a, None),
            });
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
            // `layer.forward(&h)` on a struct of a list, or `self.head.forward(..)`: a part
            // of a struct of parameters, whose type this macro cannot see.
            MethodKind::Unknown if args[0].var().is_some_and(|v| self.places.contains(&v)) => {
                let receiver = pretty(&m.receiver.to_token_stream());
                Rhs::NoRule {
                    spelling,
                    at: m.to_token_stream(),
                    args,
                    why: format!(
                        "`#[grad]` cannot call the method `.{name}()` of `{receiver}`, a part of a struct of parameters: a `#[grad]` method is called with its rule only from its own `#[grad] impl`, and the type of `{receiver}` is not known here; write `{name}` as a free `#[grad]` function taking the part (`fn {name}(layer: &Layer, x: &Array2<f64>) -> Array2<f64>`) and call it as `{name}({receiver}, ..)`"
                    ),
                }
            }
            MethodKind::Unknown => {
                // `layer.forward(&h)` where `layer` is not known as a struct here (a loop
                // variable whose fields are never read): say what to write if it is one.
                let struct_hint = match &*m.receiver {
                    // `pos.broadcast((b, t, d)).unwrap()`: arithmetic broadcasts by itself.
                    r if name == "broadcast" => format!(
                        "; `+ - * /` broadcast their operands as NumPy does, so write the arithmetic on `{}` itself (`x + &pos`)",
                        pretty(&r.to_token_stream())
                    ),
                    // ndarray's `map`, on an array the lowering could not tell apart.
                    _ if name == "map" && matches!(m.args.first(), Some(Expr::Closure(_))) => {
                        "; on an ndarray array write `x.mapv(|v| ..)` (or `x.map(|&v| ..)` on an array argument or an array expression)".to_string()
                    }
                    Expr::Path(p) if p.path.get_ident().is_some() && !m.args.is_empty() => {
                        let r = pretty(&m.receiver.to_token_stream());
                        format!(
                            "; if `{r}` is a struct with a `#[grad]` method `{name}`, that method is called with its rule only from its own `#[grad] impl`: write `{name}` as a free `#[grad]` function taking the struct (`fn {name}(layer: &Layer, x: &Array2<f64>) -> Array2<f64>`) and call it as `{name}({r}, ..)`"
                        )
                    }
                    _ => String::new(),
                };
                Rhs::NoRule {
                    spelling,
                    at: m.to_token_stream(),
                    args,
                    why: format!(
                        "`.{name}()` with {} argument(s) has no derivative rule in `#[grad]`: {}; to use another function, give it a rule, or wrap a value that needs no gradient in `backprop::stop_gradient(...)`{struct_hint}",
                        m.args.len(),
                        op::supported_methods()
                    ),
                }
            }
        };
        self.define(want, rhs, m.span())
    }

    pub(super) fn call(&mut self, c: &syn::ExprCall, want: Option<&Ident>) -> Operand {
        if let Some(v) = self.bare_join(c) {
            return v;
        }
        let Expr::Path(path) = &*c.func else {
            self.cx.error_spanned_by(&c.func, format!("`#[grad]` supports calls of a function by its path (`f(x)`, `backprop::sigmoid(x)`); {SUPPORTED}"));
            return dummy();
        };
        let segs = op::segments(&path.path);
        let last = segs.last().cloned().unwrap_or_default();
        let span = c.span();
        let spelling = Spelling::Path(path.clone());
        let seg_strs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let is_stop_gradient = matches!(
            seg_strs.as_slice(),
            ["stop_gradient"] | [.., "backprop", "stop_gradient"]
        );
        // `backprop::leaky_relu(x)`: a runtime function given the wrong number of
        // arguments. rustc says so at the call in the function as written (which is
        // always emitted, so this cannot compile); the companions take a constant
        // instead of the call, rather than adding one error each.
        if let ([.., "backprop", f], None) = (seg_strs.as_slice(), &path.qself)
            && let Some(&(_, arity)) = RUNTIME_SCALAR_FUNCTIONS.iter().find(|(n, _)| n == f)
            && c.args.len() != arity
        {
            return dummy();
        }
        if is_stop_gradient && path.qself.is_none() {
            // Nothing inside `stop_gradient(..)` is differentiated: it is kept as written
            // (closures, methods without rules and all), reading the locals' current
            // versions.
            let args: Vec<Operand> = c.args.iter().map(|a| self.data_arg(a)).collect();
            return self.define(want, Rhs::ZeroDerivative { spelling, args }, span);
        }
        // `dense(&h, &p.layers[i])`: one struct of a list, passed whole (a float of a
        // buffer would be passed by value, never as `&x[i]`, to a `#[grad]` function).
        // The shape of `Array2::zeros((t, t))` is data, kept as written.
        let constructor = crate::ir::op::is_array_constructor(&path.path);
        let args: Vec<Operand> = c
            .args
            .iter()
            .enumerate()
            .map(|(k, a)| match a {
                _ if constructor && k == 0 => self.data_arg(a),
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
                tangent: false,
            },
            span,
        )
    }
}

pub(super) fn compound(op: &BinOp) -> Option<(crate::ir::Prim, BinOp)> {
    let s = op.span();
    match op {
        BinOp::AddAssign(_) => Some((op::ADD, BinOp::Add(syn::Token![+](s)))),
        BinOp::SubAssign(_) => Some((op::SUB, BinOp::Sub(syn::Token![-](s)))),
        BinOp::MulAssign(_) => Some((op::MUL, BinOp::Mul(syn::Token![*](s)))),
        BinOp::DivAssign(_) => Some((op::DIV, BinOp::Div(syn::Token![/](s)))),
        _ => None,
    }
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

/// The runtime's differentiable scalar functions and their arities.
const RUNTIME_SCALAR_FUNCTIONS: &[(&str, usize)] = &[
    ("sigmoid", 1),
    ("relu", 1),
    ("leaky_relu", 2),
    ("softplus", 1),
    ("gelu", 1),
    ("silu", 1),
    ("erf", 1),
    ("erfc", 1),
    ("logsumexp", 1),
    ("stop_gradient", 1),
];
