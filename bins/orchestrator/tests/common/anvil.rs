//! A private anvil for one test: its own free port and chain state, killed when dropped, so a
//! test can count every transaction and event on it and deploy at known addresses.

#![allow(dead_code, clippy::disallowed_methods)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running anvil on 127.0.0.1.
pub(crate) struct PrivateAnvil {
    child: Child,
    /// Its JSON-RPC URL.
    pub(crate) url: String,
    /// Its port.
    pub(crate) port: u16,
}

/// A port nothing listens on (now).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PrivateAnvil {
    /// Starts `bin` with `args` (e.g. `--block-time 1`) on a free port and waits until it
    /// answers `eth_chainId`.
    pub(crate) fn start(bin: &str, args: &[&str]) -> PrivateAnvil {
        let port = free_port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let anvil = PrivateAnvil { child, url: format!("http://127.0.0.1:{port}"), port };
        let end = Instant::now() + Duration::from_secs(30);
        while !anvil.answers() {
            assert!(Instant::now() < end, "anvil on port {port} did not answer within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        anvil
    }

    /// Whether it answers a JSON-RPC request (a bare HTTP/1.1 POST: no client needed).
    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
        let req = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.contains("\"result\"")
    }
}

impl Drop for PrivateAnvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
