//! In-memory reference adapters for the infrastructure ports.

mod db;
mod queue;
mod storage;

pub use db::MemDatabase;
pub use queue::MemQueue;
pub use storage::{sha256_hex, MemStorage};
