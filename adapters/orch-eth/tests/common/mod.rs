//! Shared by the anvil tests: a funded fresh account per test, the stand-in deployed from the
//! committed artefact, and KZG-DA batches with real blobs.
#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, I256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent, SolValue};
use orch_blob::kzg::{self, KzgProof, Scalar};
use orch_blob::{felts_to_blobs, Blob};
use orch_core::da::DaReference;
use orch_core::felt::STARK_PRIME;
use orch_core::secret::Secret;
use orch_core::settle::StateUpdateRequest;
use orch_core::types::BlockRange;
use orch_core::Felt;
use orch_eth::abi::IStarknetCore;
use orch_eth::{EthConfig, EthSettlement, SidecarForm, StagedBlobs};

/// Anvil's chain id.
pub const CHAIN_ID: u64 = 31337;

/// A small deterministic generator, seeded per test.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        Rng::seeded(uuid::Uuid::new_v4().as_u64_pair().0)
    }

    /// The same sequence for the same seed (a parent test and the child process it starts).
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_be_bytes());
        }
        b
    }

    /// A felt below 2^251 (so below p and below the BLS12-381 modulus).
    pub fn felt(&mut self) -> Felt {
        let mut b = self.bytes32();
        b[0] &= 0x07;
        Felt::from_be_bytes(b).expect("below 2^251")
    }
}

/// A provider signing with a fresh key that anvil funds, so parallel tests never share a nonce.
pub async fn funded_account(url: &str) -> (DynProvider, PrivateKeySigner, String) {
    let mut rng = Rng::new();
    let key = loop {
        if let Ok(k) = PrivateKeySigner::from_slice(&rng.bytes32()) {
            break k;
        }
    };
    let hex_key = format!("0x{}", alloy::hex::encode(key.to_bytes()));
    let provider =
        ProviderBuilder::new().wallet(EthereumWallet::from(key.clone())).connect_http(url.parse().unwrap()).erased();
    let ether = U256::from(1_000u64) * U256::from(10u64).pow(U256::from(18u64));
    let _: () = provider.raw_request("anvil_setBalance".into(), (key.address(), ether)).await.unwrap();
    (provider, key, hex_key)
}

/// Deploys the stand-in with (genesis root, block -1, hash 0).
pub async fn deploy_stand_in(provider: &DynProvider, genesis_root: Felt) -> Address {
    let artefact: serde_json::Value = serde_json::from_str(orch_eth::STAND_IN_ARTEFACT).unwrap();
    let code: Bytes = artefact["bytecode"].as_str().unwrap().parse().unwrap();
    let args = (U256::from_be_bytes(genesis_root.to_be_bytes()), I256::MINUS_ONE, U256::ZERO).abi_encode_params();
    let mut input = code.to_vec();
    input.extend(args);
    let tx = TransactionRequest::default().with_deploy_code(input);
    let receipt = provider.send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status(), "deployment reverted");
    receipt.contract_address.expect("a contract address")
}

/// Connects the adapter to `core` with `key`, one confirmation, blobs from `staged`.
pub async fn settlement(
    url: &str,
    key: &str,
    core: Address,
    form: SidecarForm,
    staged: Arc<StagedBlobs>,
) -> EthSettlement {
    let cfg = config(url, key, core, form);
    EthSettlement::connect(&cfg).await.unwrap().with_blob_source(staged)
}

/// The adapter's config for `core` with `key`: one confirmation, a fresh journal directory.
pub fn config(url: &str, key: &str, core: Address, form: SidecarForm) -> EthConfig {
    EthConfig {
        rpc_url: Secret::new(url.into()),
        private_key: Secret::new(key.into()),
        core_contract: format!("{core:#x}"),
        chain_id: CHAIN_ID,
        confirmations: 1,
        sidecar: form,
        state_dir: Some(fresh_state_dir()),
        ..EthConfig::default()
    }
}

/// A new directory for a transaction journal (left in the temp dir for post-mortems).
pub fn fresh_state_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("orch-eth-test-{}", uuid::Uuid::new_v4()))
}

/// One batch as the OS would output it for KZG DA, with its blobs.
pub struct Batch {
    pub program_output: Vec<Felt>,
    pub blobs: Vec<Blob>,
    /// Each blob's point proof at x_0.
    pub proofs: Vec<KzgProof>,
    pub x_0: Scalar,
    pub request: StateUpdateRequest,
}

/// The OS's block number before `first` (p - 1 before block 0).
pub fn block_before(first: u64) -> Felt {
    match first.checked_sub(1) {
        Some(n) => Felt::from_u64(n),
        None => {
            let mut p = STARK_PRIME;
            p[31] -= 1;
            Felt::from_be_bytes(p).unwrap()
        }
    }
}

