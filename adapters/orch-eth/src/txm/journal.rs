//! The transaction manager's durable state: one directory per (chain, signer), holding
//!
//! - `owner.lock`: held (an exclusive file lock) by the one process that owns the signer's
//!   nonces; a second orchestrator with the same key on the same state directory is refused;
//! - `journal.json`: every intent (nonce, fee caps, hashes of every signed attempt, fate)
//!   and the spend ledger, replaced atomically (write, fsync, rename, fsync the directory);
//! - `tx/<hash>.rlp`: each signed transaction as broadcast (EIP-2718, blob sidecar included),
//!   written and synced before the journal names it.
//!
//! An attempt is in the journal before it is broadcast, so a crash at any instruction leaves
//! either nothing sent, or a transaction the journal knows and re-broadcasts at the same nonce.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256};
use orch_core::error::{Error, Result};
use serde::{Deserialize, Serialize};

use super::fees::Fees;

const JOURNAL: &str = "journal.json";
const FORMAT: u32 = 1;
/// Settled intents kept for `eth status` and for answering old hashes.
const KEEP_DONE: usize = 256;

/// One signed version of an intent's transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Attempt {
    pub hash: B256,
    pub fees: Fees,
    /// Unix seconds when it was signed.
    pub signed_at: u64,
}

/// Where an intent stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum IntentState {
    /// Signed; not (or no longer) in a block.
    Open,
    /// In block `block` as `hash`; fewer confirmations than required so far.
    Included { hash: B256, block: u64, cost: u128 },
    /// Included with the required confirmations.
    Final { hash: B256, block: u64, cost: u128 },
    /// Included and reverted: its nonce is spent, its effect is not.
    Reverted { hash: B256, block: u64, reason: String },
    /// Its nonce was used by a transaction that is none of its attempts.
    Replaced,
    /// The node refused it; nothing of it is in the pool.
    Refused { reason: String },
}

impl IntentState {
    /// Still holds its nonce and may yet be included.
    pub(crate) fn is_live(&self) -> bool {
        matches!(self, IntentState::Open | IntentState::Included { .. })
    }
}

/// One transaction the manager is responsible for: a dedup key's state update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Intent {
    /// The caller's idempotency key.
    pub key: String,
    /// What it does, for logs and `eth status`.
    pub what: String,
    pub nonce: u64,
    /// keccak-256 of the calldata: a resubmission under the same key with other data is a
    /// different update.
    pub input_hash: B256,
    pub gas: u64,
    pub blobs: usize,
    /// Unix seconds.
    pub created_at: u64,
    /// Oldest first; never empty.
    pub attempts: Vec<Attempt>,
    pub state: IntentState,
}

impl Intent {
    /// The hash the caller holds: the first attempt's.
    pub(crate) fn handle(&self) -> B256 {
        self.attempts[0].hash
    }

    pub(crate) fn latest(&self) -> &Attempt {
        self.attempts.last().expect("an intent has an attempt")
    }

    /// The most it can still cost: its latest caps over all its gas, until it is included
    /// (then the spend ledger holds what it paid).
    pub(crate) fn reserved(&self) -> u128 {
        if self.state == IntentState::Open {
            self.latest().fees.worst_case(self.gas, self.blobs)
        } else {
            0
        }
    }
}

/// Wei paid by an included transaction, at a unix time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spend {
    pub at: u64,
    pub wei: u128,
    pub tx: B256,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Journal {
    pub format: u32,
    pub intents: Vec<Intent>,
    pub spends: Vec<Spend>,
}

impl Journal {
    pub(crate) fn by_key(&self, key: &str) -> Option<usize> {
        self.intents.iter().rposition(|i| i.key == key)
    }

    pub(crate) fn by_hash(&self, hash: B256) -> Option<usize> {
        self.intents.iter().rposition(|i| i.attempts.iter().any(|a| a.hash == hash))
    }

    /// Wei spent since `since` (unix seconds).
    pub(crate) fn spent_since(&self, since: u64) -> u128 {
        self.spends.iter().filter(|s| s.at >= since).map(|s| s.wei).sum()
    }

    /// The worst case of every live intent.
    pub(crate) fn reserved(&self) -> u128 {
        self.intents.iter().map(Intent::reserved).sum()
    }

    /// The next nonce after every live intent's, if any.
    pub(crate) fn next_nonce(&self) -> Option<u64> {
        self.intents.iter().filter(|i| i.state.is_live()).map(|i| i.nonce + 1).max()
    }
}

/// The journal of one signer on one chain, owned by this process while it lives.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    /// Held for the store's life: the exclusive lock on `owner.lock`.
    _owner: File,
    pub journal: Journal,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::internal(format!("{what} {}: {e}", path.display()))
}

/// The state directory of `signer` on `chain` under `root`.
pub(crate) fn signer_dir(root: &Path, chain: u64, signer: Address) -> PathBuf {
    root.join(format!("{chain}-{signer:#x}"))
}

