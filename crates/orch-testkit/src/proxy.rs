//! A TCP proxy a test puts between a client and its service, to break the network on cue:
//! [`CutProxy::drop_connections`] closes what is open (a broker restart, a reset path), and
//! [`CutProxy::cut`] also closes every new connection as soon as it is accepted until
//! [`CutProxy::restore`] (an outage). It counts the connections and bytes it forwards, so a
//! test can tell that a client came back.
//!
//! Plain threads, no async runtime: usable from sync tests, from any tokio flavour, and by
//! crates whose tokio lacks the `net` feature.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Shared {
    cut: AtomicBool,
    closed: AtomicBool,
    accepted: AtomicU64,
    bytes: AtomicU64,
    open: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn shut_all(&self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for s in open.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// The proxy; stops, and closes every connection, when dropped.
pub struct CutProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl CutProxy {
    /// Listens on a free 127.0.0.1 port and forwards each connection to `target`
    /// (`"host:port"` or a socket address; the first address it resolves to).
    ///
    /// # Panics
    /// If `target` does not resolve or no local port can be bound: a broken test setup.
    pub fn start(target: impl ToSocketAddrs) -> CutProxy {
        let target = target.to_socket_addrs().ok().and_then(|mut a| a.next()).expect("proxy target resolves");
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds a local port");
        let addr = listener.local_addr().expect("proxy's local address");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.closed.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if s.cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (Ok(c1), Ok(c2), Ok(s1), Ok(s2)) =
                    (client.try_clone(), client.try_clone(), server.try_clone(), server.try_clone())
                else {
                    continue;
                };
                s.open.lock().unwrap_or_else(|p| p.into_inner()).extend([c1, s1]);
                s.accepted.fetch_add(1, Ordering::SeqCst);
                pump(c2, s2, s.clone());
                pump(server, client, s.clone());
            }
        });
        CutProxy { addr, shared }
    }

    /// The address to give the client instead of the service's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes every open connection; new ones are served as before.
    pub fn drop_connections(&self) {
        self.shared.shut_all();
    }

    /// An outage: closes every open connection, and every new one as soon as it is accepted,
    /// until [`CutProxy::restore`].
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.shut_all();
    }

    /// Ends an outage: serves again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Connections forwarded to the service so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far, both directions.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.shut_all();
        // Wakes the accept loop so that it sees `closed`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Copies `from` to `to` on a thread of its own until either side closes or the proxy is cut.
fn pump(mut from: TcpStream, mut to: TcpStream, s: Arc<Shared>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.cut.load(Ordering::SeqCst) {
                        break;
                    }
                    // Counted before the write, so that the receiver never sees bytes the
                    // count does not hold yet.
                    s.bytes.fetch_add(n as u64, Ordering::SeqCst);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo service on a free port, one thread per connection.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut w = c.try_clone().unwrap();
                    let mut r = c;
                    let _ = std::io::copy(&mut r, &mut w);
                });
            }
        });
        addr
    }

    fn round_trip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut c = TcpStream::connect(addr)?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.write_all(b"ping")?;
        let mut got = [0u8; 4];
        c.read_exact(&mut got)?;
        Ok(got.to_vec())
    }

    /// A connection through the proxy that has echoed one byte, so it is surely open end to end.
    fn echoing(addr: SocketAddr) -> TcpStream {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"x").unwrap();
        c.read_exact(&mut [0u8; 1]).unwrap();
        c
    }

    #[test]
    fn forwards_refuses_while_cut_and_serves_again() {
        let p = CutProxy::start(echo());
        assert_eq!(round_trip(p.addr()).unwrap(), b"ping");
        assert_eq!(p.accepted(), 1);
        assert_eq!(p.bytes(), 8, "four bytes each way");

        let mut open = echoing(p.addr());
        let mut one = [0u8; 1];
        p.cut();
        assert_eq!(open.read(&mut one).unwrap_or(0), 0, "an open connection is closed by the cut");
        assert!(round_trip(p.addr()).is_err(), "a new connection is closed while cut");

        p.restore();
        assert_eq!(round_trip(p.addr()).unwrap(), b"ping");
    }

    #[test]
    fn dropping_connections_keeps_serving_new_ones() {
        let p = CutProxy::start(echo().to_string());
        let mut open = echoing(p.addr());
        let mut one = [0u8; 1];
        p.drop_connections();
        assert_eq!(open.read(&mut one).unwrap_or(0), 0, "the open connection is closed");
        assert_eq!(round_trip(p.addr()).unwrap(), b"ping");
        assert_eq!(p.accepted(), 2);
    }
}
