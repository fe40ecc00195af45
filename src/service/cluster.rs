//! etcdserverpb.Cluster: the members, from Raft's membership (IDs, peer URLs,
//! voter or learner) and the attributes each member publishes through the log
//! (name, client URLs). A member that has not published yet has no name, which
//! etcdctl shows as "unstarted". Changes go to the leader (`replication`).

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
use crate::replication::{AddMember, Change, UpdateMember};
use crate::write::command::MemberAttributes;

pub struct ClusterService {
    node: Shared,
}

impl ClusterService {
    pub fn new(node: Shared) -> Self {
        Self { node }
    }

    fn header(&self) -> Option<oxetcd_proto::etcdserverpb::ResponseHeader> {
        self.node.header(self.node.store.current_revision())
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
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let req = request.into_inner();
        let (peer_urls, is_learner) = (req.peer_ur_ls, req.is_learner);
        let change = Change::Add(AddMember {
            peer_urls: peer_urls.clone(),
            is_learner,
        });
        let id = self.node.replication.change_members(change).await?;
        let member = Member {
            id,
            name: String::new(),
            peer_ur_ls: peer_urls,
            client_ur_ls: Vec::new(),
            is_learner,
        };
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: Some(member),
            members: self.members()?,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.node
            .replication
            .change_members(Change::Remove(request.into_inner().id))
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members: self.members()?,
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = request.into_inner();
        let change = Change::Update(UpdateMember {
            member_id: req.id,
            peer_urls: req.peer_ur_ls,
        });
        self.node.replication.change_members(change).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(),
            members: self.members()?,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.node
            .replication
            .change_members(Change::Promote(request.into_inner().id))
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members: self.members()?,
        }))
    }
}
