//! The forward pass: the user's statements in source order, one operation per `let`,
//! each spanned to the user expression it came from.
//!
//! Before:
//! ```text
//! let e = a * b + c;
//! e * e
//! ```
//! After:
//! ```text
//! let t0 = a * b;
//! let e = t0 + c;
//! let t1 = e * e;
//! ```
//! An active call `sigmoid(z)` becomes `let (p, tape_p) = sigmoid::forward(z);`: the
//! callee's tape is kept for the reverse pass; an inactive one stays a plain call.

use crate::analysis::Plan;
use crate::ir::{Func, Operand, Rhs, Spelling, Stmt, VarId};
use crate::names::Names;
use proc_macro2::{Ident, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use std::collections::HashMap;

pub struct Emitter<'a> {
    pub func: &'a Func,
    pub plan: &'a Plan,
    pub names: Names,
    adjoints: HashMap<VarId, Ident>,
    tapes: HashMap<VarId, Ident>,
    shapes: HashMap<VarId, Ident>,
    /// The block (an id from `scopes`) each value's shape was taken in: a block inside
    /// a loop or an arm cannot lend its `shape_x` to code after it.
    shape_scope: HashMap<VarId, usize>,
    /// The shape each tensor statement's rule reads, per operand.
    stmt_shapes: HashMap<(VarId, VarId), Ident>,
    /// The shapes taken just before each statement (saved with the block's other
    /// values when that block is a loop body or an arm).
    pub shapes_at: HashMap<VarId, Vec<Ident>>,
    /// The blocks being emitted, innermost last, and the next block's id.
    scopes: Vec<usize>,
    next_scope: usize,
    /// Values the reverse pass reads (so the closure captures them): what the tape
    /// holds, for its byte count.
    pub captured: std::cell::RefCell<std::collections::BTreeSet<VarId>>,
    /// Calls whose tapes the reverse pass runs (so the closure captures them).
    pub captured_tapes: std::cell::RefCell<std::collections::BTreeSet<VarId>>,
    /// Each branch's pullback closures, built by the forward pass (which stores them in
    /// the tape) and read by the reverse pass (which needs their outer values).
    branches: HashMap<VarId, std::rc::Rc<super::reverse::BranchReverse>>,
    loops: HashMap<VarId, std::rc::Rc<super::reverse::LoopReverse>>,
    /// `range`: the range a `for` loop iterates, kept when its reverse reads the index.
    ranges: HashMap<VarId, Ident>,
    /// Buffers written element-wise (declared `let mut`).
    written: std::collections::HashSet<VarId>,
    /// `tape_heap`, once a loop needs it.
    pub heap: Option<Ident>,
    /// The loops with a stack (declared once, at the top of the forward pass).
    pub stacks: Vec<VarId>,
    /// Reads of buffers this function owns that no later write can change: the
    /// reverse pass reads them again from the buffer (which the tape then keeps)
    /// instead of saving each element.
    pub stable_reads: std::collections::HashSet<VarId>,
    counts: HashMap<VarId, Ident>,
    /// Calls that pass a buffer of this function: per argument, the copy kept for the
    /// reverse pass, which runs the callee's forward again on it.
    /// (Per argument: the copy's name and how the reverse pass passes it.)
    pub snapshots: HashMap<VarId, Vec<Option<(Ident, TokenStream)>>>,
    /// Loop-invariant reads of an active buffer (`xcentered[i]` inside `for j`): the
    /// reverse pass sums their cotangent over the iterations and adds it to the element
    /// once after the loop, instead of a load-add-store on the same element every
    /// iteration (a chain through memory the compiler cannot keep in a register).
    pub accumulated_reads: std::collections::HashSet<VarId>,
    /// The writes of in-place element updates `x[i] = x[i] ± e` (what `x[i] += e`
    /// lowers to): their reverse leaves `d_x[i]` as it is and gives it to `e`, instead
    /// of reading it, zeroing it and adding it back (`reverse::in_place_updates`).
    pub in_place_writes: std::collections::HashSet<VarId>,
    /// The reads of those updates, whose cotangent is not added back.
    pub in_place_reads: std::collections::HashSet<VarId>,
}

impl<'a> Emitter<'a> {
    pub fn new(func: &'a Func, plan: &'a Plan, names: Names) -> Self {
        let (in_place_writes, in_place_reads) =
            super::reverse::in_place_updates(func, &plan.activity);
        Emitter {
            func,
            plan,
            names,
            adjoints: HashMap::new(),
            tapes: HashMap::new(),
            shapes: HashMap::new(),
            shape_scope: HashMap::new(),
            stmt_shapes: HashMap::new(),
            shapes_at: HashMap::new(),
            scopes: Vec::new(),
            next_scope: 0,
            captured: Default::default(),
            captured_tapes: Default::default(),
            branches: HashMap::new(),
            loops: HashMap::new(),
            ranges: HashMap::new(),
            heap: None,
            snapshots: HashMap::new(),
            accumulated_reads: Default::default(),
            in_place_writes,
            in_place_reads,
            stacks: Vec::new(),
            counts: HashMap::new(),
            stable_reads: stable_reads(func),
            written: {
                let mut w = std::collections::HashSet::new();
                crate::ir::walk(&func.body, &mut |s| {
                    if let Rhs::Buffer {
                        op: crate::ir::BufOp::Write,
                        args,
                    } = &s.rhs
                    {
                        w.extend(args[0].var());
                    }
                });
                w
            },
        }
    }

    /// The generics of the function being differentiated.
    pub fn item_generics(&self) -> syn::Generics {
        self.func.generics.clone()
    }

