//! The local etcd member: its /health (bash's /dev/tcp: a server may have
//! no HTTP client) and, when asked, its member list through the v3 gateway.
//! Both answers are server text: base64 on the wire, escaped when shown.

use super::{b64_text, malformed, Probe, ProbeError, Request, Tag};

pub(crate) const TAGS: &[Tag] = &[Tag::Etcd, Tag::EtcdMembers];

pub(crate) fn script(req: &Request) -> String {
    let etcd = crate::model::etcd_endpoint();
    let mut s = String::new();
    if req.etcd_and_addresses {
        // etcd 3.4 answers `"health":"false"` when a read through raft takes
        // over a second, which a loaded server sees now and then: ask up to
        // three times, a second apart, in the background. A refused
        // connection is a verdict at once.
        s.push_str(&super::background(
            "etcd",
            &format!(
                "for i in 1 2 3; do \
                   e=$(timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port} && printf \"GET /health HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3 | tail -n 1' 2>&1 | tr -d '\\r\\n'); \
                   case \"$e\" in *'\"health\":\"false\"'*) [ $i = 3 ] || sleep 1 ;; *) break ;; esac; \
                 done; echo \"etcd${{T}}$(printf '%s' \"$e\" | base64 -w0)\"",
                host = etcd.host,
                port = etcd.port,
            ),
        ));
    }
    if req.etcd_members {
        s.push_str(&super::background(
            "etcdmembers",
            &format!(
                "m=$(timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port} && printf \"POST /v3/cluster/member/list HTTP/1.0\\r\\nContent-Type: application/json\\r\\nContent-Length: 2\\r\\n\\r\\n{{}}\" >&3 && cat <&3 | tail -n 1' 2>&1 | tr -d '\\r\\n'); echo \"etcdmembers${{T}}$(printf '%s' \"$m\" | base64 -w0)\"",
                host = etcd.host,
                port = etcd.port,
            ),
        ));
    }
    s
}

pub(crate) fn parse(tag: Tag, f: &[&str], p: &mut Probe) -> Result<(), ProbeError> {
    match (tag, f) {
        (Tag::Etcd, [b]) => p.etcd_health = b64_text(tag, b)?,
        (Tag::EtcdMembers, [b]) => p.etcd_members = b64_text(tag, b)?,
        (t, f) => return Err(malformed(t, format!("{} fields", f.len()))),
    }
    Ok(())
}
