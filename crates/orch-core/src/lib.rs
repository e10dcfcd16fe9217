#![doc = include_str!("../README.md")]

pub mod chain;
pub mod error;
pub mod felt;
pub mod types;

pub use error::{Error, Result};
pub use felt::Felt;
