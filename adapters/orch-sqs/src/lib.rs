#![doc = include_str!("../README.md")]

mod base64;
mod client;
mod config;
mod error;
mod queue;

pub use config::SqsConfig;
pub use queue::{SqsQueue, MAX_DELAY, MAX_PAYLOAD_BYTES};
