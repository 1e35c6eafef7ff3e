//! A bed of N servers: each a bed of its own (netns, overlay, systemd, sshd)
//! with its own hostname (`server-1`…), all on one bridge (10.240.K.0/24,
//! the host at .1, server i at .(10+i)): reachable from the jumpbox and from
//! each other, not beyond. etcd is stacked: one Debian etcd member per
//! server, peers over the bridge, each apiserver using its local member on
//! 127.0.0.1:2379 as the guide's unit says. One client key, one known_hosts
//! and one set of assets whose serving certificate names every server.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::bed::{base_dir, claim_slot, phase, prerequisites, run, Bed, Member};

#[derive(Debug, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub slot: u8,
    pub bridge: String,
    pub host_address: Ipv4Addr,
    pub dir: PathBuf,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub assets: PathBuf,
    pub kubeconfig: PathBuf,
    pub servers: Vec<Bed>,
    /// Tear down on drop (tests); `bed up` keeps it running.
    #[serde(skip)]
    pub teardown_on_drop: bool,
}

/// /etc/default/etcd for one member of a stacked cluster. Heartbeat and
/// election timeouts suit three members sharing two busy cores (etcd's
/// defaults, 100 ms and 1 s, make a loaded machine elect leaders all day).
pub fn etcd_config(name: &str, address: Ipv4Addr, servers: &[(String, Ipv4Addr)], token: &str) -> String {
    let cluster: Vec<String> = servers.iter().map(|(n, a)| format!("{n}=http://{a}:2380")).collect();
    format!(
        "# Written by the test bed: a stacked etcd member of the bed's cluster.\n\
         ETCD_NAME=\"{name}\"\n\
         ETCD_DATA_DIR=\"/var/lib/etcd/default\"\n\
         ETCD_LISTEN_PEER_URLS=\"http://{address}:2380\"\n\
         ETCD_INITIAL_ADVERTISE_PEER_URLS=\"http://{address}:2380\"\n\
         ETCD_LISTEN_CLIENT_URLS=\"http://127.0.0.1:2379\"\n\
         ETCD_ADVERTISE_CLIENT_URLS=\"http://127.0.0.1:2379\"\n\
         ETCD_INITIAL_CLUSTER=\"{}\"\n\
         ETCD_INITIAL_CLUSTER_STATE=\"new\"\n\
         ETCD_INITIAL_CLUSTER_TOKEN=\"kcp-bed-{token}\"\n\
         ETCD_HEARTBEAT_INTERVAL=\"300\"\n\
         ETCD_ELECTION_TIMEOUT=\"3000\"\n",
        cluster.join(",")
    )
}

impl Cluster {
    fn state_path(name: &str) -> PathBuf {
        base_dir().join("beds").join(name).join("cluster.json")
    }

    pub fn load(name: &str) -> Result<Option<Cluster>> {
        let p = Self::state_path(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("{}", p.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("{}", p.display())),
        }
    }

