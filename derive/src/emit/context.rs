//! What the forward and the reverse pass share: the `Emitter` (the function, its plan,
//! the names given to values, adjoints, tapes and shapes, and what the tape captures),
//! how an operand is written, and the reverse of each branch and loop, built once and
//! read by both passes.

use crate::analysis::Plan;
use crate::analysis::save::Reads;
use crate::ir::{BufOp, Func, LoopNode, Operand, Rhs, Spelling, Stmt, VarId};
use crate::names::Names;
use proc_macro2::{Ident, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use std::collections::HashMap;

pub struct Emitter<'a> {
    pub func: &'a Func,
    pub plan: &'a Plan,
    pub names: Names,
    adjoints: HashMap<VarId, Ident>,
    pub(super) tapes: HashMap<VarId, Ident>,
    pub(super) shapes: HashMap<VarId, Ident>,
    /// The block (an id from `scopes`) each value's shape was taken in: a block inside
    /// a loop or an arm cannot lend its `shape_x` to code after it.
    pub(super) shape_scope: HashMap<VarId, usize>,
    /// The shape each tensor statement's rule reads, per operand.
    pub(super) stmt_shapes: HashMap<(VarId, VarId), Ident>,
    /// The shapes taken just before each statement (saved with the block's other
    /// values when that block is a loop body or an arm).
    pub shapes_at: HashMap<VarId, Vec<Ident>>,
    /// The blocks being emitted, innermost last, and the next block's id.
    pub(super) scopes: Vec<usize>,
    pub(super) next_scope: usize,
    /// Values the reverse pass reads (so the closure captures them): what the tape
    /// holds, for its byte count.
    pub captured: std::cell::RefCell<std::collections::BTreeSet<VarId>>,
    /// Calls whose tapes the reverse pass runs (so the closure captures them).
    pub captured_tapes: std::cell::RefCell<std::collections::BTreeSet<VarId>>,
    /// Each branch's pullback closures, built by the forward pass (which stores them in
    /// the tape) and read by the reverse pass (which needs their outer values).
    pub(super) branches: HashMap<VarId, std::rc::Rc<BranchReverse>>,
    pub(super) loops: HashMap<VarId, std::rc::Rc<LoopReverse>>,
    /// The same, in the plain mode: built by the pullback from the strong ones'
    /// decisions (what is saved and recomputed is the same in both bodies).
    pub(super) plain_branches: HashMap<VarId, std::rc::Rc<BranchReverse>>,
    pub(super) plain_loops: HashMap<VarId, std::rc::Rc<LoopReverse>>,
    /// What the reverse code being built reads of the forward pass's values and names
    /// (each reverse line names its reads as it is built; see `recording`).
    pub reads: std::cell::RefCell<Reads>,
    /// Which reverse body is being emitted.
    pub mode: Mode,
    /// `BACKPROP_DEBUG=1`: each block's save plan is described in `debug_plans`.
    pub debug: bool,
    /// One reverse body (with strong zeros) even where the plain one would be worth
    /// its size: the tangent program's, whose expansion is second order's cost.
    pub one_body: bool,
    pub debug_plans: Vec<String>,
    /// The lines emitted so far whose spelling depends on the mode (a scalar rule, a
    /// nested pullback): when a body has none, its plain twin would be the same.
    pub sensitive: usize,
    /// `range`: the range a `for` loop iterates, kept when its reverse reads the index.
    ranges: HashMap<VarId, Ident>,
    /// Buffers written element-wise (declared `let mut`).
    pub(super) written: std::collections::HashSet<VarId>,
    /// `tape_heap`, once a loop needs it.
    pub heap: Option<Ident>,
    /// The loops with a stack (declared once, at the top of the forward pass).
    pub stacks: Vec<VarId>,
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
    /// The values a tangent program's calls of another function's `tangent_forward`
    /// read, each after the primal call that reads it too (found once, here).
    tangent_call_args: std::collections::HashSet<VarId>,
    /// How many times each value is named: by a statement, a loop's carried values or
    /// condition, a branch's outputs, or the result.
    uses: HashMap<VarId, usize>,
}

