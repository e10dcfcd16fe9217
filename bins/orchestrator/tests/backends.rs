//! The binary on the production backends, against live services: every example config under
//! `examples/configs/` passes `config check` and runs `setup` + `run` to 200 settled devnet
//! blocks; and a store moves mid-run from SQLite to PostgreSQL to MongoDB through `db
//! export`/`db import` and finishes there with every block settled once; a PostgreSQL crash
//! and each queue broker's connection cut mid-run lose and repeat nothing.
//!
//! Service URLs come from `ORCH_TEST_*` (scripts/services.sh exports them). Without them a
//! case prints why and skips — unless `ORCH_REQUIRE_SERVICES` is set (CI sets it), where a
//! missing service fails the test instead.

// These tests drive child processes synchronously; there is no async runtime to block.
#![allow(clippy::disallowed_methods, dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use orch_testkit::proxy::CutProxy;
use serde_json::Value;

mod common;
use common::{bin, dev_until, ledger_prefix, wait_for_ledger};

/// How long a run may go without settling a block before a test calls it stuck.
const STALL: Duration = Duration::from_secs(90);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/configs")
}

/// A short random suffix for names no other run uses.
fn unique() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", nanos & 0xffff_ffff, std::process::id())
}

/// The service URL in `var`, or `None` (after saying why) when the case must skip; fails
/// instead under `ORCH_REQUIRE_SERVICES`.
fn service(var: &str) -> Option<String> {
    orch_testkit::services::env_or_skip(var)
}

/// Environment that points a config's providers at the test services, with fresh names.
/// `None` when a needed service is missing.
fn provider_env(config: &str) -> Option<Vec<(String, String)>> {
    let text = std::fs::read_to_string(examples().join(config)).expect("example config readable");
    let section = |name: &str| -> String {
        let v: toml::Value = toml::from_str(&text).expect("example config is TOML");
        v.get(name).and_then(|s| s.get("provider")).and_then(|p| p.as_str()).unwrap_or("").to_string()
    };
    let id = unique();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    match section("database").as_str() {
        "postgres" => {
            set("ORCH_DATABASE__URL", service("ORCH_TEST_POSTGRES_URL")?);
            set("ORCH_DATABASE__SCHEMA", format!("e2e_{id}"));
        }
        "mongo" => {
            set("ORCH_DATABASE__URL", service("ORCH_TEST_MONGO_URL")?);
            set("ORCH_DATABASE__DATABASE", format!("e2e_{id}"));
        }
        _ => {}
    }
    match section("queue").as_str() {
        "redis" => {
            set("ORCH_QUEUE__URL", service("ORCH_TEST_REDIS_URL")?);
            set("ORCH_QUEUE__QUEUE", format!("e2e-{id}"));
        }
        "rabbit" => {
            set("ORCH_QUEUE__URL", service("ORCH_TEST_AMQP_URL")?);
            set("ORCH_QUEUE__QUEUE", format!("e2e-{id}"));
        }
        "kafka" => {
            set("ORCH_QUEUE__BROKERS", format!("[\"{}\"]", service("ORCH_TEST_KAFKA_BROKERS")?));
            set("ORCH_QUEUE__TOPIC", format!("e2e-{id}"));
            set("ORCH_QUEUE__GROUP", format!("e2e-{id}"));
        }
        "sqs" => {
            set("ORCH_QUEUE__ENDPOINT", service("ORCH_TEST_AWS_ENDPOINT")?);
            set("ORCH_QUEUE__QUEUE", format!("e2e-{id}"));
            set("ORCH_QUEUE__ACCESS_KEY_ID", "test".into());
            set("ORCH_QUEUE__SECRET_ACCESS_KEY", "test".into());
        }
        _ => {}
    }
    if section("storage") == "s3" {
        set("ORCH_STORAGE__ENDPOINT", service("ORCH_TEST_AWS_ENDPOINT")?);
        set("ORCH_STORAGE__BUCKET", format!("e2e-{id}"));
        set("ORCH_STORAGE__ACCESS_KEY_ID", "test".into());
        set("ORCH_STORAGE__SECRET_ACCESS_KEY", "test".into());
    }
    Some(env)
}

