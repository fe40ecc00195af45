//! What one start of a member is given — its name, directories, URLs and
//! the cluster it joins — written two ways: as etcd's flags, for a server
//! the tester starts itself (`--server`), and as environment variables, for
//! a `--db` hook ([`super::hook`]) that starts its store its own way.

use std::ffi::OsString;
use std::path::Path;

/// One start of one member.
#[derive(Clone, Debug)]
pub struct Launch<'a> {
    pub name: &'a str,
    /// From 0, in member order.
    pub index: usize,
    /// The member's own directory: its log, the hook's files.
    pub member_dir: &'a Path,
    pub data_dir: &'a Path,
    pub log: &'a Path,
    pub client_url: String,
    pub listen_peer_url: String,
    /// The peer URL the others dial (a proxy's, with link faults).
    pub advertise_peer_url: String,
    pub initial_cluster: String,
    /// `new`, or `existing` for a member added back after a removal.
    pub initial_cluster_state: &'static str,
    pub token: &'a str,
}

impl Launch<'_> {
    /// etcd's flags for this start.
    pub fn etcd_flags(&self) -> Vec<OsString> {
        let pairs: [(&str, OsString); 9] = [
            ("--name", self.name.into()),
            ("--data-dir", self.data_dir.into()),
            ("--listen-client-urls", (&self.client_url).into()),
            ("--advertise-client-urls", (&self.client_url).into()),
            ("--listen-peer-urls", (&self.listen_peer_url).into()),
            (
                "--initial-advertise-peer-urls",
                (&self.advertise_peer_url).into(),
            ),
            ("--initial-cluster", (&self.initial_cluster).into()),
            ("--initial-cluster-state", self.initial_cluster_state.into()),
            ("--initial-cluster-token", self.token.into()),
        ];
        pairs
            .into_iter()
            .flat_map(|(flag, value)| [OsString::from(flag), value])
            .collect()
    }

    /// The environment a hook gets for this member (docs/jepsen.md, Any
    /// store: --db hooks).
    pub fn hook_env(&self) -> Vec<(String, String)> {
        let path = |p: &Path| p.display().to_string();
        vec![
            ("MEMBER_NAME".into(), self.name.to_owned()),
            ("MEMBER_INDEX".into(), self.index.to_string()),
            ("MEMBER_DIR".into(), path(self.member_dir)),
            ("DATA_DIR".into(), path(self.data_dir)),
            ("LOG_FILE".into(), path(self.log)),
            ("CLIENT_URL".into(), self.client_url.clone()),
            ("LISTEN_PEER_URL".into(), self.listen_peer_url.clone()),
            ("ADVERTISE_PEER_URL".into(), self.advertise_peer_url.clone()),
            ("INITIAL_CLUSTER".into(), self.initial_cluster.clone()),
            (
                "INITIAL_CLUSTER_STATE".into(),
                self.initial_cluster_state.to_owned(),
            ),
            ("INITIAL_CLUSTER_TOKEN".into(), self.token.to_owned()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch<'static> {
        Launch {
            name: "n2",
            index: 1,
            member_dir: Path::new("/r/members/n2"),
            data_dir: Path::new("/r/members/n2/data"),
            log: Path::new("/r/members/n2/log"),
            client_url: "http://10.77.4.2:2379".into(),
            listen_peer_url: "http://10.77.4.2:2380".into(),
            advertise_peer_url: "http://10.77.4.102:2380".into(),
            initial_cluster: "n1=http://10.77.4.101:2380,n2=http://10.77.4.102:2380".into(),
            initial_cluster_state: "existing",
            token: "jepsen-7",
        }
    }

    #[test]
    fn the_flags_are_etcds() {
        let flags: Vec<String> = launch()
            .etcd_flags()
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            flags.join(" "),
            "--name n2 --data-dir /r/members/n2/data \
             --listen-client-urls http://10.77.4.2:2379 \
             --advertise-client-urls http://10.77.4.2:2379 \
             --listen-peer-urls http://10.77.4.2:2380 \
             --initial-advertise-peer-urls http://10.77.4.102:2380 \
             --initial-cluster n1=http://10.77.4.101:2380,n2=http://10.77.4.102:2380 \
             --initial-cluster-state existing --initial-cluster-token jepsen-7"
        );
    }

    #[test]
    fn a_hook_gets_the_same_as_environment() {
        let env = launch().hook_env();
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("MEMBER_NAME"), Some("n2"));
        assert_eq!(get("MEMBER_INDEX"), Some("1"));
        assert_eq!(get("MEMBER_DIR"), Some("/r/members/n2"));
        assert_eq!(get("DATA_DIR"), Some("/r/members/n2/data"));
        assert_eq!(get("LOG_FILE"), Some("/r/members/n2/log"));
        assert_eq!(get("CLIENT_URL"), Some("http://10.77.4.2:2379"));
        assert_eq!(get("LISTEN_PEER_URL"), Some("http://10.77.4.2:2380"));
        assert_eq!(get("ADVERTISE_PEER_URL"), Some("http://10.77.4.102:2380"));
        assert_eq!(
            get("INITIAL_CLUSTER"),
            Some("n1=http://10.77.4.101:2380,n2=http://10.77.4.102:2380")
        );
        assert_eq!(get("INITIAL_CLUSTER_STATE"), Some("existing"));
        assert_eq!(get("INITIAL_CLUSTER_TOKEN"), Some("jepsen-7"));
        assert_eq!(env.len(), 11);
    }
}
