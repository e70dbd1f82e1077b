//! Dispatch: which worker each event goes to. `mode` is the public setting
//! ([`DispatchMode`]), `picker` the per-reactor choice made for every event.
//!
//! Above `conn` and `net`. Runs on the reactor threads.

mod mode;
mod picker;

pub use mode::{DispatchFn, DispatchInfo, DispatchMode};
pub(crate) use picker::{Dispatcher, Load, Subject};
