//! [`S3Config`]: which bucket and prefix, where, with which credentials, and upload sizes.

use std::time::Duration;

use orch_core::error::{Error, Result};
use orch_core::secret::Secret;
use orch_core::types::ObjectKey;
use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// S3's smallest part (all but the last) and largest part / single PUT.
const MIN_PART: u64 = 5 * MIB;
const MAX_PART: u64 = 5 * GIB;
/// S3's most parts per upload.
pub(crate) const MAX_PARTS: u64 = 10_000;

/// Settings of the S3 store (`[storage] provider = "s3"`).
///
/// ```toml
/// bucket = "orch-artefacts"
/// prefix = "mainnet"
/// region = "eu-west-1"
/// # endpoint = "http://127.0.0.1:5000"   # MinIO, moto, LocalStack, R2, …
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Bucket name (default `orch-artefacts`): 3–63 characters of `a-z 0-9 . -`, starting
    /// and ending with a letter or digit. `setup` creates it if missing.
    pub bucket: String,
    /// Key prefix of this store inside the bucket (default none): objects live at
    /// `<prefix>/<key>` and the store sees only its own. Same syntax as an object key.
    pub prefix: Option<String>,
    /// AWS region, e.g. `eu-west-1` (default: the AWS default chain; `us-east-1` when
    /// `endpoint` is set and the chain has none).
    pub region: Option<String>,
    /// Endpoint override for S3-compatible stores and emulators, e.g.
    /// `http://127.0.0.1:9000` (default none: AWS S3).
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual hosts
    /// (`bucket.endpoint/key`) (default: `true` when `endpoint` is set, else `false`).
    pub force_path_style: Option<bool>,
    /// Access key id (default none: the AWS default credential chain). Set together with
    /// `secret_access_key`.
    pub access_key_id: Option<Secret<String>>,
    /// Secret access key for `access_key_id` (default none).
    pub secret_access_key: Option<Secret<String>>,
    /// Session token of temporary credentials (default none).
    pub session_token: Option<Secret<String>>,
    /// Objects of at least this many bytes are uploaded in parts (default 8 MiB, 5 MiB–5 GiB).
    pub multipart_threshold: u64,
    /// Bytes per part of a multipart upload (default 8 MiB, 5 MiB–5 GiB).
    pub part_size: u64,
    /// Parts uploaded at once (default 4, 1–64).
    pub upload_concurrency: usize,
    /// Largest object `put` accepts (default 5 GiB, at most `part_size` × 10 000); a larger
    /// one is refused with `InvalidInput`. Objects are held in memory.
    pub max_object_size: u64,
    /// Limit for one HTTP attempt (default `5m`, 1s–1h): covers a whole part or object.
    #[serde(with = "orch_core::duration")]
    pub request_timeout: Duration,
    /// Limit for opening a connection (default `5s`, 100ms–1m).
    #[serde(with = "orch_core::duration")]
    pub connect_timeout: Duration,
    /// Attempts per call, the first included, before a transient error is returned as
    /// retryable (default 3, 1–10).
    pub max_attempts: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: "orch-artefacts".into(),
            prefix: None,
            region: None,
            endpoint: None,
            force_path_style: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            multipart_threshold: 8 * MIB,
            part_size: 8 * MIB,
            upload_concurrency: 4,
            max_object_size: 5 * GIB,
            request_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 3,
        }
    }
}

