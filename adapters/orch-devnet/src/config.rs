//! [`DevnetConfig`]: one serde struct for the whole simulated world, every field defaulted.
//!
//! The defaults are the fast path: no latency, no failures, every delay zero, so
//! `orchestrator dev` is limited by the engine and by the real KZG commitments to its blobs
//! (`da.kzg = "simulated"` lifts the latter). Turn the knobs up for demos and chaos tests.

use std::time::Duration;

use orch_core::error::{Error, Result};
use orch_core::Felt;
use serde::{Deserialize, Serialize};

/// The simulated appchain and its outside world (`[devnet]` in `orchestrator.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevnetConfig {
    /// Seed of everything simulated: blocks, roots, ids, latencies and injected failures
    /// (default 1). A data dir remembers the seed it was created with.
    pub seed: u64,
    /// The appchain.
    pub chain: ChainConfig,
    /// The OS runner.
    pub os: OsConfig,
    /// The prover.
    pub prover: ProverConfig,
    /// The DA layer.
    pub da: DaConfig,
    /// The settlement layer.
    pub settlement: SettlementConfig,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            seed: 1,
            chain: ChainConfig::default(),
            os: OsConfig::default(),
            prover: ProverConfig::default(),
            da: DaConfig::default(),
            settlement: SettlementConfig::default(),
        }
    }
}

/// Latency and failure injection of one simulated component (`[devnet.<component>.faults]`).
///
/// Both are deterministic: the `k`-th call of a component always gets the same latency and
/// the same verdict for one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Fixed latency added to every call (default 0).
    #[serde(with = "orch_core::duration")]
    pub latency: Duration,
    /// Extra latency drawn uniformly from `0..=jitter` per call (default 0).
    #[serde(with = "orch_core::duration")]
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a call fails with a retryable `Unavailable` error
    /// (default 0).
    pub failure_rate: f64,
    /// Of the injected failures of calls with an effect (prover submit, DA publish, settlement
    /// submit and register), the share that strike *after* the effect took place: the answer
    /// is lost, the work is done (default 0.5). Exercises the caller's idempotency.
    pub failure_after_effect: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults { latency: Duration::ZERO, jitter: Duration::ZERO, failure_rate: 0.0, failure_after_effect: 0.5 }
    }
}

impl Faults {
    /// Whether this injects nothing (the fast path).
    pub fn is_inert(&self) -> bool {
        self.latency.is_zero() && self.jitter.is_zero() && self.failure_rate <= 0.0
    }

    fn validate(&self, section: &str) -> Result<()> {
        probability(&format!("{section}.faults.failure_rate"), self.failure_rate)?;
        probability(&format!("{section}.faults.failure_after_effect"), self.failure_after_effect)
    }
}

fn probability(key: &str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid_input(key, format!("{p} is not a probability; use a number from 0.0 to 1.0")));
    }
    Ok(())
}

/// The simulated appchain (`[devnet.chain]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// Total number of blocks the chain ever has (default unset: grows forever). With
    /// `block_time = 0` all of them exist at once: the head is fixed at `blocks - 1`
    /// (`orchestrator dev --blocks N`).
    pub blocks: Option<u64>,
    /// Time between blocks (default 1s); `0` means all `blocks` exist from the start. The
    /// head is `initial_blocks + elapsed / block_time - 1`, elapsed counted from the data dir's
    /// creation, so a restarted devnet keeps its height.
    #[serde(with = "orch_core::duration")]
    pub block_time: Duration,
    /// Blocks that exist at creation when the chain grows (default 0).
    pub initial_blocks: u64,
    /// Contracts whose storage blocks write, 2–256 (default 24). Contract 0 takes the bulk
    /// writes of big blocks.
    pub contracts: u32,
    /// Accounts sending transactions (nonce updates and fee-token writes), 1–256 (default 16).
    pub accounts: u32,
    /// One block in every `big_block_every` (at a seed-chosen place in each window) writes
    /// more than 4096 felts of state diff, so it needs several blobs; about one in five of
    /// those needs more than six blobs (default 20; 0 disables big blocks).
    pub big_block_every: u64,
    /// Latency and failures of `ChainSource` calls.
    pub faults: Faults,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            blocks: None,
            block_time: Duration::from_secs(1),
            initial_blocks: 0,
            contracts: 24,
            accounts: 16,
            big_block_every: 20,
            faults: Faults::default(),
        }
    }
}

impl ChainConfig {
    /// A chain whose blocks `0..blocks` all exist (the head never moves).
    pub fn fixed(blocks: u64) -> ChainConfig {
        ChainConfig { blocks: Some(blocks), block_time: Duration::ZERO, ..ChainConfig::default() }
    }
}