fn run_with(config: &Path, data: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let mut c = bin();
    c.args(args).arg("--config").arg(config).arg("--data-dir").arg(data);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("runs")
}

fn ok_json(o: &Output, what: &str) -> Value {
    assert!(o.status.success(), "{what} failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// A running orchestrator that is killed if the test ends without stopping it (a failed
/// assertion must not leave it running on the machine).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGTERM (a graceful drain), then SIGKILL after 20 s.
fn terminate(child: &mut Running) {
    let child = &mut child.0;
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `config check`, `setup` (twice: idempotent), then `run` until the devnet L1 holds blocks
/// 0..199, then SIGTERM; every block applied exactly once, in order.
fn run_example_to_200_blocks(config: &str) {
    let Some(mut env) = provider_env(config) else { return };
    env.push(("ORCH_DEVNET__CHAIN__BLOCKS".into(), "200".into()));
    env.push(("ORCH_DEVNET__CHAIN__BLOCK_TIME".into(), "0s".into()));
    env.push(("ORCH_ENGINE__POLL_INTERVAL".into(), "20ms".into()));
    env.push(("ORCH_ENGINE__CREATOR_INTERVAL".into(), "20ms".into()));
    let cfg = examples().join(config);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();

    let check = run_with(&cfg, data, &env, &["config", "check", "--json"]);
    ok_json(&check, "config check");
    for round in 0..2 {
        let o = run_with(&cfg, data, &env, &["setup"]);
        assert!(o.status.success(), "setup #{round} failed: {}", String::from_utf8_lossy(&o.stderr));
    }

    let mut c = bin();
    c.args(["run", "--config"]).arg(&cfg).arg("--data-dir").arg(data);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in &env {
        c.env(k, v);
    }
    let mut child = Running(c.spawn().expect("run starts"));
    let settled = wait_for_ledger(data, 200, STALL);
    let status = run_with(&cfg, data, &env, &["blocks", "status", "--json"]);
    terminate(&mut child);
    assert_eq!(settled, 200, "{config}: the devnet L1 must hold blocks 0..199 (has 0..{settled})");
    let s = ok_json(&status, "blocks status");
    assert_eq!(s["settlement_layer_through"], 199, "{config}: {s}");
    assert_eq!(ledger_prefix(data), 200, "{config}: nothing applied twice after shutdown");
}

#[cfg(feature = "postgres")]
#[test]
fn example_postgres_runs_to_200_blocks() {
    run_example_to_200_blocks("postgres.toml");
}

#[cfg(feature = "mongo")]
#[test]
fn example_mongo_runs_to_200_blocks() {
    run_example_to_200_blocks("mongo.toml");
}

#[cfg(all(feature = "postgres", feature = "rabbit"))]
#[test]
fn example_postgres_rabbit_fs_runs_to_200_blocks() {
    run_example_to_200_blocks("postgres-rabbit-fs.toml");
}

#[cfg(all(feature = "postgres", feature = "redis", feature = "s3"))]
#[test]
fn example_postgres_redis_s3_runs_to_200_blocks() {
    run_example_to_200_blocks("postgres-redis-s3.toml");
}

#[cfg(feature = "kafka")]
#[test]
fn example_sqlite_kafka_fs_runs_to_200_blocks() {
    run_example_to_200_blocks("sqlite-kafka-fs.toml");
}

#[cfg(all(feature = "mongo", feature = "sqs", feature = "s3"))]
#[test]
fn example_mongo_sqs_s3_runs_to_200_blocks() {
    run_example_to_200_blocks("mongo-sqs-s3.toml");
}

#[cfg(all(feature = "postgres", feature = "mongo"))]
#[test]
fn a_mid_run_store_moves_sqlite_to_postgres_to_mongo_and_finishes_once() {
    let (Some(pg), Some(mongo)) = (provider_env("postgres.toml"), provider_env("mongo.toml")) else { return };
    // Small: the MongoDB-wire test server settles a few blocks a second.
    let n = 400u64;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (pg_cfg, mongo_cfg) = (examples().join("postgres.toml"), examples().join("mongo.toml"));

    // 1. SQLite (the embedded default), killed mid-run.
    dev_until(None, &data, &[], n, 100);
    let k1 = ledger_prefix(&data);
    assert!((100..n).contains(&k1), "stopped mid-run on sqlite (at {k1})");
    let d1 = dir.path().join("sqlite.dump");
    let mut c = bin();
    let e1 = c.args(["db", "export", "--json", "--out"]).arg(&d1).arg("--data-dir").arg(&data).output().unwrap();
    let e1 = ok_json(&e1, "export from sqlite");

    // 2. Into PostgreSQL, verified; run on, killed mid-run again.
    let i1 = ok_json(
        &run_with(&pg_cfg, &data, &pg, &["db", "import", "--json", "--in", d1.to_str().unwrap()]),
        "import to postgres",
    );
    assert_eq!(i1["verified"], true, "{i1}");
    assert_eq!(i1["jobs"], e1["jobs"], "{i1}");
    dev_until(Some(&pg_cfg), &data, &pg, n, k1 + 100);
    let k2 = ledger_prefix(&data);
    assert!(k2 > k1 && k2 < n, "progress on postgres, stopped mid-run ({k1} → {k2})");
    let d2 = dir.path().join("postgres.dump");
    let e2 = ok_json(
        &run_with(&pg_cfg, &data, &pg, &["db", "export", "--json", "--out", d2.to_str().unwrap()]),
        "export from postgres",
    );

    // 3. Into MongoDB, verified; finish there.
    let i2 = ok_json(
        &run_with(&mongo_cfg, &data, &mongo, &["db", "import", "--json", "--in", d2.to_str().unwrap()]),
        "import to mongo",
    );
    assert_eq!(i2["verified"], true, "{i2}");
    assert_eq!(i2["sha256"], e2["sha256"], "{i2}");
    let done = ok_json(
        &run_with(&mongo_cfg, &data, &mongo, &["dev", "--json", "--blocks", &n.to_string()]),
        "finish on mongo",
    );
    assert_eq!(done["settled_through"], n - 1, "{done}");
    assert_eq!(done["jobs_failed"], 0, "{done}");
    assert_eq!(ledger_prefix(&data), n, "every block settled exactly once across three backends");
}

/// A private PostgreSQL server (initdb into a temp dir, its own port), so a test can stop and
/// start it without disturbing the shared one. `None` (after saying why) where the server
/// binaries or `runuser` are missing.
struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    fn start() -> Option<PrivatePostgres> {
        PrivatePostgres::start_with(None)
    }

    /// With `password`, TCP logins need it (scram-sha-256); without, they are trusted.
    fn start_with(password: Option<&str>) -> Option<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max();
        let Some(bin) = bin else {
            eprintln!("skipping: no PostgreSQL server binaries under /usr/lib/postgresql");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let owner = Command::new("chown").arg("postgres").arg(dir.path()).status();
        if !owner.map(|s| s.success()).unwrap_or(false) {
            eprintln!("skipping: cannot hand a directory to the postgres user (not root?)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = PrivatePostgres { bin, dir, port };
        let mut args = vec!["-D".to_string(), pg.data(), "-U".into(), "postgres".into(), "--auth-local=trust".into()];
        if let Some(pw) = password {
            let file = pg.dir.path().join("pwfile");
            std::fs::write(&file, pw).unwrap();
            let _ = Command::new("chown").arg("postgres").arg(&file).status();
            args.push("--auth-host=scram-sha-256".into());
            args.push(format!("--pwfile={}", file.display()));
        } else {
            args.push("--auth-host=trust".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let init = pg.as_postgres("initdb", &args);
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        pg.up();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .stdout(Stdio::null())
            .output()
            .expect("runuser runs")
    }

    fn up(&self) {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let log = self.dir.path().join("log").display().to_string();
        let o = self.as_postgres("pg_ctl", &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"]);
        assert!(o.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// Stops it the way a crash or a failover does: no shutdown checkpoint, connections cut.
    fn crash(&self) {
        let o = self.as_postgres("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
        assert!(o.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&o.stderr));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.as_postgres("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_going_away_mid_run_loses_and_repeats_nothing() {
    let Some(pg) = PrivatePostgres::start() else { return };
    let n = 400u64;
    let env: Vec<(String, String)> = vec![
        ("ORCH_DATABASE__URL".into(), pg.url()),
        ("ORCH_DEVNET__CHAIN__BLOCKS".into(), n.to_string()),
        ("ORCH_DEVNET__CHAIN__BLOCK_TIME".into(), "0s".into()),
        ("ORCH_ENGINE__POLL_INTERVAL".into(), "20ms".into()),
        ("ORCH_ENGINE__CREATOR_INTERVAL".into(), "20ms".into()),
    ];
    let cfg = examples().join("postgres.toml");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let o = run_with(&cfg, data, &env, &["setup"]);
    assert!(o.status.success(), "setup: {}", String::from_utf8_lossy(&o.stderr));

    let mut c = bin();
    c.args(["run", "--config"]).arg(&cfg).arg("--data-dir").arg(data).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in &env {
        c.env(k, v);
    }
    let mut child = Running(c.spawn().expect("run starts"));
    let before = wait_for_ledger(data, 100, STALL);
    assert!((100..n).contains(&before), "must be mid-run when the database goes away (at {before})");
    pg.crash();
    std::thread::sleep(Duration::from_secs(5));
    assert!(child.0.try_wait().unwrap().is_none(), "the orchestrator must wait for the database, not exit");
    pg.up();
    let after = wait_for_ledger(data, n, STALL);
    terminate(&mut child);
    assert_eq!(after, n, "every block settled after the database came back (had {before} before the outage)");
    assert_eq!(ledger_prefix(data), n);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_wrong_password_is_one_clear_line_without_the_password() {
    let Some(pg) = PrivatePostgres::start_with(Some("right-horse-battery")) else { return };
    let cfg = examples().join("postgres.toml");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://postgres:wrong-staple@127.0.0.1:{}/postgres", pg.port);
    let o = run_with(&cfg, dir.path(), &[("ORCH_DATABASE__URL".into(), url)], &["setup"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a wrong password must fail: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().filter(|l| !l.trim().is_empty()).count(), 1, "one line: {err}");
    assert!(err.contains("password") || err.contains("authentication"), "must say what is wrong: {err}");
    assert!(!err.contains("wrong-staple"), "the password leaked: {err}");
    // And the right one works.
    let url = format!("postgres://postgres:right-horse-battery@127.0.0.1:{}/postgres", pg.port);
    let o = run_with(&cfg, dir.path(), &[("ORCH_DATABASE__URL".into(), url)], &["setup"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `run` on the embedded store with `[queue]` = `provider` reached through a [`CutProxy`]; the
/// proxy cuts every connection for five seconds once 100 blocks have settled (the broker
/// "restarts"). The run must stay up, reconnect (traffic through the proxy after the cut),
/// and settle every block exactly once, in order.
fn queue_outage_mid_run(provider: &str, service_var: &str) {
    let Some(real) = service(service_var) else { return };
    let target = real_addr(&real);
    let proxy = CutProxy::start(target);
    let through = real.replace(&target.to_string(), &proxy.addr().to_string());
    assert_ne!(through, real, "the {service_var} URL names {target}");
    queue_outage_through(provider, &proxy, through);
}

/// [`queue_outage_mid_run`] with the queue at `through`, an address that reaches the broker
/// only via `proxy`.
fn queue_outage_through(provider: &str, proxy: &CutProxy, through: String) {
    let id = unique();
    let n = 300u64;
    let mut env: Vec<(String, String)> = vec![
        ("ORCH_QUEUE__PROVIDER".into(), provider.into()),
        ("ORCH_DEVNET__CHAIN__BLOCKS".into(), n.to_string()),
        ("ORCH_DEVNET__CHAIN__BLOCK_TIME".into(), "0s".into()),
        ("ORCH_ENGINE__POLL_INTERVAL".into(), "20ms".into()),
        ("ORCH_ENGINE__CREATOR_INTERVAL".into(), "20ms".into()),
        // Ten blocks per proof and settlement, as the example configs run.
        ("ORCH_ENGINE__BATCH_SIZE".into(), "10".into()),
    ];
    let name = format!("outage-{id}");
    match provider {
        "sqs" => {
            env.push(("ORCH_QUEUE__ENDPOINT".into(), through));
            env.push(("ORCH_QUEUE__ACCESS_KEY_ID".into(), "test".into()));
            env.push(("ORCH_QUEUE__SECRET_ACCESS_KEY".into(), "test".into()));
            env.push(("ORCH_QUEUE__QUEUE".into(), name));
        }
        "kafka" => {
            env.push(("ORCH_QUEUE__BROKERS".into(), format!("[\"{through}\"]")));
            env.push(("ORCH_QUEUE__TOPIC".into(), name.clone()));
            env.push(("ORCH_QUEUE__GROUP".into(), name));
        }
        _ => {
            env.push(("ORCH_QUEUE__URL".into(), through));
            env.push(("ORCH_QUEUE__QUEUE".into(), name));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let setup = run_with_env(data, &env, &["setup"]);
    assert!(setup.status.success(), "{provider}: setup failed: {}", String::from_utf8_lossy(&setup.stderr));

    let mut c = bin();
    c.args(["run", "--data-dir"]).arg(data).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in &env {
        c.env(k, v);
    }
    let mut child = Running(c.spawn().expect("run starts"));
    let before = wait_for_ledger(data, 100, STALL);
    assert!((100..n).contains(&before), "{provider}: must be mid-run when the broker goes away (at {before})");
    proxy.cut();
    std::thread::sleep(Duration::from_secs(5));
    assert!(child.0.try_wait().unwrap().is_none(), "{provider}: the orchestrator must ride out the outage, not exit");
    let during = proxy.bytes();
    proxy.restore();
    let after = wait_for_ledger(data, n, STALL);
    // Done settling is not enough: the queue must be in use again, not silently abandoned.
    let start = Instant::now();
    while proxy.bytes() == during && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let reconnected = proxy.bytes() > during;
    terminate(&mut child);
    assert_eq!(after, n, "{provider}: every block settled after the outage (had {before} before it)");
    assert_eq!(ledger_prefix(data), n, "{provider}: nothing applied twice");
    assert!(reconnected, "{provider}: no traffic reached the broker after the outage ended");
}

/// `host:port` of a service URL (`scheme://[user@]host:port[/…]` or a bare `host:port`).
fn real_addr(url: &str) -> std::net::SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = host_port.split(',').next().unwrap();
    host_port.parse().unwrap_or_else(|e| panic!("{url}: expected an IP:port service address ({e})"))
}

/// The binary with only environment configuration (embedded store, devnet).
fn run_with_env(data: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let mut c = bin();
    c.args(args).arg("--data-dir").arg(data);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("runs")
}

#[cfg(feature = "redis")]
#[test]
fn redis_connection_cut_mid_run_loses_and_repeats_nothing() {
    queue_outage_mid_run("redis", "ORCH_TEST_REDIS_URL");
}

#[cfg(feature = "rabbit")]
#[test]
fn rabbit_connection_cut_mid_run_loses_and_repeats_nothing() {
    queue_outage_mid_run("rabbit", "ORCH_TEST_AMQP_URL");
}

#[cfg(feature = "sqs")]
#[test]
fn sqs_connection_cut_mid_run_loses_and_repeats_nothing() {
    queue_outage_mid_run("sqs", "ORCH_TEST_AWS_ENDPOINT");
}

/// Kafka clients connect to the address the broker advertises, not the bootstrap one: a tansu
/// of this test (in memory) advertises the proxy in front of it, so every connection, the
/// group coordinator's included, goes through the proxy and is cut.
#[cfg(feature = "kafka")]
#[test]
fn kafka_connection_cut_mid_run_loses_and_repeats_nothing() {
    let Some(tansu) = service("ORCH_TEST_TANSU_BIN") else { return };
    let broker = orch_testkit::tansu::free_addr();
    let proxy = CutProxy::start(broker);
    let _tansu = orch_testkit::tansu::PrivateTansu::start(&tansu, broker, proxy.addr());
    queue_outage_through("kafka", &proxy, proxy.addr().to_string());
}
