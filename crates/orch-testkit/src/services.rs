//! Where the tests against live services find them: one environment variable per service
//! (`ORCH_TEST_POSTGRES_URL`, `ORCH_TEST_KAFKA_BROKERS`, `ORCH_TEST_TANSU_BIN`, …, exported by
//! `scripts/services.sh`). Without it a test skips with the reason printed — unless
//! [`REQUIRE_SERVICES`] is set (CI sets it), where a missing service fails the test instead,
//! so a CI run never passes by skipping.

/// When set (to anything), a missing service fails the test instead of skipping it.
pub const REQUIRE_SERVICES: &str = "ORCH_REQUIRE_SERVICES";

/// The value of `var` (a service URL, a broker list, a binary path), or `None` after printing
/// why the calling test skips. An empty or blank value counts as unset.
///
/// # Panics
///
/// When `var` is unset and [`REQUIRE_SERVICES`] is set.
///
/// ```
/// fn a_redis_test() {
///     let Some(url) = orch_testkit::services::env_or_skip("ORCH_TEST_REDIS_URL") else { return };
///     // … connect to `url` …
/// #   let _ = url;
/// }
/// ```
pub fn env_or_skip(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            skip(&format!("{var} is not set (scripts/services.sh exports it)"));
            None
        }
    }
}

/// Prints why the calling test skips; panics with `reason` instead when
/// [`REQUIRE_SERVICES`] is set.
///
/// # Panics
///
/// When [`REQUIRE_SERVICES`] is set.
pub fn skip(reason: &str) {
    if std::env::var_os(REQUIRE_SERVICES).is_some() {
        panic!("{reason}, but {REQUIRE_SERVICES} is set: run `source scripts/services.sh` first");
    }
    // libtest (and nextest) name a test's thread after the test.
    let thread = std::thread::current();
    match thread.name().filter(|n| *n != "main") {
        Some(test) => eprintln!("skipping {test}: {reason}"),
        None => eprintln!("skipping: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reads variables no other test sets; never sets any (tests share the process).
    #[test]
    fn a_set_variable_is_returned_as_is() {
        let path = std::env::var("PATH").expect("PATH is set");
        assert_eq!(env_or_skip("PATH"), Some(path));
    }

    #[test]
    fn an_unset_variable_skips_or_fails_as_required() {
        let var = "ORCH_TEST_SERVICES_NEVER_SET_BY_ANYONE";
        if std::env::var_os(REQUIRE_SERVICES).is_some() {
            let e = std::panic::catch_unwind(|| env_or_skip(var)).unwrap_err();
            let text = e.downcast_ref::<String>().expect("a formatted panic message");
            assert!(text.contains(var) && text.contains(REQUIRE_SERVICES), "{text}");
        } else {
            assert_eq!(env_or_skip(var), None);
        }
    }
}