    /// A buffer whose elements belong to this function (not to an argument).
    /// A buffer this function owns: a local, or an argument taken by value (`x:
    /// Vec<f64>`, `x: [f64; 3]`). A callee's tape cannot borrow it past the forward
    /// pass, so a call on it is checkpointed. A borrowed argument (`&[f64]`) outlives
    /// the tape and is passed as it is.
    pub fn is_local_buffer(&self, v: VarId) -> bool {
        let root = self.func.buffer_root(v).0;
        self.func.is_buffer(v)
            && !self
                .func
                .params
                .iter()
                .any(|p| p.var == root && matches!(p.ty, syn::Type::Reference(_)))
    }

    /// `&h` of an array this function made (`dense(&h, w, b)` after `let h =
    /// layer_norm(..)`): a callee's tape cannot borrow it past the forward pass either.
    pub fn is_local_array_ref(&self, v: VarId) -> bool {
        match self.func.def_of(v) {
            Some(Stmt {
                rhs: Rhs::Prim { prim, args, .. },
                ..
            }) if prim.name == "&" => args[0]
                .var()
                .is_some_and(|x| self.plan.kinds.owned_array[x.0]),
            _ => false,
        }
    }

    /// Whether the value emitted as `name` is an array (not a float, a shape or a tape).
    fn is_array_name(&self, name: &Ident) -> bool {
        self.func
            .vars
            .iter()
            .position(|v| v.name == *name)
            .is_some_and(|k| !self.plan.kinds.scalar[k])
    }

    /// Whether `v` (or what `&v` borrows) is a view, through view methods, of an array
    /// this function made rather than of an argument.
    pub fn view_of_local(&self, v: VarId, through_view: bool) -> bool {
        if self.func.params.iter().any(|p| p.var == v) {
            return false;
        }
        match self.func.def_of(v) {
            Some(Stmt {
                rhs: Rhs::Prim { prim, args, .. },
                ..
            }) => {
                let name = prim.name;
                let view = matches!(name, "t" | "view" | "reversed_axes")
                    || crate::ir::op::VIEW_METHODS.contains(&name)
                    || crate::ir::op::CONSUMING_VIEW_METHODS.contains(&name);
                match args[0].var() {
                    Some(u) if name == "&" => self.view_of_local(u, through_view),
                    Some(u) if view => self.view_of_local(u, true),
                    _ => through_view,
                }
            }
            _ => through_view,
        }
    }

    /// The tape name of `v`'s statement, if one was made.
    pub fn tape_if_any(&self, v: VarId) -> Option<Ident> {
        self.tapes.get(&v).cloned()
    }

    /// The range name of the loop defining `v`, if one was made.
    pub fn range_if_any(&self, v: VarId) -> Option<Ident> {
        self.ranges.get(&v).cloned()
    }

    /// `count`: the number of iterations the `while` loop defining `v` ran.
    pub fn count(&mut self, v: VarId) -> Ident {
        let span = self.func.name(v).span();
        memoized(&mut self.counts, &mut self.names, v, "count", span)
    }

    /// The names of the loop-invariant reads the loop defining `v` makes after it.
    pub fn hoisted_names(&self, v: VarId) -> Vec<Ident> {
        self.loops
            .get(&v)
            .map(|r| r.hoisted.iter().map(|(h, _)| h.clone()).collect())
            .unwrap_or_default()
    }

    /// The iteration-count name of the `while` loop defining `v`, if one was made.
    pub fn count_if_any(&self, v: VarId) -> Option<Ident> {
        self.counts.get(&v).cloned()
    }

    /// `range`: the range of the `for` loop defining `v`.
    pub fn range(&mut self, v: VarId) -> Ident {
        let span = self.func.name(v).span();
        memoized(&mut self.ranges, &mut self.names, v, "range", span)
    }

    /// A statement without control flow, as the forward pass writes it (for values
    /// the reverse pass recomputes).
    pub fn simple_stmt(&mut self, s: &Stmt) -> TokenStream {
        self.stmt(s)
    }

    pub fn var(&self, v: VarId) -> &Ident {
        self.func.name(v)
    }

    /// `d_x`: the adjoint of `x`.
    pub fn adjoint(&mut self, v: VarId) -> Ident {
        let (base, span) = self.derived_name("d", v);
        memoized(&mut self.adjoints, &mut self.names, v, &base, span)
    }

    /// `tape_x`: the tape of the call that defined `x`.
    pub fn tape(&mut self, v: VarId) -> Ident {
        let (base, span) = self.derived_name("tape", v);
        memoized(&mut self.tapes, &mut self.names, v, &base, span)
    }

    /// `shape_x`: the shape of `x`, saved for a broadcasting rule on the tensor path.
    pub fn shape(&mut self, v: VarId) -> Ident {
        let (base, span) = self.derived_name("shape", v);
        memoized(&mut self.shapes, &mut self.names, v, &base, span)
    }

    /// `prefix_x` for value `x`, with `x`'s span.
    fn derived_name(&self, prefix: &str, v: VarId) -> (String, proc_macro2::Span) {
        let name = self.func.name(v);
        (
            format!("{prefix}_{}", name.to_string().trim_start_matches("r#")),
            name.span(),
        )
    }

