//! `ports`: each component on its secure port, etcd's client port on loopback only, no plain-HTTP ports.

use super::*;

/// The checks of this group, in report order.
pub fn checks() -> Vec<Check> {
    let mut v = Vec::new();
    for u in UNITS {
        let c = u.component;
        let f = u.file_name;
        v.push(host_check(&format!("ports.{c}"), "ports", &format!("{c} listens on its secure port"), move |_, h| {
            let port = serving_port(Some(h), c);
            let here: Vec<_> = h.listeners.iter().filter(|l| l.port == port).collect();
            if here.is_empty() {
                return Finding::fail(format!("nothing listens on {port}"), format!("systemctl start {c}; journalctl -u {c}"));
            }
            // Whose socket it is, by inode against the unit's main process:
            // never by a process name, which anyone can choose.
            match here.iter().find(|l| !l.held_by(f)) {
                Some(l) => Finding::fail(format!("{port} is held by {}, not {c}", l.who()), format!("stop that process, then systemctl restart {c}")),
                None => {
                    let pid = h.units.get(f).map(|u| u.main_pid).unwrap_or(0);
                    Finding::pass(format!("{} held by {f} (pid {pid})", here.iter().map(|l| endpoint(l.addr, port)).collect::<Vec<_>>().join(", ")))
                }
            }
        }));
    }
    let etcd = crate::model::etcd_endpoint();
    v.push(host_check("ports.etcd-loopback", "ports", &format!("etcd's client port {} is bound to loopback only", etcd.port), move |_, h| {
        let l: Vec<_> = h.listeners.iter().filter(|l| l.port == etcd.port).collect();
        if l.is_empty() {
            return Finding::fail(format!("nothing listens on {}", etcd.port), "systemctl start etcd");
        }
        let exposed: Vec<String> = l.iter().filter(|x| !x.addr.is_loopback()).map(|x| x.addr.to_string()).collect();
        if exposed.is_empty() {
            Finding::pass(format!("{} on loopback only", etcd.port))
        } else {
            Finding::fail(format!("{} is also bound to {}", etcd.port, exposed.join(", ")), format!("set etcd's --listen-client-urls to http://127.0.0.1:{}", etcd.port))
        }
    }));
    v.push(host_check("ports.insecure", "ports", "no insecure (plain HTTP) ports", |_, h| {
        // Each component's plain-HTTP port of older releases (the manifests'
        // --port, else its default), and whether it is open.
        let ports: Vec<(u16, &str)> = UNITS.iter().filter_map(|u| u.insecure_port.map(|p| (p, u.component))).collect();
        // Once per port (a port open on IPv4 and IPv6 is one finding).
        let mut open: Vec<String> = h.listeners.iter().filter(|l| ports.iter().any(|(p, _)| *p == l.port)).map(|l| format!("{} ({})", l.port, l.who())).collect();
        open.sort();
        open.dedup();
        let shown: Vec<String> = ports.iter().map(|(p, _)| p.to_string()).collect();
        if open.is_empty() {
            Finding::pass(format!("{} closed", shown.join(" and ")))
        } else {
            let who: Vec<&str> = ports.iter().map(|(_, c)| *c).collect();
            Finding::warn(format!("plain-HTTP ports open: {}", open.join(", ")), format!("add --port=0 to {} (older releases open these by default)", who.join(" and ")))
        }
    }));

    v
}

/// `ADDR:PORT`, IPv6 in brackets.
fn endpoint(addr: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}
