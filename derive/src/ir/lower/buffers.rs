//! Buffers of floats: creating them (`vec![..]`, `[v; N]`, lists), indexing and
//! sub-slices, element writes, and the buffer methods (`len`, `iter().sum()`, `push`, ...).

use super::chains::bind_pattern;
use super::places::is_range_index;
use super::{Lowerer, dummy, pretty};
use crate::ir::{BufOp, Operand, Rhs, Spelling, Stmt, VarId};
use proc_macro2::{Ident, Span};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{BinOp, Expr, Pat};

impl Lowerer<'_> {
    /// A buffer whose value is an array (`[f64; N]`, made by `[v; N]` or `[a, b]`, or an
    /// array argument taken by value): `let b = a;` and `for v in a` copy it.
    pub(super) fn is_array_valued(&self, v: VarId) -> bool {
        matches!(
            self.owner_rhs.get(&v),
            Some(Rhs::Buffer {
                op: BufOp::FillArray,
                ..
            })
        ) || self.array_params.contains(&v)
    }

    pub(super) fn is_field_view_var(&self, v: VarId) -> bool {
        self.places.contains(&v) && !self.struct_params.contains(&v)
    }

    pub(super) fn new_buffer_var(
        &mut self,
        want: Option<&Ident>,
        op: BufOp,
        args: Vec<Operand>,
        span: Span,
    ) -> Operand {
        let v = self.define(
            want,
            Rhs::Buffer {
                op: op.clone(),
                args,
            },
            span,
        );
        if let Operand::Var(b) = v {
            self.buffers.insert(b);
            if matches!(
                op,
                BufOp::Fill | BufOp::FillArray | BufOp::ToVec | BufOp::NewVec
            ) {
                self.owner_rhs.insert(
                    b,
                    Rhs::Buffer {
                        op,
                        args: Vec::new(),
                    },
                );
            }
        }
        v
    }

    /// `&x`, `let y = x;`: another name for buffer `x`'s elements.
    pub(super) fn alias(&mut self, x: Operand, want: Option<&Ident>, span: Span) -> Operand {
        self.new_buffer_var(want, BufOp::Alias, vec![x], span)
    }

    /// `x[i]` (an element) or `x[a..b]` (a view) of a buffer.
    pub(super) fn index(&mut self, ix: &syn::ExprIndex, want: Option<&Ident>) -> Operand {
        let span = ix.span();
        let base = self.place(&ix.expr, None);
        if let Expr::Range(r) = &*ix.index {
            if matches!(r.limits, syn::RangeLimits::Closed(_)) {
                self.cx.error_spanned_by(
                    r,
                    "`#[grad]` supports sub-slices `&x[a..b]`, `&x[a..]` and `&x[..b]`; write `a..=b` as `a..b + 1`",
                );
                return dummy();
            }
            let start = match &r.start {
                Some(a) => self.expr(a, None),
                None => Operand::Const(syn::parse_quote!(0)),
            };
            let mut args = vec![base, start];
            if let Some(b) = &r.end {
                args.push(self.expr(b, None));
            }
            return self.new_buffer_var(want, BufOp::View, args, span);
        }
        let idx = self.expr(&ix.index, None);
        let key = base.var().map(|b| {
            let i = match &idx {
                Operand::Var(v) => format!("v{}", v.0),
                Operand::Const(c) => c.to_token_stream().to_string(),
            };
            (b, i)
        });
        if want.is_none()
            && let Some(key) = &key
            && let Some(v) = self.read_cache.get(key)
        {
            return Operand::Var(*v);
        }
        let out = self.define(
            want,
            Rhs::Buffer {
                op: BufOp::Read,
                args: vec![base, idx],
            },
            span,
        );
        if let (Some(key), Operand::Var(v)) = (key, &out) {
            self.read_cache.insert(key, *v);
        }
        out
    }

    /// Indexing something that is not a float buffer (data: `labels[i]`, with `&` when
    /// `spelling` is `RefIndex`): an operation without a rule, fine on inactive values.
    pub(super) fn data_index(
        &mut self,
        e: &Expr,
        spelling: Spelling,
        want: Option<&Ident>,
    ) -> Operand {
        let Expr::Index(ix) = e else {
            unreachable!("callers pass an index")
        };
        let span = e.span();
        // `xs[i][j]` of rows of data (`xs: &[Vec<f64>]`).
        let base = match &*ix.expr {
            Expr::Index(_) => self.data_row(&ix.expr),
            _ => self.expr(&ix.expr, None),
        };
        // `&ys[t..t + 1]`: a range of data, kept as written (its bounds renamed).
        let idx = match &*ix.index {
            Expr::Range(_) => self.data_arg(&ix.index),
            _ => self.expr(&ix.index, None),
        };
        let why = format!(
            "`#[grad]` differentiates indexing into buffers of floats (`&[f64]`, `Vec<f64>`, `[f64; N]`, their sub-slices `&x[a..b]`) and into an ndarray array by its name (`a[[i, j]]`); `{}` indexes something else: bind it to a local first (`let a = ...;`, then index `a`)",
            pretty(&e.to_token_stream())
        );
        self.define(
            want,
            Rhs::NoRule {
                spelling,
                at: e.to_token_stream(),
                args: vec![base, idx],
                why,
            },
            span,
        )
    }

    /// A row of data used as a place, not a value (`xs[i]` in `xs[i][j]` or
    /// `xs[i].len()`, for `xs: &[Vec<f64>]`): borrowed, not moved out of the slice.
    pub(super) fn data_row(&mut self, e: &Expr) -> Operand {
        self.data_index(e, Spelling::RefIndex, None)
    }

    /// A buffer the function creates: `vec![v; n]`, `vec![a, b, c]`, `[v; N]`, `[a, b, c]`.
    pub(super) fn new_buffer(&mut self, e: &Expr, want: Option<&Ident>) -> Option<Operand> {
        let span = e.span();
        // `Vec::new()`, `Vec::with_capacity(n)`: a buffer built by `push`.
        if let Expr::Call(c) = e
            && let Expr::Path(p) = &*c.func
            && p.qself.is_none()
            && p.path.segments.len() == 2
            && p.path.segments[0].ident == "Vec"
            && p.path.segments[0].arguments.is_empty()
        {
            let f = p.path.segments[1].ident.to_string();
            let args = match (f.as_str(), c.args.len()) {
                ("new", 0) => Vec::new(),
                ("with_capacity", 1) => vec![self.expr(&c.args[0], None)],
                _ => return None,
            };
            return Some(self.new_buffer_var(want, BufOp::NewVec, args, span));
        }
        let (op, fill, len) = match e {
            Expr::Macro(m) if m.mac.path.is_ident("vec") => {
                let repeat = m.mac.parse_body_with(|input: syn::parse::ParseStream<'_>| {
                    let v: Expr = input.parse()?;
                    let _: syn::Token![;] = input.parse()?;
                    let n: Expr = input.parse()?;
                    Ok((v, n))
                });
                match repeat {
                    Ok((v, n)) => (BufOp::Fill, v, n),
                    Err(_) => {
                        let list = m
                            .mac
                            .parse_body_with(
                                syn::punctuated::Punctuated::<Expr, syn::Token![,]>::parse_terminated,
                            )
                            .ok()?;
                        let elems: Vec<Expr> = list.into_iter().collect();
                        return Some(self.buffer_from_list(&elems, BufOp::Fill, want, span));
                    }
                }
            }
            Expr::Repeat(r) => (BufOp::FillArray, (*r.expr).clone(), (*r.len).clone()),
            Expr::Array(a) if !a.elems.is_empty() => {
                let elems: Vec<Expr> = a.elems.iter().cloned().collect();
                return Some(self.buffer_from_list(&elems, BufOp::FillArray, want, span));
            }
            _ => return None,
        };
        let fill = self.expr(&fill, None);
        // An array's length is a constant expression (`[0.0; 2 * N]`): kept as written,
        // where a `let` of it would not be one.
        let len = match op {
            BufOp::FillArray => Operand::Const(len),
            _ => self.expr(&len, None),
        };
        Some(self.new_buffer_var(want, op, vec![fill, len], span))
    }

    /// `vec![a, b, c]` is `vec![a; 3]` followed by `v[1] = b; v[2] = c;` (exact in
    /// reverse too: the writes zero the adjoints of the elements they replace).
    fn buffer_from_list(
        &mut self,
        elems: &[Expr],
        op: BufOp,
        want: Option<&Ident>,
        span: Span,
    ) -> Operand {
        let Some(first) = elems.first() else {
            self.cx.error_at(span, "`#[grad]` needs a buffer literal to have at least one element (`vec![0.0; n]` makes an empty one)");
            return dummy();
        };
        let fill = self.expr(first, None);
        let n = elems.len();
        let v = self.new_buffer_var(
            want,
            op,
            vec![fill, Operand::Const(syn::parse_quote!(#n))],
            span,
        );
        for (k, e) in elems.iter().enumerate().skip(1) {
            let value = self.expr(e, None);
            self.write(
                v.clone(),
                Operand::Const(syn::parse_quote!(#k)),
                value,
                e.span(),
            );
        }
        v
    }

    fn write(&mut self, base: Operand, index: Operand, value: Operand, span: Span) {
        self.read_cache.clear();
        let name = self.names.temp(span);
        let def = self.new_var(name);
        self.body.push(Stmt {
            def,
            rhs: Rhs::Buffer {
                op: BufOp::Write,
                args: vec![base, index, value],
            },
            span,
            ty: None,
            source: String::new(),
            compound: false,
        });
    }

    /// `x[i] = v` and `x[i] += v` (`-=`, `*=`, `/=`) on a buffer the function owns.
    pub(super) fn store(
        &mut self,
        target: &Expr,
        op: Option<(crate::ir::Prim, BinOp)>,
        value: &Expr,
        whole: &Expr,
    ) {
        let span = whole.span();
        let Expr::Index(ix) = target else {
            unreachable!("callers match an index")
        };
        let base_ok = !is_range_index(target)
            && matches!(&*ix.expr, Expr::Path(_))
            && self.is_buffer_expr(&ix.expr);
        if !base_ok && let Some(target) = self.array_write_target(ix) {
            self.array_element_write(target, ix, op, value, whole);
            return;
        }
        let base = if base_ok {
            self.expr(&ix.expr, None)
        } else {
            dummy()
        };
        let owned = base.var().is_some_and(|b| {
            matches!(
                self.body_def(b),
                Some(Rhs::Buffer {
                    op: BufOp::Fill | BufOp::FillArray | BufOp::ToVec | BufOp::NewVec,
                    ..
                })
            )
        });
        if !owned && matches!(&*ix.index, Expr::Array(_) | Expr::Tuple(_)) {
            // `a[[i, j]] = v`: an element of an ndarray array.
            self.cx.error_spanned_by(
                target,
                format!(
                    "`#[grad]` writes elements (`a[[i, j]] = v`) of an ndarray array that is a local of the function; `{}` is not one: copy it into a local first (`let mut a = {}.to_owned();`)",
                    pretty(&ix.expr.to_token_stream()),
                    pretty(&ix.expr.to_token_stream())
                ),
            );
            return;
        }
        if !owned {
            self.cx.error_spanned_by(
                target,
                format!(
                    "`#[grad]` supports writing elements (`x[i] = ...`, `x[i] += ...`) of a buffer of floats the function creates (`let mut h = vec![0.0; n];`, `let mut v = x.to_vec();`, `let mut a = [0.0; N];`); `{}` is not one: copy it first with `.to_vec()`",
                    pretty(&ix.expr.to_token_stream())
                ),
            );
            return;
        }
        let idx = self.expr(&ix.index, None);
        let value = match op {
            None => self.expr(value, None),
            Some((prim, bop)) => {
                let old = self.define(
                    None,
                    Rhs::Buffer {
                        op: BufOp::Read,
                        args: vec![base.clone(), idx.clone()],
                    },
                    span,
                );
                let rhs = self.expr(value, None);
                let out = self.define(
                    None,
                    Rhs::Prim {
                        prim,
                        spelling: Spelling::Operator(bop),
                        args: vec![old, rhs],
                    },
                    span,
                );
                if let Some(last) = self.body.last_mut() {
                    last.source = pretty(&whole.to_token_stream());
                }
                out
            }
        };
        self.write(base, idx, value, span);
    }

    /// How buffer `v` was made, if the function made it.
    fn body_def(&self, v: VarId) -> Option<&Rhs> {
        self.owner_rhs.get(&v)
    }

    /// `x.to_vec()`, `x.clone()`, `x.to_owned()` of a buffer; `.sum()`, `.product()`,
    /// `.fold(..)` over an iterator of one.
    pub(super) fn buffer_method(
        &mut self,
        m: &syn::ExprMethodCall,
        want: Option<&Ident>,
    ) -> Option<Operand> {
        let span = m.span();
        let name = m.method.to_string();
        // `p.layers.iter().fold(x.clone(), |h, l| dense(&h, l))`: a fold over a list of
        // structs (its element's fields are read, or it is passed to a call) is the loop
        // it means, `{ let mut acc = init; for l in p.layers.iter() { acc = { let h =
        // acc; body }; } acc }`, whose `for` is a loop over places.
        if name == "fold"
            && m.args.len() == 2
            && let Expr::Closure(c) = &m.args[1]
            && c.inputs.len() == 2
            && let syn::Pat::Ident(elem) = &c.inputs[1]
            && self.field_bases.contains(&elem.ident.to_string())
        {
            let (iter, init, acc_pat, body) = (&m.receiver, &m.args[0], &c.inputs[0], &c.body);
            let acc = self.names.fresh("fold_acc", span);
            let looped: Expr = syn::parse_quote_spanned! {span=> {
                let mut #acc = #init;
                for #elem in #iter {
                    #acc = {
                        let #acc_pat = #acc;
                        #body
                    };
                }
                #acc
            }};
            return Some(self.expr(&looped, want));
        }
        // `let mut w = p.w.to_owned(); w[[0, 0]] = ..`: a copy of an ndarray field (the
        // body indexes it as an array), an array operation rather than a buffer.
        let array_copy = want.is_some_and(|w| self.multi_indexed.contains(&w.to_string()))
            && self.is_place_expr(&m.receiver);
        if matches!(name.as_str(), "to_vec" | "clone" | "to_owned")
            && m.args.is_empty()
            && !array_copy
            && self.is_buffer_expr(&m.receiver)
        {
            let src = self.place(&m.receiver, None);
            let len = self.define(
                None,
                Rhs::ZeroDerivative {
                    spelling: Spelling::Method(Ident::new("len", span)),
                    args: vec![src.clone()],
                },
                span,
            );
            return Some(self.new_buffer_var(want, BufOp::ToVec, vec![src, len], span));
        }
        // `h.fill(v)`, `h[a..b].copy_from_slice(src)`, `h.reverse()` on a buffer the
        // function owns: the element writes they are.
        if matches!(
            (name.as_str(), m.args.len()),
            ("fill", 1) | ("copy_from_slice", 1) | ("reverse", 0)
        ) && self.is_buffer_expr(&m.receiver)
        {
            let (base, start, end): (Expr, Expr, Option<Expr>) = match &*m.receiver {
                Expr::Index(ix) => match &*ix.index {
                    Expr::Range(r) if !matches!(r.limits, syn::RangeLimits::Closed(_)) => (
                        (*ix.expr).clone(),
                        r.start
                            .as_deref()
                            .cloned()
                            .unwrap_or_else(|| syn::parse_quote!(0)),
                        r.end.as_deref().cloned(),
                    ),
                    _ => return None,
                },
                other => ((*other).clone(), syn::parse_quote!(0), None),
            };
            let start_v = self.names.fresh("start", span);
            let len_v = self.names.fresh("len", span);
            let k = self.names.fresh("k", span);
            let end: Expr = end.unwrap_or_else(|| syn::parse_quote!(#base.len()));
            let mut stmts: Vec<syn::Stmt> = vec![
                syn::parse_quote_spanned!(span=> let #start_v = #start;),
                syn::parse_quote_spanned!(span=> let #len_v = #end - #start_v;),
            ];
            match name.as_str() {
                "fill" => {
                    let v = &m.args[0];
                    let fill_v = self.names.fresh("fill_value", span);
                    stmts.push(syn::parse_quote_spanned!(span=> let #fill_v = #v;));
                    stmts.push(syn::parse_quote_spanned!(span=> for #k in 0..#len_v { #base[#start_v + #k] = #fill_v; }));
                }
                "copy_from_slice" => {
                    let src = &m.args[0];
                    let src_v = self.names.fresh("source", span);
                    stmts.push(syn::parse_quote_spanned!(span=> let #src_v = #src;));
                    stmts.push(syn::parse_quote_spanned!(span=> for #k in 0..#len_v { #base[#start_v + #k] = #src_v[#k]; }));
                }
                _ => {
                    stmts.push(syn::parse_quote_spanned!(span=> for #k in 0..#len_v / 2 { #base.swap(#start_v + #k, #start_v + #len_v - 1 - #k); }));
                }
            }
            for st in &stmts {
                self.block_stmt(st, false);
            }
            return Some(dummy());
        }
        // `v.swap(a, b)` on a buffer the function owns: two reads, two writes.
        // `h.push(v)` on a buffer made by `Vec::new()`.
        if name == "push"
            && m.args.len() == 1
            && let Expr::Path(p) = &*m.receiver
            && let Some(h) = p.path.get_ident().and_then(|i| self.lookup(&i.to_string()))
            && matches!(
                self.owner_rhs.get(&h),
                Some(Rhs::Buffer {
                    op: BufOp::NewVec,
                    ..
                })
            )
        {
            let v = self.expr(&m.args[0], None);
            self.read_cache.clear();
            let name = self.names.temp(span);
            let def = self.new_var(name);
            self.body.push(Stmt {
                def,
                rhs: Rhs::Buffer {
                    op: BufOp::Push,
                    args: vec![Operand::Var(h), v],
                },
                span,
                ty: None,
                source: String::new(),
                compound: false,
            });
            return Some(dummy());
        }
        if name == "swap" && m.args.len() == 2 && self.is_buffer_expr(&m.receiver) {
            let (a, b) = (&m.args[0], &m.args[1]);
            let recv = &m.receiver;
            let ia = self.names.fresh("swap_a", span);
            let ib = self.names.fresh("swap_b", span);
            let ta = self.names.fresh("swap_va", span);
            let stmts: Vec<syn::Stmt> = vec![
                syn::parse_quote_spanned!(span=> let #ia = #a;),
                syn::parse_quote_spanned!(span=> let #ib = #b;),
                syn::parse_quote_spanned!(span=> let #ta = #recv[#ia];),
                syn::parse_quote_spanned!(span=> #recv[#ia] = #recv[#ib];),
                syn::parse_quote_spanned!(span=> #recv[#ib] = #ta;),
            ];
            for st in &stmts {
                self.block_stmt(st, false);
            }
            return Some(dummy());
        }
        let (init, fold): (Expr, Option<&Expr>) = match (name.as_str(), m.args.len()) {
            // A float literal, or the float type's own 0 and 1 in generic code. A sum
            // starts from −0.0, as std's `Sum` for floats does: it is the neutral element
            // (−0 + x = x for every x, +0 included), so an empty sum is −0.0 in both.
            ("sum", 0) if !self.generics.is_empty() => (
                syn::parse_quote_spanned!(span=> ::backprop::__private::neg_zero()),
                None,
            ),
            ("product", 0) if !self.generics.is_empty() => (
                syn::parse_quote_spanned!(span=> ::backprop::__private::one()),
                None,
            ),
            ("sum", 0) => (syn::parse_quote_spanned!(span=> -0.0), None),
            ("product", 0) => (syn::parse_quote_spanned!(span=> 1.0), None),
            ("fold", 2) => (m.args[0].clone(), Some(&m.args[1])),
            _ => return None,
        };
        let chain = self.chain(&m.receiver, false)?;
        let acc = self.names.fresh("acc", span);
        let elem_ident = self.names.fresh("elem", span);
        let mut elem_pat: Pat = syn::parse_quote!(#elem_ident);
        let step: Expr = match (name.as_str(), fold) {
            ("sum", _) => syn::parse_quote_spanned!(span=> #acc + #elem_ident),
            ("product", _) => syn::parse_quote_spanned!(span=> #acc * #elem_ident),
            // The closure's element pattern is the loop's (`|acc, (i, v)|` over
            // `.enumerate()` binds what `for (i, v) in ..` binds).
            (_, Some(Expr::Closure(c))) if c.inputs.len() == 2 => {
                let stmts = bind_pattern(&c.inputs[0], &syn::parse_quote!(#acc))?;
                elem_pat = c.inputs[1].clone();
                let body = &c.body;
                syn::parse_quote_spanned!(span=> { #(#stmts)* #body })
            }
            (_, Some(f @ Expr::Path(_))) => syn::parse_quote_spanned!(span=> #f(#acc, #elem_ident)),
            _ => {
                self.cx.error_spanned_by(
                    &m.args[1],
                    "`#[grad]` supports `fold` with a closure of two arguments (`|acc, v| acc + v * v`) or a function path (`f64::max`)",
                );
                return Some(dummy());
            }
        };
        let mut body: Vec<syn::Stmt> = Vec::new();
        body.push(syn::parse_quote_spanned!(span=> #acc = #step;));
        // `let mut acc = init; for elem in chain { acc = step; } acc`, lowered as written.
        // `sum::<f64>()` says the accumulator's type; without it, inference does.
        let local: syn::Stmt = match m.turbofish.as_ref().and_then(|t| t.args.first()) {
            Some(syn::GenericArgument::Type(ty)) => {
                syn::parse_quote_spanned!(span=> let mut #acc: #ty = #init;)
            }
            _ => syn::parse_quote_spanned!(span=> let mut #acc = #init;),
        };
        let syn::Stmt::Local(local) = local else {
            unreachable!("a let")
        };
        self.local(&local);
        self.for_over_chain(chain, &elem_pat, &body, span);
        let acc_var = self.lookup(&acc.to_string()).expect("bound above");
        Some(match want {
            Some(w) => self.define(Some(w), Rhs::Copy(Operand::Var(acc_var)), span),
            None => Operand::Var(acc_var),
        })
    }
}
