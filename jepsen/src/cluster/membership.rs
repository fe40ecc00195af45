//! Membership changes through etcd's Cluster API, for the `member` nemesis:
//! remove a member (then its process is killed and its data set aside), and
//! later add it back as a new member on the same address, started empty
//! with `--initial-cluster-state existing`, as an operator replaces a
//! machine: straight as a voter, or as a learner promoted once it has
//! caught up (the servers refuse a promotion until then).
//!
//! Either call may time out after the cluster applied it, so each is
//! followed by a MemberList that says what actually happened.

use std::time::{Duration, Instant};

use oxetcd_proto::etcdserverpb::cluster_client::ClusterClient;
use oxetcd_proto::etcdserverpb::{
    Member as ApiMember, MemberAddRequest, MemberListRequest, MemberPromoteRequest,
    MemberRemoveRequest,
};

use super::channel;

/// Deadline of one Cluster API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn client(url: &str) -> Result<ClusterClient<tonic::transport::Channel>, String> {
    Ok(ClusterClient::new(channel(url, CALL_TIMEOUT)?))
}

async fn timed<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err("timeout".into()),
    }
}

/// The members as `via` (a client URL) sees them.
pub async fn list(via: &str) -> Result<Vec<ApiMember>, String> {
    let mut c = client(via)?;
    Ok(timed(c.member_list(MemberListRequest::default()))
        .await?
        .members)
}

fn with_peer<'a>(members: &'a [ApiMember], peer_url: &str) -> Option<&'a ApiMember> {
    members
        .iter()
        .find(|m| m.peer_ur_ls.iter().any(|u| u == peer_url))
}

/// Removes the member at `peer_url`, asking each of `via` in turn. Ok when
/// it is no longer a member (whether or not a call timed out).
pub async fn remove(via: &[String], peer_url: &str) -> Result<(), String> {
    let mut last = String::from("no member to ask");
    for url in via {
        let members = match list(url).await {
            Ok(m) => m,
            Err(e) => {
                last = format!("{url}: {e}");
                continue;
            }
        };
        let Some(target) = with_peer(&members, peer_url) else {
            return Ok(());
        };
        let id = target.id;
        let mut c = client(url)?;
        match timed(c.member_remove(MemberRemoveRequest { id })).await {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{url}: {e}"),
        }
        if list(url)
            .await
            .is_ok_and(|m| with_peer(&m, peer_url).is_none())
        {
            return Ok(());
        }
    }
    Err(last)
}

/// Adds a member at `peer_url`, retrying on each of `via` for up to
/// `patience`; returns the membership after the change, to start the new
/// member with.
pub async fn add(
    via: &[String],
    peer_url: &str,
    is_learner: bool,
    patience: Duration,
) -> Result<Vec<ApiMember>, String> {
    let deadline = Instant::now() + patience;
    let mut last = String::from("no member to ask");
    loop {
        for url in via {
            // Added already (a call that timed out but was applied)?
            if let Ok(members) = list(url).await {
                if with_peer(&members, peer_url).is_some() {
                    return Ok(members);
                }
            }
            let mut c = client(url)?;
            let request = MemberAddRequest {
                peer_ur_ls: vec![peer_url.to_owned()],
                is_learner,
            };
            match timed(c.member_add(request)).await {
                Ok(response) => return Ok(response.members),
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        if Instant::now() > deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Promotes the learner at `peer_url`, retrying on each of `via` for up to
/// `patience` while the servers say it has not caught up yet. Ok once it
/// is a voter (whether or not a call timed out).
pub async fn promote(via: &[String], peer_url: &str, patience: Duration) -> Result<(), String> {
    let deadline = Instant::now() + patience;
    let mut last = String::from("no member to ask");
    loop {
        for url in via {
            let target = match list(url).await {
                Ok(members) => with_peer(&members, peer_url).cloned(),
                Err(e) => {
                    last = format!("{url}: {e}");
                    continue;
                }
            };
            let Some(target) = target else {
                return Err(format!("{peer_url} is no longer a member"));
            };
            if !target.is_learner {
                return Ok(());
            }
            let mut c = client(url)?;
            match timed(c.member_promote(MemberPromoteRequest { id: target.id })).await {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        if Instant::now() > deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `--initial-cluster` for a member joining `members`: each started member
/// by its name, the joining one (no name yet) as `name`.
pub fn initial_cluster(members: &[ApiMember], name: &str, peer_url: &str) -> String {
    members
        .iter()
        .flat_map(|m| {
            let joining = m.peer_ur_ls.iter().any(|u| u == peer_url);
            let member_name = if joining { name } else { m.name.as_str() };
            m.peer_ur_ls
                .iter()
                .map(move |u| format!("{member_name}={u}"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_joining_member_is_named_in_the_initial_cluster() {
        let member = |name: &str, url: &str| ApiMember {
            name: name.into(),
            peer_ur_ls: vec![url.into()],
            ..Default::default()
        };
        let members = [
            member("n1", "http://10.77.1.1:2380"),
            member("", "http://10.77.1.2:2380"),
            member("n3", "http://10.77.1.3:2380"),
        ];
        assert_eq!(
            initial_cluster(&members, "n2", "http://10.77.1.2:2380"),
            "n1=http://10.77.1.1:2380,n2=http://10.77.1.2:2380,n3=http://10.77.1.3:2380"
        );
    }
}
