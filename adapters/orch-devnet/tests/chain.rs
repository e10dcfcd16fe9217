//! The simulated chain: determinism, root chaining, valid felts, realistic sizes, head modes.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{rough_felts, ManualClock};
use orch_core::chain::{ChainSource, StateUpdate};
use orch_core::error::Error;
use orch_core::felt::STARK_PRIME;
use orch_core::types::Timestamp;
use orch_core::Felt;
use orch_devnet::{da_felts_estimate, ChainConfig, DevChain, FELTS_PER_BLOB};

fn felts_of(u: &StateUpdate) -> Vec<Felt> {
    let d = &u.state_diff;
    let mut v = vec![u.block_hash, u.old_root, u.new_root];
    for c in &d.storage_diffs {
        v.push(c.address);
        for e in &c.storage_entries {
            v.extend([e.key, e.value]);
        }
    }
    v.extend(d.deprecated_declared_classes.iter().copied());
    for c in &d.declared_classes {
        v.extend([c.class_hash, c.compiled_class_hash]);
    }
    for c in &d.deployed_contracts {
        v.extend([c.address, c.class_hash]);
    }
    for c in &d.replaced_classes {
        v.extend([c.contract_address, c.class_hash]);
    }
    for n in &d.nonces {
        v.extend([n.contract_address, n.nonce]);
    }
    v
}

#[tokio::test]
async fn same_seed_gives_identical_updates() {
    let (a, b) = (DevChain::fixed(7, 300), DevChain::fixed(7, 300));
    for n in 0..300 {
        assert_eq!(a.state_update(n).await.unwrap(), b.state_update(n).await.unwrap(), "block {n}");
        assert_eq!(a.block(n).await.unwrap(), b.block(n).await.unwrap());
    }
    // Regenerating a block gives the same value every time.
    assert_eq!(a.state_update(42).await.unwrap(), a.state_update(42).await.unwrap());
}

#[tokio::test]
async fn different_seeds_give_different_chains() {
    let (a, b) = (DevChain::fixed(7, 100), DevChain::fixed(8, 100));
    assert_ne!(a.genesis_root(), b.genesis_root());
    for n in 0..100 {
        let (ua, ub) = (a.state_update(n).await.unwrap(), b.state_update(n).await.unwrap());
        assert_ne!(ua.new_root, ub.new_root);
        assert_ne!(ua.block_hash, ub.block_hash);
        assert_ne!(ua.state_diff, ub.state_diff, "block {n}");
    }
}

#[tokio::test]
async fn roots_chain_over_a_thousand_blocks() {
    let chain = DevChain::fixed(3, 1000);
    let mut prev = chain.genesis_root();
    for n in 0..1000 {
        let u = chain.state_update(n).await.unwrap();
        assert_eq!(u.old_root, prev, "block {n}");
        let b = chain.block(n).await.unwrap();
        assert_eq!(b.number, n);
        assert_eq!(b.state_root, u.new_root, "block {n}");
        assert_eq!(b.hash, u.block_hash);
        assert_ne!(u.old_root, u.new_root);
        prev = u.new_root;
    }
}

#[tokio::test]
async fn every_felt_is_valid_and_every_diff_is_well_formed() {
    let chain = DevChain::fixed(11, 1000);
    let (mut deployed, mut declared, mut replaced, mut legacy) = (0, 0, 0, 0);
    for n in 0..1000 {
        let u = chain.state_update(n).await.unwrap();
        for f in felts_of(&u) {
            assert!(f.to_be_bytes() < STARK_PRIME, "block {n}: {f} is not below the prime");
            // Round-trips through the JSON-RPC text form.
            assert_eq!(Felt::parse("f", &f.to_string()).unwrap(), f);
        }
        let d = &u.state_diff;
        let mut addrs = HashSet::new();
        for c in &d.storage_diffs {
            assert!(addrs.insert(c.address), "block {n}: contract {} appears twice", c.address);
            assert!(!c.storage_entries.is_empty());
            let keys: HashSet<_> = c.storage_entries.iter().map(|e| e.key).collect();
            assert_eq!(keys.len(), c.storage_entries.len(), "block {n}: a key of {} is written twice", c.address);
        }
        let nonces: HashSet<_> = d.nonces.iter().map(|x| x.contract_address).collect();
        assert_eq!(nonces.len(), d.nonces.len(), "block {n}: two nonce entries for one contract");
        assert!(d.nonces.iter().all(|x| x.nonce.to_u64().is_some()));
        let dep: HashSet<_> = d.deployed_contracts.iter().map(|x| x.address).collect();
        assert_eq!(dep.len(), d.deployed_contracts.len());
        let rep: HashSet<_> = d.replaced_classes.iter().map(|x| x.contract_address).collect();
        assert_eq!(rep.len(), d.replaced_classes.len());
        assert!(dep.is_disjoint(&rep), "block {n}: a contract deployed and replaced at once");
        let dec: HashSet<_> = d.declared_classes.iter().map(|x| x.class_hash).collect();
        assert_eq!(dec.len(), d.declared_classes.len());
        deployed += d.deployed_contracts.len();
        declared += d.declared_classes.len();
        replaced += d.replaced_classes.len();
        legacy += d.deprecated_declared_classes.len();
    }
    assert!(
        deployed > 100 && declared > 50 && replaced > 20 && legacy > 3,
        "{deployed} {declared} {replaced} {legacy}"
    );
}

