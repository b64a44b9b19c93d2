//! Whole-function analyses over the IR, computed once into a [`Plan`].

pub mod activity;
pub mod check;
pub mod kind;
pub mod record;

use crate::diag::Ctxt;
use crate::ir::{Func, VarId};
use std::collections::BTreeSet;

pub struct Plan {
    pub activity: activity::Activity,
    pub kinds: kind::Kinds,
    /// The values the reverse pass reads: exactly what the tape keeps.
    pub saved: BTreeSet<VarId>,
}

pub fn analyse(cx: &Ctxt, func: &Func) -> Plan {
    let activity = activity::analyse(func);
    check::check(cx, func, &activity);
    let kinds = kind::analyse(func);
    check::check_scalar_only_methods(cx, func, &activity, &kinds);
    let saved = record::saved(func, &activity, &kinds);
    Plan {
        activity,
        kinds,
        saved,
    }
}
