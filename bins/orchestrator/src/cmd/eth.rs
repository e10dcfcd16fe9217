//! Ethereum settlement from the command line: `setup`'s checks of the L1, `orchestrator eth …`
//! (deploying the stand-in core contract on a local devnet), and reading the contract's
//! settled block for `blocks status`.
//!
//! Every message here names the config key at fault and the fix, on one line, and never shows
//! the private key or the credentials an RPC URL may carry (user info, an API key in the path
//! or query): the node is named by scheme, host and port only, and error texts from the
//! HTTP client, which quote the whole URL, are scrubbed before they are shown.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, ReceiptResponse, TransactionBuilder};
use alloy::primitives::utils::format_ether;
use alloy::primitives::{Address, Bytes, I256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolValue};
use alloy::transports::http::reqwest::Url;
use clap::{Args, Subcommand};
use orch_core::engine::EngineConfig;
use orch_core::Felt;
use orch_eth::abi::IStarknetCore;
use orch_eth::EthConfig;
use serde::Serialize;

use super::{user, Ctx};
use crate::config::{AppConfig, SettlementProvider};
use crate::{output, providers};

/// How long one JSON-RPC call may take before the node counts as unresponsive.
const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `deploy-stand-in` waits for its transaction's receipt.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `deploy-stand-in` waits for the chain's start block to exist.
const START_BLOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// `orchestrator eth …`: Ethereum settlement tools.
#[derive(Debug, Subcommand)]
pub(crate) enum EthCmd {
    /// Deploy the stand-in core contract (for local devnets and tests only: it checks state
    /// continuity and blob openings, but no STARK proof) with the configured key, starting
    /// from the chain's state before `engine.start_block`; prints its address.
    ///
    /// On a fresh anvil, account #0's first deployment lands at
    /// 0x5FbDB2315678afecb367f032d93F642f64180aa3: the address the example config expects.
    DeployStandIn(DeployArgs),
    /// What the L1 holds (settled block, root, block hash), the operator's balance, the
    /// transactions in flight with their fees, and the spend in the budget window. Reads only:
    /// safe beside a running orchestrator.
    Status(StatusArgs),
}

/// Options of `eth status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `eth deploy-stand-in`.
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn eth(ctx: &Ctx, cmd: EthCmd) -> anyhow::Result<()> {
    let cfg = ctx.load(EngineConfig::default())?;
    match cmd {
        EthCmd::DeployStandIn(a) => deploy_stand_in(&cfg, a).await,
        EthCmd::Status(a) => status(&cfg, a).await,
    }
}

/// The `[settlement]` section when it is Ethereum's, else a one-line error saying so.
fn eth_config<'a>(cfg: &'a AppConfig, what: &str) -> anyhow::Result<&'a EthConfig> {
    match &cfg.settlement {
        SettlementProvider::Eth(c) => Ok(c),
        #[allow(unreachable_patterns)] // builds with eth as the only settlement provider
        other => Err(user(format!(
            "{what} needs Ethereum settlement, but [settlement] provider is \"{}\": set provider = \"eth\" with \
             rpc_url, private_key, core_contract and chain_id (see docs/config.md)",
            other.name()
        ))),
    }
}

/// The node as it may be named in messages: scheme, host and port; never user info, path or
/// query, where API keys live.
fn node_label(rpc_url: &str) -> String {
    match rpc_url.parse::<Url>() {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => "<redacted>".into(),
        },
        Err(_) => "<redacted>".into(),
    }
}

