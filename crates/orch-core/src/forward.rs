//! Ports through pointers: every port is implemented for `Arc<T>`, `Box<T>` and `&'static T`
//! (`T: ?Sized`, so `Arc<dyn Database>` is a `Database`), and all of these impls are written
//! one way, by [`port!`], which takes the trait definition itself:
//!
//! ```ignore
//! port! {
//!     /// Object storage.
//!     #[async_trait]
//!     pub trait Storage: Debug + Send + Sync + 'static {
//!         /// Backend name.
//!         fn backend(&self) -> &'static str;
//!         /// Store bytes.
//!         async fn put(&self, key: &ObjectKey, data: Vec<u8>) -> Result<ObjectMeta>;
//!         // … sync and async methods in any order, with or without a default body
//!     }
//! }
//! ```
//!
//! The trait is emitted as written (docs and attributes included), followed by one impl per
//! pointer that forwards every method to `T`. The signatures are written once, so a method
//! added to the trait is forwarded without further edits; each impl also carries
//! `#[deny(clippy::missing_trait_methods)]`, so a pointer never silently runs a default body
//! instead of `T`'s override.
//!
//! Supertraits are single tokens joined by `+` (`Debug + Send + Sync + 'static`); methods take
//! `&self` and plain `name: Type` arguments.
//!
//! The reference impl is for `&'static T` only: the ports are `'static` (the engine moves them
//! into spawned tasks), so a shorter-lived reference cannot be one.

/// Defines a port trait and its `Arc<T>`, `Box<T>` and `&'static T` impls; see the
/// [module](self).
macro_rules! port {
    (
        $(#[$attr:meta])*
        $vis:vis trait $port:ident: $bound:tt $(+ $bounds:tt)* { $($items:tt)* }
    ) => {
        $(#[$attr])*
        $vis trait $port: $bound $(+ $bounds)* { $($items)* }

        $crate::forward::port!(@forward $port [] $($items)*);
    };
    // One method at a time: docs dropped, a default body dropped (the pointee's own method,
    // default or override, is what runs), the forwarding body collected.
    (@forward $port:ident [$($done:tt)*]
        $(#[$m:meta])* async fn $f:ident(&self $(, $a:ident: $t:ty)* $(,)?) $(-> $r:ty)? $default:block
        $($rest:tt)*
    ) => {
        $crate::forward::port!(@forward $port [$($done)*] async fn $f(&self $(, $a: $t)*) $(-> $r)?; $($rest)*);
    };
    (@forward $port:ident [$($done:tt)*]
        $(#[$m:meta])* fn $f:ident(&self $(, $a:ident: $t:ty)* $(,)?) $(-> $r:ty)? $default:block
        $($rest:tt)*
    ) => {
        $crate::forward::port!(@forward $port [$($done)*] fn $f(&self $(, $a: $t)*) $(-> $r)?; $($rest)*);
    };
    (@forward $port:ident [$($done:tt)*]
        $(#[$m:meta])* async fn $f:ident(&self $(, $a:ident: $t:ty)* $(,)?) $(-> $r:ty)?;
        $($rest:tt)*
    ) => {
        $crate::forward::port!(@forward $port [$($done)*
            async fn $f(&self $(, $a: $t)*) $(-> $r)? { (**self).$f($($a),*).await }
        ] $($rest)*);
    };
    (@forward $port:ident [$($done:tt)*]
        $(#[$m:meta])* fn $f:ident(&self $(, $a:ident: $t:ty)* $(,)?) $(-> $r:ty)?;
        $($rest:tt)*
    ) => {
        $crate::forward::port!(@forward $port [$($done)*
            fn $f(&self $(, $a: $t)*) $(-> $r)? { (**self).$f($($a),*) }
        ] $($rest)*);
    };
    (@forward $port:ident [$($done:tt)*]) => {
        $crate::forward::port!(@impl $port, ::std::sync::Arc<T>, $($done)*);
        $crate::forward::port!(@impl $port, ::std::boxed::Box<T>, $($done)*);
        $crate::forward::port!(@impl $port, &'static T, $($done)*);
    };
    (@impl $port:ident, $ptr:ty, $($methods:tt)*) => {
        #[::async_trait::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: $port + ?Sized> $port for $ptr {
            $($methods)*
        }
    };
}

pub(crate) use port;

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
