#![doc = include_str!("../README.md")]

mod cache;
mod config;
mod error;
mod queue;

pub use cache::RedisBlockCache;
pub use config::{RedisCacheConfig, RedisConfig};
pub use queue::RedisQueue;