/// `text` with every form of the config's secrets replaced: the RPC URL as written and as the
/// HTTP client prints it (normalized), its password, its path and query (API keys), the
/// private key and the keystore's password.
fn scrub(cfg: &EthConfig, text: &str) -> String {
    let raw = cfg.rpc_url.expose().trim();
    let label = node_label(raw);
    let mut out = text.to_owned();
    let mut replace = |needle: &str, with: &str| {
        if needle.len() >= 4 && out.contains(needle) {
            out = out.replace(needle, with);
        }
    };
    if let Ok(u) = raw.parse::<Url>() {
        replace(u.as_str(), &label);
        replace(u.as_str().trim_end_matches('/'), &label);
        // The HTTP client quotes the URL without its user info.
        let mut bare = u.clone();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        replace(bare.as_str(), &label);
        replace(bare.as_str().trim_end_matches('/'), &label);
        if let Some(pw) = u.password() {
            replace(pw, "<redacted>");
        }
        if u.path().len() > 1 {
            replace(u.path(), "/<redacted>");
        }
        if let Some(q) = u.query() {
            replace(q, "<redacted>");
        }
    }
    replace(raw, &label);
    let key = cfg.private_key.expose().trim();
    replace(key, "<redacted>");
    replace(key.trim_start_matches("0x"), "<redacted>");
    replace(cfg.keystore_password.expose(), "<redacted>");
    out
}

/// An orch error from the adapter with its texts scrubbed of the config's secrets. The
/// error's source chain is dropped: HTTP client errors quote the whole URL there.
pub(crate) fn scrubbed(cfg: &EthConfig, e: orch_core::Error) -> orch_core::Error {
    use orch_core::Error as E;
    match e {
        E::InvalidInput { field, reason } => E::invalid_input(field, scrub(cfg, &reason)),
        E::Unavailable { backend, mut message, retry_after, source } => {
            // The source says why (connection refused, timed out): keep its words, not it.
            if let Some(src) = source {
                for cause in causes(&*src).split(": ") {
                    if !message.contains(cause) {
                        message = format!("{message}: {cause}");
                    }
                }
            }
            E::Unavailable { backend, message: scrub(cfg, &message), retry_after, source: None }
        }
        E::Rejected { backend, reason } => E::rejected(backend, scrub(cfg, &reason)),
        E::NotFound { what } => E::not_found(scrub(cfg, &what)),
        other => E::internal(scrub(cfg, &super::describe(&anyhow::Error::new(other)))),
    }
}

/// A JSON-RPC connection to the configured node, for the commands' own calls.
struct Node<'a> {
    cfg: &'a EthConfig,
    label: String,
    provider: DynProvider,
}