/// The simulated OS runner (`[devnet.os]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OsConfig {
    /// Base size of a PIE in bytes, 64 B–16 MiB (default 2048); a PIE grows by 4 bytes per
    /// DA felt of the range's state diff.
    pub pie_bytes: u32,
    /// Latency and failures of `run`.
    pub faults: Faults,
}

impl Default for OsConfig {
    fn default() -> Self {
        OsConfig { pie_bytes: 2048, faults: Faults::default() }
    }
}

/// Make every proving task that covers `block` fail, the first `times` times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailProof {
    /// The block.
    pub block: u64,
    /// How many tasks covering it fail before one succeeds.
    pub times: u32,
}

/// The simulated prover (`[devnet.prover]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProverConfig {
    /// Time from submission until a task is done (default 0).
    #[serde(with = "orch_core::duration")]
    pub proving_time: Duration,
    /// Probability that a task ends `Failed` (default 0), drawn from its dedup key.
    pub task_failure_rate: f64,
    /// Tasks that must fail: `fail_proofs = [{ block = 17, times = 2 }]` (default none).
    pub fail_proofs: Vec<FailProof>,
    /// Size of a proof in bytes, 32 B–16 MiB (default 512).
    pub proof_bytes: u32,
    /// Latency and failures of `submit` and `status`.
    pub faults: Faults,
}

impl Default for ProverConfig {
    fn default() -> Self {
        ProverConfig {
            proving_time: Duration::ZERO,
            task_failure_rate: 0.0,
            fail_proofs: Vec::new(),
            proof_bytes: 512,
            faults: Faults::default(),
        }
    }
}

/// How the devnet commits to its blobs (`devnet.da.kzg`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KzgMode {
    /// Real KZG commitments (c-kzg, Ethereum trusted setup), the default: a settlement could
    /// open every blob at `x_0`. A commitment costs tens of milliseconds of CPU per blob,
    /// which bounds how fast the devnet settles.
    #[default]
    Real,
    /// A 48-byte fingerprint of each blob in place of its commitment, for throughput runs: the
    /// program output, the DA manifest and the ledger's checks keep their layout and agree with
    /// each other, and the blobs are real, but the "commitments" are not curve points, so no
    /// KZG proof opens them.
    Simulated,
}

/// The simulated DA layer (`[devnet.da]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaConfig {
    /// Time from publication until `verify` says `Included` (default 0).
    #[serde(with = "orch_core::duration")]
    pub inclusion_delay: Duration,
    /// Blobs (131072 bytes each) one submission carries, 1–64 (default 6, as EIP-4844/7691).
    pub blobs_per_submission: u32,
    /// Probability that a publication is dropped: `verify` says `Failed` once the inclusion
    /// delay has passed (default 0), drawn from its dedup key.
    pub drop_rate: f64,
    /// Real KZG commitments (`"real"`, default) or blob fingerprints (`"simulated"`), for the
    /// DA layer and the OS runner of a [`Devnet`](crate::Devnet) alike.
    pub kzg: KzgMode,
    /// Latency and failures of `publish` and `verify`.
    pub faults: Faults,
}

impl Default for DaConfig {
    fn default() -> Self {
        DaConfig {
            inclusion_delay: Duration::ZERO,
            blobs_per_submission: 6,
            drop_rate: 0.0,
            kzg: KzgMode::Real,
            faults: Faults::default(),
        }
    }
}

/// The simulated settlement layer, a ledger on disk (`[devnet.settlement]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettlementConfig {
    /// The block the very first state update must start at (default 0). Keep it equal to
    /// `engine.start_block`.
    pub start_block: u64,
    /// The root the very first state update must start from (`prev_root`). Default unset:
    /// [`Devnet::open`](crate::Devnet::open) uses the simulated chain's root before
    /// `start_block`; a [`DevSettlement`](crate::DevSettlement) opened on its own then
    /// accepts any `prev_root` for the first update.
    pub genesis_root: Option<Felt>,
    /// Time from submission until a transaction is included (default 0); `tx_status` says
    /// `Pending` until then.
    #[serde(with = "orch_core::duration")]
    pub confirmation_delay: Duration,
    /// Confirmations before a transaction counts as final, reported in the capabilities
    /// (default 1).
    pub confirmations: u32,
    /// Block time of the settlement layer (default 0). When set, an included transaction has
    /// one confirmation plus one per `l1_block_time` since inclusion; when 0 it has
    /// `confirmations` at once.
    #[serde(with = "orch_core::duration")]
    pub l1_block_time: Duration,
    /// Proofs must be registered before a state update, as on an L3 (default false). When
    /// false `register_proof` is `Unsupported`.
    pub requires_proof_registration: bool,
    /// Check each update's program output as a core contract does (default true): it must be
    /// the devnet OS's Starknet OS output for KZG DA, agree with the update (roots, block
    /// numbers, hashes) and commit to the blobs of the DA publication it cites. Turn off only
    /// to settle the output of another OS runner.
    pub verify_program_output: bool,
    /// fsync every ledger append before answering (default true). The fsync is most of the
    /// cost of a state update (~0.3–0.6 ms on an SSD). Without it a killed process still
    /// loses nothing (the kernel holds the write), but an OS crash or power loss may lose
    /// acknowledged updates.
    pub fsync: bool,
    /// Latency and failures of every call.
    pub faults: Faults,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        SettlementConfig {
            start_block: 0,
            genesis_root: None,
            confirmation_delay: Duration::ZERO,
            confirmations: 1,
            l1_block_time: Duration::ZERO,
            requires_proof_registration: false,
            verify_program_output: true,
            fsync: true,
            faults: Faults::default(),
        }
    }
}

