//! [`DevOsRunner`]: a simulated Starknet OS run over the [`DevChain`].

use std::sync::Arc;

use async_trait::async_trait;
use orch_core::error::Result;
use orch_core::prove::{OsOutput, OsRunner};
use orch_core::types::{BlockRange, ChainId};
use orch_core::Felt;

use crate::chain::{da_felts_estimate, DevChain};
use crate::config::OsConfig;
use crate::faults::Injector;
use crate::mix::{felt_from, fill_bytes, h64, h_str};

const T_FAULTS: u64 = 0x21;
const T_DIGEST: u64 = 0x22;
const T_PIE: u64 = 0x23;
const MAX_PIE: usize = 64 << 20;

/// First felt of every devnet program output: `"DEVOS1"` in ASCII.
pub const DEV_OS_MAGIC: Felt = Felt::from_u64(0x4445_564f_5331);
/// First bytes of every devnet PIE.
pub const DEV_PIE_MAGIC: &[u8; 8] = b"DEVPIE01";

/// Index of each header field in a devnet program output.
pub mod output {
    /// [`DEV_OS_MAGIC`](super::DEV_OS_MAGIC).
    pub const MAGIC: usize = 0;
    /// A felt derived from the chain id.
    pub const CHAIN: usize = 1;
    /// State root before the range.
    pub const PREV_ROOT: usize = 2;
    /// State root after the range.
    pub const NEW_ROOT: usize = 3;
    /// First block.
    pub const FIRST_BLOCK: usize = 4;
    /// Last block.
    pub const LAST_BLOCK: usize = 5;
    /// Hash of the last block.
    pub const BLOCK_HASH: usize = 6;
    /// Storage writes in the range.
    pub const STORAGE_WRITES: usize = 7;
    /// Contracts deployed in the range.
    pub const DEPLOYED: usize = 8;
    /// Classes declared in the range.
    pub const DECLARED: usize = 9;
    /// Estimated DA felts of the range.
    pub const DA_FELTS: usize = 10;
    /// A digest of the range's state diffs.
    pub const DIFF_DIGEST: usize = 11;
    /// Header length; then `(number, hash, new root)` per block.
    pub const HEADER_LEN: usize = 12;
}

/// A simulated SNOS: deterministic program output and PIE for a block range.
///
/// The program output is a header (see [`output`]) followed by `(block number, block hash,
/// new root)` for every block of the range. The PIE is [`DEV_PIE_MAGIC`], the range, the
/// digest, then deterministic filler: `pie_bytes` plus 4 bytes per DA felt.
#[derive(Debug)]
pub struct DevOsRunner {
    chain: Arc<DevChain>,
    cfg: OsConfig,
    faults: Injector,
}

impl DevOsRunner {
    /// An OS runner over `chain`.
    pub fn new(chain: Arc<DevChain>, cfg: OsConfig) -> DevOsRunner {
        let faults = Injector::new("devnet os", chain.seed(), T_FAULTS, cfg.faults.clone());
        DevOsRunner { chain, cfg, faults }
    }

    /// The output for `range`, whether or not its blocks exist yet.
    pub fn output(&self, chain: &ChainId, range: BlockRange) -> OsOutput {
        let c = &self.chain;
        let seed = c.seed();
        let (mut writes, mut deployed, mut declared, mut felts) = (0u64, 0u64, 0u64, 0u64);
        let mut digest = h64(&[seed, T_DIGEST, range.first(), range.last()]);
        let mut per_block = Vec::with_capacity(3 * range.len().min(1 << 20) as usize);
        for n in range.first()..=range.last() {
            let u = c.generate(n);
            let d = &u.state_diff;
            for s in &d.storage_diffs {
                writes += s.storage_entries.len() as u64;
                for e in &s.storage_entries {
                    digest = h64(&[digest, fold(&e.key), fold(&e.value)]);
                }
            }
            deployed += d.deployed_contracts.len() as u64;
            declared += d.declared_classes.len() as u64;
            felts += da_felts_estimate(d) as u64;
            per_block.extend([Felt::from_u64(n), u.block_hash, u.new_root]);
        }
        let mut program_output = Vec::with_capacity(output::HEADER_LEN + per_block.len());
        program_output.extend([
            DEV_OS_MAGIC,
            felt_from(h_str(seed, chain.as_str())),
            c.root_before(range.first()),
            c.root_after(range.last()),
            Felt::from_u64(range.first()),
            Felt::from_u64(range.last()),
            c.block_hash(range.last()),
            Felt::from_u64(writes),
            Felt::from_u64(deployed),
            Felt::from_u64(declared),
            Felt::from_u64(felts),
            felt_from(digest),
        ]);
        program_output.extend(per_block);

        let len = (self.cfg.pie_bytes as usize).saturating_add(4 * felts as usize).min(MAX_PIE);
        let mut pie = Vec::with_capacity(len.max(32));
        pie.extend_from_slice(DEV_PIE_MAGIC);
        pie.extend_from_slice(&range.first().to_be_bytes());
        pie.extend_from_slice(&range.last().to_be_bytes());
        pie.extend_from_slice(&digest.to_be_bytes());
        fill_bytes(&mut pie, h64(&[seed, T_PIE, digest]), len);
        OsOutput { program_output, pie }
    }
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
        Ok(self.output(chain, range))
    }
}
