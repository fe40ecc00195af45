//! URLs as etcd takes them (`--initial-advertise-peer-urls`, `--endpoints`,
//! an apiserver's `--etcd-servers`), parsed into what to dial and which name
//! the server's certificate must have.

use rustls::pki_types::ServerName;
use tonic::transport::Uri;

use crate::UrlError;

/// Where one URL leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dial {
    /// A TCP address; `host` is a name or an IP address without brackets.
    Tcp { host: String, port: u16 },
    /// A unix socket file.
    Unix { path: String },
}

/// One parsed URL: `http://host:port`, `https://host:port`, `unix://path`
/// or `unixs://path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    url: String,
    dial: Dial,
    server_name: Option<ServerName<'static>>,
}

impl Target {
    /// Parses one URL. The scheme is case-insensitive; http and https
    /// default to ports 80 and 443. etcd names a unix socket file by the
    /// URL's host, port included (`unix://etcd.sock:2379`), or by its path
    /// (`unix:///abs/path`).
    ///
    /// For https the server name is the host: an IP address (IPv6 without
    /// its brackets) is checked against the certificate's IP SANs and sent
    /// without SNI, a DNS name against its DNS SANs and sent as SNI. For
    /// unixs it is the socket's host without the port.
    pub fn parse(url: &str) -> Result<Target, UrlError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| UrlError::new(url, "expected scheme://host:port"))?;
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "unix" | "unixs" => {
                let path = match rest.split_once('/') {
                    Some(("", path)) => format!("/{path}"),
                    Some((host, _)) => host.to_string(),
                    None => rest.to_string(),
                };
                if path.is_empty() || path == "/" {
                    return Err(UrlError::new(url, "no socket path"));
                }
                let server_name = if scheme == "unixs" {
                    let host = path.rsplit_once(':').map_or(path.as_str(), |(h, _)| h);
                    Some(server_name(url, host)?)
                } else {
                    None
                };
                Ok(Target {
                    url: url.to_string(),
                    dial: Dial::Unix { path },
                    server_name,
                })
            }
            "http" | "https" => {
                let uri: Uri = url.parse().map_err(|e| UrlError::new(url, e))?;
                let host = uri
                    .host()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| UrlError::new(url, "no host"))?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let https = scheme == "https";
                let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
                let server_name = if https {
                    Some(server_name(url, host)?)
                } else {
                    None
                };
                Ok(Target {
                    url: url.to_string(),
                    dial: Dial::Tcp {
                        host: host.to_string(),
                        port,
                    },
                    server_name,
                })
            }
            other => Err(UrlError::new(url, format!("unsupported scheme {other:?}"))),
        }
    }

    /// Parses a list of URLs separated by commas (etcd's way of giving a
    /// member several); at least one.
    pub fn parse_list(urls: &str) -> Result<Vec<Target>, UrlError> {
        let targets = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(Target::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if targets.is_empty() {
            return Err(UrlError::new(urls, "no URL"));
        }
        Ok(targets)
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn dial(&self) -> &Dial {
        &self.dial
    }

    /// The name the server certificate must match; `Some` exactly for the
    /// TLS schemes.
    pub fn server_name(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }

    pub fn uses_tls(&self) -> bool {
        self.server_name.is_some()
    }

    /// `host:port` (`[v6]:port`), what requests name as their authority;
    /// `localhost` for a unix socket, as grpc-go says.
    pub fn authority(&self) -> String {
        match &self.dial {
            Dial::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Dial::Tcp { host, port } => format!("{host}:{port}"),
            Dial::Unix { .. } => "localhost".to_string(),
        }
    }
}

fn server_name(url: &str, host: &str) -> Result<ServerName<'static>, UrlError> {
    ServerName::try_from(host.to_string()).map_err(|e| UrlError::new(url, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(host: &str) -> Option<ServerName<'static>> {
        Some(ServerName::try_from(host.to_string()).unwrap())
    }

    #[test]
    fn parses_urls() {
        let urls = Target::parse_list("https://127.0.0.1:2380, http://node-b:12380").unwrap();
        assert_eq!(urls.len(), 2);
        assert_eq!(
            urls[0].dial(),
            &Dial::Tcp {
                host: "127.0.0.1".into(),
                port: 2380
            }
        );
        assert_eq!(urls[0].server_name(), name("127.0.0.1").as_ref());
        assert!(matches!(
            urls[0].server_name(),
            Some(ServerName::IpAddress(_))
        ));
        assert_eq!(urls[0].authority(), "127.0.0.1:2380");
        assert_eq!(urls[0].url(), "https://127.0.0.1:2380");
        assert!(!urls[1].uses_tls());
        assert_eq!(urls[1].authority(), "node-b:12380");

        let v6 = Target::parse("HTTPS://[::1]:2380").unwrap();
        assert_eq!(
            v6.dial(),
            &Dial::Tcp {
                host: "::1".into(),
                port: 2380
            }
        );
        assert_eq!(v6.server_name(), name("::1").as_ref());
        assert_eq!(v6.authority(), "[::1]:2380");

        let dns = Target::parse("https://etcd.example:2379").unwrap();
        assert!(matches!(dns.server_name(), Some(ServerName::DnsName(_))));

        let unix = Target::parse("unix://etcd.unix:1").unwrap();
        assert_eq!(
            unix.dial(),
            &Dial::Unix {
                path: "etcd.unix:1".into()
            }
        );
        assert!(!unix.uses_tls());
        assert_eq!(unix.authority(), "localhost");
        let unixs = Target::parse("unixs://localhost:2380").unwrap();
        assert_eq!(unixs.server_name(), name("localhost").as_ref());
        let abs = Target::parse("unix:///tmp/peer.sock").unwrap();
        assert_eq!(
            abs.dial(),
            &Dial::Unix {
                path: "/tmp/peer.sock".into()
            }
        );
        assert_eq!(
            Target::parse("http://h").unwrap().dial(),
            &Dial::Tcp {
                host: "h".into(),
                port: 80
            }
        );
        assert_eq!(
            Target::parse("https://h").unwrap().dial(),
            &Dial::Tcp {
                host: "h".into(),
                port: 443
            }
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            " , ",
            "127.0.0.1:2380",
            "ftp://h:1",
            "http://:80",
            "unix://",
        ] {
            assert!(Target::parse_list(bad).is_err(), "{bad:?}");
        }
        let e = Target::parse_list("").unwrap_err();
        assert_eq!(e.to_string(), "invalid URL \"\": no URL");
        let e = Target::parse("ftp://h:1").unwrap_err();
        assert_eq!(e.reason, "unsupported scheme \"ftp\"");
    }
}
