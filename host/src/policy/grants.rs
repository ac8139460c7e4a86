//! The grammar of grants lives with the config that holds them ([`crate::config::grants`]): a
//! grant is data, parsed once when the config loads. Re-exported here, where policy reads it.

pub use crate::config::grants::*;