impl Store {
    /// Opens (creating) the signer's directory and takes its owner lock.
    pub(crate) fn open(dir: PathBuf) -> Result<Store> {
        fs::create_dir_all(dir.join("tx")).map_err(|e| io("creating", &dir, e))?;
        let lock_path = dir.join("owner.lock");
        let owner = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("opening", &lock_path, e))?;
        match owner.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::invalid_input(
                    "settlement.state_dir",
                    format!(
                        "another process owns this signer's nonces ({} is locked): run one settling \
                         orchestrator per key, or give each its own key",
                        lock_path.display()
                    ),
                ))
            }
            Err(TryLockError::Error(e)) => return Err(io("locking", &lock_path, e)),
        }
        let journal = Store::read(&dir)?;
        Ok(Store { dir, _owner: owner, journal })
    }

    /// The journal in `dir` without taking the lock (for a read-only status view).
    pub(crate) fn read(dir: &Path) -> Result<Journal> {
        let path = dir.join(JOURNAL);
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Journal { format: FORMAT, ..Journal::default() })
            }
            Err(e) => return Err(io("reading", &path, e)),
        };
        let journal: Journal = serde_json::from_slice(&raw).map_err(|e| {
            Error::invalid_input(
                "settlement.state_dir",
                format!("{} is not a transaction journal ({e}); restore it or move it away", path.display()),
            )
        })?;
        if journal.format != FORMAT {
            return Err(Error::invalid_input(
                "settlement.state_dir",
                format!("{} has journal format {}; this release reads {FORMAT}", path.display(), journal.format),
            ));
        }
        Ok(journal)
    }

    /// Writes the journal atomically, dropping the oldest settled intents past the cap and
    /// spends older than `forget_before`.
    pub(crate) fn save(&mut self, forget_before: u64) -> Result<()> {
        self.journal.spends.retain(|s| s.at >= forget_before);
        let done = self.journal.intents.iter().filter(|i| !i.state.is_live()).count();
        if done > KEEP_DONE {
            let mut drop = done - KEEP_DONE;
            let tx_dir = self.dir.join("tx");
            self.journal.intents.retain(|i| {
                if drop > 0 && !i.state.is_live() {
                    drop -= 1;
                    for a in &i.attempts {
                        let _ = fs::remove_file(tx_dir.join(format!("{:#x}.rlp", a.hash)));
                    }
                    false
                } else {
                    true
                }
            });
        }
        let bytes = serde_json::to_vec_pretty(&self.journal)
            .map_err(|e| Error::internal(format!("serializing the transaction journal: {e}")))?;
        write_atomically(&self.dir, JOURNAL, &bytes)
    }

    /// Keeps a signed transaction (before the journal names it).
    pub(crate) fn put_raw(&self, hash: B256, raw: &[u8]) -> Result<()> {
        write_atomically(&self.dir.join("tx"), &format!("{hash:#x}.rlp"), raw)
    }

    /// A signed transaction kept by [`Store::put_raw`].
    pub(crate) fn raw(&self, hash: B256) -> Result<Vec<u8>> {
        let path = self.dir.join("tx").join(format!("{hash:#x}.rlp"));
        fs::read(&path).map_err(|e| io("reading the signed transaction", &path, e))
    }
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| io("writing", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| io("renaming into", &path, e))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("syncing", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(key: &str, nonce: u64, state: IntentState) -> Intent {
        Intent {
            key: key.into(),
            what: "w".into(),
            nonce,
            input_hash: B256::repeat_byte(1),
            gas: 100,
            blobs: 1,
            created_at: 0,
            attempts: vec![Attempt {
                hash: B256::repeat_byte((nonce as u8).wrapping_add(1)),
                fees: Fees { tip: 1, max_fee: 10, blob_fee: Some(2) },
                signed_at: 0,
            }],
            state,
        }
    }

    #[test]
    fn the_journal_survives_a_reopen_and_the_lock_excludes_a_second_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = signer_dir(tmp.path(), 31337, Address::repeat_byte(7));
        let mut s = Store::open(dir.clone()).unwrap();
        let e = Store::open(dir.clone()).unwrap_err();
        assert!(e.to_string().contains("another process owns"), "{e}");
        s.journal.intents.push(intent("a", 4, IntentState::Open));
        s.journal.spends.push(Spend { at: 10, wei: 5, tx: B256::ZERO });
        s.journal.spends.push(Spend { at: 100, wei: 7, tx: B256::ZERO });
        s.put_raw(B256::repeat_byte(5), b"signed").unwrap();
        s.save(50).unwrap();
        drop(s);
        let s = Store::open(dir).unwrap();
        assert_eq!(s.journal.intents, vec![intent("a", 4, IntentState::Open)]);
        assert_eq!(s.journal.spends.len(), 1, "the spend before the window is forgotten");
        assert_eq!(s.raw(B256::repeat_byte(5)).unwrap(), b"signed");
        assert_eq!((s.journal.next_nonce(), s.journal.spent_since(0)), (Some(5), 7));
        assert_eq!(s.journal.reserved(), 10 * 100 + 2 * 131_072);
    }

    #[test]
    fn a_damaged_journal_is_named_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(JOURNAL), b"{not json").unwrap();
        let e = Store::open(tmp.path().to_owned()).unwrap_err();
        assert!(e.to_string().contains("is not a transaction journal"), "{e}");
        assert_eq!(fs::read(tmp.path().join(JOURNAL)).unwrap(), b"{not json");
    }

    #[test]
    fn settled_intents_past_the_cap_are_pruned_oldest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Store::open(tmp.path().to_owned()).unwrap();
        let fin = IntentState::Final { hash: B256::ZERO, block: 1, cost: 1 };
        for n in 0..(KEEP_DONE as u64 + 3) {
            s.journal.intents.push(intent(&format!("k{n}"), n, fin.clone()));
        }
        s.journal.intents.push(intent("live", 999, IntentState::Open));
        s.save(0).unwrap();
        assert_eq!(s.journal.intents.len(), KEEP_DONE + 1);
        assert_eq!(s.journal.intents[0].key, "k3");
        assert_eq!(s.journal.by_key("live"), Some(KEEP_DONE));
        assert_eq!(s.journal.next_nonce(), Some(1000));
    }
}