    /// A value a rule reads in the reverse pass, looking through borrows: for
    /// `let t = &e; ... t * t`, the tape keeps `e` itself (moved into the closure),
    /// not a borrow of a local that ends with the forward pass.
    ///
    /// Views are re-derived the same way: for `let at = a.t();` the tape keeps `a` and
    /// the reverse pass reads `a.t()`, since a view borrows the binding it was taken
    /// from (rematerialising a view costs nothing; keeping it would tie the tape to a
    /// local of the forward pass).
    pub fn saved_operand(&self, o: &Operand) -> TokenStream {
        if let Some(v) = o.var()
            && let Some(Stmt {
                rhs:
                    Rhs::Prim {
                        prim,
                        args,
                        spelling,
                    },
                ..
            }) = self.func.def_of(v)
        {
            match prim.name {
                "&" => return self.saved_operand(&args[0]),
                "t" | "view" | "reversed_axes" => {
                    let source = self.saved_operand(&args[0]);
                    if let Spelling::Method(m) = spelling {
                        return quote!((#source).#m());
                    }
                }
                // Views with arguments (`x.row(i)`, `x.slice(s![..])`): the same method on
                // the source, its data arguments read again. A consuming method
                // (`insert_axis`) is re-derived through a view, and only from a view: an
                // owned receiver was moved into the result, which is then kept.
                name if crate::ir::op::VIEW_METHODS.contains(&name)
                    || crate::ir::op::CONSUMING_VIEW_METHODS.contains(&name)
                        && !self.owns_data(o) =>
                {
                    let source = self.saved_operand(&args[0]);
                    let source = if crate::ir::op::CONSUMING_VIEW_METHODS.contains(&name) {
                        quote!((#source).view())
                    } else {
                        quote!((#source))
                    };
                    let mut ops = vec![source];
                    ops.extend(args[1..].iter().map(|a| self.saved_operand(a)));
                    return self.spelled_ops(spelling, &ops, proc_macro2::Span::call_site());
                }
                _ => {}
            }
        }
        if let Some(v) = o.var() {
            self.captured.borrow_mut().insert(v);
        }
        self.operand(o)
    }

    /// Whether `o` owns its elements: an owned array argument, or a result that is not a
    /// borrow or a view (of something that does not own them).
    fn owns_data(&self, o: &Operand) -> bool {
        let Some(v) = o.var() else { return false };
        match self.func.def_of(v) {
            None => self.plan.kinds.owned_array[v.0],
            Some(Stmt {
                rhs: Rhs::Prim { prim, args, .. },
                ..
            }) => match prim.name {
                "&" | "view" | "t" => false,
                name if crate::ir::op::VIEW_METHODS.contains(&name) => false,
                // Made a view of an owned receiver too, except as the result.
                name if crate::ir::op::CONSUMING_VIEW_METHODS.contains(&name) => {
                    self.owns_data(&args[0]) && self.func.ret.var() == Some(v)
                }
                "reversed_axes" => self.owns_data(&args[0]),
                _ => true,
            },
            Some(Stmt {
                rhs: Rhs::Copy(c), ..
            }) => self.owns_data(c),
            Some(_) => true,
        }
    }

    pub fn operand(&self, o: &Operand) -> TokenStream {
        match o {
            Operand::Var(v) => self.var(*v).to_token_stream(),
            Operand::Const(e @ (syn::Expr::Lit(_) | syn::Expr::Path(_) | syn::Expr::Paren(_))) => {
                e.to_token_stream()
            }
            Operand::Const(e) => quote!((#e)),
        }
    }

    pub fn forward(&mut self) -> TokenStream {
        let out = self.block(&self.func.body);
        quote!(#(#out)*)
    }

    fn block(&mut self, stmts: &[Stmt]) -> Vec<TokenStream> {
        self.scopes.push(self.next_scope);
        self.next_scope += 1;
        let mut out = Vec::new();
        for s in stmts {
            // Shapes first: the operation may consume its operands.
            out.extend(self.shape_saves(s));
            out.push(self.stmt(s));
        }
        self.scopes.pop();
        out
    }

    /// The shape of operand `v` that the rule of statement `def` reads.
    pub fn stmt_shape(&mut self, def: VarId, v: VarId) -> Ident {
        match self.stmt_shapes.get(&(def, v)) {
            Some(i) => i.clone(),
            None => self.shape(v),
        }
    }

    /// The reverse of the `if` defining `def` (built once, by its forward pass).
    pub fn branch_reverse(
        &mut self,
        def: VarId,
        node: &crate::ir::IfNode,
    ) -> std::rc::Rc<super::reverse::BranchReverse> {
        if !self.branches.contains_key(&def) {
            let built = super::reverse::build_branch_reverse(self, node);
            self.branches.insert(def, std::rc::Rc::new(built));
        }
        self.branches[&def].clone()
    }

    /// The reverse of one iteration of the loop defining `def` (built once, by its
    /// forward pass).
    pub fn loop_reverse(
        &mut self,
        def: VarId,
        node: &crate::ir::LoopNode,
    ) -> std::rc::Rc<super::reverse::LoopReverse> {
        if !self.loops.contains_key(&def) {
            let built = super::reverse::build_loop_reverse(self, node);
            self.loops.insert(def, std::rc::Rc::new(built));
        }
        self.loops[&def].clone()
    }

    /// A loop: the carried values live in mutable state named after their value after
    /// the loop; each iteration binds their entry values, runs the body and, when the
    /// loop is active, pushes what its reverse reads onto the loop's tape (a `Vec` of
    /// tuples; `()` when an iteration needs nothing, which allocates nothing).
    fn loop_stmt(&mut self, s: &Stmt, node: &crate::ir::LoopNode) -> TokenStream {
        let span = s.span;
        let active = self.plan.activity.is_active(s.def);
        let states: Vec<Ident> = node
            .carried
            .iter()
            .map(|c| self.var(c.out).clone())
            .collect();
        // An array that starts a carried state and is also read by a pullback (`tanh`
        // keeps its output) is copied into the loop: the loop's state moves.
        let inits: Vec<TokenStream> = node
            .carried
            .iter()
            .map(|c| match c.init.var() {
                Some(v) if !self.plan.kinds.scalar[v.0] && self.plan.saved.contains(&v) => {
                    let x = self.var(v);
                    quote!(::core::clone::Clone::clone(&#x))
                }
                _ => self.operand(&c.init),
            })
            .collect();
        // A `while` that stops hands its state back (entry → state) when it is an array,
        // which the iteration's first line moved out.
        let restores: Vec<TokenStream> = node
            .carried
            .iter()
            .filter(|c| !self.plan.kinds.scalar[c.entry.0])
            .map(|c| {
                let (st, en) = (self.var(c.out), self.var(c.entry));
                quote!(#st = #en;)
            })
            .collect();
        let entries: Vec<Ident> = node
            .carried
            .iter()
            .map(|c| self.var(c.entry).clone())
            .collect();
        let exits: Vec<TokenStream> = node.carried.iter().map(|c| self.operand(&c.exit)).collect();
        let body = self.block(&node.body);
        let stackless = active && self.loop_reverse(s.def, node).stackless(node);
        let (push, hoisted) = if active {
            let rev = self.loop_reverse(s.def, node);
            let tape = self.tape(s.def);
            // An array the iteration saves and also hands to the next iteration (its
            // exit value) is copied onto the stack: the carry moves it.
            let exit_arrays: Vec<Ident> = node
                .carried
                .iter()
                .filter_map(|c| c.exit.var())
                .filter(|v| !self.plan.kinds.scalar[v.0])
                .map(|v| self.var(v).clone())
                .collect();
            let saved: Vec<TokenStream> = rev
                .saved
                .iter()
                .map(|n| {
                    if exit_arrays.contains(n) {
                        quote!(::core::clone::Clone::clone(&#n))
                    } else {
                        quote!(#n)
                    }
                })
                .collect();
            // The stack counts its entries' own bytes; an array or a nested tape in an
            // entry also owns heap, counted as it is pushed.
            let heap_items: Vec<Ident> = rev
                .saved
                .iter()
                .filter(|n| self.tapes.values().any(|t| t == *n) || self.is_array_name(n))
                .cloned()
                .collect();
            let count_heap = if heap_items.is_empty() || stackless {
                quote!()
            } else {
                let counter = self.heap_name();
                quote! {
                    #counter += {
                        #[allow(unused_imports)]
                        use ::backprop::__private::{HeapOfOther as _, HeapOfOwned as _};
                        0 #(+ (&::backprop::__private::Probe(&#heap_items)).heap_bytes())*
                    };
                }
            };
            let push = if stackless {
                quote!()
            } else if matches!(node.head, crate::ir::LoopHead::For { .. }) {
                // A `for` reserved its trip count before it started.
                quote!(#count_heap #tape.push_reserved((#(#saved,)*));)
            } else {
                quote!(#count_heap #tape.push((#(#saved,)*));)
            };
            (push, rev.hoisted.clone())
        } else {
            (quote!(), Vec::new())
        };
        let iteration = |body: &[TokenStream], head: TokenStream| {
            quote! {
                #(let #entries = #states;)*
                #head
                #(#body)*
                #push
                #(#states = #exits;)*
            }
        };
        let lp = match &node.head {
            crate::ir::LoopHead::For { index, range, .. } if active => {
                // One stack per loop for the whole forward pass (declared at its top):
                // a nested loop's runs share it, with no allocation per run. The
                // reverse pass recomputes the index, and the number of iterations, from
                // the range (a `for` that remains a `for` runs its whole range: a `break`
                // in a plain `a..b` loop makes it a `while` over a counter, and in a
                // `rev`/`step_by` loop a flag that skips the rest).
                let i = self.var(*index).clone();
                let it = iteration(&body, quote!());
                let tape = self.tape(s.def);
                let reserve = if stackless {
                    quote!()
                } else {
                    self.stacks.push(s.def);
                    let r = self.range(s.def);
                    quote!(#tape.reserve(::core::iter::Iterator::size_hint(&#r).0);)
                };
                let r = self.range(s.def);
                let after = hoisted.iter().map(|(h, read)| {
                    quote!(let #h = if ::core::iter::Iterator::size_hint(&#r).0 > 0 { #read } else { ::backprop::__private::zero() };)
                });
                quote_spanned! {span=>
                    let #r = #range;
                    #reserve
                    for #i in ::core::clone::Clone::clone(&#r) { #it }
                    #(#after)*
                }
            }
            crate::ir::LoopHead::For { index, range, .. } => {
                let i = self.var(*index).clone();
                let it = iteration(&body, quote!());
                quote_spanned!(span=> for #i in #range { #it })
            }
            crate::ir::LoopHead::While { cond, head_len } => {
                let c = self.operand(cond);
                let (head, rest) = body.split_at(*head_len);
                let it = iteration(rest, quote!(#(#head)* if !#c { #(#restores)* break; }));
                if active {
                    // A `while` counts its iterations for the reverse pass.
                    let tape = self.tape(s.def);
                    self.stacks.push(s.def);
                    let start = self.names.fresh("start", span);
                    let count = self.count(s.def);
                    let after = hoisted.iter().map(|(h, read)| {
                        quote!(let #h = if #count > 0 { #read } else { ::backprop::__private::zero() };)
                    });
                    quote_spanned! {span=>
                        let #start = #tape.len();
                        loop { #it }
                        let #count = #tape.len() - #start;
                        #(#after)*
                    }
                } else {
                    quote_spanned!(span=> loop { #it })
                }
            }
        };
        quote! {
            #(let mut #states = #inits;)*
            #lp
        }
    }

    /// The forward pass's running count of heap bytes its loops keep for the tape.
    pub fn heap_name(&mut self) -> Ident {
        if self.heap.is_none() {
            self.heap = Some(
                self.names
                    .fresh("tape_heap", proc_macro2::Span::call_site()),
            );
        }
        self.heap.clone().expect("set above")
    }

    /// Before:
    /// ```text
    /// let y = if c { x * x } else { x };
    /// ```
    /// After: each branch runs its statements, then returns its values and what its
    /// reverse reads, tagged with the branch taken (the tape's "which way" bit).
    /// ```text
    /// let (y, branch) = if c {
    ///     let t0 = x * x;
    ///     (t0, Branch::Then((x,)))
    /// } else {
    ///     (x, Branch::Else(()))
    /// };
    /// ```
    fn if_stmt(&mut self, s: &Stmt, node: &crate::ir::IfNode) -> TokenStream {
        let cond = self.operand(&node.cond);
        let outs: Vec<Ident> = node.outs.iter().map(|o| self.var(o.def).clone()).collect();
        let then_stmts = self.block(&node.then_body);
        let else_stmts = self.block(&node.else_body);
        // An array from before the `if` that an arm hands on unchanged (`h` in the arm
        // that does not reassign it) is copied when a pullback also reads it: handing it
        // on moves it.
        let pass = |this: &Self, o: &Operand, body: &[Stmt]| -> TokenStream {
            match o.var() {
                Some(v)
                    if !this.plan.kinds.scalar[v.0]
                        && this.plan.saved.contains(&v)
                        && !body.iter().any(|st| st.def == v) =>
                {
                    let x = this.var(v);
                    quote!(::core::clone::Clone::clone(&#x))
                }
                _ => this.operand(o),
            }
        };
        let then_vals: Vec<TokenStream> = node
            .outs
            .iter()
            .map(|o| pass(self, &o.then_val, &node.then_body))
            .collect();
        let else_vals: Vec<TokenStream> = node
            .outs
            .iter()
            .map(|o| pass(self, &o.else_val, &node.else_body))
            .collect();
        let span = s.span;
        if !self.plan.activity.is_active(s.def) {
            return quote_spanned! {span=>
                let (#(#outs,)*) = if #cond { #(#then_stmts)* (#(#then_vals,)*) } else { #(#else_stmts)* (#(#else_vals,)*) };
            };
        }
        let rev = self.branch_reverse(s.def, node);
        // An array an arm saves and also returns is copied into the tape, before the
        // returned value moves out of the arm.
        let copied = |saved: &[Ident], vals: &[TokenStream], this: &Self| -> Vec<bool> {
            let returned: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
            saved
                .iter()
                .map(|n| this.is_array_name(n) && returned.contains(&n.to_string()))
                .collect()
        };
        let then_copied = copied(&rev.arms[0].0, &then_vals, self);
        let else_copied = copied(&rev.arms[1].0, &else_vals, self);
        let kept_items = |saved: &[Ident], copied: &[bool]| -> Vec<TokenStream> {
            saved
                .iter()
                .zip(copied)
                .map(|(n, c)| {
                    if *c {
                        quote!(::core::clone::Clone::clone(&#n))
                    } else {
                        quote!(#n)
                    }
                })
                .collect()
        };
        let then_saved = kept_items(&rev.arms[0].0, &then_copied);
        let else_saved = kept_items(&rev.arms[1].0, &else_copied);
        let tape = self.tape(s.def);
        if then_copied.iter().chain(&else_copied).any(|c| *c) {
            let kept = self.names.fresh("kept", span);
            return quote_spanned! {span=>
                let (#(#outs,)* #tape) = if #cond {
                    #(#then_stmts)*
                    let #kept = (#(#then_saved,)*);
                    (#(#then_vals,)* ::backprop::__private::Branch::Then(#kept))
                } else {
                    #(#else_stmts)*
                    let #kept = (#(#else_saved,)*);
                    (#(#else_vals,)* ::backprop::__private::Branch::Else(#kept))
                };
            };
        }
        let then_tag =
            quote_spanned!(span=> ::backprop::__private::Branch::Then((#(#then_saved,)*)));
        let else_tag =
            quote_spanned!(span=> ::backprop::__private::Branch::Else((#(#else_saved,)*)));
        quote_spanned! {span=>
            let (#(#outs,)* #tape) = if #cond {
                #(#then_stmts)*
                (#(#then_vals,)* #then_tag)
            } else {
                #(#else_stmts)*
                (#(#else_vals,)* #else_tag)
            };
        }
    }

    /// On the tensor path, `let shape_a = shape_of(&a);` for each operand whose
    /// cotangent a broadcasting rule must sum back to its shape.
    fn shape_saves(&mut self, s: &Stmt) -> Vec<TokenStream> {
        let Rhs::Prim { prim, args, .. } = &s.rhs else {
            return Vec::new();
        };
        let scalar_path = self.plan.kinds.scalar_path(s.def);
        if scalar_path || !self.plan.activity.is_active(s.def) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (k, vjp) in prim.vjps_on(false).iter().enumerate() {
            if !self.plan.activity.operand_active(&args[k]) {
                continue;
            }
            let crate::ir::op::Vjp::Rule(_, needs) = vjp else {
                continue;
            };
            for need in *needs {
                if let crate::ir::op::Need::Shape(j) = need {
                    let Some(v) = args[*j].var() else { continue };
                    let in_scope = self
                        .shape_scope
                        .get(&v)
                        .is_some_and(|sc| self.scopes.contains(sc));
                    if in_scope {
                        let shape = self.shapes[&v].clone();
                        self.stmt_shapes.insert((s.def, v), shape);
                        continue;
                    }
                    // Taken in a block that has ended (a loop body, an arm): again here.
                    let shape = if self.shapes.contains_key(&v) {
                        let (base, span) = self.derived_name("shape", v);
                        let fresh = self.names.fresh(&base, span);
                        self.shapes.insert(v, fresh.clone());
                        fresh
                    } else {
                        self.shape(v)
                    };
                    self.shape_scope
                        .insert(v, *self.scopes.last().expect("inside a block"));
                    self.stmt_shapes.insert((s.def, v), shape.clone());
                    self.shapes_at.entry(s.def).or_default().push(shape.clone());
                    let x = self.var(v).clone();
                    out.push(quote_spanned!(s.span=> let #shape = ::backprop::__private::tensor::shape_of(&#x);));
                }
            }
        }
        out
    }

    fn stmt(&mut self, s: &Stmt) -> TokenStream {
        if let Rhs::If(node) = &s.rhs {
            return self.if_stmt(s, node);
        }
        if let Rhs::Loop(node) = &s.rhs {
            return self.loop_stmt(s, node);
        }
        let def = self.var(s.def).clone();
        let ty = s.ty.as_ref().map(|t| quote!(: #t));
        let span = s.span;
        if let Rhs::Buffer { op, args } = &s.rhs {
            use crate::ir::BufOp;
            let a: Vec<TokenStream> = args.iter().map(|o| self.operand(o)).collect();
            let mutability = if self.written.contains(&s.def) {
                quote!(mut)
            } else {
                quote!()
            };
            return match op {
                BufOp::Read => {
                    let (x, i) = (&a[0], &a[1]);
                    quote_spanned!(span=> let #def #ty = #x[#i];)
                }
                BufOp::Write => {
                    let (x, i, v) = (&a[0], &a[1], &a[2]);
                    quote_spanned!(span=> #x[#i] = #v;)
                }
                BufOp::Fill => {
                    let (v, n) = (&a[0], &a[1]);
                    quote_spanned!(span=> let #mutability #def #ty = ::std::vec![#v; #n];)
                }
                BufOp::FillArray => {
                    let (v, n) = (&a[0], &a[1]);
                    quote_spanned!(span=> let #mutability #def #ty = [#v; #n];)
                }
                BufOp::ToVec => {
                    let x = &a[0];
                    quote_spanned!(span=> let #mutability #def #ty = #x.to_vec();)
                }
                BufOp::View => {
                    let (x, start) = (&a[0], &a[1]);
                    match a.get(2) {
                        Some(end) => quote_spanned!(span=> let #def #ty = &#x[#start..#end];),
                        None => quote_spanned!(span=> let #def #ty = &#x[#start..];),
                    }
                }
                BufOp::Alias => {
                    let x = &a[0];
                    quote_spanned!(span=> let #mutability #def #ty = #x;)
                }
                BufOp::Borrow => {
                    let x = &a[0];
                    quote_spanned!(span=> let #def #ty = &#x;)
                }
                BufOp::Field(m) => {
                    let x = &a[0];
                    quote_spanned!(span=> let #def #ty = &#x.#m;)
                }
                BufOp::FieldRead(m) => {
                    let x = &a[0];
                    quote_spanned!(span=> let #def #ty = #x.#m;)
                }
                BufOp::Elem => {
                    let (x, i) = (&a[0], &a[1]);
                    quote_spanned!(span=> let #def #ty = &#x[#i];)
                }
                BufOp::NewVec => match a.first() {
                    Some(n) => {
                        quote_spanned!(span=> let mut #def #ty = ::std::vec::Vec::with_capacity(#n);)
                    }
                    None => quote_spanned!(span=> let mut #def #ty = ::std::vec::Vec::new();),
                },
                BufOp::Push => {
                    let (h, v) = (&a[0], &a[1]);
                    quote_spanned!(span=> #h.push(#v);)
                }
            };
        }
        if let Rhs::Call { path, args } = &s.rhs {
            let arg_ops = args;
            // A runtime op's tape keeps its inputs by type: a view of an array this
            // function made (`z.insert_axis(Axis(0))`) would tie the tape to that local,
            // so the op gets an owned copy of the view.
            let runtime_op = crate::ir::op::is_runtime_array_op(&path.path);
            let args: Vec<TokenStream> = args
                .iter()
                .map(|a| match a.var() {
                    Some(v) if runtime_op && self.view_of_local(v, false) => {
                        let x = self.operand(a);
                        quote!(&::backprop::__private::tensor::owned_view(#x))
                    }
                    _ => self.operand(a),
                })
                .collect();
            // `&h` of a local array only needs a checkpoint for a callee whose tape
            // borrows its inputs (a `#[grad]` function), not for the runtime's ops.
            let local_arrays = !crate::ir::op::is_runtime_array_op(&path.path)
                && arg_ops
                    .iter()
                    .any(|a| a.var().is_some_and(|v| self.is_local_array_ref(v)));
            let local_buffers = arg_ops
                .iter()
                .any(|a| a.var().is_some_and(|v| self.is_local_buffer(v)));
            if self.plan.activity.is_active(s.def) && (local_buffers || local_arrays) {
                // The callee's tape would borrow a buffer of this function, which ends
                // with the forward pass (and may be written after the call): keep a
                // copy instead, and run the callee's forward again in the reverse pass
                // (a checkpoint of the call).
                let mut saves = Vec::new();
                let mut names = Vec::new();
                for a in arg_ops {
                    match a.var() {
                        Some(v)
                            if self.is_local_buffer(v)
                                || local_arrays && self.is_local_array_ref(v) =>
                        {
                            let x = self.var(v).clone();
                            let snap = self.names.fresh(
                                &format!("snapshot_{}", x.to_string().trim_start_matches("r#")),
                                span,
                            );
                            let counter = self.heap_name();
                            // The copy has the argument's own type: `&h` passes `&copy`
                            // (a `&Vec` or `&[f64; N]`), a view `&h[a..b]` a slice, `h`
                            // itself (moved) the copy itself.
                            let (copy, pass) = match self.func.def_of(v) {
                                Some(Stmt {
                                    rhs:
                                        Rhs::Buffer {
                                            op: crate::ir::BufOp::Borrow,
                                            ..
                                        },
                                    ..
                                }) => (quote!(::core::clone::Clone::clone(#x)), quote!(&#snap)),
                                // `&h` of a local array: a copy of the array, lent.
                                Some(Stmt {
                                    rhs: Rhs::Prim { prim, .. },
                                    ..
                                }) if prim.name == "&" => {
                                    (quote!(::core::clone::Clone::clone(#x)), quote!(&#snap))
                                }
                                Some(Stmt {
                                    rhs:
                                        Rhs::Buffer {
                                            op: crate::ir::BufOp::View,
                                            ..
                                        },
                                    ..
                                }) => (quote!(::std::vec::Vec::from(&#x[..])), quote!(&#snap[..])),
                                _ => (quote!(::core::clone::Clone::clone(&#x)), quote!(#snap)),
                            };
                            saves.push(quote_spanned!(span=> let #snap = #copy;));
                            saves.push(quote_spanned!(span=> #counter += {
                                #[allow(unused_imports)]
                                use ::backprop::__private::{HeapOfOther as _, HeapOfOwned as _};
                                (&::backprop::__private::Probe(&#snap)).heap_bytes()
                            };));
                            names.push(Some((snap, pass)));
                        }
                        _ => names.push(None),
                    }
                }
                self.snapshots.insert(s.def, names);
                return quote_spanned!(span=> #(#saves)* let #def #ty = #path(#(#args),*););
            }
            if self.plan.activity.is_active(s.def) {
                let tape = self.tape(s.def);
                let companion = companion_path(path);
                let ty = s.ty.as_ref().map(|t| quote!(: (#t, _)));
                // A call of the function itself: its tape is behind a pointer (the
                // tape of this call would otherwise contain its own type).
                if path.path.get_ident() == Some(&self.func.name) {
                    return quote_spanned!(span=>
                        let (#def, #tape) #ty = #companion(#(#args),*);
                        let #tape = ::backprop::__private::boxed(#tape);
                    );
                }
                return quote_spanned!(span=> let (#def, #tape) #ty = #companion(#(#args),*););
            }
            return quote_spanned!(span=> let #def #ty = #path(#(#args),*););
        }
        let value = match &s.rhs {
            Rhs::Copy(Operand::Const(e)) => e.to_token_stream(),
            // `a.dot(b)` runs on the crate's matmul kernel (see `tensor::dot`).
            Rhs::Prim { prim, args, .. }
                if prim.name == "dot" && !self.plan.kinds.scalar_path(s.def) =>
            {
                let (a, b) = (self.operand(&args[0]), self.operand(&args[1]));
                quote_spanned!(span=> ::backprop::__private::tensor::dot(&#a, &#b))
            }
            Rhs::Copy(o) => self.operand(o),
            Rhs::Prim { spelling, args, .. }
                if !self.plan.kinds.scalar_path(s.def)
                    && matches!(spelling, Spelling::Operator(_) | Spelling::Unary(_)) =>
            {
                // An operator consumes an owned array the tape may still read: borrow it.
                let ops: Vec<TokenStream> = args
                    .iter()
                    .map(|a| match a.var() {
                        Some(v) if self.plan.kinds.owned_array[v.0] => {
                            let x = self.var(v);
                            // A call's result may be a scalar (every `#[grad]` function
                            // returns one) or an array: borrow only an array.
                            if matches!(
                                self.func.def_of(v),
                                Some(Stmt {
                                    rhs: Rhs::Call { .. },
                                    ..
                                })
                            ) {
                                quote!(::backprop::__private::tensor::by_ref(&#x))
                            } else {
                                quote!(&#x)
                            }
                        }
                        _ => self.operand(a),
                    })
                    .collect();
                let value = self.spelled_ops(spelling, &ops, span);
                if let (Spelling::Operator(_), [a, b]) = (spelling, &ops[..]) {
                    // ndarray's own panic on a shape mismatch names neither shape; and
                    // `y += x` must keep `y`'s shape, as ndarray's `+=` does.
                    let what = format!("`{}`", s.source);
                    let check = if s.compound {
                        quote_spanned!(span=> ::backprop::__private::tensor::check_assign(#what, &#a, &#b);)
                    } else {
                        quote_spanned!(span=> ::backprop::__private::tensor::check_broadcast(#what, &#a, &#b);)
                    };
                    return quote!(#check let #def #ty = #value;);
                }
                value
            }
            // A consuming view method (`insert_axis`, `into_shape_with_order`) on an
            // array this function owns takes a view of it instead: a rule may still read
            // the array, which the method would have moved away.
            Rhs::Prim {
                prim,
                spelling,
                args,
            } if crate::ir::op::CONSUMING_VIEW_METHODS.contains(&prim.name)
                && self.owns_data(&args[0])
                && self.func.ret.var() != Some(s.def) =>
            {
                let mut ops: Vec<TokenStream> = args.iter().map(|a| self.operand(a)).collect();
                let recv = &ops[0];
                ops[0] = quote!((#recv).view());
                self.spelled_ops(spelling, &ops, span)
            }
            Rhs::Prim { spelling, args, .. }
            | Rhs::ZeroDerivative { spelling, args }
            | Rhs::NoRule { spelling, args, .. } => self.spelled(spelling, args, span),
            Rhs::Call { .. } | Rhs::If(_) | Rhs::Loop(_) | Rhs::Buffer { .. } => {
                unreachable!("handled above")
            }
        };
        quote_spanned!(span=> let #def #ty = #value;)
    }

    fn spelled(
        &self,
        spelling: &Spelling,
        args: &[Operand],
        span: proc_macro2::Span,
    ) -> TokenStream {
        let ops: Vec<TokenStream> = args.iter().map(|a| self.operand(a)).collect();
        self.spelled_ops(spelling, &ops, span)
    }

    fn spelled_ops(
        &self,
        spelling: &Spelling,
        ops: &[TokenStream],
        span: proc_macro2::Span,
    ) -> TokenStream {
        match spelling {
            Spelling::Operator(op) => {
                let (a, b) = (&ops[0], &ops[1]);
                quote_spanned!(span=> #a #op #b)
            }
            Spelling::Unary(op) => {
                let a = &ops[0];
                quote_spanned!(span=> #op #a)
            }
            Spelling::Method(m) => {
                let recv = &ops[0];
                let rest = &ops[1..];
                quote_spanned!(span=> #recv.#m(#(#rest),*))
            }
            Spelling::Path(p) => quote_spanned!(span=> #p(#(#ops),*)),
            Spelling::Cast(ty) => {
                let a = &ops[0];
                quote_spanned!(span=> #a as #ty)
            }
            Spelling::Ref => {
                let a = &ops[0];
                quote_spanned!(span=> &#a)
            }
            Spelling::Index => {
                let (a, i) = (&ops[0], &ops[1]);
                quote_spanned!(span=> #a[#i])
            }
            Spelling::TupleField(k) => {
                let a = &ops[0];
                quote_spanned!(span=> #a.#k)
            }
            Spelling::RefIndex => {
                let (a, i) = (&ops[0], &ops[1]);
                quote_spanned!(span=> &#a[#i])
            }
            Spelling::Matches(pat) => {
                let a = &ops[0];
                quote_spanned!(span=> ::core::matches!(#a, #pat))
            }
            Spelling::MethodTurbofish(m) => {
                let recv = &ops[0];
                let rest = &ops[1..];
                quote_spanned!(span=> #recv.#m(#(#rest),*))
            }
            Spelling::Join(path, what) => {
                let axis = &ops[0];
                let arrays = &ops[1..];
                quote_spanned!(span=> #path(#what, #axis, &[#((#arrays).view()),*]))
            }
            Spelling::MethodUnwrap(m, tail) => {
                let recv = &ops[0];
                let rest = &ops[1..];
                quote_spanned!(span=> #recv.#m(#(#rest),*)#tail)
            }
        }
    }
}

/// `backprop::sigmoid::<f64>` → `backprop::sigmoid::forward::<f64>`: the rule
/// companion lives in the type namespace under the function's own name, so it follows
/// the function through `use` and paths.
pub fn companion_path(path: &syn::ExprPath) -> TokenStream {
    companion_fn(path, "forward")
}

/// `helper::rebuild` (with its turbofish): a checkpointed call's tape, made again in
/// the reverse pass from the copies of its arguments and the value it returned.
pub fn rebuild_path(path: &syn::ExprPath) -> TokenStream {
    companion_fn(path, "rebuild")
}

fn companion_fn(path: &syn::ExprPath, name: &str) -> TokenStream {
    let name = syn::Ident::new(name, proc_macro2::Span::call_site());
    let mut path = path.clone();
    let mut turbofish = quote!();
    if let Some(last) = path.path.segments.last_mut()
        && let syn::PathArguments::AngleBracketed(args) =
            std::mem::replace(&mut last.arguments, syn::PathArguments::None)
    {
        let args = args.args;
        turbofish = quote!(::<#args>);
    }
    quote!(#path::#name #turbofish)
}

/// Reads `t = h[i]` of a buffer `h` the function creates, after which no write to `h`
/// can happen: every write comes earlier in the program and shares no loop with the
/// read (other than loops that also create `h` afresh each iteration). The reverse
/// pass can read such an element from `h` itself.
fn stable_reads(func: &Func) -> std::collections::HashSet<VarId> {
    use crate::ir::BufOp;
    struct Event {
        pos: usize,
        loops: Vec<VarId>,
        root: VarId,
        read: Option<VarId>,
        write: bool,
        create: bool,
        alias: bool,
    }
    fn scan(
        func: &Func,
        stmts: &[Stmt],
        loops: &mut Vec<VarId>,
        pos: &mut usize,
        out: &mut Vec<Event>,
    ) {
        for s in stmts {
            *pos += 1;
            match &s.rhs {
                Rhs::If(node) => {
                    scan(func, &node.then_body, loops, pos, out);
                    scan(func, &node.else_body, loops, pos, out);
                }
                Rhs::Loop(node) => {
                    loops.push(s.def);
                    scan(func, &node.body, loops, pos, out);
                    loops.pop();
                }
                Rhs::Buffer { op, args } => {
                    let base = args.first().and_then(Operand::var);
                    let event = |root: VarId| Event {
                        pos: *pos,
                        loops: loops.clone(),
                        root,
                        read: None,
                        write: false,
                        create: false,
                        alias: false,
                    };
                    match op {
                        BufOp::Fill | BufOp::FillArray | BufOp::ToVec | BufOp::NewVec => {
                            out.push(Event {
                                create: true,
                                ..event(s.def)
                            })
                        }
                        BufOp::Write | BufOp::Push | BufOp::Read | BufOp::Alias => {
                            let Some(b) = base else { continue };
                            let root = func.buffer_root(b).0;
                            out.push(Event {
                                read: (*op == BufOp::Read).then_some(s.def),
                                write: matches!(op, BufOp::Write | BufOp::Push),
                                alias: *op == BufOp::Alias,
                                ..event(root)
                            });
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }
    let mut events = Vec::new();
    scan(func, &func.body, &mut Vec::new(), &mut 0, &mut events);
    let mut stable = std::collections::HashSet::new();
    for r in events.iter().filter(|e| e.read.is_some()) {
        let Some(create) = events.iter().find(|e| e.create && e.root == r.root) else {
            continue;
        };
        let ok = events.iter().filter(|e| e.root == r.root).all(|e| {
            if e.alias {
                return false;
            }
            if !e.write {
                return true;
            }
            e.pos < r.pos
                && e.loops
                    .iter()
                    .all(|l| !r.loops.contains(l) || create.loops.contains(l))
        });
        if ok {
            stable.insert(r.read.expect("a read"));
        }
    }
    stable
}

/// The name kept for `v` in `map`, made fresh from `base` the first time.
fn memoized(
    map: &mut HashMap<VarId, Ident>,
    names: &mut Names,
    v: VarId,
    base: &str,
    span: proc_macro2::Span,
) -> Ident {
    map.entry(v)
        .or_insert_with(|| names.fresh(base, span))
        .clone()
}
