#![doc = include_str!("../README.md")]

mod config;
mod error;
mod queue;

pub use config::KafkaConfig;
pub use queue::KafkaQueue;
