//! Conformance suites: one function per contract rule of a port, written once and run by every
//! adapter against its real service (see the `*_suite!` macros).

pub mod database;
pub mod queue;
pub mod settlement;
pub mod storage;
