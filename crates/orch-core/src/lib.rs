#![doc = include_str!("../README.md")]

pub mod alerts;
pub mod chain;
pub mod clock;
pub mod da;
pub mod db;
pub mod duration;
pub mod engine;
pub mod error;
pub mod events;
pub mod felt;
mod forward;
pub mod job;
pub mod prove;
pub mod queue;
pub mod secret;
pub mod settle;
pub mod state;
pub mod storage;
pub mod types;

pub use error::{Error, Result};
pub use felt::Felt;
