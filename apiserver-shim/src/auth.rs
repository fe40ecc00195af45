//! Authentication by bearer token or client certificate. Tokens come from
//! --token-auth-file (kube-apiserver's CSV: `token,user,uid[,"group1,group2"]`)
//! or, without it, from one admin token generated into
//! `<data-dir>/admin-token`. With --client-ca-file, a client certificate
//! that chains to it (checked in the TLS handshake) authenticates its
//! subject: the CN is the user, the O's the groups, as kube-apiserver's x509
//! authenticator reads them. Every authenticated user may do everything (no
//! authorization yet).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::Rng;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use x509_parser::certificate::X509CertificateParser;
use x509_parser::nom::Parser;

use crate::route::ResourcePath;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
    #[error("--token-auth-file {0}: line {1}: {2}")]
    Format(PathBuf, usize, String),
    #[error("--token-auth-file {0}: no tokens")]
    Empty(PathBuf),
}

/// The tokens the server accepts, and the one `kubeconfig` prints.
#[derive(Clone, Debug)]
pub struct Tokens {
    users: HashMap<String, User>,
    /// A token of the system:masters group if there is one, else the first.
    admin: String,
}

impl Tokens {
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let text = fs::read(path).map_err(|e| AuthError::Io(path.to_path_buf(), e))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(&text[..]);
        let mut users = HashMap::new();
        let mut first = None;
        let mut admin = None;
        for (i, record) in reader.records().enumerate() {
            let line = i + 1;
            let bad = |why: &str| AuthError::Format(path.to_path_buf(), line, why.to_string());
            let r = record.map_err(|e| bad(&e.to_string()))?;
            if r.len() < 3 {
                return Err(bad("want token,user,uid[,\"groups\"]"));
            }
            let (token, name, uid) = (&r[0], &r[1], &r[2]);
            if token.is_empty() || name.is_empty() {
                return Err(bad("empty token or user name"));
            }
            let groups: Vec<String> = r
                .get(3)
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(String::from)
                .collect();
            if admin.is_none() && groups.iter().any(|g| g == "system:masters") {
                admin = Some(token.to_string());
            }
            first.get_or_insert_with(|| token.to_string());
            users.insert(
                token.to_string(),
                User {
                    name: name.to_string(),
                    uid: uid.to_string(),
                    groups,
                },
            );
        }
        let admin = admin
            .or(first)
            .ok_or_else(|| AuthError::Empty(path.to_path_buf()))?;
        Ok(Self { users, admin })
    }

    /// The generated admin token in `data_dir`, made on first use.
    pub fn generated(data_dir: &Path) -> Result<Self, AuthError> {
        let path = data_dir.join("admin-token");
        let io = |e| AuthError::Io(path.clone(), e);
        fs::create_dir_all(data_dir).map_err(|e| AuthError::Io(data_dir.to_path_buf(), e))?;
        let token: String = {
            let mut rng = rand::rng();
            (0..32)
                .map(|_| format!("{:02x}", rng.random::<u8>()))
                .collect()
        };
        // create_new: whoever writes first (server or `kubeconfig`) wins, and
        // the other reads the same token.
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(token.as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let token = fs::read_to_string(&path).map_err(io)?.trim().to_string();
        let user = User {
            name: "admin".into(),
            uid: "admin".into(),
            groups: vec!["system:masters".into()],
        };
        Ok(Self {
            users: HashMap::from([(token.clone(), user)]),
            admin: token,
        })
    }

    pub fn admin_token(&self) -> &str {
        &self.admin
    }

    /// The user an Authorization header names, if its bearer token is known.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<&User> {
        let value = authorization?.trim();
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.users.get(token.trim())
    }
}

/// POST /apis/authentication.k8s.io/v1/selfsubjectreviews (`kubectl auth
/// whoami`): who the request authenticated as. Served here, beside
/// authentication, rather than as a stored kind.
pub fn is_self_subject_review(path: &ResourcePath) -> bool {
    path.group == "authentication.k8s.io"
        && path.version == "v1"
        && path.resource == "selfsubjectreviews"
        && path.namespace.is_none()
        && path.name.is_none()
}

/// The SelfSubjectReview for `user`, with the group kube-apiserver adds to
/// every authenticated user.
pub fn self_subject_review(user: &User) -> Value {
    let mut groups = user.groups.clone();
    groups.push("system:authenticated".into());
    let mut info = json!({"username": user.name, "groups": groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": info},
    })
}

/// The user a verified client certificate names: CN and O's of its
/// subject. None when it has no CN (kube-apiserver refuses those too).
pub fn certificate_user(cert: &CertificateDer<'_>) -> Option<User> {
    let mut parser = X509CertificateParser::new().with_deep_parse_extensions(false);
    let (_, cert) = parser.parse(cert.as_ref()).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .last()?
        .as_str()
        .ok()?
        .to_string();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    Some(User {
        name,
        uid: String::new(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_names_its_user_by_cn_and_groups_by_o() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "jane");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "dev");
        // A second O: rcgen keeps one attribute per type, so O's OID again.
        params
            .distinguished_name
            .push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 10]), "ops");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let user = certificate_user(cert.der()).unwrap();
        assert_eq!(
            (user.name.as_str(), user.groups),
            ("jane", vec!["dev".to_string(), "ops".into()])
        );
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "dev");
        let cert = params.self_signed(&key).unwrap();
        assert!(certificate_user(cert.der()).is_none(), "no CN, no user");
    }

    #[test]
    fn reads_kube_apiservers_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        fs::write(&path, "t1,jane,u1\nt2,root,u2,\"system:masters,dev\"\n").unwrap();
        let t = Tokens::from_file(&path).unwrap();
        assert_eq!(t.admin_token(), "t2");
        let root = t.authenticate(Some("Bearer t2")).unwrap();
        assert_eq!(root.groups, ["system:masters", "dev"]);
        assert_eq!(t.authenticate(Some("bearer t1")).unwrap().name, "jane");
        assert!(t.authenticate(Some("Bearer nope")).is_none());
        assert!(t.authenticate(Some("Basic t1")).is_none());
        assert!(t.authenticate(None).is_none());
        fs::write(&path, "t1,jane\n").unwrap();
        assert!(matches!(
            Tokens::from_file(&path),
            Err(AuthError::Format(..))
        ));
    }

    #[test]
    fn the_generated_token_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = Tokens::generated(dir.path()).unwrap();
        let b = Tokens::generated(dir.path()).unwrap();
        assert_eq!(a.admin_token(), b.admin_token());
        assert_eq!(a.admin_token().len(), 64);
        let auth = format!("Bearer {}", a.admin_token());
        assert_eq!(b.authenticate(Some(&auth)).unwrap().name, "admin");
    }
}
