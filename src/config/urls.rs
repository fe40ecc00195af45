//! URLs, checked as etcd's types.NewURLs and embed.Config.Validate do:
//! listen URLs ([`ListenUrl`]: an IP or localhost to bind, or a unix socket),
//! advertise URLs, and `--initial-cluster`'s name=url pairs.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use super::values::Values;
use super::ConfigError;

/// A URL to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenUrl {
    pub scheme: Scheme,
    /// Host without IPv6 brackets: "localhost", "127.0.0.1", "::1".
    pub host: String,
    /// 0 for a unix URL whose "port" is not a number.
    pub port: u16,
    /// Unix sockets only: etcd listens on the URL's "host:port" text taken
    /// literally as a file name (`unix://localhost:1234` is the file
    /// `localhost:1234` in the working directory).
    pub path: Option<PathBuf>,
    /// The URL as given (trimmed).
    pub original: String,
}

impl ListenUrl {
    /// "host:port" with IPv6 hosts bracketed.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    Unix,
    Unixs,
}

impl Scheme {
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Unixs)
    }

    pub fn is_unix(self) -> bool {
        matches!(self, Scheme::Unix | Scheme::Unixs)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Unix => "unix",
            Scheme::Unixs => "unixs",
        }
    }
}

pub(super) struct UrlParts {
    pub(super) scheme: Scheme,
    /// "host:port" exactly as written (IPv6 in brackets).
    authority: String,
    /// Without brackets.
    pub(super) host: String,
    pub(super) port: String,
    /// Scheme lower-cased + "://" + authority.
    pub(super) normalized: String,
}

pub(super) fn parse_url(raw: &str, label: &str) -> Result<UrlParts, ConfigError> {
    let url = raw.trim();
    let bad = |reason: &str| ConfigError::InvalidUrl {
        flag: label.to_string(),
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let Some((scheme_text, rest)) = url.split_once("://") else {
        return Err(bad("URL scheme must be http, https, unix, or unixs"));
    };
    let scheme = match scheme_text.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        "unix" => Scheme::Unix,
        "unixs" => Scheme::Unixs,
        _ => {
            return Err(ConfigError::UrlScheme {
                scheme: scheme_text.to_string(),
                flag: label.to_string(),
                url: url.to_string(),
            });
        }
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if tail.starts_with('/') {
        return Err(bad("URL must not contain a path"));
    }
    if !tail.is_empty() {
        return Err(bad("URL must not contain a query or fragment"));
    }
    if authority.contains('@') {
        return Err(bad("URL must not contain user information"));
    }
    let Some((host, port)) = split_host_port(authority) else {
        return Err(bad("URL address does not have the form \"host:port\""));
    };
    Ok(UrlParts {
        scheme,
        authority: authority.to_string(),
        host: host.to_string(),
        port: port.to_string(),
        normalized: format!("{}://{authority}", scheme.as_str()),
    })
}

/// Go's net.SplitHostPort.
fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hp.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        if port.contains([':', '[', ']']) {
            return None;
        }
        return Some((host, port));
    }
    let (host, port) = hp.rsplit_once(':')?;
    if host.contains([':', '[', ']']) || port.contains([']', '[']) {
        return None;
    }
    Some((host, port))
}

/// (how to name the source in errors, the comma-separated items); an empty
/// value means the default, as in etcd.
fn url_list(v: &Values, flag: &str) -> (String, Vec<String>) {
    let value = v.string(flag);
    let value = if value.trim().is_empty() {
        Values::default_of(flag).to_string()
    } else {
        value
    };
    let label = v
        .get(flag)
        .map_or_else(|| format!("--{flag}"), |r| r.label(flag));
    let items = if value.is_empty() {
        Vec::new()
    } else {
        value.split(',').map(str::to_string).collect()
    };
    (label, items)
}

pub(super) fn listen_urls(v: &Values, flag: &str) -> Result<Vec<ListenUrl>, ConfigError> {
    let (label, items) = url_list(v, flag);
    let mut out: Vec<ListenUrl> = Vec::new();
    for item in items {
        let p = parse_url(&item, &label)?;
        let bad = |reason: String| ConfigError::InvalidUrl {
            flag: label.clone(),
            url: item.trim().to_string(),
            reason,
        };
        let (port, path) = if p.scheme.is_unix() {
            // The socket file is named by the URL's host:port text.
            (
                p.port.parse().unwrap_or(0),
                Some(PathBuf::from(&p.authority)),
            )
        } else {
            if p.host != "localhost" && p.host.parse::<IpAddr>().is_err() {
                return Err(bad(format!(
                    "expected IP in URL for binding ({})",
                    item.trim()
                )));
            }
            let port = p
                .port
                .parse::<u16>()
                .map_err(|_| bad(format!("invalid port {:?}", p.port)))?;
            (port, None)
        };
        let url = ListenUrl {
            scheme: p.scheme,
            host: p.host,
            port,
            path,
            original: item.trim().to_string(),
        };
        if !out.iter().any(|o| o.original == url.original) {
            out.push(url);
        }
    }
    Ok(out)
}

