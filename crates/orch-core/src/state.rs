//! The job state machine: a pure function over (status, event).
//!
//! ```text
//!   Created ──Claimed──► Processing ──Processed──► PendingVerification ──Verified──► Completed
//!      ▲                  │  │  ▲                      │        │
//!      └────Deferred──────┘  │  └─Claimed (orphan)     │        └─TimedOut──► VerificationTimeout
//!                            │                         │                          │
//!   PendingRetry ◄──Failed───┴─────VerifyFailed────────┘          ◄──Reprocess────┘
//!      │  (attempts left)
//!      └── no attempts left ──► Failed ──OperatorRetry──► PendingRetry
//!   any non-terminal ──Cancel──► Cancelled
//! ```

use serde::{Deserialize, Serialize};

use crate::types::JobStatus;

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Event {
    /// A worker claimed it (due, no live lease).
    Claimed,
    /// Its dependencies are not complete yet: back to waiting, no attempt spent.
    Deferred,
    /// The handler finished its effect and it must be verified.
    ProcessedNeedsVerification,
    /// The handler finished and nothing needs verifying.
    ProcessedDone,
    /// Processing or verification failed; `attempts_left` says whether to retry.
    Failed {
        /// Whether another attempt is allowed.
        attempts_left: bool,
    },
    /// Verification confirmed the effect.
    Verified,
    /// Verification: not yet; look again later.
    StillPending,
    /// Verification ran past its deadline.
    TimedOut,
    /// Policy or operator: process again after a timeout.
    Reprocess,
    /// Operator: retry a failed or timed-out job with fresh attempts.
    OperatorRetry,
    /// Operator: stop the job for good.
    Cancel,
}

impl Event {
    /// Every event, for exhaustive tests.
    pub const ALL: [Event; 12] = [
        Event::Claimed,
        Event::Deferred,
        Event::ProcessedNeedsVerification,
        Event::ProcessedDone,
        Event::Failed { attempts_left: true },
        Event::Failed { attempts_left: false },
        Event::Verified,
        Event::StillPending,
        Event::TimedOut,
        Event::Reprocess,
        Event::OperatorRetry,
        Event::Cancel,
    ];
}

/// An event that does not apply to the job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event {event:?} does not apply to a job in status {from}")]
pub struct InvalidTransition {
    /// Status the job was in.
    pub from: JobStatus,
    /// The event.
    pub event: Event,
}

/// The next status, or `InvalidTransition`.
pub fn transition(from: JobStatus, event: Event) -> Result<JobStatus, InvalidTransition> {
    use Event as E;
    use JobStatus as S;
    let to = match (from, event) {
        (S::Created | S::PendingRetry | S::Processing, E::Claimed) => S::Processing,
        (S::PendingVerification, E::Claimed) => S::PendingVerification,
        (S::Processing, E::Deferred) => S::Created,
        (S::Processing, E::ProcessedNeedsVerification) => S::PendingVerification,
        (S::Processing, E::ProcessedDone) => S::Completed,
        (S::Processing | S::PendingVerification, E::Failed { attempts_left: true }) => S::PendingRetry,
        (S::Processing | S::PendingVerification, E::Failed { attempts_left: false }) => S::Failed,
        (S::PendingVerification, E::Verified) => S::Completed,
        (S::PendingVerification, E::StillPending) => S::PendingVerification,
        (S::PendingVerification, E::TimedOut) => S::VerificationTimeout,
        (S::VerificationTimeout, E::Reprocess) => S::PendingRetry,
        (S::Failed | S::VerificationTimeout | S::Cancelled, E::OperatorRetry) => S::PendingRetry,
        (
            S::Created | S::Processing | S::PendingVerification | S::PendingRetry | S::Failed | S::VerificationTimeout,
            E::Cancel,
        ) => S::Cancelled,
        _ => return Err(InvalidTransition { from, event }),
    };
    Ok(to)
}

/// The status a claim moves a job to (`Claimed` event); `None` if it is not claimable.
pub fn claimed_status(from: JobStatus) -> Option<JobStatus> {
    transition(from, Event::Claimed).ok()
}

