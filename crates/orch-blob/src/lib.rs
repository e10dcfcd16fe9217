#![doc = include_str!("../README.md")]

pub mod blob;
pub mod budget;
pub mod compression;
pub mod da;
pub mod error;
pub mod input;
pub mod kzg;
mod ntt;
pub mod os_output;
pub mod squash;
mod u256;
pub mod version;

use orch_core::chain::{StateDiff, StateUpdate};
use orch_core::Felt;

pub use blob::{
    blobs_to_felts, felts_to_blobs, split_into_transactions, Blob, BYTES_PER_BLOB, FIELD_ELEMENTS_PER_BLOB,
    MAX_BLOBS_PER_TRANSACTION,
};
pub use budget::{BlobBudget, BlobFill};
pub use da::{oracle_addresses, DaContract, DaStateDiff, NoOracle, NonceOracle};
pub use error::{Error, Result};
pub use input::{
    format_felt_list, parse_diff_document, parse_felt_list, parse_nonces, parse_state_update, DecodedDiff, DiffDocument,
};
pub use kzg::{BlobSidecar, KzgCommitment, KzgProof, Scalar, VersionedHash};
pub use os_output::{KzgDaBatch, KzgDaOutput, OsOutputHeader, X0Formula};
pub use squash::{squash_state_diffs, squash_state_updates};
pub use version::{Compression, DaLayout, Encoding, NoncePolicy, StarknetVersion};

/// The result of encoding one state diff for DA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The normalized diff that was encoded.
    pub diff: DaStateDiff,
    /// The DA felt list (before compression).
    pub felts: Vec<Felt>,
    /// What goes into the blobs: `felts`, compressed when the encoding says so. This is the
    /// list the OS hashes into `x_0`.
    pub payload: Vec<Felt>,
    /// `ceil(payload.len() / 4096)` blobs.
    pub blobs: Vec<Blob>,
}

impl Encoded {
    /// The blobs grouped into transactions of at most [`MAX_BLOBS_PER_TRANSACTION`].
    pub fn transactions(&self) -> std::slice::Chunks<'_, Blob> {
        split_into_transactions(&self.blobs)
    }
}

/// Encodes a block's state update with the format of `version` (see
/// [`StarknetVersion::encoding`]).
pub fn encode_state_update(
    update: &StateUpdate,
    nonces: &(impl NonceOracle + ?Sized),
    version: StarknetVersion,
) -> Result<Encoded> {
    encode_state_diff(&update.state_diff, nonces, version.encoding())
}

/// Encodes a state diff: normalize ([`DaStateDiff::from_state_diff`]), felts, optional
/// compression, blobs.
pub fn encode_state_diff(
    diff: &StateDiff,
    nonces: &(impl NonceOracle + ?Sized),
    encoding: Encoding,
) -> Result<Encoded> {
    let diff = DaStateDiff::from_state_diff(diff, nonces, encoding.nonces)?;
    encode_da_state_diff(diff, encoding)
}

/// Encodes the state diffs of a batch of consecutive blocks (in block order) as the one diff
/// the OS publishes for the batch: squashed ([`squash_state_diffs`]), then as
/// [`encode_state_diff`]. Under [`NoncePolicy::Oracle`] the oracle answers with nonces after the
/// batch's last block.
pub fn encode_batch<'a>(
    diffs: impl IntoIterator<Item = &'a StateDiff>,
    nonces: &(impl NonceOracle + ?Sized),
    encoding: Encoding,
) -> Result<Encoded> {
    encode_state_diff(&squash_state_diffs(diffs), nonces, encoding)
}

/// Encodes an already normalized diff.
pub fn encode_da_state_diff(diff: DaStateDiff, encoding: Encoding) -> Result<Encoded> {
    let felts = diff.to_felts(encoding.layout)?;
    let payload = match encoding.compression {
        Compression::None => felts.clone(),
        Compression::Stateless => compression::compress(&felts)?,
    };
    let blobs = felts_to_blobs(&payload)?;
    Ok(Encoded { diff, felts, payload, blobs })
}

/// Decodes the blob payload (the blobs' concatenated coefficients): decompresses if the
/// encoding says so, parses the state diff, and requires everything after it to be zero.
pub fn decode_payload(payload: &[Felt], encoding: Encoding) -> Result<DaStateDiff> {
    match encoding.compression {
        Compression::None => DaStateDiff::from_felts(payload, encoding.layout),
        Compression::Stateless => {
            let (felts, used) = compression::decompress(payload)?;
            da::ensure_zero_tail("compressed DA felts", payload, used)?;
            let (diff, n) = DaStateDiff::parse(&felts, encoding.layout)?;
            if n != felts.len() {
                return Err(Error::malformed(
                    "DA felts",
                    n,
                    format!("{} decompressed felts left over after the state diff", felts.len() - n),
                ));
            }
            Ok(diff)
        }
    }
}

/// Decodes published blobs back into the state diff they carry.
pub fn decode_blobs(blobs: &[Blob], encoding: impl Into<Encoding>) -> Result<DaStateDiff> {
    decode_payload(&blobs_to_felts(blobs)?, encoding.into())
}
