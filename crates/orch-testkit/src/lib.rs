#![doc = include_str!("../README.md")]

pub mod clock;
pub mod faults;
pub mod fixtures;
pub mod logs;
pub mod mem;
pub mod noop;
pub mod proxy;
pub mod services;
pub mod sim;
pub mod suite;
pub mod tansu;
pub mod throughput;

pub use clock::TestClock;
