//! A TCP proxy a test can cut: while cut, every open connection is shut down and new ones are
//! closed as soon as they are accepted — what a client sees when its broker restarts or a
//! network path drops. Counts the bytes it forwards, so a test can tell that a client came back.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Shared {
    cut: AtomicBool,
    closed: AtomicBool,
    bytes: AtomicU64,
    open: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn shut_all(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// The proxy; stops (and shuts every connection) when dropped.
pub(crate) struct CutProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl CutProxy {
    /// Listens on a free 127.0.0.1 port and forwards each connection to `target`.
    pub(crate) fn start(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let addr = listener.local_addr().unwrap();
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
                {
                    let mut open = s.open.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                pump(client.try_clone().unwrap(), server.try_clone().unwrap(), s.clone());
                pump(server, client, s.clone());
            }
        });
        CutProxy { addr, shared }
    }

    /// `host:port` to give the client instead of the real one.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection and refuses service until [`CutProxy::restore`].
    pub(crate) fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.shut_all();
    }

    /// Serves again.
    pub(crate) fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Bytes forwarded so far, both directions.
    pub(crate) fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.shut_all();
        // Wake the accept loop so it sees `closed`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, s: Arc<Shared>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.cut.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    s.bytes.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
