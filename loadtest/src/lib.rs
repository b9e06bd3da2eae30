//! mig-loadtest: drives the gateway or one worker with closed- and open-loop
//! load and compares slice sizes. Filled in by the load-test issue; the crate
//! exists now so the workspace has its final shape.
//!
//! # Layout
//! (empty for now)
