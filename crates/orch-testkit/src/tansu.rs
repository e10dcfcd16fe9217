//! A tansu (Kafka API) broker of one test, in memory, on a port of its own: Kafka clients
//! connect to the address a broker advertises, so a test that puts a proxy in front of a
//! broker needs one that advertises the proxy. Used by orch-kafka's tests and the binary's.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The broker process; killed when dropped.
pub struct PrivateTansu {
    child: Child,
}

impl PrivateTansu {
    /// Starts `bin` (the tansu binary) listening on `addr` (e.g. [`free_addr`]) and
    /// advertising `advertised` to clients, and waits until it listens. Blocking: call it
    /// from a test's own thread, not from inside an async runtime.
    #[allow(clippy::disallowed_methods, reason = "synchronous test set-up, outside any runtime")]
    pub fn start(bin: &str, addr: SocketAddr, advertised: SocketAddr) -> PrivateTansu {
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &format!("tcp://{addr}")])
            .args(["--advertised-listener-url", &format!("tcp://{advertised}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tansu ({bin}): {e}"));
        let t = PrivateTansu { child };
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "private tansu did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        t
    }
}

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 127.0.0.1 address with a port nothing listens on (just released by the OS).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port")
}