impl<'a> Node<'a> {
    /// A read-only connection (no key needed).
    fn read_only(cfg: &'a EthConfig) -> anyhow::Result<Node<'a>> {
        let url = rpc_url(cfg)?;
        Ok(Node {
            cfg,
            label: node_label(cfg.rpc_url.expose()),
            provider: ProviderBuilder::new().connect_http(url).erased(),
        })
    }

    /// A connection that signs with the operator key.
    fn signing(cfg: &'a EthConfig, signer: PrivateKeySigner) -> anyhow::Result<Node<'a>> {
        let url = rpc_url(cfg)?;
        let provider = ProviderBuilder::new().wallet(EthereumWallet::from(signer)).connect_http(url).erased();
        Ok(Node { cfg, label: node_label(cfg.rpc_url.expose()), provider })
    }

    /// Runs one call, bounded by [`RPC_TIMEOUT`]; a failure is one line naming
    /// `settlement.rpc_url`, scrubbed.
    async fn call<T, E: std::error::Error>(
        &self,
        what: &str,
        fut: impl IntoFuture<Output = Result<T, E>>,
    ) -> anyhow::Result<T> {
        match tokio::time::timeout(RPC_TIMEOUT, fut.into_future()).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => anyhow::bail!(
                "cannot {what} from the Ethereum node at settlement.rpc_url ({}): {}: check that the node runs and \
                 that settlement.rpc_url points at it",
                self.label,
                scrub(self.cfg, &causes(&e))
            ),
            Err(_) => anyhow::bail!(
                "the Ethereum node at settlement.rpc_url ({}) did not answer within {}s ({what}): check that the node \
                 runs and that settlement.rpc_url points at it",
                self.label,
                RPC_TIMEOUT.as_secs()
            ),
        }
    }

    /// The node's chain id, which must be `settlement.chain_id`.
    async fn check_chain(&self) -> anyhow::Result<u64> {
        let chain = self.call("read the chain id", self.provider.get_chain_id()).await?;
        if chain != self.cfg.chain_id {
            return Err(user(format!(
                "settlement.chain_id is {}, but the Ethereum node at settlement.rpc_url ({}) serves chain {chain}: set \
                 settlement.chain_id = {chain} if that is the right network, or point settlement.rpc_url at a node of \
                 chain {}",
                self.cfg.chain_id, self.label, self.cfg.chain_id
            )));
        }
        Ok(chain)
    }

    /// `stateBlockNumber()` of the contract at `core`: `None` before the first update (the
    /// contract's genesis block number is negative).
    async fn state_block_number(&self, core: Address) -> anyhow::Result<Option<u64>> {
        let tx =
            TransactionRequest::default().with_to(core).with_input(IStarknetCore::stateBlockNumberCall {}.abi_encode());
        let raw = self.call("call stateBlockNumber()", self.provider.call(tx)).await?;
        let n = IStarknetCore::stateBlockNumberCall::abi_decode_returns(&raw).map_err(|_| {
            user(format!(
                "settlement.core_contract: the contract at {core} does not answer stateBlockNumber() as the Starknet \
                 core contract does: fix settlement.core_contract"
            ))
        })?;
        if n.is_negative() {
            return Ok(None);
        }
        u64::try_from(n.into_raw())
            .map(Some)
            .map_err(|_| anyhow::anyhow!("stateBlockNumber() of {core} is {n}, which is no block number"))
    }
}

fn rpc_url(cfg: &EthConfig) -> anyhow::Result<Url> {
    cfg.rpc_url.expose().trim().parse::<Url>().map_err(|_| {
        user("settlement.rpc_url is not an http(s) URL of an Ethereum JSON-RPC node: give e.g. http://127.0.0.1:8545")
    })
}

/// The operator's signer, from `private_key` or the keystore (the adapter's own reading).
fn signer(cfg: &EthConfig) -> anyhow::Result<PrivateKeySigner> {
    cfg.signer().map_err(|e| anyhow::Error::new(scrubbed(cfg, e)))
}

/// The key that names the operator's key in messages.
fn key_field(cfg: &EthConfig) -> &'static str {
    if cfg.keystore.is_some() {
        "settlement.keystore"
    } else {
        "settlement.private_key"
    }
}

fn core_address(cfg: &EthConfig) -> anyhow::Result<Address> {
    cfg.core_contract.trim().parse().map_err(|_| {
        user(format!("settlement.core_contract `{}` is not an address: give 0x and 40 hex digits", cfg.core_contract))
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its sources on one line, each said once: the HTTP client's top message
/// ("error sending request") alone does not say that the connection was refused.
fn causes(e: &dyn std::error::Error) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = one_line(&err.to_string());
        if !text.is_empty() && !out.iter().any(|t| t.contains(&text)) {
            out.push(text);
        }
        next = err.source();
    }
    out.join(": ")
}

/// What `setup` found on the L1.
#[derive(Debug, Serialize)]
pub(crate) struct L1Facts {
    chain_id: u64,
    core_contract: Address,
    operator: Address,
    balance_wei: U256,
    settled_through: Option<u64>,
}

impl std::fmt::Display for L1Facts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ethereum settlement ready: chain {}, core contract {} (settled through {}), operator {} holding {} ETH",
            self.chain_id,
            self.core_contract,
            self.settled_through.map_or_else(|| "-".to_owned(), |b| format!("block {b}")),
            self.operator,
            format_ether(self.balance_wei)
        )
    }
}

