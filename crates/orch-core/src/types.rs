//! Domain newtypes shared by every port.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An L2 block height.
pub type BlockNumber = u64;

/// Milliseconds since the Unix epoch, as told by a [`Clock`](crate::clock::Clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The epoch.
    pub const ZERO: Timestamp = Timestamp(0);
    /// Far future: "not scheduled". `i64::MAX`, so every timestamp orch writes fits a signed
    /// 64-bit column (SQL `BIGINT`, BSON `Int64`) unchanged.
    pub const NEVER: Timestamp = Timestamp(i64::MAX as u64);

    /// `self + d`, saturating at [`Timestamp::NEVER`].
    pub fn plus(self, d: Duration) -> Timestamp {
        let ms = d.as_millis().min(u128::from(u64::MAX)) as u64;
        Timestamp(self.0.saturating_add(ms).min(Timestamp::NEVER.0))
    }

    /// `self - earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// As a signed 64-bit integer for a store column: [`Timestamp::NEVER`] is `i64::MAX`, and
    /// anything later (never written by orch) is clamped to it, so order is kept.
    pub fn to_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// The inverse of [`Timestamp::to_i64`]; `None` for a negative value, which orch never
    /// stores.
    pub fn from_i64(v: i64) -> Option<Timestamp> {
        u64::try_from(v).ok().map(Timestamp)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A job's identity: a UUID chosen when the job is first created (see [`JobId::random`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub uuid::Uuid);

impl JobId {
    /// A fresh id: a version 7 UUID (RFC 9562: milliseconds since the Unix epoch, then random
    /// bits), which `uuid` guarantees to ascend within the process.
    ///
    /// Why time-ordered: stores index jobs and their history by id, and ids made one after
    /// another then land side by side in those indexes instead of all over them, so a batch
    /// of creates, claims or completions touches (and writes back) a few index pages rather
    /// than one per job. The order is only a locality hint: nothing relies on it.
    pub fn random() -> JobId {
        JobId(uuid::Uuid::now_v7())
    }

    /// 64 well-mixed bits of the id, e.g. to seed a job's retry jitter (the high bits of a
    /// time-ordered id are shared by the jobs created in the same millisecond).
    pub fn seed(&self) -> u64 {
        let (hi, lo) = self.0.as_u64_pair();
        hi ^ lo
    }

    /// Parses the hyphenated UUID form.
    pub fn parse(s: &str) -> Result<JobId> {
        uuid::Uuid::parse_str(s.trim())
            .map(JobId)
            .map_err(|e| Error::invalid_input("job id", format!("{s:?} is not a UUID ({e}); copy it from `jobs list`")))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A chain (tenant) served by this deployment; namespaces keys, queues and storage.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChainId(String);

impl ChainId {
    /// Validates: 1–64 chars of `[a-z0-9_-]`, so it is safe in table names, queue names and
    /// object keys of every backend.
    pub fn new(s: impl Into<String>) -> Result<ChainId> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(Error::invalid_input(
                "chain id",
                format!("{s:?}: use 1-64 characters of a-z, 0-9, '-' or '_'"),
            ));
        }
        Ok(ChainId(s))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kinds of job in the settlement pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JobKind {
    /// Run the Starknet OS over a block range: program output + PIE.
    SnosRun,
    /// Prove the SNOS run.
    ProofCreation,
    /// Register the proof on the settlement layer (L3s).
    ProofRegistration,
    /// Publish the state diff to the DA layer.
    DataSubmission,
    /// Apply the state update on the settlement layer's core contract.
    StateTransition,
}

impl JobKind {
    /// Every kind, in pipeline order.
    pub const ALL: [JobKind; 5] = [
        JobKind::SnosRun,
        JobKind::ProofCreation,
        JobKind::ProofRegistration,
        JobKind::DataSubmission,
        JobKind::StateTransition,
    ];

    /// How many kinds there are: the length of per-kind arrays (indexed by [`JobKind::index`]).
    pub const COUNT: usize = JobKind::ALL.len();

    /// Stable snake_case name used in storage, config and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobKind::SnosRun => "snos_run",
            JobKind::ProofCreation => "proof_creation",
            JobKind::ProofRegistration => "proof_registration",
            JobKind::DataSubmission => "data_submission",
            JobKind::StateTransition => "state_transition",
        }
    }

    /// Parses [`JobKind::as_str`] output.
    pub fn parse(s: &str) -> Result<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            Error::invalid_input(
                "job kind",
                format!(
                    "{s:?}; expected one of snos_run, proof_creation, proof_registration, data_submission, state_transition"
                ),
            )
        })
    }

    /// Dense index `0..JobKind::COUNT`, for per-kind arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The kind's code in stores (0..5, ascending in pipeline order, so ordering by code is
    /// ordering by kind). Persisted: a kind keeps its code forever.
    pub const fn code(self) -> u8 {
        match self {
            JobKind::SnosRun => 0,
            JobKind::ProofCreation => 1,
            JobKind::ProofRegistration => 2,
            JobKind::DataSubmission => 3,
            JobKind::StateTransition => 4,
        }
    }

    /// The kind a stored code stands for; `None` for a code no kind has.
    pub fn from_code(code: i64) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| i64::from(k.code()) == code)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job is in its life. See [`crate::state`] for the transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JobStatus {
    /// Created, waiting to be processed (possibly for its dependencies).
    Created,
    /// A worker holds it and is processing it.
    Processing,
    /// Processed; the external effect is being verified.
    PendingVerification,
    /// Done.
    Completed,
    /// Failed an attempt; will be retried at `next_run_at`.
    PendingRetry,
    /// Out of attempts: needs an operator.
    Failed,
    /// Verification ran past its deadline: policy decides, or an operator.
    VerificationTimeout,
    /// Cancelled by an operator.
    Cancelled,
}

