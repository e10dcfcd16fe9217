//! Bench-only crate: head-to-head comparisons of orch with other job runners.
//!
//! Not a default workspace member, so normal builds and CI tests never compile the
//! competitors. Run with `cargo bench -p orch-bench`.
