//! [`EthConfig`]: which node, which core contract, which key, how to build blob sidecars.

use std::fmt;
use std::time::Duration;

use alloy::primitives::utils::{format_units, parse_units};
use alloy::primitives::U256;
use alloy::transports::http::reqwest::Url;
use orch_core::error::{Error, Result};
use orch_core::secret::{redact_url, Secret};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of ether in config, written with its unit: `"30 gwei"`, `"0.5 ether"`,
/// `"1000 wei"` (a bare number is wei). Shown the same way.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Wei(pub u128);

impl Wei {
    /// `n` gwei.
    pub const fn gwei(n: u128) -> Wei {
        Wei(n * 1_000_000_000)
    }

    /// Parses `"<number> <unit>"` (unit `wei`, `gwei` or `ether`); `field` names the key.
    pub fn parse(field: &str, s: &str) -> Result<Wei> {
        let bad = || {
            Error::invalid_input(
                field,
                format!("{s:?} is not an amount of ether: write e.g. \"30 gwei\", \"0.5 ether\" or \"1000 wei\""),
            )
        };
        if s.trim().is_empty() {
            return Err(bad());
        }
        let (number, unit) = match s.trim().split_once(char::is_whitespace) {
            Some((n, u)) => (n.trim(), u.trim().to_ascii_lowercase()),
            None => (s.trim(), "wei".to_owned()),
        };
        if !matches!(unit.as_str(), "wei" | "gwei" | "ether" | "eth") {
            return Err(bad());
        }
        let unit = if unit == "eth" { "ether" } else { unit.as_str() };
        let wei: U256 = parse_units(number, unit).map_err(|_| bad())?.into();
        u128::try_from(wei).map(Wei).map_err(|_| bad())
    }
}

impl fmt::Display for Wei {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole gwei (fee caps) print as gwei, larger whole-ish sums as ether, the rest as wei.
        let (v, unit) = if self.0 >= 10u128.pow(15) {
            (format_units(self.0, "ether"), "ether")
        } else if self.0 >= 1_000_000 {
            (format_units(self.0, "gwei"), "gwei")
        } else {
            return write!(f, "{} wei", self.0);
        };
        let v = v.map_err(|_| fmt::Error)?;
        let v = if v.contains('.') { v.trim_end_matches('0').trim_end_matches('.') } else { v.as_str() };
        write!(f, "{v} {unit}")
    }
}

impl fmt::Debug for Wei {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Wei {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Wei {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Wei, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => Wei::parse("amount", &s).map_err(|e| serde::de::Error::custom(e.to_string())),
            Raw::Number(n) => Ok(Wei(u128::from(n))),
        }
    }
}

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
    /// The operator's secp256k1 key, 32 bytes hex, that signs every state update. Give this
    /// or `keystore`, not both.
    pub private_key: Secret<String>,
    /// An encrypted JSON keystore file (Web3 Secret Storage) holding the operator's key,
    /// instead of `private_key`.
    pub keystore: Option<std::path::PathBuf>,
    /// The keystore's password (e.g. from `ORCH_SETTLEMENT__KEYSTORE_PASSWORD`).
    pub keystore_password: Secret<String>,
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
    /// Directory where the transaction manager persists its intents (nonce, fees, signed
    /// transactions) before each broadcast. Unset: the embedding application chooses (the
    /// orchestrator binary uses `<data_dir>/eth`).
    pub state_dir: Option<std::path::PathBuf>,
    /// Ceiling of a transaction's max fee per gas, bumps included (default `"500 gwei"`).
    pub max_fee_per_gas: Wei,
    /// Ceiling of its priority fee (tip) per gas (default `"20 gwei"`).
    pub max_priority_fee_per_gas: Wei,
    /// Ceiling of a blob transaction's max fee per blob gas (default `"200 gwei"`).
    pub max_fee_per_blob_gas: Wei,
    /// A transaction not included after this long is replaced with higher fees (default
    /// `"3m"`): a blob transaction doubles every fee cap, others add 12.5 %.
    #[serde(with = "orch_core::duration")]
    pub bump_after: Duration,
    /// Most that settlement may spend (gas and blob gas, worst case of what is in flight
    /// included) within `spend_period`; unset: no budget. When the next transaction would
    /// go over, settlement waits and raises one alert.
    pub max_spend: Option<Wei>,
    /// The rolling window of `max_spend` (default `"1d"`).
    #[serde(with = "orch_core::duration")]
    pub spend_period: Duration,
}

