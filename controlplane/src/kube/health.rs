//! Health endpoints over SSH tunnels: the apiserver's /livez and /readyz with
//! the kubeconfig's credentials (TLS verified against its CA, for the name the
//! kubeconfig uses), and the controller-manager's and scheduler's /healthz
//! (self-signed serving certificates: not verified, as kubeadm does).

use std::net::{IpAddr, Ipv4Addr};

use crate::model::overrides::DesiredUnit;
use crate::model::{Component, APISERVER};
use crate::remote::Host;
use crate::Error;

/// A kube client reaching the apiserver on the server's loopback through the
/// SSH connection, verifying TLS for the host the kubeconfig names.
pub async fn api_client(host: &Host, mut config: kube::Config, remote_port: u16) -> Result<kube::Client, Error> {
    let original = config.cluster_url.host().map(|h| h.trim_matches(['[', ']']).to_string());
    let local = host.forward(IpAddr::V4(Ipv4Addr::LOCALHOST), remote_port).await?;
    config.cluster_url = format!("https://127.0.0.1:{local}").parse().expect("valid URL");
    if config.tls_server_name.is_none() {
        config.tls_server_name = original;
    }
    kube::Client::try_from(config).map_err(|e| Error::Input(format!("cannot build an API client: {e}")))
}

/// An anonymous client for a self-signed /healthz on the server's `port`.
pub async fn anonymous_client(host: &Host, addr: IpAddr, port: u16) -> Result<kube::Client, Error> {
    let local = host.forward(addr, port).await?;
    let mut config = kube::Config::new(format!("https://127.0.0.1:{local}").parse().expect("valid URL"));
    config.accept_invalid_certs = true;
    config.connect_timeout = Some(std::time::Duration::from_secs(3));
    config.read_timeout = Some(std::time::Duration::from_secs(5));
    kube::Client::try_from(config).map_err(|e| Error::Input(format!("cannot build a health client: {e}")))
}

/// The certificate chain a TLS server on the server's `addr`:`port`
/// presents for `server_name` (SNI), leaf first, through the SSH
/// connection. Nothing is trusted here: the caller compares the bytes and
/// verifies the chain itself; the handshake's own signatures are checked.
pub async fn served_chain(host: &Host, addr: IpAddr, port: u16, server_name: &str, timeout: std::time::Duration) -> Result<Vec<Vec<u8>>, Error> {
    use rustls::pki_types::ServerName;
    let local = host.forward(addr, port).await?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let seen = std::sync::Arc::new(Capture { chain: std::sync::Mutex::new(Vec::new()), provider: provider.clone() });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Input(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(seen.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string()).map_err(|_| Error::Input(format!("{server_name}: not a TLS server name")))?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, local)).await?;
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await
    };
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => return Err(Error::Server(format!("the TLS handshake with port {port} took longer than {}s", timeout.as_secs()))),
        Ok(Err(e)) => return Err(Error::Server(format!("the TLS handshake with port {port} failed: {e}"))),
        Ok(Ok(_)) => {}
    }
    let chain = seen.chain.lock().expect("not poisoned").clone();
    if chain.is_empty() {
        return Err(Error::Server(format!("port {port} presented no certificate")));
    }
    Ok(chain)
}

/// Records the presented chain and accepts it: what is served is judged
/// by comparing it, not by this handshake.
#[derive(Debug)]
struct Capture {
    chain: std::sync::Mutex<Vec<Vec<u8>>>,
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.to_vec()];
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        *self.chain.lock().expect("not poisoned") = chain;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a component is not healthy yet.
#[derive(Debug, Clone)]
pub struct Unhealthy {
    pub component: Component,
    pub why: String,
}

/// The apiserver's, controller-manager's and scheduler's health endpoints.
pub struct HealthClients {
    pub api: kube::Client,
    pub others: Vec<(Component, kube::Client)>,
}

