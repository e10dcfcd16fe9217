//! Runs the binary against the live services `scripts/services.sh` starts, then checks the
//! simulated L1's ledger. Without the services' `ORCH_TEST_*` variables it prints why and
//! skips — unless `ORCH_REQUIRE_SERVICES` is set (CI sets it): then it fails.

use std::process::Command;

use orch_devnet::DevSettlement;

/// The URL in `var`, or `None` (after saying why) when the test must skip.
fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ if std::env::var_os("ORCH_REQUIRE_SERVICES").is_some() => {
            panic!("{var} is not set but ORCH_REQUIRE_SERVICES is: run scripts/services.sh")
        }
        _ => {
            eprintln!("skipping: {var} is not set (scripts/services.sh sets it)");
            None
        }
    }
}

#[test]
fn settles_100_devnet_blocks_on_postgres_redis_and_s3() {
    let (Some(postgres), Some(redis), Some(s3)) =
        (service("ORCH_TEST_POSTGRES_URL"), service("ORCH_TEST_REDIS_URL"), service("ORCH_TEST_AWS_ENDPOINT"))
    else {
        return;
    };
    // Names no other run uses. The schema follows orch-postgres's test naming
    // (`orch_pgtest_<unix secs>_…`), so that crate's tests drop it once it is stale.
    let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let schema = format!("orch_pgtest_{secs}_example_{id}");
    let dir = tempfile::tempdir().unwrap();
    let devnet = dir.path().join("devnet");

    let out = Command::new(env!("CARGO_BIN_EXE_orch-example-custom-binary"))
        .args(["--postgres-url", &postgres, "--postgres-schema", &schema])
        .args(["--redis-url", &redis, "--redis-queue", &format!("example-{id}")])
        .args(["--s3-endpoint", &s3, "--s3-region", "us-east-1", "--s3-bucket", "orch-examples"])
        .args(["--s3-prefix", &format!("run-{id}")])
        .arg("--devnet-dir")
        .arg(&devnet)
        .args(["--blocks", "100"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("the binary starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "binary failed\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("settled blocks 0..=99"), "{stdout}");

    let ledger = DevSettlement::read_ledger(&devnet).expect("the run left a ledger");
    let mut next = 0;
    for u in &ledger.applied {
        assert_eq!(u.range.first(), next, "blocks {} settled out of order or twice", u.range);
        next = u.range.last() + 1;
    }
    assert_eq!(next, 100, "not every block settled");
}
