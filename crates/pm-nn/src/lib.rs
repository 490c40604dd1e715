//! pm-nn