impl<'a> Emitter<'a> {
    pub fn new(func: &'a Func, plan: &'a Plan, names: Names) -> Self {
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
            plain_branches: HashMap::new(),
            plain_loops: HashMap::new(),
            reads: Default::default(),
            mode: Mode::Strong,
            debug: std::env::var_os("BACKPROP_DEBUG").is_some_and(|v| v == "1"),
            one_body: false,
            debug_plans: Vec::new(),
            sensitive: 0,
            ranges: HashMap::new(),
            heap: None,
            snapshots: HashMap::new(),
            accumulated_reads: Default::default(),
            stacks: Vec::new(),
            counts: HashMap::new(),
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
            tangent_call_args: {
                let mut read = std::collections::HashSet::new();
                crate::ir::walk(&func.body, &mut |s| {
                    if let Rhs::Call {
                        tangent: true,
                        args,
                        ..
                    } = &s.rhs
                    {
                        read.extend(args.iter().filter_map(Operand::var));
                    }
                });
                read
            },
            uses: {
                let mut uses = HashMap::<VarId, usize>::new();
                let mut count = |o: &Operand| {
                    if let Some(v) = o.var() {
                        *uses.entry(v).or_default() += 1;
                    }
                };
                count(&func.ret);
                crate::ir::walk(&func.body, &mut |s| {
                    s.rhs.operands().iter().for_each(&mut count);
                    match &s.rhs {
                        Rhs::Loop(node) => {
                            for c in &node.carried {
                                count(&c.init);
                                count(&c.exit);
                            }
                            if let crate::ir::LoopHead::While { cond, .. } = &node.head {
                                count(cond);
                            }
                        }
                        Rhs::If(node) => {
                            for o in &node.outs {
                                count(&o.then_val);
                                count(&o.else_val);
                            }
                        }
                        _ => {}
                    }
                });
                uses
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

    /// A view method's result over an array this function made (`h.view()`, `h.t()`,
    /// `h.slice(s![..])` after `let h = ..`), passed to a callee as it is: the callee's
    /// tape would borrow the local through it.
    pub fn is_local_view(&self, v: VarId) -> bool {
        !self.plan.kinds.scalar[v.0]
            && matches!(
                self.func.def_of(v),
                Some(Stmt { rhs: Rhs::Prim { prim, .. }, .. }) if matches!(
                    prim.name,
                    "view" | "t" | "slice" | "slice_axis" | "index_axis" | "row" | "column"
                )
            )
            && self.view_of_local(v, false)
    }

    /// A part of an argument taken by value (`&layers[i]` of `layers: [Layer; 2]`, `&p.l1`
    /// of `p: Mlp`): it ends with the forward pass like a local, so a callee's tape
    /// cannot borrow it either.
    pub fn is_owned_argument_part(&self, v: VarId) -> bool {
        let mut cur = v;
        while let Some(Stmt {
            rhs: Rhs::Buffer { op, args },
            ..
        }) = self.func.def_of(cur)
        {
            if !matches!(
                op,
                BufOp::Field(_) | BufOp::Elem | BufOp::Borrow | BufOp::Alias | BufOp::View
            ) {
                return false;
            }
            let Some(base) = args[0].var() else {
                return false;
            };
            cur = base;
        }
        cur != v
            && self
                .func
                .params
                .iter()
                .any(|p| p.var == cur && !matches!(p.ty, syn::Type::Reference(_)))
    }

    /// `&t` of an array this function made that nothing else reads (`attention(&q, ..)`
    /// after `let q = ..;`, `gelu(&(x.dot(w) + b))`): the call `call` may take `t`
    /// itself instead of a copy. Nothing else in the function names `t` or the borrow,
    /// the save plan keeps neither, and the call runs in the block that made `t` (a
    /// loop would otherwise move it again on its next iteration).
    pub fn moves_into_call(&self, borrow: VarId, call: VarId) -> bool {
        let Some(Stmt {
            rhs: Rhs::Prim { prim, args, .. },
            ..
        }) = self.func.def_of(borrow)
        else {
            return false;
        };
        let Some(t) = args[0].var().filter(|_| prim.name == "&") else {
            return false;
        };
        if !self.plan.kinds.owned_array[t.0]
            || self.view_of_local(borrow, false)
            || self.func.params.iter().any(|p| p.var == t)
            || self.read_by_reverse_now(t)
            || self.read_by_reverse_now(borrow)
        {
            return false;
        }
        if self.uses.get(&t) != Some(&1) || self.uses.get(&borrow) != Some(&1) {
            return false;
        }
        same_block(&self.func.body, t, call)
    }

    /// Whether the reverse pass reads `v` as far as is known while the forward pass is
    /// emitted: the save plan keeps it, or a rule emitted so far captured it.
    pub fn read_by_reverse_now(&self, v: VarId) -> bool {
        self.plan.saved.contains(&v) || self.captured.borrow().contains(&v)
    }

    /// A buffer this function made, as a value of its own (not a borrow, a field or a
    /// sub-slice of one): passed to a call, it moves.
    pub fn moves_local_buffer(&self, v: VarId) -> bool {
        self.is_local_buffer(v)
            && !self.func.params.iter().any(|p| p.var == v)
            && !matches!(
                self.func.def_of(v),
                Some(Stmt {
                    rhs: Rhs::Buffer {
                        op: BufOp::Borrow | BufOp::Field(_) | BufOp::Elem | BufOp::View,
                        ..
                    },
                    ..
                }) | Some(Stmt {
                    rhs: Rhs::Prim { .. },
                    ..
                })
            )
    }

    /// Whether a tangent program's call of another function's `tangent_forward` reads
    /// `v` (after the primal call that reads it too).
    pub fn read_by_tangent_call(&self, v: VarId) -> bool {
        self.tangent_call_args.contains(&v)
    }

    /// An active buffer built by `push` (or a version of one): the reverse pass sizes its
    /// adjoint by its final length, `h.len()` (`emit::reverse`).
    pub fn sized_by_its_length(&self, v: VarId) -> bool {
        self.plan.activity.is_active(self.func.buffer_root(v).0) && self.func.grown_by_push(v)
    }

    /// `&h` or a view of an array this function made, or a borrow of any other value
    /// that ends with the forward pass (labels `&[ys[t]]`, an argument taken by value):
    /// a `#[grad]` callee's tape would borrow it past the forward pass
    /// (`emit::forward::kept`).
    pub fn lends_local_array(&self, v: VarId) -> bool {
        self.is_local_array_ref(v) || self.is_local_view(v) || self.borrows_local(v)
    }

    /// `&t` of a value this function owns: a local, or an argument taken by value.
    fn borrows_local(&self, v: VarId) -> bool {
        match self.func.def_of(v) {
            Some(Stmt {
                rhs: Rhs::Prim { prim, args, .. },
                ..
            }) if prim.name == "&" => args[0].var().is_some_and(|t| {
                !self
                    .func
                    .params
                    .iter()
                    .any(|p| p.var == t && matches!(p.ty, syn::Type::Reference(_)))
            }),
            _ => false,
        }
    }

    /// Whether the value emitted as `name` is an array (not a float, a shape or a tape).
    pub(super) fn is_array_name(&self, name: &Ident) -> bool {
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
                let view = matches!(name, "t" | "view")
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

    pub fn var(&self, v: VarId) -> &Ident {
        self.func.name(v)
    }

    /// `d_x`: the adjoint of `x`.
    /// `v`, read by the reverse code being built.
    pub fn read(&self, v: VarId) -> Ident {
        self.reads.borrow_mut().values.insert(v);
        self.var(v).clone()
    }

    /// `o`, read by the reverse code being built.
    pub fn read_operand(&self, o: &Operand) -> TokenStream {
        self.reads
            .borrow_mut()
            .values
            .extend(crate::analysis::save::operand_reads(self.func, o));
        self.operand(o)
    }

    /// An auxiliary name (a tape, a range, a shape, a copy), read by the reverse code
    /// being built.
    pub fn read_name(&self, name: &Ident) {
        self.reads.borrow_mut().names.insert(name.to_string());
    }

    /// Runs `f` with a fresh record of reads, and returns what it read (which the caller
    /// adds to the enclosing record when the code it built is inlined there).
    pub fn recording<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> (R, Reads) {
        let outer = self.reads.replace(Reads::default());
        let r = f(self);
        let mine = self.reads.replace(outer);
        (r, mine)
    }

    /// Adds reads made by code built earlier and inlined here.
    pub fn read_all(&self, reads: &Reads) {
        self.reads.borrow_mut().extend(reads);
    }

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
    pub(super) fn derived_name(&self, prefix: &str, v: VarId) -> (String, proc_macro2::Span) {
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
                "t" | "view" => {
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
        self.read_operand(o)
    }

    /// Whether `o` owns its elements: an owned array argument, or a result that is not a
    /// borrow or a view (of something that does not own them).
    pub(super) fn owns_data(&self, o: &Operand) -> bool {
        let Some(v) = o.var() else { return false };
        match self.func.def_of(v) {
            None => self.plan.kinds.owned_array[v.0],
            Some(Stmt {
                rhs: Rhs::Prim { prim, args, .. },
                ..
            }) => match prim.name {
                "&" | "view" | "t" => false,
                name if crate::ir::op::VIEW_METHODS.contains(&name) => false,
                // Made a view of an owned receiver, unless it consumes it.
                name if crate::ir::op::CONSUMING_VIEW_METHODS.contains(&name) => {
                    self.owns_data(&args[0]) && self.consumes_receiver(v)
                }
                _ => true,
            },
            Some(Stmt {
                rhs: Rhs::Copy(c), ..
            }) => self.owns_data(c),
            Some(_) => true,
        }
    }

    /// Whether a consuming view method (`insert_axis`, `into_shape_with_order`) defining
    /// `v` takes its owned receiver as ndarray spells it, rather than a view of it: where
    /// `v` is the result, or the receiver is a local named nowhere else, in the same
    /// block, that the reverse pass does not read. Then `v` owns its data, so it can be
    /// reassigned with an owned array (`st = st.dot(w)` in a loop).
    pub(super) fn consumes_receiver(&self, v: VarId) -> bool {
        let Some(Stmt {
            rhs: Rhs::Prim { prim, args, .. },
            ..
        }) = self.func.def_of(v)
        else {
            return false;
        };
        if !crate::ir::op::CONSUMING_VIEW_METHODS.contains(&prim.name) {
            return false;
        }
        if self.func.ret.var() == Some(v) {
            return true;
        }
        args[0].var().is_some_and(|t| {
            self.func.def_of(t).is_some()
                && self.uses.get(&t) == Some(&1)
                && !self.plan.saved.contains(&t)
                && same_block(&self.func.body, t, v)
        })
    }

    /// Whether statement `def` is the only reader of the local `v`, in the same block,
    /// and neither the reverse pass nor a tangent reads it: the statement may move it.
    pub(super) fn dies_here(&self, v: VarId, def: VarId) -> bool {
        self.func.def_of(v).is_some()
            && !self.func.params.iter().any(|p| p.var == v)
            && self.uses.get(&v) == Some(&1)
            && !self.read_by_reverse_now(v)
            && !self.tangent_call_args.contains(&v)
            && same_block(&self.func.body, v, def)
    }

    pub fn operand(&self, o: &Operand) -> TokenStream {
        match o {
            Operand::Var(v) => self.var(*v).to_token_stream(),
            Operand::Const(e @ (syn::Expr::Lit(_) | syn::Expr::Path(_))) => e.to_token_stream(),
            Operand::Const(e @ syn::Expr::Paren(_)) => {
                crate::plain::rewrite_expr(e).to_token_stream()
            }
            // (Its products as in the plain `f`: `plain.rs`.)
            Operand::Const(e) => {
                let e = crate::plain::rewrite_expr(e);
                quote!((#e))
            }
        }
    }

    /// The shape of operand `v` that the rule of statement `def` reads.
    pub fn stmt_shape(&mut self, def: VarId, v: VarId) -> Ident {
        match self.stmt_shapes.get(&(def, v)) {
            Some(i) => i.clone(),
            None => self.shape(v),
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

    pub(super) fn spelled(
        &self,
        spelling: &Spelling,
        args: &[Operand],
        span: proc_macro2::Span,
    ) -> TokenStream {
        let ops: Vec<TokenStream> = args.iter().map(|a| self.operand(a)).collect();
        self.spelled_ops(spelling, &ops, span)
    }

    pub(super) fn spelled_ops(
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
            // `erf`/`erfc` are methods of `backprop::Erf` (on floats and arrays), which the
            // user's module need not import: `backprop::erf(v)` in a `mapv` becomes one.
            Spelling::Method(m) if m == "erf" || m == "erfc" => {
                let recv = &ops[0];
                quote_spanned!(span=> {
                    #[allow(unused_imports)]
                    use ::backprop::Erf as _;
                    #recv.#m()
                })
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
            Spelling::Template(ts) => crate::ir::lower::fill_template(ts.clone(), ops),
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

/// The reverse of an `if`: for each arm, the values its forward pass saves (the data
/// in `Branch::Then(..)`/`Branch::Else(..)`) and its reverse statements; and the outer
/// values whose cotangents the arms return.
pub struct BranchReverse {
    /// The then arm and the else arm.
    pub arms: [ArmReverse; 2],
    pub outer: Vec<VarId>,
    /// Mode-dependent lines in the arms (see `Emitter::sensitive`).
    pub sensitive: usize,
    /// What the arms' code reads (for the enclosing block's save plan).
    pub reads: Reads,
}

/// The reverse of one arm of an `if`.
pub struct ArmReverse {
    /// What the arm's forward pass saves (`Branch::Then((..))`).
    pub saved: Vec<Ident>,
    /// The values recomputed at the top of the arm's reverse.
    pub recompute: Vec<TokenStream>,
    /// The reverse statements.
    pub body: Vec<TokenStream>,
    /// The tuple of the outer values' cotangents.
    pub tuple: TokenStream,
    /// Outer arrays this arm hands a zero cotangent (it does not read them): the name of
    /// the shape its forward pass takes at its top and saves, and the array's name. The
    /// array itself may be moved after the `if` (an element write), so the reverse must
    /// not read it.
    pub zero_shapes: Vec<(Ident, Ident)>,
}

/// Which of the two reverse bodies is being emitted (`emit::reverse::pullback`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Each scalar rule with strong zeros (`backprop::rules::scalar`: an exactly-zero
    /// cotangent gives 0 even against an infinite local derivative), each nested
    /// pullback `Pullback::backward`: the reference, and all `f_backward` runs.
    Strong,
    /// The same rules as plain products (`backprop::rules::scalar::plain`), each nested
    /// pullback `Pullback::backward_unguarded`: what `f_grad` runs first in a function
    /// with loops or calls, falling back to the strong body when a NaN appears.
    Plain,
}

/// The reverse of one loop iteration, run inline in the enclosing reverse pass.
#[derive(Clone)]
pub struct LoopReverse {
    /// Indices into `carried` of the carried values with an adjoint.
    pub active: Vec<usize>,
    /// `d_<out>_next`: each active carried value's cotangent at the end of an iteration.
    pub params: Vec<Ident>,
    /// Hoisted reads and recomputed values, at the top of the iteration's reverse.
    pub head: Vec<TokenStream>,
    /// The reverse statements.
    pub body: Vec<TokenStream>,
    /// The tuple of cotangents the iteration hands on: the carried values' at its
    /// start, the outer values', the accumulated reads'.
    pub tuple: TokenStream,
    /// Mode-dependent lines in `body` (see `Emitter::sensitive`).
    pub sensitive: usize,
    /// What `head`, `body` and `tuple` read, and the adjoint elements of `accumulated`
    /// (for the enclosing block's save plan).
    pub reads: Reads,
    pub outer: Vec<VarId>,
    /// What each iteration pushes.
    pub saved: Vec<Ident>,
    /// Whether the reverse pass needs the loop's index (recomputed from the range).
    pub index: bool,
    /// Counters the reverse pass runs backwards instead of saving.
    pub reversible: Vec<Reversible>,
    /// Loop-invariant reads, read once after the loop: `(name, read)`.
    pub hoisted: Vec<(Ident, TokenStream)>,
    /// Loop-invariant reads of active buffers: the adjoint element each one's cotangent
    /// is added to once after the loop (the body returns the cotangents after the
    /// carried and outer ones).
    pub accumulated: Vec<(Ident, TokenStream)>,
    /// Carried arrays whose value at the end of an iteration is not saved: it is the
    /// next iteration's entry, which that iteration saved (the last one's is the
    /// loop's result). `(exit, entry, out)`: the reverse walk hands each popped entry
    /// back as the exit of the iteration before it.
    pub relayed: Vec<(VarId, VarId, VarId)>,
}

impl LoopReverse {
    /// A `for` whose iterations save nothing has no stack at all: its reverse takes the
    /// iteration count from the range, as it takes the index. (A `while` counts its
    /// iterations with its stack.)
    pub fn stackless(&self, node: &LoopNode) -> bool {
        self.saved.is_empty() && matches!(node.head, crate::ir::LoopHead::For { .. })
    }
}

/// A carried integer counter stepped by a literal: `entry = exit − step` in reverse.
#[derive(Clone)]
pub struct Reversible {
    pub entry: VarId,
    pub out: VarId,
    pub step: TokenStream,
    /// `-` for a counter the body increments, `+` for one it decrements.
    pub undo: TokenStream,
}

/// Whether `a` and `b` are defined in the same block (not one inside a loop or an arm
/// the other is outside of).
fn same_block(body: &[Stmt], a: VarId, b: VarId) -> bool {
    let here = |v: VarId| body.iter().any(|s| s.def == v);
    if here(a) || here(b) {
        return here(a) && here(b);
    }
    body.iter().any(|s| match &s.rhs {
        Rhs::Loop(node) => same_block(&node.body, a, b),
        Rhs::If(node) => same_block(&node.then_body, a, b) || same_block(&node.else_body, a, b),
        _ => false,
    })
}
