//! pm-adjoint