impl HealthClients {
    /// Opens every tunnel at once, to each unit's serving port and bind
    /// address as `units` (the manifests plus overrides) give them.
    pub async fn open(host: &Host, units: &[DesiredUnit], api_config: kube::Config) -> Result<HealthClients, Error> {
        let port = |c: Component| units.iter().find(|u| u.spec.component == c).map(|u| u.serving_port()).unwrap_or(c.serving_port());
        let others = units.iter().filter(|u| u.spec.component != APISERVER).map(|u| async move {
            let c = anonymous_client(host, reach_address(u.bind_address()), u.serving_port()).await?;
            Ok::<_, Error>((u.spec.component, c))
        });
        let (api, others) = tokio::join!(api_client(host, api_config, port(APISERVER)), futures::future::join_all(others));
        Ok(HealthClients { api: api?, others: others.into_iter().collect::<Result<Vec<_>, Error>>()? })
    }

    /// What is not healthy now (every endpoint asked at once).
    pub async fn check(&self) -> Vec<Unhealthy> {
        let mut bad = Vec::new();
        let (api, others) = tokio::join!(
            futures::future::join_all(["/livez?verbose", "/readyz?verbose"].map(|path| async move { (path, get(&self.api, path).await) })),
            futures::future::join_all(self.others.iter().map(|(c, client)| async move { (*c, get(client, "/healthz").await) }))
        );
        for (path, (status, body)) in api {
            if status != 200 {
                let failing = failing_checks(&body);
                let why = if failing.is_empty() {
                    format!(
                        "{} → {}",
                        path.split('?').next().unwrap_or(path),
                        if status == 0 { crate::output::redact::line(body.lines().next().unwrap_or("")) } else { format!("HTTP {status}") }
                    )
                } else {
                    format!("{} failing: {}", path.split('?').next().unwrap_or(path), failing.join(", "))
                };
                bad.push(Unhealthy { component: APISERVER, why });
                break;
            }
        }
        for (c, (status, body)) in others {
            if status != 200 {
                let why = if status == 0 { crate::output::redact::line(body.lines().next().unwrap_or("")) } else { format!("HTTP {status}") };
                bad.push(Unhealthy { component: c, why: format!("/healthz → {why}") });
            }
        }
        bad
    }
}

/// GET `path`: (HTTP status, body). A connection error is status 0.
pub async fn get(client: &kube::Client, path: &str) -> (u16, String) {
    let req = http::Request::get(path).body(kube::client::Body::empty()).expect("valid request");
    match tokio::time::timeout(std::time::Duration::from_secs(5), client.send(req)).await {
        Ok(Ok(res)) => {
            let status = res.status().as_u16();
            let body = res.into_body().collect_bytes().await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            (status, body)
        }
        Ok(Err(e)) => (0, e.to_string()),
        Err(_) => (0, "timed out".into()),
    }
}

/// The `[-]name failed` lines of a verbose health answer (escaped: the
/// body comes from the server).
pub fn failing_checks(body: &str) -> Vec<String> {
    body.lines().filter(|l| l.starts_with("[-]")).map(|l| crate::output::redact::line(l.trim_start_matches("[-]").split(" failed").next().unwrap_or(l).trim())).collect()
}

/// Is a leader Lease held by a live holder? `now` is the server's clock and
/// Why a Lease shows no live leader: what it shows instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoLiveLeader(pub String);

/// `started` when the component last (re)started there (both seconds since
/// the epoch; `started` 0 when unknown). Live means renewed after that
/// start (a Lease naming a holder that died with the previous process does
/// not count; whole seconds, so one second of margin) and within the
/// Lease's own `leaseDurationSeconds`. Ok: who holds it and how fresh.
pub fn lease_verdict(spec: &k8s_openapi::api::coordination::v1::LeaseSpec, now: f64, started: u64) -> Result<String, NoLiveLeader> {
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Err(NoLiveLeader("nobody holds its Lease".into()));
    }
    let holder = crate::output::redact::line(&holder);
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0.as_millisecond() as f64 / 1000.0) else {
        return Err(NoLiveLeader(format!("its Lease (held by {holder}) was never renewed")));
    };
    let duration = spec.lease_duration_seconds.unwrap_or(15).max(1) as f64;
    if started > 0 && renewed < started as f64 + 1.0 {
        return Err(NoLiveLeader(format!("its Lease names {holder}, last renewed before the component (re)started: a holder that is gone")));
    }
    let age = (now - renewed).max(0.0);
    if age > duration {
        return Err(NoLiveLeader(format!("its Lease was renewed {age:.0}s ago by {holder}, longer ago than its leaseDurationSeconds ({duration:.0})")));
    }
    Ok(format!("held by {holder}, renewed {age:.0}s ago (lease {duration:.0}s)"))
}