#[tokio::test]
async fn sizes_vary_and_about_one_block_in_twenty_needs_several_blobs() {
    let chain = DevChain::fixed(5, 1000);
    let mut sizes = Vec::new();
    for n in 0..1000 {
        sizes.push(rough_felts(&chain.state_update(n).await.unwrap().state_diff));
    }
    let big = |s: &&usize| **s > FELTS_PER_BLOB as usize;
    assert!(sizes[..100].iter().filter(big).count() >= 1, "no multi-blob block in the first 100");
    let n_big = sizes.iter().filter(big).count();
    assert_eq!(n_big, 50, "exactly one per window of 20");
    assert!(sizes.iter().any(|s| *s > 6 * FELTS_PER_BLOB as usize), "no block needing more than six blobs");
    let small: Vec<_> = sizes.iter().filter(|s| !big(s)).collect();
    let distinct: HashSet<_> = small.iter().collect();
    assert!(distinct.len() > 100, "normal block sizes should vary: {} distinct", distinct.len());
    assert!(small.iter().any(|s| **s < 100) && small.iter().any(|s| **s > 500));
    // The estimate the DA layer charges agrees with the rough count on the size class.
    for n in 0..100 {
        let d = chain.state_update(n).await.unwrap().state_diff;
        let (est, rough) = (da_felts_estimate(&d), rough_felts(&d));
        assert!(est >= rough, "block {n}: estimate {est} below the storage-only count {rough}");
    }
}

#[tokio::test]
async fn big_blocks_can_be_disabled() {
    let cfg = ChainConfig { big_block_every: 0, ..ChainConfig::fixed(200) };
    let chain = DevChain::new(cfg, 5, Timestamp::ZERO, ManualClock::at(0));
    for n in 0..200 {
        assert!(!chain.is_big_block(n));
        assert!(rough_felts(&chain.state_update(n).await.unwrap().state_diff) < FELTS_PER_BLOB as usize);
    }
}

#[tokio::test]
async fn nonce_at_agrees_with_the_diffs() {
    let chain = DevChain::fixed(9, 300);
    let mut seen = HashSet::new();
    for n in 0..300u64 {
        let d = chain.state_update(n).await.unwrap().state_diff;
        let in_diff: HashSet<_> = d.nonces.iter().map(|x| x.contract_address).collect();
        for x in &d.nonces {
            assert_eq!(chain.nonce_at(n, x.contract_address).await.unwrap(), x.nonce, "block {n}");
            let before = if n == 0 { Felt::ZERO } else { chain.nonce_at(n - 1, x.contract_address).await.unwrap() };
            assert!(before < x.nonce, "block {n}: a nonce update must increase the nonce");
            seen.insert(x.contract_address);
        }
        // Contracts with a nonce but no entry this block kept it.
        if n > 0 {
            for a in seen.iter().filter(|a| !in_diff.contains(*a)) {
                assert_eq!(chain.nonce_at(n, *a).await.unwrap(), chain.nonce_at(n - 1, *a).await.unwrap());
            }
        }
        // Every written contract has an answer (the DA encoder's oracle asks for them).
        for c in &d.storage_diffs {
            chain.nonce_at(n, c.address).await.unwrap();
        }
    }
    assert!(seen.len() >= 10, "accounts should transact: {}", seen.len());
}

#[tokio::test]
async fn a_fixed_chain_has_a_fixed_head() {
    let chain = DevChain::fixed(1, 10);
    assert_eq!(chain.latest_block().await.unwrap(), Some(9));
    chain.state_update(9).await.unwrap();
    for e in [
        chain.state_update(10).await.unwrap_err(),
        chain.block(10).await.unwrap_err(),
        chain.nonce_at(10, Felt::ONE).await.unwrap_err(),
    ] {
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("head is 9"), "{e}");
    }
    let empty = DevChain::fixed(1, 0);
    assert_eq!(empty.latest_block().await.unwrap(), None);
    assert!(matches!(empty.block(0).await.unwrap_err(), Error::NotFound { .. }));
}

#[tokio::test]
async fn a_growing_chain_produces_a_block_per_block_time() {
    let clock = ManualClock::at(1_000);
    let cfg = ChainConfig { blocks: Some(25), block_time: Duration::from_millis(100), ..ChainConfig::default() };
    let chain = DevChain::new(cfg, 1, Timestamp(1_000), clock.clone());
    assert_eq!(chain.latest_block().await.unwrap(), None);
    assert!(chain.state_update(0).await.is_err());
    clock.advance(Duration::from_millis(99));
    assert_eq!(chain.latest_block().await.unwrap(), None);
    clock.advance(Duration::from_millis(1));
    assert_eq!(chain.latest_block().await.unwrap(), Some(0));
    chain.state_update(0).await.unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(chain.latest_block().await.unwrap(), Some(10));
    clock.advance(Duration::from_secs(10));
    assert_eq!(chain.latest_block().await.unwrap(), Some(24), "capped at `blocks`");

    let cfg = ChainConfig { initial_blocks: 5, block_time: Duration::from_secs(1), ..ChainConfig::default() };
    let chain = DevChain::new(cfg, 1, Timestamp(1_000), ManualClock::at(1_000));
    assert_eq!(chain.latest_block().await.unwrap(), Some(4));
}

#[test]
fn generation_cost_is_printed() {
    // Not a timing assertion: shows the cost in `--nocapture` so a regression is visible
    // (release: ~8us for a normal block, under 1ms for a big one).
    let chain = DevChain::fixed(2, 2000);
    let (mut small_t, mut big_t, mut small_n, mut big_n) = (0u128, 0u128, 0, 0);
    for n in 0..2000 {
        let t = std::time::Instant::now();
        let u = chain.generate(n);
        let e = t.elapsed().as_nanos();
        std::hint::black_box(&u);
        if chain.is_big_block(n) {
            big_t += e;
            big_n += 1
        } else {
            small_t += e;
            small_n += 1
        }
    }
    println!("normal: {} ns/block, big: {} ns/block", small_t / small_n, big_t / big_n);
}