/// `setup`'s checks of the L1, in order: the node answers with `settlement.chain_id`, a
/// contract that reads like the core contract is deployed at `settlement.core_contract`, and
/// the operator account holds ether. The first failure is the error.
pub(crate) async fn preflight(cfg: &EthConfig) -> anyhow::Result<L1Facts> {
    let signer = signer(cfg)?;
    let operator = signer.address();
    let core = core_address(cfg)?;
    let node = Node::read_only(cfg)?;
    let chain_id = node.check_chain().await?;
    let code = node.call("read the core contract's code", node.provider.get_code_at(core)).await?;
    if code.is_empty() {
        return Err(user(format!(
            "settlement.core_contract: no contract is deployed at {core} on chain {chain_id}: deploy the Starknet core \
             contract there and set its address (on a local devnet: `orchestrator eth deploy-stand-in`)"
        )));
    }
    let settled_through = node.state_block_number(core).await?;
    let balance_wei = node.call("read the operator's balance", node.provider.get_balance(operator)).await?;
    if balance_wei.is_zero() {
        return Err(user(format!(
            "{}: its account {operator} holds no ether on chain {chain_id}: fund it (it pays the \
             gas and blob fees of every state update), or configure the key of a funded account",
            key_field(cfg)
        )));
    }
    Ok(L1Facts { chain_id, core_contract: core, operator, balance_wei, settled_through })
}

/// `setup`'s L1 checks when the settlement layer is Ethereum; `None` otherwise.
#[allow(irrefutable_let_patterns)] // builds with eth as the only settlement provider
pub(crate) async fn preflight_if_eth(cfg: &AppConfig) -> anyhow::Result<Option<L1Facts>> {
    if let SettlementProvider::Eth(c) = &cfg.settlement {
        return Ok(Some(preflight(c).await?));
    }
    Ok(None)
}

/// The block `stateBlockNumber()` says is settled (for `blocks status`).
pub(crate) async fn settled_through(cfg: &EthConfig) -> anyhow::Result<Option<u64>> {
    let node = Node::read_only(cfg)?;
    node.state_block_number(core_address(cfg)?).await
}

/// What `deploy-stand-in` prints with `--json`.
#[derive(Debug, Serialize)]
struct Deployed {
    address: Address,
    tx: String,
    chain_id: u64,
    genesis_block: i64,
    genesis_root: Felt,
    genesis_block_hash: Felt,
    /// Whether `settlement.core_contract` already names this address.
    matches_config: bool,
}

async fn deploy_stand_in(cfg: &AppConfig, args: DeployArgs) -> anyhow::Result<()> {
    let eth = eth_config(cfg, "eth deploy-stand-in")?;
    let signer = signer(eth)?;
    let operator = signer.address();
    let node = Node::signing(eth, signer)?;
    let chain_id = node.check_chain().await?;
    let balance = node.call("read the operator's balance", node.provider.get_balance(operator)).await?;
    if balance.is_zero() {
        return Err(user(format!(
            "{}: its account {operator} holds no ether on chain {chain_id} to pay for the \
             deployment: fund it, or configure the key of a funded account",
            key_field(eth)
        )));
    }

    // The contract starts where the engine starts: at the state before `engine.start_block`.
    let start = cfg.engine.start_block;
    let chain = providers::open_chain(cfg)?;
    let first = wait_for_block(&*chain, start).await?;
    let genesis_root = first.old_root;
    let (genesis_block, genesis_block_hash) = match start.checked_sub(1) {
        None => (-1i64, Felt::ZERO),
        Some(prev) => {
            let b = chain.block(prev).await?;
            let n = i64::try_from(prev).map_err(|_| user(format!("engine.start_block {start} is too large")))?;
            (n, b.hash)
        }
    };

    let artefact: serde_json::Value = serde_json::from_str(orch_eth::STAND_IN_ARTEFACT)?;
    let code: Bytes = artefact["bytecode"]
        .as_str()
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the stand-in artefact has no bytecode"))?;
    let params = (
        U256::from_be_bytes(genesis_root.to_be_bytes()),
        I256::try_from(genesis_block).map_err(|e| anyhow::anyhow!("genesis block number: {e}"))?,
        U256::from_be_bytes(genesis_block_hash.to_be_bytes()),
    )
        .abi_encode_params();
    let mut input = code.to_vec();
    input.extend(params);
    let tx = TransactionRequest::default().with_from(operator).with_deploy_code(input);
    let pending = node.call("send the deployment", node.provider.send_transaction(tx)).await?;
    let tx_hash = *pending.tx_hash();
    let receipt = match tokio::time::timeout(RECEIPT_TIMEOUT, pending.get_receipt()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            anyhow::bail!("waiting for the deployment {tx_hash:#x} on chain {chain_id}: {}", scrub(eth, &causes(&e)))
        }
        Err(_) => anyhow::bail!(
            "the deployment {tx_hash:#x} was not mined within {}s: check that the node at settlement.rpc_url ({}) \
             mines blocks",
            RECEIPT_TIMEOUT.as_secs(),
            node.label
        ),
    };
    if !receipt.status() {
        anyhow::bail!("the deployment {tx_hash:#x} reverted on chain {chain_id}");
    }
    let address =
        receipt.contract_address().ok_or_else(|| anyhow::anyhow!("the deployment's receipt names no contract"))?;
    let matches_config = core_address(eth).is_ok_and(|a| a == address);
    let deployed = Deployed {
        address,
        tx: format!("{tx_hash:#x}"),
        chain_id,
        genesis_block,
        genesis_root,
        genesis_block_hash,
        matches_config,
    };
    if args.json {
        return output::json(&deployed);
    }
    output::line(format!(
        "stand-in core contract deployed at {address} on chain {chain_id} (genesis: block {genesis_block}, root \
         {genesis_root}; tx {})",
        deployed.tx
    ));
    if !matches_config {
        output::line(format!(
            "note: settlement.core_contract is {}; set it to {address} (or ORCH_SETTLEMENT__CORE_CONTRACT={address}) \
             to settle on this contract",
            eth.core_contract
        ));
    }
    Ok(())
}