/// The address a component's serving port is reached at from the server itself.
pub fn reach_address(bind_address: &str) -> IpAddr {
    match bind_address.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

/// Was `lease` last held by a process of this server (`hostname`, as
/// client-go names holders `HOSTNAME_UUID`) that renewed it before the
/// component last started here (`started`, server seconds)? Then its holder
/// is a process that no longer runs.
pub fn held_by_previous_local_process(lease: &k8s_openapi::api::coordination::v1::Lease, hostname: &str, started: u64) -> bool {
    let Some(spec) = &lease.spec else { return false };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    let renewed = spec.renew_time.as_ref().map(|t| t.0.as_second()).unwrap_or(i64::MAX);
    !hostname.is_empty() && started > 0 && holder.starts_with(&format!("{hostname}_")) && renewed < started as i64
}

/// `lease` released the way client-go releases it on a clean exit: no
/// holder, a one-second duration. Keeps the resourceVersion, so the write
/// fails if anyone changed the Lease since it was read.
pub fn released(mut lease: k8s_openapi::api::coordination::v1::Lease) -> k8s_openapi::api::coordination::v1::Lease {
    if let Some(spec) = lease.spec.as_mut() {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now());
        spec.holder_identity = Some(String::new());
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
    }
    lease
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_live_only_if_renewed_after_the_start_and_within_its_duration() {
        use k8s_openapi::api::coordination::v1::LeaseSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        let at = |s: i64| Some(MicroTime(k8s_openapi::jiff::Timestamp::from_second(s).unwrap()));
        let lease = |renew: i64| LeaseSpec { holder_identity: Some("server_abc".into()), renew_time: at(renew), lease_duration_seconds: Some(15), ..Default::default() };
        assert!(lease_verdict(&lease(1000), 1005.0, 900).unwrap().starts_with("held by server_abc, renewed 5s ago"));
        // Renewed 27 s ago, lease of 15 s: not fresh (the old threshold was 60 s).
        assert!(lease_verdict(&lease(1000), 1027.0, 900).unwrap_err().0.contains("longer ago than its leaseDurationSeconds (15)"));
        // The old process renewed it just before the new one started: a dead holder.
        assert!(lease_verdict(&lease(1000), 1003.0, 1000).unwrap_err().0.contains("a holder that is gone"));
        assert!(lease_verdict(&lease(1002), 1003.0, 1000).is_ok());
        assert!(lease_verdict(&LeaseSpec::default(), 1.0, 0).unwrap_err().0.contains("nobody holds"));
        // Only this server's previous process is released.
        use k8s_openapi::api::coordination::v1::Lease;
        let l = Lease { spec: Some(lease(1000)), ..Default::default() };
        assert!(held_by_previous_local_process(&l, "server", 1001));
        assert!(!held_by_previous_local_process(&l, "server", 999), "renewed after the start: the live process");
        assert!(!held_by_previous_local_process(&l, "server2", 1001), "another server's holder");
        assert!(!held_by_previous_local_process(&l, "", 1001));
        let r = released(l);
        assert_eq!(r.spec.as_ref().unwrap().holder_identity.as_deref(), Some(""));
        assert_eq!(r.spec.as_ref().unwrap().lease_duration_seconds, Some(1));
    }

    #[test]
    fn failing_sub_checks_are_named() {
        let body = "[+]ping ok\n[-]etcd failed: reason withheld\n[+]log ok\n[-]poststarthook/rbac failed: x\nreadyz check failed\n";
        assert_eq!(failing_checks(body), ["etcd", "poststarthook/rbac"]);
        assert_eq!(reach_address("0.0.0.0"), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(reach_address("10.0.0.5").to_string(), "10.0.0.5");
    }
}
