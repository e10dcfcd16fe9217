#![doc = include_str!("../README.md")]

mod client;
mod config;
mod error;
mod storage;

pub use config::S3Config;
pub use storage::{S3Storage, SHA256_METADATA};