pub(super) fn advertise_urls(v: &Values, flag: &str) -> Result<Vec<String>, ConfigError> {
    let (label, items) = url_list(v, flag);
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let p = parse_url(&item, &label)?;
        let bad = |reason: String| ConfigError::InvalidUrl {
            flag: label.clone(),
            url: item.trim().to_string(),
            reason,
        };
        if p.host.is_empty() {
            return Err(bad("must be \"host:port\" (unexpected empty host)".into()));
        }
        if !p.scheme.is_unix() && p.port.parse::<u16>().is_err() {
            return Err(bad(format!("invalid port {:?}", p.port)));
        }
        if !out.contains(&p.normalized) {
            out.push(p.normalized);
        }
    }
    Ok(out)
}

pub(super) fn initial_cluster(
    v: &Values,
    name: &str,
    advertise_peer_urls: &[String],
) -> Result<Vec<(String, String)>, ConfigError> {
    let raw = v.string("initial-cluster");
    // Like etcd: the default value stands for "this member alone".
    if raw == Values::default_of("initial-cluster") {
        return Ok(advertise_peer_urls
            .iter()
            .map(|u| (name.to_string(), u.clone()))
            .collect());
    }
    let label = v.get("initial-cluster").map_or_else(
        || "--initial-cluster".to_string(),
        |r| r.label("initial-cluster"),
    );
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    // etcd's format: name=url pairs, commas between; a name may repeat.
    for item in raw.split(',').filter(|s| !s.is_empty()) {
        let (member, url) = item.split_once('=').unwrap_or((item, ""));
        let url = parse_url(url, &label)?.normalized;
        if !seen.insert(url.clone()) {
            return Err(ConfigError::Invalid(format!(
                "initial cluster {raw} has duplicate url"
            )));
        }
        out.push((member.to_string(), url));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn urls_are_checked_like_etcd() {
        assert_eq!(
            err(&[
                "--listen-client-urls",
                "ftp://x:1",
                "--advertise-client-urls",
                "http://x:1"
            ]),
            "unexpected URL scheme \"ftp\" in --listen-client-urls \"ftp://x:1\""
        );
        let e = err(&[
            "--listen-client-urls",
            "http://127.0.0.1:2379/v3",
            "--advertise-client-urls",
            "http://127.0.0.1:2379",
        ]);
        assert_eq!(
            e,
            "invalid URL \"http://127.0.0.1:2379/v3\" in --listen-client-urls: URL must not contain a path"
        );
        let e = err(&["--listen-peer-urls", "http://127.0.0.1"]);
        assert!(e.contains("does not have the form \"host:port\""), "{e}");
        let e = err(&["--listen-peer-urls", "http://example.com:2380"]);
        assert!(e.contains("expected IP in URL for binding"), "{e}");
        assert_eq!(
            err(&["--listen-client-urls", "http://127.0.0.1:2379"]),
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
        );

        let c = cfg(&[
            "--listen-client-urls",
            "http://[::1]:2379, https://0.0.0.0:2379,unix://localhost:1234,unixs://etcd.sock:0",
            "--advertise-client-urls",
            "http://[::1]:2379",
        ]);
        let l = &c.listen_client_urls;
        assert_eq!((l[0].host.as_str(), l[0].port), ("::1", 2379));
        assert_eq!(l[0].host_port(), "[::1]:2379");
        assert_eq!(
            (l[1].scheme, l[1].host.as_str()),
            (Scheme::Https, "0.0.0.0")
        );
        assert_eq!(l[2].scheme, Scheme::Unix);
        assert_eq!(l[2].path, Some(PathBuf::from("localhost:1234")));
        assert_eq!(l[3].scheme, Scheme::Unixs);
        assert_eq!(l[3].path, Some(PathBuf::from("etcd.sock:0")));
    }

    #[test]
    fn initial_cluster_parsing() {
        let c = cfg(&[
            "--name",
            "infra1",
            "--initial-advertise-peer-urls",
            "http://10.0.0.1:2380,http://10.0.0.11:2380",
            "--initial-cluster",
            "infra0=http://10.0.0.0:2380,infra1=http://10.0.0.1:2380,infra1=http://10.0.0.11:2380,,infra2=http://10.0.0.2:2380",
        ]);
        assert_eq!(
            c.initial_cluster,
            [
                ("infra0", "http://10.0.0.0:2380"),
                ("infra1", "http://10.0.0.1:2380"),
                ("infra1", "http://10.0.0.11:2380"),
                ("infra2", "http://10.0.0.2:2380"),
            ]
            .map(|(n, u)| (n.to_string(), u.to_string()))
        );
        assert_eq!(
            err(&["--initial-cluster", "default=http://localhost:2380,b=http://localhost:2380"]),
            "initial cluster default=http://localhost:2380,b=http://localhost:2380 has duplicate url"
        );
        let e = err(&["--initial-cluster", "default=localhost:2380"]);
        assert!(e.contains("--initial-cluster"), "{e}");
    }
}
