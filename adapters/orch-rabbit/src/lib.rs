#![doc = include_str!("../README.md")]

mod config;
mod error;
mod queue;

pub use config::RabbitConfig;
pub use queue::RabbitQueue;
