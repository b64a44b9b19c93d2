//! Differentiable tensor functions.
