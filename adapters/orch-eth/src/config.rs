//! [`EthConfig`]: which node, which core contract, which key, how to build blob sidecars.

use alloy::transports::http::reqwest::Url;
use orch_core::error::{Error, Result};
use orch_core::secret::{redact_url, Secret};
use serde::{Deserialize, Serialize};

/// How a blob transaction's sidecar proves its blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SidecarForm {
    /// Ask the node (`eth_config`): cell proofs from Osaka on, blob proofs before.
    #[default]
    Auto,
    /// EIP-4844: one blob proof per blob (Cancun, Prague).
    BlobProofs,
    /// EIP-7594: 128 cell proofs per blob (Osaka and later).
    CellProofs,
}

/// Settings of Ethereum settlement (`[settlement] layer = "ethereum"`).
///
/// ```toml
/// rpc_url = "https://eth.example:8545"
/// private_key = "0x…"
/// core_contract = "0xc662c410C0ECf747543f5bA90660f6ABeBD9C8c4"
/// chain_id = 1
/// confirmations = 12
/// sidecar = "auto"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EthConfig {
    /// JSON-RPC URL of the L1 node, `http://` or `https://` (required). Kept secret: node URLs
    /// often carry an API key.
    pub rpc_url: Secret<String>,
    /// The operator's secp256k1 key, 32 bytes hex (required), that signs every state update.
    pub private_key: Secret<String>,
    /// Address of the Starknet core contract (required).
    pub core_contract: String,
    /// The L1 chain id the node must report (required): a mainnet key never signs for a
    /// testnet node by mistake, nor the other way round.
    pub chain_id: u64,
    /// Blocks on top of a state update, counting its own, before it counts as final
    /// (default 12, at least 1).
    pub confirmations: u32,
    /// Sidecar form of blob transactions (default `auto`).
    pub sidecar: SidecarForm,
}

impl Default for EthConfig {
    fn default() -> Self {
        EthConfig {
            rpc_url: Secret::default(),
            private_key: Secret::default(),
            core_contract: String::new(),
            chain_id: 0,
            confirmations: 12,
            sidecar: SidecarForm::Auto,
        }
    }
}

impl EthConfig {
    /// Checks every field; errors name the key and the fix.
    pub fn validate(&self) -> Result<()> {
        let url = self.rpc_url.expose();
        parse_url(url)?;
        parse_key(self.private_key.expose())?;
        parse_address(&self.core_contract)?;
        if self.chain_id == 0 {
            return Err(Error::invalid_input(
                "settlement.chain_id",
                "is unset: give the chain id of the L1 (1 mainnet, 11155111 Sepolia, 31337 anvil)",
            ));
        }
        if self.confirmations == 0 {
            return Err(Error::invalid_input("settlement.confirmations", "is 0: use at least 1 (default 12)"));
        }
        Ok(())
    }
}

pub(crate) fn parse_url(url: &str) -> Result<Url> {
    match url.parse::<Url>() {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
        _ => Err(Error::invalid_input(
            "settlement.rpc_url",
            format!("`{}` is not an http(s) URL of an Ethereum JSON-RPC node", redact_url(url)),
        )),
    }
}

pub(crate) fn parse_key(key: &str) -> Result<alloy::signers::local::PrivateKeySigner> {
    key.trim().parse().map_err(|_| {
        Error::invalid_input(
            "settlement.private_key",
            "is not a secp256k1 private key: give 32 bytes as 64 hex digits (0x optional)",
        )
    })
}

pub(crate) fn parse_address(a: &str) -> Result<alloy::primitives::Address> {
    a.trim().parse().map_err(|_| {
        Error::invalid_input(
            "settlement.core_contract",
            format!("`{a}` is not an address: give the core contract's 20 bytes as 0x and 40 hex digits"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcab7dffa9a2bcf31d";

    fn valid() -> EthConfig {
        EthConfig {
            rpc_url: Secret::new("http://127.0.0.1:8545".into()),
            private_key: Secret::new(KEY.into()),
            core_contract: "0x5fbdb2315678afecb367f032d93f642f64180aa3".into(),
            chain_id: 31337,
            ..EthConfig::default()
        }
    }

    #[test]
    fn a_complete_config_validates_and_defaults_hold() {
        valid().validate().unwrap();
        let d = EthConfig::default();
        assert_eq!((d.confirmations, d.sidecar), (12, SidecarForm::Auto));
    }

    #[test]
    fn each_bad_field_is_named() {
        let field = |c: EthConfig| match c.validate() {
            Err(Error::InvalidInput { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(EthConfig { rpc_url: Secret::new("ws://x".into()), ..valid() }), "settlement.rpc_url");
        assert_eq!(field(EthConfig { private_key: Secret::new("0x12".into()), ..valid() }), "settlement.private_key");
        assert_eq!(field(EthConfig { core_contract: "0x12".into(), ..valid() }), "settlement.core_contract");
        assert_eq!(field(EthConfig { chain_id: 0, ..valid() }), "settlement.chain_id");
        assert_eq!(field(EthConfig { confirmations: 0, ..valid() }), "settlement.confirmations");
    }

    #[test]
    fn unknown_keys_are_refused_and_secrets_never_print() {
        let toml = r#"{"rpc_url":"http://k@h","private_key":"0x1","core_contract":"0x0","chain_id":1,"sidecar":"cell_proofs"}"#;
        let c: EthConfig = serde_json::from_str(toml).unwrap();
        assert_eq!(c.sidecar, SidecarForm::CellProofs);
        let shown = format!("{c:?}");
        assert!(!shown.contains("http://k@h") && !shown.contains("\"0x1\""), "{shown}");
        assert!(serde_json::from_str::<EthConfig>(r#"{"rpc":"x"}"#).is_err());
    }
}
