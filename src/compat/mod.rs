//! Compatibility surfaces: each original's API as a thin adapter over the job service, on a
//! listener of its own. No surface has its own storage or delivery path.

pub mod gorooster;
pub mod hammer;
pub mod resthooks;
