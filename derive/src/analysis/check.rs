//! Whole-function checks that need activity.
//!
//! An operation with no rule is fine on constants (`n as f64`, `x.to_bits()` on data),
//! but if an active value reaches it and its result matters, the gradient would be
//! silently wrong; that is a compile error spanned on the operation, saying what is
//! supported and how to give the function a rule.

use super::activity::Activity;
use crate::diag::Ctxt;
use crate::ir::{Func, Rhs};

pub fn check(cx: &Ctxt, func: &Func, activity: &Activity) {
    for s in &func.body {
        if let Rhs::NoRule { args, why, at, .. } = &s.rhs
            && activity.is_active(s.def)
            && args.iter().any(|a| activity.operand_active(a))
        {
            cx.error_spanned_by(at, why);
        }
    }
}
