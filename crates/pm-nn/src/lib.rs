//! # pm-nn
//!
//! 3D convolutional networks on candle for cosmological fields (U-net, CNN heads) and the bridge
//! that plugs a network's VJP into pm-core's traits.
//!
//! Status: not implemented yet (issue "pm-nn: 3D conv nets on candle"); the crate is kept empty
//! so that the workspace builds without candle until then.