/// Whether a claim of a job in `from` counts as an abandoned attempt: a job still `Processing`
/// when claimed was orphaned by a worker that died or stalled past its lease.
pub fn claim_counts_attempt(from: JobStatus) -> bool {
    from == JobStatus::Processing
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The whole table, written out: any change to the machine must change this test.
    #[test]
    fn every_status_event_pair_is_as_specified() {
        use Event as E;
        use JobStatus as S;
        let f = E::Failed { attempts_left: false };
        let r = E::Failed { attempts_left: true };
        let expected: &[(S, E, Option<S>)] = &[
            (S::Created, E::Claimed, Some(S::Processing)),
            (S::Created, E::Cancel, Some(S::Cancelled)),
            (S::PendingRetry, E::Claimed, Some(S::Processing)),
            (S::PendingRetry, E::Cancel, Some(S::Cancelled)),
            (S::Processing, E::Claimed, Some(S::Processing)),
            (S::Processing, E::Deferred, Some(S::Created)),
            (S::Processing, E::ProcessedNeedsVerification, Some(S::PendingVerification)),
            (S::Processing, E::ProcessedDone, Some(S::Completed)),
            (S::Processing, r, Some(S::PendingRetry)),
            (S::Processing, f, Some(S::Failed)),
            (S::Processing, E::Cancel, Some(S::Cancelled)),
            (S::PendingVerification, E::Claimed, Some(S::PendingVerification)),
            (S::PendingVerification, r, Some(S::PendingRetry)),
            (S::PendingVerification, f, Some(S::Failed)),
            (S::PendingVerification, E::Verified, Some(S::Completed)),
            (S::PendingVerification, E::StillPending, Some(S::PendingVerification)),
            (S::PendingVerification, E::TimedOut, Some(S::VerificationTimeout)),
            (S::PendingVerification, E::Cancel, Some(S::Cancelled)),
            (S::VerificationTimeout, E::Reprocess, Some(S::PendingRetry)),
            (S::VerificationTimeout, E::OperatorRetry, Some(S::PendingRetry)),
            (S::VerificationTimeout, E::Cancel, Some(S::Cancelled)),
            (S::Failed, E::OperatorRetry, Some(S::PendingRetry)),
            (S::Failed, E::Cancel, Some(S::Cancelled)),
            (S::Cancelled, E::OperatorRetry, Some(S::PendingRetry)),
        ];
        for s in S::ALL {
            for e in Event::ALL {
                let want = expected.iter().find(|(fs, fe, _)| *fs == s && *fe == e).and_then(|(_, _, to)| *to);
                assert_eq!(transition(s, e).ok(), want, "{s:?} + {e:?}");
            }
        }
    }

    #[test]
    fn completed_is_final() {
        for e in Event::ALL {
            assert!(transition(JobStatus::Completed, e).is_err(), "{e:?}");
        }
    }

    #[test]
    fn only_claimable_statuses_can_be_claimed() {
        for s in JobStatus::ALL {
            assert_eq!(claimed_status(s).is_some(), s.is_claimable(), "{s:?}");
        }
    }

    fn any_event() -> impl Strategy<Value = Event> {
        (0..Event::ALL.len()).prop_map(|i| Event::ALL[i])
    }

    proptest! {
        /// Random event sequences, applied where valid, keep the invariants: nothing leaves
        /// Completed; Completed is reached only through a processing or verification success;
        /// a job is processed only after a claim.
        #[test]
        fn no_event_sequence_reaches_an_invalid_state(events in prop::collection::vec(any_event(), 0..200)) {
            let mut s = JobStatus::Created;
            let mut claimed_since_wait = false;
            for e in events {
                let Ok(next) = transition(s, e) else { continue };
                match e {
                    Event::ProcessedDone | Event::ProcessedNeedsVerification | Event::Deferred => {
                        prop_assert!(claimed_since_wait, "{e:?} without a claim");
                    }
                    _ => {}
                }
                if next == JobStatus::Completed {
                    prop_assert!(matches!(e, Event::ProcessedDone | Event::Verified));
                }
                prop_assert!(s != JobStatus::Completed);
                claimed_since_wait = match next {
                    JobStatus::Processing | JobStatus::PendingVerification => {
                        claimed_since_wait || e == Event::Claimed
                    }
                    _ => false,
                };
                s = next;
            }
        }
    }
}
