//! Behaviour of the S3 store beyond the conformance suite: multipart uploads, limits,
//! objects written by other tools, and failures (missing bucket, unreachable endpoint).

use std::time::Duration;

use orch_core::error::Error;
use orch_core::secret::Secret;
use orch_core::storage::Storage;
use orch_core::types::ObjectKey;
use orch_s3::{S3Config, S3Storage};
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;

/// The S3 endpoint of the tests (moto), or `None` to skip (see
/// [`orch_testkit::services::env_or_skip`]).
fn endpoint() -> Option<String> {
    orch_testkit::services::env_or_skip("ORCH_TEST_AWS_ENDPOINT")
}

/// Settings for a fresh, randomly named bucket at `endpoint` with dummy credentials.
fn config(endpoint: &str) -> S3Config {
    S3Config {
        endpoint: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        access_key_id: Some(Secret::new("test".into())),
        secret_access_key: Some(Secret::new("test".into())),
        ..S3Config::new(format!("orch-test-{}", uuid::Uuid::new_v4().simple()))
    }
}

fn k(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_round_trips_byte_exact() {
    let Some(ep) = endpoint() else { return };
    let cfg =
        S3Config { multipart_threshold: 5 * MIB, part_size: 5 * MIB, prefix: Some("chain".into()), ..config(&ep) };
    let s = S3Storage::connect(cfg).await.unwrap();
    s.setup().await.unwrap();
    // 20 MiB and a bit: four full parts and a short last one.
    let data = pattern(20 * MIB as usize + 12_345);
    let key = k("proofs/7=9/proof.bin");
    let meta = s.put(&key, data.clone()).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.sha256, hex::encode(Sha256::digest(&data)));
    let back = s.get(&key).await.unwrap();
    assert!(back == data, "multipart content differs ({} vs {} bytes)", back.len(), data.len());
    assert_eq!(s.head(&key).await.unwrap(), meta);
    // It really went up in parts: S3 gives multipart objects an ETag ending in -<parts>.
    let raw =
        s.client().head_object().bucket(&s.config().bucket).key("chain/proofs/7=9/proof.bin").send().await.unwrap();
    assert!(raw.e_tag.as_deref().unwrap_or("").trim_matches('"').ends_with("-5"), "{:?}", raw.e_tag);
    // No unfinished upload is left behind.
    let uploads = s.client().list_multipart_uploads().bucket(&s.config().bucket).send().await.unwrap();
    assert!(uploads.uploads.unwrap_or_default().is_empty());
    assert_eq!(s.list(None).await.unwrap(), vec![meta]);
}

#[tokio::test]
async fn small_objects_below_the_threshold_are_single_puts() {
    let Some(ep) = endpoint() else { return };
    let s =
        S3Storage::connect(S3Config { multipart_threshold: 5 * MIB, part_size: 5 * MIB, ..config(&ep) }).await.unwrap();
    s.setup().await.unwrap();
    let data = pattern(5 * MIB as usize - 1);
    let meta = s.put(&k("just-below"), data.clone()).await.unwrap();
    assert_eq!(s.get(&k("just-below")).await.unwrap(), data);
    let raw = s.client().head_object().bucket(&s.config().bucket).key("just-below").send().await.unwrap();
    assert!(!raw.e_tag.as_deref().unwrap_or("").contains('-'), "{:?}", raw.e_tag);
    assert_eq!(s.head(&k("just-below")).await.unwrap(), meta);
}

#[tokio::test]
async fn oversized_object_is_refused_and_nothing_is_stored() {
    let Some(ep) = endpoint() else { return };
    let s = S3Storage::connect(S3Config { max_object_size: MIB, ..config(&ep) }).await.unwrap();
    s.setup().await.unwrap();
    s.put(&k("fits"), vec![1; MIB as usize]).await.unwrap();
    let e = s.put(&k("too/big"), vec![1; MIB as usize + 1]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("too/big") && text.contains("max_object_size"), "{text}");
    assert!(matches!(s.head(&k("too/big")).await, Err(Error::NotFound { .. })));
}