impl Default for EthConfig {
    fn default() -> Self {
        EthConfig {
            rpc_url: Secret::default(),
            private_key: Secret::default(),
            keystore: None,
            keystore_password: Secret::default(),
            core_contract: String::new(),
            chain_id: 0,
            confirmations: 12,
            sidecar: SidecarForm::Auto,
            state_dir: None,
            max_fee_per_gas: Wei::gwei(500),
            max_priority_fee_per_gas: Wei::gwei(20),
            max_fee_per_blob_gas: Wei::gwei(200),
            bump_after: Duration::from_secs(180),
            max_spend: None,
            spend_period: Duration::from_secs(86_400),
        }
    }
}

impl EthConfig {
    /// Checks every field; errors name the key and the fix.
    pub fn validate(&self) -> Result<()> {
        let url = self.rpc_url.expose();
        parse_url(url)?;
        match (&self.keystore, self.private_key.expose().is_empty()) {
            (Some(_), false) => {
                return Err(Error::invalid_input(
                    "settlement.private_key",
                    "and settlement.keystore are both set: give one of them",
                ))
            }
            (Some(path), true) if !path.is_file() => {
                return Err(Error::invalid_input(
                    "settlement.keystore",
                    format!("{} is not a file: give the path of the operator's JSON keystore", path.display()),
                ))
            }
            (Some(_), true) => {}
            (None, true) => {
                return Err(Error::invalid_input(
                    "settlement.private_key",
                    "is unset: give the operator's key (or settlement.keystore and settlement.keystore_password)",
                ))
            }
            (None, false) => {
                parse_key(self.private_key.expose())?;
            }
        }
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
        for (field, w) in [
            ("settlement.max_fee_per_gas", self.max_fee_per_gas),
            ("settlement.max_priority_fee_per_gas", self.max_priority_fee_per_gas),
            ("settlement.max_fee_per_blob_gas", self.max_fee_per_blob_gas),
        ] {
            if w.0 == 0 {
                return Err(Error::invalid_input(field, "is 0: no transaction could pay for itself"));
            }
        }
        if self.max_priority_fee_per_gas > self.max_fee_per_gas {
            return Err(Error::invalid_input(
                "settlement.max_priority_fee_per_gas",
                format!(
                    "is {}, above settlement.max_fee_per_gas {}",
                    self.max_priority_fee_per_gas, self.max_fee_per_gas
                ),
            ));
        }
        if self.bump_after < Duration::from_secs(1) {
            return Err(Error::invalid_input(
                "settlement.bump_after",
                "is under 1s: give a node time to include a transaction",
            ));
        }
        if self.max_spend == Some(Wei(0)) {
            return Err(Error::invalid_input(
                "settlement.max_spend",
                "is 0: nothing could be settled; leave it unset for no budget",
            ));
        }
        if self.spend_period < Duration::from_secs(60) {
            return Err(Error::invalid_input("settlement.spend_period", "is under a minute: give e.g. \"1d\""));
        }
        Ok(())
    }
}

