//! [`DevOsRunner`]: a simulated Starknet OS run over the [`DevChain`].

use std::sync::Arc;

use async_trait::async_trait;
use orch_blob::{KzgDaOutput, OsOutputHeader};
use orch_core::error::{Error, Result};
use orch_core::prove::{OsOutput, OsRunner};
use orch_core::types::{BlockRange, ChainId};
use orch_core::Felt;

use crate::blobs::{self, DA_VERSION};
use crate::chain::{da_felts_estimate, DevChain};
use crate::config::{KzgMode, OsConfig};
use crate::faults::Injector;
use crate::mix::{felt_from, fill_bytes, h64, h_str};

const T_FAULTS: u64 = 0x21;
const T_DIGEST: u64 = 0x22;
const T_PIE: u64 = 0x23;
const MAX_PIE: usize = 64 << 20;

/// The `os_program_hash` of every devnet program output (`"DEVOS1"` in ASCII): the program
/// the devnet's settlement ledger accepts, as a core contract accepts one program hash.
pub const DEV_OS_PROGRAM_HASH: Felt = Felt::from_u64(0x4445_564f_5331);
/// First bytes of every devnet PIE.
pub const DEV_PIE_MAGIC: &[u8; 8] = b"DEVPIE01";

/// The `starknet_os_config_hash` a devnet chain's program outputs carry: a felt derived from
/// the seed and the chain id (the real one hashes the chain id and fee token).
pub fn os_config_hash(seed: u64, chain: &ChainId) -> Felt {
    felt_from(h_str(seed, chain.as_str()))
}

/// A simulated SNOS: a real Starknet OS program output for KZG DA and a deterministic
/// stand-in PIE for a block range.
///
/// The program output has the layout of the Starknet OS (see [`orch_blob::os_output`]): the
/// header (roots, block numbers and hashes, [`DEV_OS_PROGRAM_HASH`], [`os_config_hash`],
/// `use_kzg_da = 1`, `full_output = 0`), then the KZG segment of the blobs that carry the
/// range's **squashed** state diff in [`DA_VERSION`]'s format — `x_0`, the commitments and
/// each blob's value at `x_0` — then two empty message segments. The DA layer publishes the
/// same blobs, so the commitments match. The PIE is [`DEV_PIE_MAGIC`], the range, a digest
/// of the diffs, then deterministic filler: `pie_bytes` plus 4 bytes per DA felt.
#[derive(Debug)]
pub struct DevOsRunner {
    chain: Arc<DevChain>,
    cfg: OsConfig,
    kzg: KzgMode,
    faults: Injector,
}

impl DevOsRunner {
    /// An OS runner over `chain`, with real KZG commitments.
    pub fn new(chain: Arc<DevChain>, cfg: OsConfig) -> DevOsRunner {
        let faults = Injector::new("devnet os", chain.seed(), T_FAULTS, cfg.faults.clone());
        DevOsRunner { chain, cfg, kzg: KzgMode::Real, faults }
    }

    /// Commits to blobs the way `mode` says; keep it equal to the DA layer's
    /// ([`DaConfig::kzg`](crate::DaConfig::kzg)), as [`Devnet::open`](crate::Devnet::open) does.
    pub fn with_kzg(mut self, mode: KzgMode) -> DevOsRunner {
        self.kzg = mode;
        self
    }

    /// The output for `range`, whether or not its blocks exist yet. CPU-bound (the blobs'
    /// KZG commitments): [`OsRunner::run`] calls it off the async runtime.
    pub fn output(&self, chain: &ChainId, range: BlockRange) -> Result<OsOutput> {
        build_output(&self.chain, self.cfg.pie_bytes, self.kzg, chain, range)
    }
}

fn build_output(c: &DevChain, pie_bytes: u32, kzg: KzgMode, chain: &ChainId, range: BlockRange) -> Result<OsOutput> {
    let seed = c.seed();
    let mut felts = 0u64;
    let mut digest = h64(&[seed, T_DIGEST, range.first(), range.last()]);
    let mut diffs = Vec::with_capacity(range.len().min(1 << 20) as usize);
    for n in range.first()..=range.last() {
        let d = c.generate(n).state_diff;
        for s in &d.storage_diffs {
            for e in &s.storage_entries {
                digest = h64(&[digest, fold(&e.key), fold(&e.value)]);
            }
        }
        felts += da_felts_estimate(&d) as u64;
        diffs.push(d);
    }
    let what = format!("devnet state diffs of blocks {range}");
    let encoded = blobs::encode(&diffs, &what)?;
    let commitments = blobs::commitments(&encoded, kzg)?.to_vec();
    let header = OsOutputHeader {
        initial_root: c.root_before(range.first()),
        final_root: c.root_after(range.last()),
        prev_block_number: OsOutputHeader::block_before(range.first()),
        new_block_number: Felt::from_u64(range.last()),
        prev_block_hash: range.first().checked_sub(1).map_or(Felt::ZERO, |p| c.block_hash(p)),
        new_block_hash: c.block_hash(range.last()),
        os_program_hash: DEV_OS_PROGRAM_HASH,
        starknet_os_config_hash: os_config_hash(seed, chain),
        use_kzg_da: true,
        full_output: false,
    };
    let batch = KzgDaOutput::build_with_commitments(&header, encoded, DA_VERSION, commitments)
        .map_err(|e| Error::internal(format!("building the devnet OS output of blocks {range}: {e}")))?;

    let len = (pie_bytes as usize).saturating_add(4 * felts as usize).min(MAX_PIE);
    let mut pie = Vec::with_capacity(len.max(32));
    pie.extend_from_slice(DEV_PIE_MAGIC);
    pie.extend_from_slice(&range.first().to_be_bytes());
    pie.extend_from_slice(&range.last().to_be_bytes());
    pie.extend_from_slice(&digest.to_be_bytes());
    fill_bytes(&mut pie, h64(&[seed, T_PIE, digest]), len);
    Ok(OsOutput { program_output: batch.program_output, pie })
}

fn fold(f: &Felt) -> u64 {
    let b = f.as_be_bytes();
    let w = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_be_bytes(a)
    };
    w(0) ^ w(8).rotate_left(16) ^ w(16).rotate_left(32) ^ w(24).rotate_left(48)
}

#[async_trait]
impl OsRunner for DevOsRunner {
    async fn run(&self, chain: &ChainId, range: BlockRange) -> Result<OsOutput> {
        self.faults.read("run").await?;
        self.chain.check_range(range.first(), range.last())?;
        let (c, pie_bytes, kzg, chain) = (self.chain.clone(), self.cfg.pie_bytes, self.kzg, chain.clone());
        blobs::blocking(move || build_output(&c, pie_bytes, kzg, &chain, range)).await
    }
}
