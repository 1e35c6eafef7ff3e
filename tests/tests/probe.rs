//! The probe's script and its parser agree: on a real server prepared so
//! that every fact fires, the set of tags the script emits is the set the
//! parser reads, and every reply parses (the failing one as the error it
//! reports). `cargo xtask probe-reply` records these replies for the unit
//! tests.

use std::collections::BTreeSet;

use controlplane::remote::probe::{self, Probe, ProbeError, Tag};
use e2e::probe_bed::{replies, tags};

#[test]
fn the_script_emits_every_tag_the_parser_reads_and_no_other() {
    let bed = e2e::bootstrapped("probetags");
    let r = replies(&bed);
    let emitted: BTreeSet<String> = r.all().iter().flat_map(|x| tags(x)).collect();
    let read: BTreeSet<String> = Tag::ALL.iter().map(|t| t.as_str().to_string()).collect();
    let unread: Vec<&String> = emitted.difference(&read).collect();
    let never: Vec<&String> = read.difference(&emitted).collect();
    assert!(unread.is_empty(), "the script emits tags the parser does not read: {unread:?}");
    assert!(never.is_empty(), "the parser reads tags no prepared server made the script emit (remove them, or prepare the bed so they fire): {never:?}");
    for (name, reply) in [("bootstrap", &r.bootstrap), ("cpcheck", &r.cpcheck)] {
        let mut p = Probe::default();
        probe::parse(reply, &mut p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!p.files.is_empty() && !p.units.is_empty(), "{name}: {p:?}");
    }
    let mut p = Probe::default();
    match probe::parse(&r.failing, &mut p) {
        Err(ProbeError::Failed { command, .. }) => assert_eq!(command, "systemctl show"),
        other => panic!("a failing systemctl is an error, not {other:?}"),
    }
    assert_eq!(p.missing, ["flock"], "the command taken away is reported missing");
}