impl EthConfig {
    /// The operator's signer: the private key, or the keystore decrypted with its password.
    pub fn signer(&self) -> Result<alloy::signers::local::PrivateKeySigner> {
        let Some(path) = &self.keystore else { return parse_key(self.private_key.expose()) };
        alloy::signers::local::PrivateKeySigner::decrypt_keystore(path, self.keystore_password.expose()).map_err(|e| {
            // The error names neither the password nor the key.
            let why = match e {
                alloy::signers::local::LocalSignerError::EthKeystoreError(k) => k.to_string(),
                other => other.to_string(),
            };
            Error::invalid_input(
                "settlement.keystore",
                format!("{} cannot be opened ({why}): check the file and settlement.keystore_password", path.display()),
            )
        })
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
        assert_eq!(field(EthConfig { private_key: Secret::default(), ..valid() }), "settlement.private_key");
        assert_eq!(
            field(EthConfig { keystore: Some("/nonexistent/k.json".into()), ..valid() }),
            "settlement.private_key"
        );
        let no_file =
            EthConfig { private_key: Secret::default(), keystore: Some("/nonexistent/k.json".into()), ..valid() };
        assert_eq!(field(no_file), "settlement.keystore");
        assert_eq!(field(EthConfig { core_contract: "0x12".into(), ..valid() }), "settlement.core_contract");
        assert_eq!(field(EthConfig { chain_id: 0, ..valid() }), "settlement.chain_id");
        assert_eq!(field(EthConfig { confirmations: 0, ..valid() }), "settlement.confirmations");
        assert_eq!(field(EthConfig { max_fee_per_gas: Wei(0), ..valid() }), "settlement.max_fee_per_gas");
        assert_eq!(
            field(EthConfig { max_priority_fee_per_gas: Wei::gwei(600), ..valid() }),
            "settlement.max_priority_fee_per_gas"
        );
        assert_eq!(field(EthConfig { max_spend: Some(Wei(0)), ..valid() }), "settlement.max_spend");
        assert_eq!(field(EthConfig { bump_after: Duration::ZERO, ..valid() }), "settlement.bump_after");
    }

    #[test]
    fn a_keystore_signs_as_its_key_and_a_wrong_password_is_named_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let key = alloy::hex::decode(&KEY[2..]).unwrap();
        let mut rng = rand::thread_rng();
        let (_, name) =
            alloy::signers::local::PrivateKeySigner::encrypt_keystore(dir.path(), &mut rng, &key, "pw", None).unwrap();
        let path = dir.path().join(name);
        let cfg = EthConfig {
            private_key: Secret::default(),
            keystore: Some(path.clone()),
            keystore_password: Secret::new("pw".into()),
            ..valid()
        };
        cfg.validate().unwrap();
        assert_eq!(cfg.signer().unwrap().address(), parse_key(KEY).unwrap().address());
        let wrong = EthConfig { keystore_password: Secret::new("not-it".into()), ..cfg };
        let e = wrong.signer().unwrap_err().to_string();
        assert!(e.contains("settlement.keystore") && e.contains("keystore_password"), "{e}");
        assert!(!e.contains("not-it") && !e.contains(&KEY[2..]), "{e}");
    }

    #[test]
    fn amounts_read_and_print_with_units() {
        assert_eq!(Wei::parse("f", "30 gwei").unwrap(), Wei::gwei(30));
        assert_eq!(Wei::parse("f", "0.5 ether").unwrap(), Wei(5 * 10u128.pow(17)));
        assert_eq!(Wei::parse("f", "0.5 ETH").unwrap(), Wei(5 * 10u128.pow(17)));
        assert_eq!(Wei::parse("f", "1.5 gwei").unwrap(), Wei(1_500_000_000));
        assert_eq!(Wei::parse("f", "1000").unwrap(), Wei(1000));
        for bad in ["", "ten gwei", "1 finney", "-1 gwei", "1e999 ether"] {
            let e = Wei::parse("settlement.max_spend", bad).unwrap_err();
            assert!(e.to_string().contains("settlement.max_spend"), "{e}");
        }
        assert_eq!(Wei::gwei(30).to_string(), "30 gwei");
        assert_eq!(Wei(5 * 10u128.pow(17)).to_string(), "0.5 ether");
        assert_eq!(Wei(1_500_000_000).to_string(), "1.5 gwei");
        assert_eq!(Wei(7).to_string(), "7 wei");
        let c: EthConfig = serde_json::from_str(r#"{"max_spend":"0.25 ether","bump_after":"30s"}"#).unwrap();
        assert_eq!((c.max_spend, c.bump_after), (Some(Wei(25 * 10u128.pow(16))), Duration::from_secs(30)));
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
