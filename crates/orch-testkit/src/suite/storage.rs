//! The `Storage` conformance suite. `make(prefix)` returns a store rooted at `prefix` on a
//! shared backend; each case picks fresh prefixes.

use std::future::Future;
use std::sync::Arc;

use orch_core::error::Error;
use orch_core::storage::Storage;
use orch_core::types::ObjectKey;
use sha2::{Digest, Sha256};

use crate::fixtures::fresh_chain;

fn k(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("valid key")
}

/// Rules 1–3: bytes round trip (empty, binary, 3 MiB), head reports size and SHA-256.
pub async fn put_get_head_round_trip<F, Fut>(make: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Option<Arc<dyn Storage>>>,
{
    let Some(s) = make(fresh_chain().to_string()).await else { return };
    s.setup().await.unwrap();
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for (name, data) in [("empty", vec![]), ("bin", (0..=255u8).collect()), ("big", big)] {
        let key = k(&format!("a/{name}.bin"));
        let m = s.put(&key, data.clone()).await.unwrap();
        assert_eq!(m.size, data.len() as u64);
        assert_eq!(m.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(s.get(&key).await.unwrap(), data, "{name}");
        assert_eq!(s.head(&key).await.unwrap(), m);
    }
}

/// Rule 1: put overwrites.
pub async fn put_overwrites<F, Fut>(make: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Option<Arc<dyn Storage>>>,
{
    let Some(s) = make(fresh_chain().to_string()).await else { return };
    s.setup().await.unwrap();
    s.put(&k("x"), b"old".to_vec()).await.unwrap();
    s.put(&k("x"), b"new!".to_vec()).await.unwrap();
    assert_eq!(s.get(&k("x")).await.unwrap(), b"new!");
    assert_eq!(s.head(&k("x")).await.unwrap().size, 4);
}

/// Rules 2–4: missing keys are NotFound; delete is idempotent.
pub async fn missing_keys_and_idempotent_delete<F, Fut>(make: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Option<Arc<dyn Storage>>>,
{
    let Some(s) = make(fresh_chain().to_string()).await else { return };
    s.setup().await.unwrap();
    assert!(matches!(s.get(&k("nope")).await, Err(Error::NotFound { .. })));
    assert!(matches!(s.head(&k("nope")).await, Err(Error::NotFound { .. })));
    s.put(&k("d"), vec![1]).await.unwrap();
    s.delete(&k("d")).await.unwrap();
    s.delete(&k("d")).await.unwrap();
    assert!(matches!(s.get(&k("d")).await, Err(Error::NotFound { .. })));
}

/// Rule 5: list by whole-segment prefix, sorted.
pub async fn list_by_segment_prefix_sorted<F, Fut>(make: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Option<Arc<dyn Storage>>>,
{
    let Some(s) = make(fresh_chain().to_string()).await else { return };
    s.setup().await.unwrap();
    for key in ["b/2", "a/b/c", "a/bc", "a/b/a", "z"] {
        s.put(&k(key), key.as_bytes().to_vec()).await.unwrap();
    }
    let all: Vec<_> = s.list(None).await.unwrap().into_iter().map(|m| m.key.to_string()).collect();
    assert_eq!(all, ["a/b/a", "a/b/c", "a/bc", "b/2", "z"]);
    let ab: Vec<_> = s.list(Some(&k("a/b"))).await.unwrap().into_iter().map(|m| m.key.to_string()).collect();
    assert_eq!(ab, ["a/b/a", "a/b/c"], "a/b must not match a/bc");
    assert!(s.list(Some(&k("q"))).await.unwrap().is_empty());
}

/// Rule 6: stores with different root prefixes never see each other's keys.
pub async fn prefixes_isolate_stores<F, Fut>(make: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Option<Arc<dyn Storage>>>,
{
    let base = fresh_chain().to_string();
    let (Some(a), Some(b)) = (make(format!("{base}/a")).await, make(format!("{base}/ab")).await) else { return };
    a.setup().await.unwrap();
    b.setup().await.unwrap();
    a.put(&k("same"), b"A".to_vec()).await.unwrap();
    b.put(&k("same"), b"B".to_vec()).await.unwrap();
    assert_eq!(a.get(&k("same")).await.unwrap(), b"A");
    assert_eq!(b.get(&k("same")).await.unwrap(), b"B");
    assert_eq!(a.list(None).await.unwrap().len(), 1);
    a.delete(&k("same")).await.unwrap();
    assert_eq!(b.get(&k("same")).await.unwrap(), b"B");
}

/// Runs every Storage case as its own test. `$make` is a closure `|prefix: String| async {
/// Option<Arc<dyn Storage>> }`; `None` skips.
#[macro_export]
macro_rules! storage_suite {
    ($make:expr) => {
        $crate::storage_suite!(@cases $make;
            put_get_head_round_trip,
            put_overwrites,
            missing_keys_and_idempotent_delete,
            list_by_segment_prefix_sorted,
            prefixes_isolate_stores
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::suite::storage::$case($make).await;
            }
        )*
    };
}