impl DevnetConfig {
    /// Checks every value, naming the key (`devnet.…`) and the fix.
    pub fn validate(&self) -> Result<()> {
        let c = &self.chain;
        if c.block_time.is_zero() && c.blocks.is_none() {
            return Err(Error::invalid_input(
                "devnet.chain.block_time",
                "is 0 and devnet.chain.blocks is unset: a chain cannot have infinitely many blocks at once; set blocks = N for a fixed chain or a block_time above zero",
            ));
        }
        if !(2..=256).contains(&c.contracts) {
            return Err(Error::invalid_input("devnet.chain.contracts", "must be between 2 and 256"));
        }
        if !(1..=256).contains(&c.accounts) {
            return Err(Error::invalid_input("devnet.chain.accounts", "must be between 1 and 256"));
        }
        c.faults.validate("devnet.chain")?;
        if !(64..=16 << 20).contains(&self.os.pie_bytes) {
            return Err(Error::invalid_input("devnet.os.pie_bytes", "must be between 64 and 16777216"));
        }
        self.os.faults.validate("devnet.os")?;
        let p = &self.prover;
        probability("devnet.prover.task_failure_rate", p.task_failure_rate)?;
        if !(32..=16 << 20).contains(&p.proof_bytes) {
            return Err(Error::invalid_input("devnet.prover.proof_bytes", "must be between 32 and 16777216"));
        }
        p.faults.validate("devnet.prover")?;
        let d = &self.da;
        if !(1..=64).contains(&d.blobs_per_submission) {
            return Err(Error::invalid_input("devnet.da.blobs_per_submission", "must be between 1 and 64"));
        }
        probability("devnet.da.drop_rate", d.drop_rate)?;
        d.faults.validate("devnet.da")?;
        let s = &self.settlement;
        if s.confirmations == 0 {
            return Err(Error::invalid_input("devnet.settlement.confirmations", "must be at least 1"));
        }
        s.faults.validate("devnet.settlement")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_nested_sections() {
        let cfg: DevnetConfig = serde_json::from_value(serde_json::json!({
            "seed": 9,
            "chain": { "blocks": 100, "block_time": "0ms" },
            "prover": { "proving_time": "2s", "fail_proofs": [{ "block": 3, "times": 2 }],
                        "faults": { "failure_rate": 0.1, "latency": "5ms" } },
            "da": { "kzg": "simulated" },
            "settlement": { "genesis_root": "0x123", "requires_proof_registration": true },
        }))
        .unwrap();
        assert_eq!(cfg.da.kzg, KzgMode::Simulated);
        assert!(cfg.settlement.verify_program_output, "on by default");
        assert_eq!(cfg.seed, 9);
        assert_eq!(cfg.chain.blocks, Some(100));
        assert_eq!(cfg.prover.proving_time, Duration::from_secs(2));
        assert_eq!(cfg.prover.fail_proofs, vec![FailProof { block: 3, times: 2 }]);
        assert_eq!(cfg.prover.faults.latency, Duration::from_millis(5));
        assert_eq!(cfg.settlement.genesis_root, Some(Felt::from_u64(0x123)));
        cfg.validate().unwrap();
    }

    #[test]
    fn rejects_unknown_keys() {
        let err = serde_json::from_value::<DevnetConfig>(serde_json::json!({ "chain": { "blok_time": "1s" } }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("blok_time"), "{err}");
    }

    #[test]
    fn validate_names_the_key() {
        let mut cfg = DevnetConfig::default();
        cfg.da.faults.failure_rate = 1.5;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("devnet.da.faults.failure_rate"), "{e}");

        let mut cfg = DevnetConfig::default();
        cfg.chain.block_time = Duration::ZERO;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("devnet.chain.block_time"), "{e}");
        cfg.chain.blocks = Some(10);
        cfg.validate().unwrap();
    }

    #[test]
    fn defaults_are_the_fast_path() {
        let cfg = DevnetConfig::default();
        cfg.validate().unwrap();
        for f in [&cfg.chain.faults, &cfg.os.faults, &cfg.prover.faults, &cfg.da.faults, &cfg.settlement.faults] {
            assert!(f.is_inert());
        }
    }
}