    fn save(&self) -> Result<()> {
        std::fs::write(Self::state_path(&self.name), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    /// Brings up `n` servers called `name`.
    pub fn up(name: &str, n: u8) -> Result<Cluster> {
        Self::up_with(name, n, &crate::bed::BedOptions::default())
    }

    /// [`Cluster::up`] with every server's link shaped, or zstd kept.
    pub fn up_with(name: &str, n: u8, options: &crate::bed::BedOptions) -> Result<Cluster> {
        options.check()?;
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || name.is_empty() {
            bail!("bed name `{name}`: use letters, digits and '-'");
        }
        if !(1..=9).contains(&n) {
            bail!("--servers {n}: a bed has 1 to 9 servers");
        }
        if Bed::load(name)?.is_some() || Self::load(name)?.is_some() {
            bail!("bed `{name}` is already up (cargo xtask bed down --name {name})");
        }
        if unsafe { libc::geteuid() } != 0 {
            bail!("the bed needs root (network namespaces, mounts, systemd-nspawn)");
        }
        let (root, k8s_bin) = prerequisites(options)?;
        let dir = base_dir().join("beds").join(name);
        std::fs::create_dir_all(&dir)?;
        let slot = claim_slot(name)?;
        let servers: Vec<(String, Ipv4Addr)> = (1..=n).map(|i| (format!("server-{i}"), Ipv4Addr::new(10, 240, slot, 10 + i))).collect();
        let mut c = Cluster {
            name: name.into(),
            slot,
            bridge: format!("kcpbr{slot}"),
            host_address: Ipv4Addr::new(10, 240, slot, 1),
            key: dir.join("id_ed25519"),
            known_hosts: dir.join("known_hosts"),
            assets: dir.join("assets"),
            kubeconfig: dir.join("assets/admin.kubeconfig"),
            dir: dir.clone(),
            servers: Vec::new(),
            teardown_on_drop: true,
        };
        c.save()?;
        match c.boot(&root, &k8s_bin, &servers, options) {
            Ok(()) => Ok(c),
            Err(e) => {
                let e = c.servers.iter().fold(e, |e, s| s.with_console(e));
                c.teardown();
                c.teardown_on_drop = false;
                Err(e)
            }
        }
    }

    fn boot(&mut self, root: &std::path::Path, k8s_bin: &std::path::Path, servers: &[(String, Ipv4Addr)], options: &crate::bed::BedOptions) -> Result<()> {
        phase("bridge", || {
            run(Command::new("ip").args(["link", "add", &self.bridge, "type", "bridge"]))?;
            run(Command::new("ip").args(["addr", "add", &format!("{}/24", self.host_address), "dev", &self.bridge]))?;
            run(Command::new("ip").args(["link", "set", &self.bridge, "up"])).map(drop)
        })?;
        for (i, (_, address)) in servers.iter().enumerate() {
            let index = i as u8 + 1;
            let bed_dir = self.dir.join(format!("server-{index}"));
            std::fs::create_dir_all(&bed_dir)?;
            let mut bed = Bed {
                name: format!("{}-{index}", self.name),
                slot: self.slot,
                address: *address,
                host_address: self.host_address,
                dir: bed_dir,
                key: self.key.clone(),
                known_hosts: self.known_hosts.clone(),
                assets: self.assets.clone(),
                kubeconfig: self.kubeconfig.clone(),
                pid: 0,
                k8s_bin: k8s_bin.to_path_buf(),
                teardown_on_drop: false,
                member: Some(Member { index, bridge: self.bridge.clone(), servers: servers.to_vec(), shared_dir: self.dir.clone() }),
                options: options.clone(),
            };
            bed.prepare(root)?;
            self.servers.push(bed);
            self.save()?;
        }
        // All boot together: each etcd member waits for its peers' quorum.
        phase("boot systemd on every server", || {
            for s in self.servers.iter_mut() {
                s.spawn()?;
            }
            self.save()?;
            for s in self.servers.iter_mut() {
                s.wait_booted()?;
            }
            Ok(())
        })?;
        phase("wait for the etcd cluster", || {
            for s in &self.servers {
                s.wait_etcd(Duration::from_secs(90))?;
            }
            Ok(())
        })?;
        phase("PKI, kubeconfigs, encryption config", || {
            let names: Vec<(String, std::net::IpAddr)> = self.servers.iter().map(|s| (s.hostname(), s.address.into())).collect();
            crate::pki::generate(&self.assets, &names)?;
            self.servers[0].link_binaries()
        })?;
        self.save()
    }

    pub fn teardown(&mut self) {
        for s in self.servers.iter_mut() {
            s.teardown();
        }
        let _ = run(Command::new("ip").args(["link", "del", &self.bridge]));
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(base_dir().join("slots").join(self.slot.to_string()));
    }

    /// What of the cluster still exists (empty after a clean teardown).
    pub fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.servers.iter().flat_map(|s| s.leftovers()).collect();
        if std::path::Path::new("/sys/class/net").join(&self.bridge).exists() {
            v.push(format!("bridge {}", self.bridge));
        }
        if self.dir.exists() {
            v.push(format!("directory {}", self.dir.display()));
        }
        v
    }

    /// `root@ADDRESS` of every server.
    pub fn dests(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.dest()).collect()
    }

    /// `kubectl bootstrap server` arguments for every server as `user`.
    pub fn bootstrap_args(&self, user: &str) -> Vec<String> {
        let mut v = vec!["server".to_string()];
        v.extend(self.servers.iter().map(|s| format!("{user}@{}", s.address)));
        v.extend(self.servers[0].plugin_ssh_args());
        v.extend(["--assets".into(), self.assets.display().to_string()]);
        v
    }

    /// `kubectl cpcheck` arguments checking every server.
    pub fn cpcheck_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        for s in &self.servers {
            v.extend(["--ssh".to_string(), s.dest()]);
        }
        v.extend(self.servers[0].plugin_ssh_args());
        v.extend(["--kubeconfig".into(), self.kubeconfig.display().to_string()]);
        v
    }

    pub fn env_lines(&self) -> String {
        let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let dests: Vec<String> = self.dests();
        [
            ("BED_NAME", self.name.clone()),
            ("BED_DESTS", dests.join(" ")),
            ("BED_DEST", dests[0].clone()),
            ("BED_KEY", self.key.display().to_string()),
            ("BED_KNOWN_HOSTS", self.known_hosts.display().to_string()),
            ("BED_ASSETS", self.assets.display().to_string()),
            ("BED_KUBECONFIG", self.kubeconfig.display().to_string()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}\n", q(v)))
        .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.teardown_on_drop {
            self.teardown();
        }
    }
}
