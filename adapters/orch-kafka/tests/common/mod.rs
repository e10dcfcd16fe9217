//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use orch_kafka::KafkaConfig;
pub use orch_testkit::tansu::PrivateTansu;

/// Why a case cannot run: skip with the reason printed, or fail when CI requires services.
fn missing(var: &str) {
    if std::env::var_os("ORCH_REQUIRE_SERVICES").is_some() {
        panic!("{var} is not set but ORCH_REQUIRE_SERVICES is: run scripts/services.sh");
    }
    eprintln!("skipping: set {var} (scripts/services.sh does)");
}

/// The shared broker list, or `None` (with the reason printed) to skip.
pub fn brokers() -> Option<String> {
    match std::env::var("ORCH_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            missing("ORCH_TEST_KAFKA_BROKERS");
            None
        }
    }
}

/// A random name, so runs never collide.
pub fn name() -> String {
    format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// A config for fresh, randomly named topics and group.
pub fn config(brokers: &str) -> KafkaConfig {
    let mut c = KafkaConfig::new(brokers, name());
    c.group = name();
    c.partitions = 2;
    c
}

/// A tansu broker of this test on `port` (in memory), advertising `advertised` (e.g. a
/// proxy's port) as its address; `None` (skip, or fail under ORCH_REQUIRE_SERVICES) without
/// `ORCH_TEST_TANSU_BIN`.
pub fn private_tansu(port: u16, advertised: u16) -> Option<PrivateTansu> {
    let bin = match std::env::var("ORCH_TEST_TANSU_BIN") {
        Ok(b) if !b.is_empty() => b,
        _ => {
            missing("ORCH_TEST_TANSU_BIN");
            return None;
        }
    };
    let at = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Some(PrivateTansu::start(&bin, at(port), at(advertised)))
}

/// A TCP proxy in front of a broker, whose connections the test can cut and refuse. Plain
/// threads: the crate's tokio has no `net` feature.
pub struct Proxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    /// Listens on a free port and forwards to `target` (`host:port`).
    pub fn start(target: String) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let conns: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let down = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, d, st) = (conns.clone(), down.clone(), stop.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(inbound) = inbound else { continue };
                if d.load(Ordering::SeqCst) {
                    // A network outage: the connection closes at once.
                    continue;
                }
                let Ok(out) = std::net::TcpStream::connect(&target) else { continue };
                let (Ok(a), Ok(b)) = (inbound.try_clone(), out.try_clone()) else { continue };
                {
                    let mut c = c.lock().unwrap();
                    c.push(a);
                    c.push(b);
                }
                let (mut r1, mut w1) = (inbound.try_clone().unwrap(), out.try_clone().unwrap());
                let (mut r2, mut w2) = (out, inbound);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut r1, &mut w1);
                    let _ = w1.shutdown(std::net::Shutdown::Both);
                    let _ = r1.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut r2, &mut w2);
                    let _ = w2.shutdown(std::net::Shutdown::Both);
                    let _ = r2.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Proxy { port, down, stop, conns }
    }

    /// Drops every proxied connection (both sockets close), as a network failure would.
    pub fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// While down, new connections are closed at once and existing ones are cut.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cut();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        self.cut();
    }
}