impl JobStatus {
    /// Every status.
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Created,
        JobStatus::Processing,
        JobStatus::PendingVerification,
        JobStatus::Completed,
        JobStatus::PendingRetry,
        JobStatus::Failed,
        JobStatus::VerificationTimeout,
        JobStatus::Cancelled,
    ];

    /// Stable snake_case name used in storage and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::Created => "created",
            JobStatus::Processing => "processing",
            JobStatus::PendingVerification => "pending_verification",
            JobStatus::Completed => "completed",
            JobStatus::PendingRetry => "pending_retry",
            JobStatus::Failed => "failed",
            JobStatus::VerificationTimeout => "verification_timeout",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses [`JobStatus::as_str`] output.
    pub fn parse(s: &str) -> Result<JobStatus> {
        JobStatus::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            Error::invalid_input(
                "job status",
                format!("{s:?}; expected one of created, processing, pending_verification, completed, pending_retry, failed, verification_timeout, cancelled"),
            )
        })
    }

    /// Whether the engine may claim a job in this status when it is due.
    pub const fn is_claimable(self) -> bool {
        matches!(
            self,
            JobStatus::Created | JobStatus::Processing | JobStatus::PendingVerification | JobStatus::PendingRetry
        )
    }

    /// Whether the job is finished for good (no engine action).
    pub const fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Cancelled)
    }

    /// Dense index 0..8, for per-status arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An inclusive, non-empty range of blocks `first..=last` covered by one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlockRange {
    first: BlockNumber,
    last: BlockNumber,
}

impl BlockRange {
    /// `first..=last`; `InvalidInput` when `last < first`.
    pub fn new(first: BlockNumber, last: BlockNumber) -> Result<BlockRange> {
        if last < first {
            return Err(Error::invalid_input(
                "block range",
                format!("{first}..={last} is empty: the last block must not be below the first"),
            ));
        }
        Ok(BlockRange { first, last })
    }

    /// One block.
    pub const fn single(n: BlockNumber) -> BlockRange {
        BlockRange { first: n, last: n }
    }

    /// First block.
    pub const fn first(&self) -> BlockNumber {
        self.first
    }

    /// Last block (inclusive).
    pub const fn last(&self) -> BlockNumber {
        self.last
    }

    /// Number of blocks.
    pub const fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Always false: ranges are non-empty.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Whether `n` is inside.
    pub const fn contains(&self, n: BlockNumber) -> bool {
        self.first <= n && n <= self.last
    }
}

impl fmt::Display for BlockRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..={}", self.first, self.last)
        }
    }
}

/// The unique key of a job: at most one job per `(chain, kind, range)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobKey {
    /// Tenant.
    pub chain: ChainId,
    /// Kind.
    pub kind: JobKind,
    /// Blocks covered.
    pub range: BlockRange,
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.chain, self.kind, self.range)
    }
}

