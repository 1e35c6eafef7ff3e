//! `ports`: each component on its secure port (its unit's main process holds the socket), etcd's client port on loopback only, no plain-HTTP ports.

use super::*;

/// The group's checks, in report order.
pub const CHECKS: &[Def] = &[
    Def { id: "ports", title: |i| format!("{} listens on its secure port", i.component()), each: Each::Component, run: Run::Host(serving) },
    Def {
        id: "ports.etcd-loopback",
        title: |_| format!("etcd's client port {} is bound to loopback only", crate::model::etcd_endpoint().port),
        each: Each::One,
        run: Run::Host(etcd_loopback),
    },
    Def { id: "ports.insecure", title: |_| "no insecure (plain HTTP) ports".into(), each: Each::One, run: Run::Host(insecure) },
];

/// `ADDR:PORT`, IPv6 in brackets.
fn endpoint(addr: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

fn serving(_: &Ctx, h: &Probe, i: Item) -> Finding {
    let c = i.component();
    let port = serving_port(Some(h), c);
    let here: Vec<_> = h.listeners.iter().filter(|l| l.port == port).collect();
    if here.is_empty() {
        return Finding::fail(format!("nothing listens on {port}"), format!("systemctl start {c}; journalctl -u {c}"));
    }
    // Whose socket it is, by inode against the unit's main process: never
    // by a process name, which anyone can choose.
    match here.iter().find(|l| !l.held_by(c.unit())) {
        Some(l) => Finding::fail(format!("{port} is held by {}, not {c}", l.who()), format!("stop that process, then systemctl restart {c}")),
        None => {
            let pid = h.units.get(c.unit()).map(|u| u.main_pid).unwrap_or(0);
            Finding::pass(format!("{} held by {} (pid {pid})", here.iter().map(|l| endpoint(l.addr, port)).collect::<Vec<_>>().join(", "), c.unit()))
        }
    }
}

fn etcd_loopback(_: &Ctx, h: &Probe, _: Item) -> Finding {
    let etcd = crate::model::etcd_endpoint();
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
}

fn insecure(_: &Ctx, h: &Probe, _: Item) -> Finding {
    // Each component's plain-HTTP port of older releases (the manifests'
    // --port, else its default), and whether it is open.
    let ports: Vec<(u16, Component)> = Component::ALL.iter().filter_map(|c| c.spec().insecure_port.map(|p| (p, *c))).collect();
    // Once per port (a port open on IPv4 and IPv6 is one finding).
    let mut open: Vec<String> = h.listeners.iter().filter(|l| ports.iter().any(|(p, _)| *p == l.port)).map(|l| format!("{} ({})", l.port, l.who())).collect();
    open.sort();
    open.dedup();
    let shown: Vec<String> = ports.iter().map(|(p, _)| p.to_string()).collect();
    if open.is_empty() {
        Finding::pass(format!("{} closed", shown.join(" and ")))
    } else {
        let who: Vec<&str> = ports.iter().map(|(_, c)| c.name()).collect();
        Finding::warn(format!("plain-HTTP ports open: {}", open.join(", ")), format!("add --port=0 to {} (older releases open these by default)", who.join(" and ")))
    }
}