/// The state update of block `n`, waiting (bounded) for a growing chain to produce it.
async fn wait_for_block(
    chain: &dyn orch_core::chain::ChainSource,
    n: u64,
) -> anyhow::Result<orch_core::chain::StateUpdate> {
    let started = Instant::now();
    let mut said = false;
    loop {
        match chain.state_update(n).await {
            Ok(u) => return Ok(u),
            Err(orch_core::Error::NotFound { .. }) if started.elapsed() < START_BLOCK_TIMEOUT => {
                if !said {
                    eprintln!("waiting for block {n} (engine.start_block) of the chain to exist…");
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "reading block {n} (engine.start_block) of the chain for the contract's genesis state"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use orch_core::secret::Secret;

    use super::*;

    fn cfg(url: &str) -> EthConfig {
        EthConfig {
            rpc_url: Secret::new(url.into()),
            private_key: Secret::new("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80".into()),
            core_contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            chain_id: 1,
            ..EthConfig::default()
        }
    }

    #[test]
    fn the_node_is_named_without_credentials() {
        assert_eq!(node_label("https://u:hunter2@eth.example:8545/v3/KEY?k=v"), "https://eth.example:8545");
        assert_eq!(node_label("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(node_label("not a url"), "<redacted>");
    }

    #[test]
    fn client_errors_are_scrubbed_of_every_form_of_the_url_and_the_key() {
        let c = cfg("https://u:hunter2@eth.example/v3/KEY123?apikey=SECRET9");
        let text = "error sending request for url (https://u:hunter2@eth.example/v3/KEY123?apikey=SECRET9): \
                    path /v3/KEY123, key ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        let s = scrub(&c, text);
        for secret in ["hunter2", "KEY123", "SECRET9", "ac0974bec39a17e3"] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert!(s.contains("https://eth.example"), "{s}");
        let e = scrubbed(&c, orch_core::Error::unavailable("ethereum", text));
        assert!(!e.to_string().contains("hunter2") && !e.to_string().contains("KEY123"), "{e}");
    }
}

/// One transaction in flight, for `eth status`.
#[derive(Debug, Serialize)]
struct PendingView {
    what: String,
    key: String,
    nonce: u64,
    tx: String,
    attempts: usize,
    max_fee_per_gas: String,
    max_priority_fee_per_gas: String,
    max_fee_per_blob_gas: Option<String>,
    included_in: Option<u64>,
}

/// What `eth status` prints.
#[derive(Debug, Serialize)]
struct StatusView {
    chain_id: u64,
    core_contract: Address,
    settled_through: Option<u64>,
    state_root: String,
    state_block_hash: String,
    operator: Address,
    balance: String,
    spent: String,
    spend_period: String,
    max_spend: Option<String>,
    in_flight_worst_case: String,
    pending: Vec<PendingView>,
}

async fn status(cfg: &AppConfig, args: StatusArgs) -> anyhow::Result<()> {
    let eth = eth_config(cfg, "eth status")?;
    let operator = signer(eth)?.address();
    let core = core_address(eth)?;
    let node = Node::read_only(eth)?;
    let chain_id = node.check_chain().await?;
    let settled_through = node.state_block_number(core).await?;
    let word = |raw: Bytes| U256::try_from_be_slice(&raw).map_or_else(|| "?".to_owned(), |v| format!("{v:#x}"));
    let read = |call: Vec<u8>| TransactionRequest::default().with_to(core).with_input(call);
    let state_root = word(
        node.call("call stateRoot()", node.provider.call(read(IStarknetCore::stateRootCall {}.abi_encode()))).await?,
    );
    let state_block_hash = word(
        node.call("call stateBlockHash()", node.provider.call(read(IStarknetCore::stateBlockHashCall {}.abi_encode())))
            .await?,
    );
    let balance = node.call("read the operator's balance", node.provider.get_balance(operator)).await?;
    let books = orch_eth::read_books(eth).map_err(|e| user(super::describe(&anyhow::Error::new(scrubbed(eth, e)))))?;
    let view = StatusView {
        chain_id,
        core_contract: core,
        settled_through,
        state_root,
        state_block_hash,
        operator,
        balance: format!("{} ether", format_ether(balance)),
        spent: books.spent.to_string(),
        spend_period: orch_core::duration::format_duration(eth.spend_period),
        max_spend: eth.max_spend.map(|m| m.to_string()),
        in_flight_worst_case: books.reserved.to_string(),
        pending: books
            .pending
            .iter()
            .map(|p| PendingView {
                what: p.what.clone(),
                key: p.key.clone(),
                nonce: p.nonce,
                tx: format!("{:#x}", p.hash),
                attempts: p.attempts,
                max_fee_per_gas: p.max_fee_per_gas.to_string(),
                max_priority_fee_per_gas: p.max_priority_fee_per_gas.to_string(),
                max_fee_per_blob_gas: p.max_fee_per_blob_gas.map(|w| w.to_string()),
                included_in: p.included_in,
            })
            .collect(),
    };
    if args.json {
        return output::json(&view);
    }
    output::line(format!(
        "L1 chain {chain_id}, core contract {core}: settled through {}, state root {}, block hash {}",
        view.settled_through.map_or_else(|| "nothing yet".to_owned(), |b| format!("block {b}")),
        view.state_root,
        view.state_block_hash
    ));
    println!("operator {operator} holds {}", view.balance);
    output::line(format!(
        "spent in the last {}: {} (budget: {}); worst case in flight: {}",
        view.spend_period,
        view.spent,
        view.max_spend.as_deref().unwrap_or("none"),
        view.in_flight_worst_case
    ));
    if view.pending.is_empty() {
        output::line("no transaction in flight");
    }
    for p in &view.pending {
        output::line(format!(
            "  nonce {} {} ({} attempt{}): max fee {}, tip {}, blob fee {}{} — {}",
            p.nonce,
            p.tx,
            p.attempts,
            if p.attempts == 1 { "" } else { "s" },
            p.max_fee_per_gas,
            p.max_priority_fee_per_gas,
            p.max_fee_per_blob_gas.as_deref().unwrap_or("-"),
            p.included_in.map_or_else(String::new, |b| format!(", in block {b}")),
            p.what
        ));
    }
    Ok(())
}