/// Fencing epoch: incremented by every claim. A write carrying an older epoch is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Optimistic-concurrency version of a job record: incremented by every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

/// A worker instance's identity (unique per process run).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub String);

impl WorkerId {
    /// `prefix-<random>`.
    pub fn random(prefix: &str) -> WorkerId {
        let u = uuid::Uuid::new_v4().simple().to_string();
        WorkerId(format!("{prefix}-{}", &u[..12]))
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A claim on a job: who holds it and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Holder.
    pub owner: WorkerId,
    /// Expiry; after it anyone may reclaim the job.
    pub until: Timestamp,
}

/// A key in [`Storage`](crate::storage::Storage): `/`-separated segments of `[A-Za-z0-9._=-]`,
/// no empty, `.` or `..` segment, at most 1024 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates a key.
    pub fn new(s: impl Into<String>) -> Result<ObjectKey> {
        let s = s.into();
        let bad = |why: &str| Error::invalid_input("object key", format!("{s:?}: {why}"));
        if s.is_empty() || s.len() > 1024 {
            return Err(bad("must be 1-1024 bytes"));
        }
        for seg in s.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(bad("segments must be non-empty and not '.' or '..'"));
            }
            if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"._=-".contains(&b)) {
                return Err(bad("use only A-Z a-z 0-9 . _ = - and '/' between segments"));
            }
        }
        Ok(ObjectKey(s))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self/segment`.
    pub fn join(&self, segment: &str) -> Result<ObjectKey> {
        ObjectKey::new(format!("{}/{segment}", self.0))
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = Error;
    fn try_from(s: String) -> Result<ObjectKey> {
        ObjectKey::new(s)
    }
}

impl From<ObjectKey> for String {
    fn from(k: ObjectKey) -> String {
        k.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A transaction hash on a settlement or DA layer (opaque bytes, hex when printed).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TxHash(pub String);

impl fmt::Debug for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_round_trip_and_ascend_in_kind_order() {
        let mut by_code = JobKind::ALL;
        by_code.sort_by_key(|k| k.code());
        assert_eq!(by_code, JobKind::ALL);
        for k in JobKind::ALL {
            assert_eq!(JobKind::from_code(i64::from(k.code())), Some(k));
        }
        assert_eq!(JobKind::from_code(5), None);
        assert_eq!(JobKind::from_code(-1), None);
    }

    #[test]
    fn stored_timestamps_round_trip_and_keep_order() {
        assert_eq!(Timestamp::from_i64(Timestamp::NEVER.to_i64()), Some(Timestamp::NEVER));
        assert_eq!(Timestamp::from_i64(Timestamp(17).to_i64()), Some(Timestamp(17)));
        assert!(Timestamp(u64::MAX - 1).to_i64() > Timestamp(1 << 62).to_i64());
        assert_eq!(Timestamp::from_i64(-1), None);
    }

    #[test]
    fn object_key_rejects_traversal_and_odd_characters() {
        for bad in ["", "/a", "a/", "a//b", "../x", "a/./b", "a/../b", "a b", "a\\b", "ä"] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ObjectKey::new("chain-1/snos/12=13/pie.zip").is_ok());
    }

    #[test]
    fn job_ids_are_version_7_ascend_and_seed_apart() {
        let ids: Vec<JobId> = (0..1000).map(|_| JobId::random()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids must ascend within a process");
        assert!(ids.iter().all(|id| id.0.get_version_num() == 7 && id.0.get_variant() == uuid::Variant::RFC4122));
        let seeds: std::collections::BTreeSet<u64> = ids.iter().map(JobId::seed).collect();
        assert_eq!(seeds.len(), ids.len());
        let back = JobId::parse(&ids[0].to_string()).unwrap();
        assert_eq!(back, ids[0]);
    }

    #[test]
    fn block_range_rejects_empty() {
        assert!(BlockRange::new(5, 4).is_err());
        assert_eq!(BlockRange::new(5, 7).unwrap().len(), 3);
    }

    #[test]
    fn names_round_trip() {
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()).unwrap(), k);
        }
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()).unwrap(), s);
        }
        assert!(JobKind::parse("snos").is_err());
    }

    #[test]
    fn chain_id_is_validated() {
        assert!(ChainId::new("madara-devnet_1").is_ok());
        assert!(ChainId::new("Bad Chain").is_err());
        assert!(ChainId::new("").is_err());
    }
}
