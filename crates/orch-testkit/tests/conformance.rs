//! The in-memory reference adapters pass every conformance suite.

use std::sync::{Arc, OnceLock};

use orch_core::db::Database;
use orch_core::queue::Queue;
use orch_core::settle::Settlement;
use orch_core::storage::Storage;
use orch_core::Felt;
use orch_testkit::mem::{MemDatabase, MemQueue, MemStorage};
use orch_testkit::sim::{SimChain, SimDa, SimSettlement};
use orch_testkit::suite::settlement::{self as st, SettlementFixture};

/// One store shared by every case, as a real adapter's suite shares one server.
fn shared_db() -> Arc<dyn Database> {
    static DB: OnceLock<Arc<MemDatabase>> = OnceLock::new();
    DB.get_or_init(|| Arc::new(MemDatabase::new())).clone()
}

fn shared_storage() -> &'static MemStorage {
    static S: OnceLock<MemStorage> = OnceLock::new();
    S.get_or_init(MemStorage::new)
}

mod database {
    use super::*;
    orch_testkit::database_suite!(async { Some(shared_db()) });
}

mod queue {
    use super::*;
    orch_testkit::queue_suite!(async { Some(Arc::new(MemQueue::new()) as Arc<dyn Queue>) });
}

mod storage {
    use super::*;
    orch_testkit::storage_suite!(|prefix: String| async move {
        Some(Arc::new(shared_storage().with_prefix(&prefix).unwrap()) as Arc<dyn Storage>)
    });
}

mod settlement {
    use super::*;

    const F: SettlementFixture = SettlementFixture { start: 5, genesis_root: Felt::ZERO };

    fn fresh() -> Arc<dyn Settlement> {
        Arc::new(SimSettlement::new(F.start, F.genesis_root))
    }

    #[tokio::test]
    async fn in_order_updates_apply() {
        st::in_order_updates_apply(fresh(), F).await;
    }

    #[tokio::test]
    async fn out_of_order_update_is_rejected() {
        st::out_of_order_update_is_rejected(fresh(), F).await;
    }

    #[tokio::test]
    async fn wrong_previous_root_is_rejected() {
        st::wrong_previous_root_is_rejected(fresh(), F).await;
    }

    #[tokio::test]
    async fn resubmission_never_applies_twice() {
        st::resubmission_never_applies_twice(fresh(), F).await;
    }

    #[tokio::test]
    async fn concurrent_resubmissions_apply_once() {
        st::concurrent_resubmissions_apply_once(fresh(), F).await;
    }

    #[tokio::test]
    async fn strict_order_holds_after_updates_apply() {
        st::strict_order_holds_after_updates_apply(fresh(), F).await;
    }

    #[tokio::test]
    async fn tx_status_moves_only_forward() {
        st::tx_status_moves_only_forward(fresh(), F).await;
    }

    #[tokio::test]
    async fn da_publication_is_idempotent_and_included() {
        use orch_core::chain::ChainSource;
        let sample = SimChain::new(1).state_update(0).await.unwrap();
        st::da_publication_is_idempotent_and_included(Arc::new(SimDa::default()), sample).await;
    }
}
