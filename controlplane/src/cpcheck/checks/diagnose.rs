//! `diagnose`: every known failure signature (`crate::diagnose`) the
//! components' journals show since each unit's current start (at most
//! `--journal-since` back), even while the units are up. WARN, never FAIL:
//! the checks that fail (`host.unit`, `health`) carry the cause themselves.

use super::*;
use crate::diagnose::Signature;

/// The group's checks, in report order: one per signature.
pub const CHECKS: &[Def] = &[Def { id: "diagnose", title: |i| signature(i).title.to_string(), each: Each::Signature, run: Run::Host(seen) }];

fn signature(i: Item) -> &'static Signature {
    match i {
        Item::Signature(s) => s,
        other => unreachable!("a signature check got {other:?}"),
    }
}

fn seen(_: &Ctx, h: &Probe, i: Item) -> Finding {
    let s = signature(i);
    let (mut found, mut unread) = (Vec::new(), Vec::new());
    for c in s.components {
        match counted_lines(h, *c) {
            Ok(lines) => found.extend(crate::diagnose::causes(*c, &lines).into_iter().filter(|x| x.id == s.id)),
            Err(e) => unread.push(format!("{c}: {e}")),
        }
    }
    let whose = s.components.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
    if let Some(first) = found.first() {
        let lines: Vec<String> = found.iter().map(|f| f.line.clone()).collect();
        let what = found.iter().map(|f| format!("{}: {}", f.component, f.cause)).collect::<Vec<_>>().join("; ");
        return Finding::warn(what, first.fix.clone()).with_journal(&lines);
    }
    if !unread.is_empty() {
        return Finding::skip(format!("the journal could not be read: {}", unread.join("; ")));
    }
    Finding::pass(format!("not in the journal of {whose} since each started"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpcheck::Status;

    fn at(t: u64) -> String {
        ::time::OffsetDateTime::from_unix_timestamp(t as i64).unwrap().format(::time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+0000")).unwrap()
    }

    /// What a unit said before its current start no longer counts once it
    /// runs again (fixed and restarted); while it is down, it all counts.
    #[test]
    fn lines_of_a_running_units_older_processes_no_longer_count() {
        let sig = crate::diagnose::signature("etcd-unreachable").unwrap();
        let mut h = Probe::default();
        let line = |t: u64| {
            // Before the current start, the old process (311); after, the current one (400).
            let pid = if t < 1_800_000_000 { 311 } else { 400 };
            format!("{} server kube-apiserver[{pid}]: W1202 clientconn.go:1223] grpc: addrConn.createTransport failed to connect. Err :connection error: desc = \"transport: Error while dialing dial tcp 127.0.0.1:2379: connect: connection refused\"", at(t))
        };
        let u = h.units.entry(APISERVER.unit().to_string()).or_default();
        u.active = ActiveState::Active;
        u.active_enter_unix = 1_800_000_000;
        u.main_pid = 400;
        u.main_pid = 400;
        u.signature_lines = Ok(vec![line(1_799_999_990)]);
        let f = seen(&Ctx::for_tests(false), &h, Item::Signature(sig));
        assert_eq!(f.status, Status::Pass, "{f:?}");
        h.units.get_mut(APISERVER.unit()).unwrap().signature_lines = Ok(vec![line(1_799_999_990), line(1_800_000_003)]);
        let f = seen(&Ctx::for_tests(false), &h, Item::Signature(sig));
        assert_eq!((f.status, f.detail.as_str()), (Status::Warn, "kube-apiserver: etcd does not answer at 127.0.0.1:2379 (--etcd-servers): connection refused"));
        assert_eq!(f.journal.len(), 1);
        // Down: every line read counts.
        let u = h.units.get_mut(APISERVER.unit()).unwrap();
        u.active = ActiveState::Failed;
        u.signature_lines = Ok(vec![line(1_799_999_990)]);
        assert_eq!(seen(&Ctx::for_tests(false), &h, Item::Signature(sig)).status, Status::Warn);
        // A journal that could not be read is said, never a pass.
        h.units.get_mut(APISERVER.unit()).unwrap().signature_lines = Err("journalctl failed (exit 1)".into());
        let f = seen(&Ctx::for_tests(false), &h, Item::Signature(sig));
        assert!(f.status == Status::Skip && f.detail.contains("journalctl failed (exit 1)"), "{f:?}");
    }
}
