//! etcdserverpb.Cluster: the members, from Raft's membership (IDs, peer URLs,
//! voter or learner) and the attributes each member publishes through the log
//! (name, client URLs). A member that has not published yet has no name, which
//! etcdctl shows as "unstarted". Changes go to the leader (`oxetcd_server`).

use oxetcd_proto::etcdserverpb::cluster_server::Cluster;
use oxetcd_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use oxetcd_server::{AddMember, Change, UpdateMember};

use super::caller::require_admin;
use super::Shared;

pub struct ClusterService {
    node: Shared,
}

impl ClusterService {
    pub fn new(node: Shared) -> Self {
        Self { node }
    }

    fn header(&self) -> Option<oxetcd_proto::etcdserverpb::ResponseHeader> {
        self.node.current_header()
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.node.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: self.node.members()?,
        }))
    }

    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        require_admin(&self.node, &request)?;
        let req = request.into_inner();
        let (peer_urls, is_learner) = (req.peer_ur_ls, req.is_learner);
        let change = Change::Add(AddMember {
            peer_urls: peer_urls.clone(),
            is_learner,
        });
        let id = self.node.change_members(change).await?;
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
            members: self.node.members()?,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        require_admin(&self.node, &request)?;
        self.node
            .change_members(Change::Remove(request.into_inner().id))
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members: self.node.members()?,
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        require_admin(&self.node, &request)?;
        let req = request.into_inner();
        let change = Change::Update(UpdateMember {
            member_id: req.id,
            peer_urls: req.peer_ur_ls,
        });
        self.node.change_members(change).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(),
            members: self.node.members()?,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        require_admin(&self.node, &request)?;
        self.node
            .change_members(Change::Promote(request.into_inner().id))
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members: self.node.members()?,
        }))
    }
}
