//! Health endpoints over SSH tunnels: the apiserver's /livez and /readyz with
//! the kubeconfig's credentials (TLS verified against its CA, for the name the
//! kubeconfig uses), and the controller-manager's and scheduler's /healthz
//! (self-signed serving certificates: not verified, as kubeadm does).

use std::net::{IpAddr, Ipv4Addr};

use crate::ssh::Host;
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

/// The `[-]name failed` lines of a verbose health answer.
pub fn failing_checks(body: &str) -> Vec<String> {
    body.lines().filter(|l| l.starts_with("[-]")).map(|l| l.trim_start_matches("[-]").split(" failed").next().unwrap_or(l).trim().to_string()).collect()
}

/// The address a component's serving port is reached at from the server itself.
pub fn reach_address(bind_address: &str) -> IpAddr {
    match bind_address.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_sub_checks_are_named() {
        let body = "[+]ping ok\n[-]etcd failed: reason withheld\n[+]log ok\n[-]poststarthook/rbac failed: x\nreadyz check failed\n";
        assert_eq!(failing_checks(body), ["etcd", "poststarthook/rbac"]);
        assert_eq!(reach_address("0.0.0.0"), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(reach_address("10.0.0.5").to_string(), "10.0.0.5");
    }
}
