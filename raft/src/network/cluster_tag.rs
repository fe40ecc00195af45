//! The cluster ID every peer RPC carries, as etcd's peer messages carry
//! `X-Etcd-Cluster-ID`: a member of another cluster that reaches this one's
//! peer port (an address reused for a new cluster, a member started with
//! another `--initial-cluster-token`) is refused with etcd's "cluster ID
//! mismatch" instead of pushing its terms and votes onto this cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// The header, etcd's name for it.
const HEADER: &str = "x-etcd-cluster-id";

/// This member's cluster ID, shared by its network (which stamps every
/// request with it) and its peer service (which checks every request
/// against it). 0 until known: a member joining an existing cluster learns
/// it from the cluster; until then it sends no ID and refuses none, as an
/// etcd member does before it has fetched the cluster's.
#[derive(Clone, Debug, Default)]
pub struct ClusterTag(Arc<AtomicU64>);

impl ClusterTag {
    pub fn set(&self, cluster_id: u64) {
        self.0.store(cluster_id, Ordering::Release);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Adds the ID, if known, to an outgoing request.
    pub(crate) fn stamp<T>(&self, request: &mut Request<T>) {
        let id = self.get();
        if id != 0 {
            if let Ok(value) = MetadataValue::try_from(format!("{id:x}")) {
                request.metadata_mut().insert(HEADER, value);
            }
        }
    }

    /// Refuses a request from a member of another cluster. A request
    /// without an ID (a member that does not know its cluster yet), or
    /// arriving before this member knows its own, passes.
    pub(crate) fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let ours = self.get();
        let Some(theirs) = request.metadata().get(HEADER) else {
            return Ok(());
        };
        let theirs = theirs
            .to_str()
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| Status::invalid_argument("malformed x-etcd-cluster-id"))?;
        if ours != 0 && theirs != ours {
            tracing::warn!(
                local = %format!("{ours:x}"),
                remote = %format!("{theirs:x}"),
                "refused a peer request from another cluster (cluster ID mismatch)"
            );
            return Err(Status::failed_precondition("cluster ID mismatch"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(id: u64) -> ClusterTag {
        let tag = ClusterTag::default();
        tag.set(id);
        tag
    }

    fn stamped(by: &ClusterTag) -> Request<()> {
        let mut request = Request::new(());
        by.stamp(&mut request);
        request
    }

    #[test]
    fn the_same_cluster_passes_another_is_refused() {
        let ours = tag(0xabc);
        assert!(ours.check(&stamped(&tag(0xabc))).is_ok());
        let refused = ours.check(&stamped(&tag(0xdef))).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert_eq!(refused.message(), "cluster ID mismatch");
    }

    #[test]
    fn an_unknown_id_on_either_side_passes() {
        // A joining member sends nothing yet.
        let unknown = ClusterTag::default();
        let request = stamped(&unknown);
        assert!(request.metadata().get(HEADER).is_none());
        assert!(tag(0xabc).check(&request).is_ok());
        // A member that does not know its own ID yet refuses nobody.
        assert!(unknown.check(&stamped(&tag(0xdef))).is_ok());
        // Learning it later takes effect for both sides at once.
        unknown.set(0xabc);
        assert!(unknown.check(&stamped(&tag(0xdef))).is_err());
        assert!(stamped(&unknown).metadata().get(HEADER).is_some());
    }

    #[test]
    fn a_malformed_id_is_refused() {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert(HEADER, MetadataValue::from_static("not-hex"));
        let refused = tag(1).check(&request).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }
}