#[tokio::test]
async fn missing_bucket_without_setup_is_a_clear_fatal_error() {
    let Some(ep) = endpoint() else { return };
    let s = S3Storage::connect(config(&ep)).await.unwrap();
    let bucket = s.config().bucket.clone();
    let errors = [
        s.put(&k("a"), b"x".to_vec()).await.unwrap_err(),
        s.get(&k("a")).await.unwrap_err(),
        s.list(None).await.unwrap_err(),
    ];
    for e in errors {
        assert!(!e.is_retryable(), "{e:?}");
        let text = e.to_string();
        assert!(text.contains(&bucket) && text.contains("storage.bucket") && text.contains("setup"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_is_idempotent_also_when_racing() {
    let Some(ep) = endpoint() else { return };
    let s = S3Storage::connect(config(&ep)).await.unwrap();
    let (a, b) = (s.clone(), s.clone());
    let (ra, rb) = tokio::join!(a.setup(), b.setup());
    ra.unwrap();
    rb.unwrap();
    s.setup().await.unwrap();
    s.put(&k("after-setup"), b"ok".to_vec()).await.unwrap();
}

#[tokio::test]
async fn objects_written_by_other_tools_are_hashed_or_skipped() {
    let Some(ep) = endpoint() else { return };
    let s = S3Storage::connect(S3Config { prefix: Some("p".into()), ..config(&ep) }).await.unwrap();
    s.setup().await.unwrap();
    let bucket = s.config().bucket.clone();
    let raw = |key: &'static str, body: &'static [u8]| {
        s.client().put_object().bucket(&bucket).key(key).body(body.to_vec().into()).send()
    };
    raw("p/plain.txt", b"no metadata").await.unwrap();
    raw("p/has space", b"not an orch key").await.unwrap();
    raw("p-other/x", b"another prefix").await.unwrap();
    let meta = s.head(&k("plain.txt")).await.unwrap();
    assert_eq!(meta.sha256, hex::encode(Sha256::digest(b"no metadata")));
    assert_eq!(meta.size, 11);
    let listed = s.list(None).await.unwrap();
    assert_eq!(listed, vec![meta]);
}

#[tokio::test]
async fn nested_prefix_views_share_the_bucket() {
    let Some(ep) = endpoint() else { return };
    let root = S3Storage::connect(config(&ep)).await.unwrap();
    root.setup().await.unwrap();
    let chain = root.with_prefix("tenants/chain-1").unwrap();
    chain.put(&k("pie.zip"), b"pie".to_vec()).await.unwrap();
    assert_eq!(chain.s3_key(&k("pie.zip")), "tenants/chain-1/pie.zip");
    assert_eq!(root.get(&k("tenants/chain-1/pie.zip")).await.unwrap(), b"pie");
    let keys: Vec<_> = root.list(Some(&k("tenants"))).await.unwrap().into_iter().map(|m| m.key.to_string()).collect();
    assert_eq!(keys, ["tenants/chain-1/pie.zip"]);
    assert!(root.with_prefix("../escape").is_err());
}

#[tokio::test]
async fn unreachable_endpoint_is_a_clear_retryable_error() {
    let cfg = S3Config { connect_timeout: Duration::from_secs(1), ..config("http://127.0.0.1:1") };
    let s = S3Storage::connect(cfg).await.expect("connect does not touch the network");
    for e in [s.setup().await.unwrap_err(), s.put(&k("x"), b"x".to_vec()).await.unwrap_err()] {
        assert!(e.is_retryable(), "{e:?}");
        assert!(e.to_string().contains("127.0.0.1:1"), "names the endpoint: {e}");
    }
}

#[tokio::test]
async fn bad_config_is_refused_at_connect() {
    let e = S3Storage::connect(S3Config { part_size: MIB, ..config("http://127.0.0.1:1") }).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }) && e.to_string().contains("storage.part_size"), "{e}");
    let e = S3Storage::connect(S3Config::new("Not_A_Bucket")).await.unwrap_err();
    assert!(e.to_string().contains("storage.bucket"), "{e}");
}

/// Whether `window` holds an HTTP request for part `n` of a multipart upload.
fn requests_part(window: &[u8], n: u32) -> bool {
    let needle = format!("partNumber={n}");
    window
        .windows(needle.len())
        .enumerate()
        .any(|(i, w)| w == needle.as_bytes() && window.get(i + needle.len()).is_none_or(|b| !b.is_ascii_digit()))
}

/// A TCP proxy to `upstream` that drops any connection on which part `fail_part` of a
/// multipart upload is sent; everything else passes.
async fn part_killing_proxy(upstream: String, fail_part: u32) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                let mut tail: Vec<u8> = Vec::new();
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    // Look across read boundaries: keep the last bytes of the previous read.
                    tail.extend_from_slice(&buf[..n]);
                    if requests_part(&tail, fail_part) {
                        break; // dropping both halves cuts the connection mid-request
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let keep = tail.len().saturating_sub(32);
                    tail.drain(..keep);
                }
                down.abort();
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_multipart_upload_is_aborted_and_leaves_nothing() {
    let Some(ep) = endpoint() else { return };
    let direct = S3Storage::connect(config(&ep)).await.unwrap();
    direct.setup().await.unwrap();
    let upstream = ep.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let proxy = part_killing_proxy(upstream, 3).await;
    let cfg = S3Config {
        endpoint: Some(format!("http://{proxy}")),
        bucket: direct.config().bucket.clone(),
        multipart_threshold: 5 * MIB,
        part_size: 5 * MIB,
        upload_concurrency: 2,
        max_attempts: 2,
        ..config(&ep)
    };
    let s = S3Storage::connect(cfg).await.unwrap();
    let key = k("doomed.bin");
    let e = s.put(&key, pattern(18 * MIB as usize)).await.unwrap_err();
    assert!(e.is_retryable(), "a cut connection is transient: {e:?}");
    // Nothing visible, and the upload was aborted rather than left to accumulate parts.
    assert!(matches!(direct.head(&key).await, Err(Error::NotFound { .. })));
    let uploads = direct.client().list_multipart_uploads().bucket(&direct.config().bucket).send().await.unwrap();
    assert!(uploads.uploads.unwrap_or_default().is_empty(), "an upload was left open");
    // The same store still works for objects of two parts.
    s.put(&key, pattern(10 * MIB as usize)).await.unwrap();
    assert!(direct.get(&key).await.unwrap() == pattern(10 * MIB as usize));
}

#[test]
fn part_requests_are_recognised() {
    assert!(requests_part(b"PUT /b/k?x-id=UploadPart&partNumber=3&uploadId=x HTTP/1.1", 3));
    assert!(requests_part(b"PUT /b/k?uploadId=x&partNumber=3 HTTP/1.1", 3));
    assert!(!requests_part(b"PUT /b/k?partNumber=31&uploadId=x HTTP/1.1", 3));
    assert!(!requests_part(b"PUT /b/k?partNumber=2&uploadId=x HTTP/1.1", 3));
}