/// 192-bit limbs of a 48-byte commitment: (low, high).
fn commitment_limbs(c: &[u8; 48]) -> (Felt, Felt) {
    let limb = |part: &[u8]| {
        let mut b = [0u8; 32];
        b[8..].copy_from_slice(part);
        Felt::from_be_bytes(b).unwrap()
    };
    (limb(&c[24..]), limb(&c[..24]))
}

/// 128-bit limbs of a scalar: (low, high).
pub fn scalar_limbs(y: &[u8; 32]) -> (Felt, Felt) {
    let mut low = [0u8; 32];
    let mut high = [0u8; 32];
    low[16..].copy_from_slice(&y[16..]);
    high[16..].copy_from_slice(&y[..16]);
    (Felt::from_be_bytes(low).unwrap(), Felt::from_be_bytes(high).unwrap())
}

/// Index of y_0's low limb in a KZG-DA output with `n` blobs.
pub fn y_index(n: usize) -> usize {
    12 + 2 * n
}

/// A batch of blocks `first..=last` from `prev_root` to `new_root`, whose state diff is `n_felts`
/// random felts in blobs.
pub fn kzg_batch(rng: &mut Rng, first: u64, last: u64, prev_root: Felt, new_root: Felt, n_felts: usize) -> Batch {
    let felts: Vec<Felt> = (0..n_felts).map(|_| rng.felt()).collect();
    let blobs = felts_to_blobs(&felts).unwrap();
    let x_0 = rng.felt();
    let z = Scalar::from(x_0);
    let block_hash = rng.felt();
    let mut out = vec![
        prev_root,
        new_root,
        block_before(first),
        Felt::from_u64(last),
        Felt::ZERO,
        block_hash,
        Felt::from_u64(0x05),
        Felt::from_u64(0x0c),
        Felt::ONE,
        Felt::ZERO,
        x_0,
        Felt::from_u64(blobs.len() as u64),
    ];
    let mut ys = Vec::new();
    let mut proofs = Vec::new();
    for blob in &blobs {
        let (low, high) = commitment_limbs(&kzg::commit(blob).unwrap().to_bytes());
        out.extend([low, high]);
        let (proof, y) = kzg::point_proof(blob, &z).unwrap();
        ys.push(y);
        proofs.push(proof);
    }
    for y in &ys {
        let (low, high) = scalar_limbs(&y.to_bytes());
        out.extend([low, high]);
    }
    // Empty message segments.
    out.extend([Felt::ZERO, Felt::ZERO]);
    let request = StateUpdateRequest {
        dedup_key: format!("batch-{first}-{last}"),
        range: BlockRange::new(first, last).unwrap(),
        prev_root,
        new_root,
        block_hash,
        program_output: out.clone(),
        da: DaReference { id: format!("blobs-{first}-{last}-{}", rng.next()), chunks: blobs.len() as u32, bytes: 0 },
    };
    Batch { program_output: out, blobs, proofs, x_0: z, request }
}

/// Number of `LogStateUpdate` events the contract at `core` emitted.
pub async fn update_events(provider: &DynProvider, core: Address) -> usize {
    let filter =
        Filter::new().address(core).event_signature(IStarknetCore::LogStateUpdate::SIGNATURE_HASH).from_block(0u64);
    provider.get_logs(&filter).await.unwrap().len()
}

/// `stateBlockHash()` of the contract at `core`.
pub async fn state_block_hash(provider: &DynProvider, core: Address) -> Felt {
    let tx = TransactionRequest::default().with_to(core).with_input(IStarknetCore::stateBlockHashCall {}.abi_encode());
    let raw = provider.call(tx).await.unwrap();
    let v = IStarknetCore::stateBlockHashCall::abi_decode_returns(&raw).unwrap();
    Felt::from_be_bytes(v.to_be_bytes::<32>()).unwrap()
}

/// An anvil of our own (e.g. another hardfork), killed on drop.
pub struct PrivateAnvil {
    child: Child,
    pub url: String,
}

impl PrivateAnvil {
    pub async fn start(bin: &str, args: &[&str]) -> PrivateAnvil {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let anvil = PrivateAnvil { child, url: format!("http://127.0.0.1:{port}") };
        let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
        let end = Instant::now() + Duration::from_secs(20);
        while provider.get_chain_id().await.is_err() {
            assert!(Instant::now() < end, "anvil on port {port} did not answer within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anvil
    }
}

impl Drop for PrivateAnvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
