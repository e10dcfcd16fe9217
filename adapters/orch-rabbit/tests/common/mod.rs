//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orch_rabbit::RabbitConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The shared broker's URL, or `None` (with the reason printed) to skip.
pub fn url() -> Option<String> {
    match std::env::var("ORCH_TEST_AMQP_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("skipping: set ORCH_TEST_AMQP_URL (scripts/services.sh does)");
            None
        }
    }
}

/// A config for a fresh, randomly named queue whose queues the broker deletes 10 minutes
/// after the test stops using them (tests that can, also call `teardown`).
pub fn config(url: &str) -> RabbitConfig {
    let mut c = RabbitConfig::new(url, format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]));
    c.expires = Some(Duration::from_secs(600));
    c
}

/// `host:port` of an AMQP URL.
pub fn authority(url: &str) -> String {
    let uri: lapin::uri::AMQPUri = url.parse().expect("AMQP URL");
    format!("{}:{}", uri.authority.host, uri.authority.port)
}

/// A TCP proxy in front of the broker, whose connections the test can cut.
pub struct Proxy {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (c, a) = (conns.clone(), accepted.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                c.lock().unwrap().push(h);
            }
        });
        Proxy { port, accepted, conns, accept }
    }

    /// Drops every proxied connection (both sockets close), as a network failure would.
    pub fn cut(&self) {
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
