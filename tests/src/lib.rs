//! Helpers for the end-to-end tests: a bed per test, named uniquely so tests
//! run side by side, torn down when the test ends, passes or panics.

use std::sync::atomic::{AtomicU32, Ordering};

pub use testbed::Bed;

/// Brings up a fresh bed or fails the test saying why (never skips).
pub fn bed(label: &str) -> Bed {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("{label}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    match Bed::up(&name) {
        Ok(b) => b,
        Err(e) => panic!("the test bed could not start (needs root, systemd-nspawn, debootstrap; run scripts/install-prereqs.sh): {e:#}"),
    }
}

/// scp a local file to the server as root.
pub fn scp(bed: &Bed, local: &std::path::Path, remote: &str) {
    testbed::run(
        std::process::Command::new("scp")
            .args(["-q"])
            .args(bed.ssh_options())
            .arg(local)
            .arg(format!("{}:{remote}", bed.dest())),
    )
    .unwrap_or_else(|e| panic!("scp {} → {remote}: {e:#}", local.display()));
}
