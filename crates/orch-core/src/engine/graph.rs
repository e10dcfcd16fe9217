//! The per-batch job graph: which jobs exist for a block range and what depends on what.

use crate::job::{JobMeta, NewJob};
use crate::types::{BlockNumber, BlockRange, ChainId, JobId, JobKey, JobKind, Timestamp};

/// The kinds created for every batch, in creation order (dependents first, so a crash part-way
/// leaves no job whose dependents are missing; the creator's cursor follows `SnosRun`).
pub fn kinds_in_creation_order(with_registration: bool) -> Vec<JobKind> {
    let mut v = vec![JobKind::StateTransition, JobKind::DataSubmission];
    if with_registration {
        v.push(JobKind::ProofRegistration);
    }
    v.extend([JobKind::ProofCreation, JobKind::SnosRun]);
    v
}

/// Dependencies of `kind` for `range`; `prev` is the batch settled just before it, if orch
/// created it.
pub fn dependencies(
    chain: &ChainId,
    kind: JobKind,
    range: BlockRange,
    prev: Option<BlockRange>,
    with_registration: bool,
) -> Vec<JobKey> {
    let key = |kind, range| JobKey { chain: chain.clone(), kind, range };
    match kind {
        JobKind::SnosRun | JobKind::DataSubmission => vec![],
        JobKind::ProofCreation => vec![key(JobKind::SnosRun, range)],
        JobKind::ProofRegistration => vec![key(JobKind::ProofCreation, range)],
        JobKind::StateTransition => {
            let proof = if with_registration { JobKind::ProofRegistration } else { JobKind::ProofCreation };
            let mut deps = vec![key(proof, range), key(JobKind::DataSubmission, range)];
            if let Some(p) = prev {
                deps.push(key(JobKind::StateTransition, p));
            }
            deps
        }
    }
}

/// Jobs that may become runnable when a `kind` job for `range` completes, as
/// `(kind, first block of their range)`.
pub fn dependents(kind: JobKind, range: BlockRange) -> Vec<(JobKind, BlockNumber)> {
    let first = range.first();
    match kind {
        JobKind::SnosRun => vec![(JobKind::ProofCreation, first)],
        JobKind::ProofCreation => {
            vec![(JobKind::ProofRegistration, first), (JobKind::StateTransition, first)]
        }
        JobKind::ProofRegistration | JobKind::DataSubmission => {
            vec![(JobKind::StateTransition, first)]
        }
        JobKind::StateTransition => vec![(JobKind::StateTransition, range.last() + 1)],
    }
}

/// The jobs of one batch, ready for `create_jobs`. Jobs without dependencies are due at `now`;
/// the others at `deps_due` (a dependency completing wakes them earlier; the time only bounds
/// how long a lost wake-up can delay them).
pub fn batch_jobs(
    chain: &ChainId,
    range: BlockRange,
    prev: Option<BlockRange>,
    with_registration: bool,
    max_attempts: u32,
    now: Timestamp,
    deps_due: Timestamp,
) -> Vec<NewJob> {
    kinds_in_creation_order(with_registration)
        .into_iter()
        .map(|kind| {
            let deps = dependencies(chain, kind, range, prev, with_registration);
            NewJob {
                id: JobId::random(),
                key: JobKey { chain: chain.clone(), kind, range },
                max_attempts,
                next_run_at: if deps.is_empty() { now } else { deps_due },
                deps,
                meta: JobMeta::default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_transition_waits_for_proof_data_and_previous_batch() {
        let c = ChainId::new("c").unwrap();
        let r = BlockRange::new(10, 11).unwrap();
        let deps = dependencies(&c, JobKind::StateTransition, r, Some(BlockRange::new(8, 9).unwrap()), false);
        let kinds: Vec<_> = deps.iter().map(|k| (k.kind, k.range.first())).collect();
        assert_eq!(
            kinds,
            vec![(JobKind::ProofCreation, 10), (JobKind::DataSubmission, 10), (JobKind::StateTransition, 8)]
        );
    }

    #[test]
    fn every_dependency_names_its_dependent_back() {
        let c = ChainId::new("c").unwrap();
        let r = BlockRange::new(4, 5).unwrap();
        let next = BlockRange::new(6, 7).unwrap();
        for reg in [false, true] {
            for kind in kinds_in_creation_order(reg) {
                for dep in
                    dependencies(&c, kind, next, Some(r), reg).into_iter().chain(dependencies(&c, kind, r, None, reg))
                {
                    let wakes = dependents(dep.kind, dep.range);
                    let target =
                        if dep.range == r && kind == JobKind::StateTransition && dep.kind == JobKind::StateTransition {
                            next
                        } else {
                            dep.range
                        };
                    assert!(wakes.contains(&(kind, target.first())), "{dep} does not wake {kind}");
                }
            }
        }
    }
}
