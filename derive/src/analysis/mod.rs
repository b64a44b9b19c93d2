//! Whole-function analyses over the IR, computed once into a [`Plan`].

pub mod activity;
pub mod check;
pub mod kind;
pub mod record;
pub mod save;
pub mod updates;

use crate::diag::Ctxt;
use crate::ir::{Func, VarId};
use std::collections::{BTreeSet, HashSet};

pub struct Plan {
    pub activity: activity::Activity,
    pub kinds: kind::Kinds,
    /// The values some pullback's rule reads, whichever block it is in: an array among
    /// them is copied, not moved, where the forward pass hands it on (a loop's initial
    /// state, an arm's unchanged value). What each block's tape keeps is the save plan
    /// (`save`), made when its reverse is built.
    pub saved: BTreeSet<VarId>,
    /// Reads of buffers this function owns that no later write can change: the
    /// reverse pass reads them again from the buffer (which the tape then keeps)
    /// instead of saving each element.
    pub stable_reads: HashSet<VarId>,
    /// The writes of in-place element updates `x[i] = x[i] ± e` (what `x[i] += e`
    /// lowers to): their reverse leaves `d_x[i]` as it is and gives it to `e`, instead
    /// of reading it, zeroing it and adding it back (`updates::in_place_updates`).
    pub in_place_writes: HashSet<VarId>,
    /// The reads of those updates, whose cotangent is not added back.
    pub in_place_reads: HashSet<VarId>,
}

pub fn analyse(cx: &Ctxt, func: &Func) -> Plan {
    let activity = activity::analyse(func);
    check::check(cx, func, &activity);
    let kinds = kind::analyse(func);
    check::check_scalar_only_methods(cx, func, &activity, &kinds);
    check::check_lists_of_arrays(cx, func, &activity, &kinds);
    let saved = record::saved(func, &activity, &kinds);
    let stable_reads = updates::stable_reads(func);
    let (in_place_writes, in_place_reads) = updates::in_place_updates(func, &activity);
    Plan {
        activity,
        kinds,
        saved,
        stable_reads,
        in_place_writes,
        in_place_reads,
    }
}
