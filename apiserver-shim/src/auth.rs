//! Authentication by bearer token. Tokens come from --token-auth-file
//! (kube-apiserver's CSV: `token,user,uid[,"group1,group2"]`) or, without
//! it, from one admin token generated into `<data-dir>/admin-token`.
//! Every authenticated user may do everything (no authorization yet).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::Rng;

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

#[cfg(test)]
mod tests {
    use super::*;

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
