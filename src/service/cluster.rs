//! etcdserverpb.Cluster: the members, from Raft's membership (IDs, peer URLs,
//! voter or learner) and the attributes each member publishes through the log
//! (name, client URLs). A member that has not published yet has no name, which
//! etcdctl shows as "unstarted".

use std::collections::HashMap;

use oxetcd_proto::etcdserverpb::cluster_server::Cluster;
use oxetcd_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use prost::Message;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::error::EtcdError;
use crate::write::command::MemberAttributes;

pub struct ClusterService {
    node: Shared,
}

impl ClusterService {
    pub fn new(node: Shared) -> Self {
        Self { node }
    }

    fn members(&self) -> Result<Vec<Member>, EtcdError> {
        let published: HashMap<u64, MemberAttributes> = self
            .node
            .store
            .cluster_records("member/")?
            .into_iter()
            .filter_map(|(_, raw)| MemberAttributes::decode(raw).ok())
            .map(|m| (m.member_id, m))
            .collect();
        let metrics = self.node.replication.metrics();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        Ok(membership
            .nodes()
            .map(|(id, node)| {
                let attrs = published.get(id);
                Member {
                    id: *id,
                    name: attrs.map(|a| a.name.clone()).unwrap_or_default(),
                    peer_ur_ls: node.addr.split(',').map(str::to_string).collect(),
                    client_ur_ls: attrs.map(|a| a.client_urls.clone()).unwrap_or_default(),
                    is_learner: !voters.contains(id),
                }
            })
            .collect())
    }
}

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("etcdserver: {what} is not supported by oxetcd yet"))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.node.replication.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.node.header(self.node.store.current_revision()),
            members: self.members()?,
        }))
    }

    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(not_yet("adding members"))
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(not_yet("removing members"))
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(not_yet("updating members"))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(not_yet("promoting learners"))
    }
}