impl S3Config {
    /// Defaults with the bucket named `bucket`.
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config { bucket: bucket.into(), ..S3Config::default() }
    }

    /// Whether requests use path-style addressing.
    pub fn path_style(&self) -> bool {
        self.force_path_style.unwrap_or(self.endpoint.is_some())
    }

    /// Checks every field; errors name the field and the fix.
    pub fn validate(&self) -> Result<()> {
        validate_bucket(&self.bucket)?;
        if let Some(p) = &self.prefix {
            ObjectKey::new(p.as_str()).map_err(|e| Error::invalid_input("storage.prefix", e.to_string()))?;
        }
        if let Some(r) = &self.region {
            let ok = !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(Error::invalid_input(
                    "storage.region",
                    format!("{r:?} is not a region name, e.g. \"eu-west-1\""),
                ));
            }
        }
        if let Some(e) = &self.endpoint {
            let scheme_ok = e.starts_with("http://") || e.starts_with("https://");
            if !scheme_ok || e.len() <= "https://".len() || e.contains(char::is_whitespace) {
                return Err(Error::invalid_input(
                    "storage.endpoint",
                    format!(
                        "{} is not an http(s) URL; write e.g. \"http://127.0.0.1:9000\"",
                        orch_core::secret::redact_url(e)
                    ),
                ));
            }
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(_), None) => {
                return Err(Error::invalid_input(
                    "storage.secret_access_key",
                    "is missing: access_key_id is set, so set its secret_access_key too (or neither, for the AWS default credential chain)",
                ))
            }
            (None, Some(_)) => {
                return Err(Error::invalid_input(
                    "storage.access_key_id",
                    "is missing: secret_access_key is set, so set its access_key_id too (or neither, for the AWS default credential chain)",
                ))
            }
            (Some(id), Some(secret)) if id.expose().is_empty() || secret.expose().is_empty() => {
                return Err(Error::invalid_input(
                    "storage.access_key_id",
                    "access_key_id and secret_access_key must not be empty",
                ))
            }
            _ => {}
        }
        if self.session_token.is_some() && self.access_key_id.is_none() {
            return Err(Error::invalid_input(
                "storage.session_token",
                "is only used with access_key_id and secret_access_key",
            ));
        }
        for (field, v) in
            [("storage.multipart_threshold", self.multipart_threshold), ("storage.part_size", self.part_size)]
        {
            if !(MIN_PART..=MAX_PART).contains(&v) {
                return Err(Error::invalid_input(
                    field,
                    format!(
                        "{v} bytes is out of range: use 5 MiB ({MIN_PART}) to 5 GiB ({MAX_PART}), S3's part limits"
                    ),
                ));
            }
        }
        if !(1..=64).contains(&self.upload_concurrency) {
            return Err(Error::invalid_input(
                "storage.upload_concurrency",
                format!("{} is out of range: use 1 to 64", self.upload_concurrency),
            ));
        }
        let most = self.part_size.saturating_mul(MAX_PARTS);
        if self.max_object_size == 0 || self.max_object_size > most {
            return Err(Error::invalid_input(
                "storage.max_object_size",
                format!(
                    "{} bytes is out of range: use 1 to part_size × 10000 ({most}); raise part_size for larger objects",
                    self.max_object_size
                ),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.request_timeout) {
            return Err(Error::invalid_input("storage.request_timeout", "use a value from \"1s\" to \"1h\""));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.connect_timeout) {
            return Err(Error::invalid_input("storage.connect_timeout", "use a value from \"100ms\" to \"1m\""));
        }
        if !(1..=10).contains(&self.max_attempts) {
            return Err(Error::invalid_input(
                "storage.max_attempts",
                format!("{} is out of range: use 1 to 10", self.max_attempts),
            ));
        }
        Ok(())
    }
}

/// S3 bucket names: 3–63 of `a-z 0-9 . -`, a letter or digit at both ends, no `..`.
fn validate_bucket(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = (3..=63).contains(&b.len())
        && b.iter().all(|&c| edge(c) || c == b'.' || c == b'-')
        && b.first().copied().is_some_and(edge)
        && b.last().copied().is_some_and(edge)
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(
            "storage.bucket",
            format!("{name:?}: use 3-63 characters of a-z 0-9 . -, starting and ending with a letter or digit"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_pairs(pairs: &[(&'static str, &'static str)]) -> std::result::Result<S3Config, serde::de::value::Error> {
        use serde::de::value::MapDeserializer;
        S3Config::deserialize(MapDeserializer::new(pairs.iter().copied()))
    }

    #[test]
    fn defaults_are_valid_and_unknown_keys_rejected() {
        let c = S3Config::default();
        c.validate().unwrap();
        assert!(!c.path_style());
        let c = from_pairs(&[("bucket", "b-1"), ("request_timeout", "30s")]).unwrap();
        assert_eq!(c.bucket, "b-1");
        assert!(S3Config { endpoint: Some("http://127.0.0.1:9000".into()), ..c.clone() }.path_style());
        assert!(
            !S3Config { endpoint: Some("http://x".into()), force_path_style: Some(false), ..c.clone() }.path_style()
        );
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.part_size, 8 * MIB);
        c.validate().unwrap();
        let e = from_pairs(&[("buckett", "x")]).unwrap_err();
        assert!(e.to_string().contains("buckett"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases: Vec<(S3Config, &str)> = vec![
            (S3Config::new("Upper"), "storage.bucket"),
            (S3Config::new("ab"), "storage.bucket"),
            (S3Config::new("a..b"), "storage.bucket"),
            (S3Config { prefix: Some("../x".into()), ..S3Config::default() }, "storage.prefix"),
            (S3Config { endpoint: Some("minio:9000".into()), ..S3Config::default() }, "storage.endpoint"),
            (S3Config { part_size: MIB, ..S3Config::default() }, "storage.part_size"),
            (S3Config { multipart_threshold: 0, ..S3Config::default() }, "storage.multipart_threshold"),
            (S3Config { max_object_size: 8 * MIB * MAX_PARTS + 1, ..S3Config::default() }, "storage.max_object_size"),
            (S3Config { upload_concurrency: 0, ..S3Config::default() }, "storage.upload_concurrency"),
            (
                S3Config { secret_access_key: Some(Secret::new("s".into())), ..S3Config::default() },
                "storage.access_key_id",
            ),
        ];
        for (c, field) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = S3Config {
            access_key_id: Some(Secret::new("AKIAEXAMPLE".into())),
            secret_access_key: Some(Secret::new("hunter2".into())),
            ..S3Config::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("AKIAEXAMPLE"), "{shown}");
    }
}
