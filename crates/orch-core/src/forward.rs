//! Ports through pointers: every port is implemented for `Arc<T>`, `Box<T>` and `&'static T`
//! (`T: ?Sized`, so `Arc<dyn Database>` is a `Database`), and all of these impls are written
//! one way, by [`forward_port!`] next to the trait:
//!
//! ```ignore
//! forward_port!(Storage {
//!     fn backend(&self) -> &'static str;
//!     async fn put(&self, key: &ObjectKey, data: Vec<u8>) -> Result<ObjectMeta>;
//!     // … every method of the trait, sync ones first
//! });
//! ```
//!
//! Each emitted impl forwards every listed method to `T` and carries
//! `#[deny(clippy::missing_trait_methods)]`: a method added to the trait but not to the list
//! fails to compile (required) or fails clippy (provided), rather than a pointer silently
//! running a default body instead of `T`'s override.
//!
//! The reference impl is for `&'static T` only: the ports are `'static` (the engine moves them
//! into spawned tasks), so a shorter-lived reference cannot be one.

/// Emits the `Arc<T>`, `Box<T>` and `&'static T` impls of a port; see the [module](self).
macro_rules! forward_port {
    ($port:ident { $($methods:tt)* }) => {
        $crate::forward::forward_port!(@impl $port, ::std::sync::Arc<T>, { $($methods)* });
        $crate::forward::forward_port!(@impl $port, ::std::boxed::Box<T>, { $($methods)* });
        $crate::forward::forward_port!(@impl $port, &'static T, { $($methods)* });
    };
    (@impl $port:ident, $ptr:ty, {
        $( fn $f:ident(&self $(, $fa:ident: $ft:ty)* $(,)?) $(-> $fr:ty)?; )*
        $( async fn $af:ident(&self $(, $aa:ident: $at:ty)* $(,)?) $(-> $ar:ty)?; )*
    }) => {
        #[::async_trait::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: $port + ?Sized> $port for $ptr {
            $( fn $f(&self $(, $fa: $ft)*) $(-> $fr)? { (**self).$f($($fa),*) } )*
            $( async fn $af(&self $(, $aa: $at)*) $(-> $ar)? { (**self).$af($($aa),*).await } )*
        }
    };
}

pub(crate) use forward_port;

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use crate::alerts::{Alert, Alerts, Severity};
    use crate::chain::ChainSource;
    use crate::clock::{Clock, SystemClock};
    use crate::da::Da;
    use crate::db::{Database, DatabaseExt};
    use crate::error::Result;
    use crate::events::{BroadcastBus, EventBus};
    use crate::prove::{OsRunner, Prover};
    use crate::queue::Queue;
    use crate::settle::Settlement;
    use crate::storage::Storage;

    /// For each port: `Arc<dyn Port>`, `Box<dyn Port>` and `&'static dyn Port` satisfy a
    /// `P: Port` bound, so one generic function serves owned, shared and borrowed ports.
    macro_rules! assert_pointers_are_ports {
        ($($port:ident),*) => {$({
            fn takes<P: $port>() {}
            takes::<Arc<dyn $port>>();
            takes::<Box<dyn $port>>();
            takes::<&'static dyn $port>();
        })*};
    }

    #[test]
    fn pointers_to_dyn_ports_are_ports() {
        assert_pointers_are_ports!(
            Database,
            Queue,
            Storage,
            Settlement,
            Da,
            Prover,
            OsRunner,
            ChainSource,
            Alerts,
            Clock,
            EventBus
        );
        fn takes_ext<D: DatabaseExt>() {}
        takes_ext::<Arc<dyn Database>>();
        takes_ext::<Box<dyn Database>>();
        takes_ext::<&'static dyn Database>();
    }

    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<String>>);

    #[async_trait]
    impl Alerts for Recorder {
        async fn send(&self, alert: Alert) -> Result<()> {
            self.0.lock().unwrap().push(alert.key);
            Ok(())
        }
    }

    async fn send_to(alerts: impl Alerts, key: &str) {
        let alert = Alert { severity: Severity::Info, key: key.into(), summary: String::new(), details: String::new() };
        alerts.send(alert).await.unwrap();
    }

    #[tokio::test]
    async fn async_methods_reach_the_pointee_through_each_pointer() {
        let inner: &'static Recorder = Box::leak(Box::default());
        send_to(Arc::new(Recorder::default()) as Arc<dyn Alerts>, "unseen").await;
        send_to(Box::new(inner) as Box<dyn Alerts>, "box").await;
        send_to(inner as &'static dyn Alerts, "ref").await;
        send_to(Arc::new(inner), "arc of ref").await;
        assert_eq!(*inner.0.lock().unwrap(), ["box", "ref", "arc of ref"]);
    }

    fn active(bus: impl EventBus) -> bool {
        bus.is_active()
    }

    #[test]
    fn sync_methods_reach_the_pointee_through_each_pointer() {
        let bus: &'static BroadcastBus = Box::leak(Box::new(BroadcastBus::new(4)));
        let _rx = bus.subscribe();
        assert!(active(Arc::new(bus.clone()) as Arc<dyn EventBus>));
        assert!(active(Box::new(bus.clone()) as Box<dyn EventBus>));
        assert!(active(bus as &'static dyn EventBus));
        assert!(!active(Box::new(BroadcastBus::new(4)) as Box<dyn EventBus>));
        let clock: Box<dyn Clock> = Box::new(SystemClock);
        assert!(Clock::now(&clock).0 > 0);
    }
}
