//! The one place where JSON-RPC and transport errors become orch errors.

use std::time::Duration;

use alloy::rpc::json_rpc::{ErrorPayload, RpcError};
use alloy::transports::{TransportError, TransportErrorKind};
use orch_core::error::Error;

/// Backend name in errors and metrics.
pub(crate) const BACKEND: &str = "ethereum";

/// The classification table. `what` says what was being done (`read stateRoot()`, `send
/// updateStateKzgDA for blocks 5..=7`), named in every error.
///
/// The engine reads only `is_retryable()`: `Unavailable` is "try again later", every other
/// kind is final for this request.
pub(crate) fn classify(what: &str, e: TransportError) -> Error {
    match e {
        RpcError::ErrorResp(p) => classify_response(what, p),
        // 401/403: the node (or its gateway) refuses our credentials; waiting will not help.
        RpcError::Transport(TransportErrorKind::HttpError(h)) if matches!(h.status, 401 | 403) => Error::invalid_input(
            "settlement.rpc_url",
            format!("{what}: the node answered HTTP {}: check the URL's API key", h.status),
        ),
        // Connection refused or reset, timeouts, 429 and 5xx from a gateway, a dropped
        // connection task: the node may be back in a moment.
        // The HTTP client quotes the whole URL, API key included: only the scrubbed text is
        // kept (not the error itself as a source, whose text a log would print).
        RpcError::Transport(kind) => {
            let message = scrub_urls(&format!("{what}: {kind}"));
            Error::Unavailable { backend: BACKEND.into(), message, retry_after: None, source: None }
        }
        // A node that answers `null` where a value is due is syncing or load-balanced onto a
        // lagging replica.
        RpcError::NullResp => Error::unavailable(BACKEND, format!("{what}: the node answered null")),
        // Our request could not be built or the answer not read: a bug or an incompatible node.
        other => Error::Internal { message: scrub_urls(&format!("{what}: {other}")), source: None },
    }
}

/// `text` with every `http(s)://…` reduced to its scheme, host and port: node URLs often
/// carry an API key in their user info, path or query.
pub(crate) fn scrub_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let next = |r: &str| [r.find("http://"), r.find("https://")].into_iter().flatten().min();
    while let Some(at) = next(rest) {
        out.push_str(&rest[..at]);
        let url = &rest[at..];
        let end =
            url.find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | ',' | '>')).unwrap_or(url.len());
        let (scheme, after) = url[..end].split_once("://").unwrap_or(("http", ""));
        let authority = after.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        out.push_str(&format!("{scheme}://{host}/…"));
        rest = &url[end..];
    }
    out.push_str(rest);
    out
}

fn classify_response(what: &str, p: ErrorPayload) -> Error {
    let message = p.message.to_lowercase();
    // The EVM ran the call and it reverted (code 3, or the message geth, reth and anvil use):
    // the contract refuses this update as it is.
    if let Some(data) = p.as_revert_data() {
        let reason = alloy::sol_types::decode_revert_reason(&data).unwrap_or_else(|| format!("revert data {data}"));
        return Error::rejected(BACKEND, format!("{what}: the contract reverted: {reason}"));
    }
    if p.code == 3 || message.contains("execution reverted") || message.contains("revert") {
        return Error::rejected(BACKEND, format!("{what}: the contract reverted: {}", p.message));
    }
    // The account's nonce moved under us (another sender, a restart) or the same transaction
    // is already in the pool: re-reading the nonce and trying again settles it.
    if message.contains("nonce too low")
        || message.contains("already known")
        || message.contains("replacement transaction underpriced")
        || message.contains("nonce too high")
    {
        return Error::unavailable(BACKEND, format!("{what}: {}", p.message));
    }
    // Nothing to pay gas with: an operator has to fund the account; retry slowly meanwhile.
    if message.contains("insufficient funds") {
        return Error::Unavailable {
            backend: BACKEND.into(),
            message: format!("{what}: {}: fund the operator account", p.message),
            retry_after: Some(Duration::from_secs(60)),
            source: None,
        };
    }
    // Rate limits and overloaded nodes (-32005, 429 in the body, "try again").
    if p.is_retry_err() || message.contains("rate limit") || message.contains("try again") {
        return Error::unavailable(BACKEND, format!("{what}: {}", p.message));
    }
    // Everything else the node refuses — a bad blob, commitment or proof in the sidecar, a
    // wrong sidecar form for the fork, gas above the block limit — stays refused.
    Error::rejected(BACKEND, format!("{what}: the node refused: {} (code {})", p.message, p.code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(code: i64, message: &str, data: Option<&str>) -> TransportError {
        let data = data.map(|d| serde_json::value::to_raw_value(d).unwrap());
        RpcError::ErrorResp(ErrorPayload { code, message: message.to_owned().into(), data })
    }

    #[test]
    fn reverts_and_refusals_are_final_and_transients_retry() {
        // Error(string) "INVALID_PREVIOUS_ROOT", ABI-encoded.
        let revert = "0x08c379a00000000000000000000000000000000000000000000000000000000000000020\
                      0000000000000000000000000000000000000000000000000000000000000015\
                      494e56414c49445f50524556494f55535f524f4f54000000000000000000000000";
        let e = classify("send", resp(3, "execution reverted", Some(revert)));
        assert!(matches!(&e, Error::Rejected { reason, .. } if reason.contains("INVALID_PREVIOUS_ROOT")), "{e}");
        assert!(!classify("send", resp(-32000, "invalid cell proof", None)).is_retryable());
        assert!(classify("send", resp(-32000, "nonce too low: next nonce 5", None)).is_retryable());
        let broke = classify("send", resp(-32000, "insufficient funds for gas * price + value", None));
        assert_eq!(broke.retry_after(), Some(Duration::from_secs(60)));
        assert!(classify("read", resp(-32005, "limit exceeded", None)).is_retryable());
        assert!(classify("read", RpcError::NullResp).is_retryable());
        let gone = RpcError::Transport(TransportErrorKind::BackendGone);
        assert!(classify("read", gone).is_retryable());
    }

    #[test]
    fn urls_in_error_texts_keep_only_scheme_host_and_port() {
        let t = "error sending request for url (https://user:pw@eth.example:8545/v3/KEY123?token=T) then http://h/x";
        let scrubbed = scrub_urls(t);
        assert_eq!(scrubbed, "error sending request for url (https://eth.example:8545/…) then http://h/…");
        assert_eq!(scrub_urls("no url here"), "no url here");
        let e = classify("read", TransportErrorKind::custom_str("GET https://k@n/v3/SECRET failed"));
        assert!(!format!("{e} {e:?}").contains("SECRET"), "{e:?}");
    }
}
