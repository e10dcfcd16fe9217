//! Printing: JSON for machines, aligned text for people.

use std::io::Write;

use serde::Serialize;

/// Writes text to stdout. A closed pipe (`orchestrator jobs list | head`) ends the process
/// quietly, as for any Unix tool, instead of panicking like `println!` would.
pub(crate) fn text(s: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints one line on stdout.
pub(crate) fn line(s: impl AsRef<str>) {
    text(&format!("{}\n", s.as_ref()));
}

/// Prints one JSON document on stdout.
pub(crate) fn json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    line(serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints rows as aligned columns.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        line(parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}
