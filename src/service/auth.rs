//! etcdserverpb.Auth: enabling auth, authenticating, users and roles (see
//! `oxetcd_server::auth`). Every call but AuthEnable, AuthStatus and
//! Authenticate needs root once auth is enabled; the member checks it.

use oxetcd_proto::etcdserverpb::auth_server::Auth;
use oxetcd_proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use super::caller::caller;
use super::Shared;

pub struct AuthService {
    node: Shared,
}

impl AuthService {
    pub fn new(node: Shared) -> Self {
        Self { node }
    }
}

/// A call made by the request's caller: `by_caller!(self, request, method)`.
macro_rules! by_caller {
    ($self:ident, $request:ident, $method:ident) => {{
        let caller = caller(&$self.node, &$request)?;
        Ok(Response::new(
            $self.node.$method(&caller, $request.into_inner()).await?,
        ))
    }};
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let caller = caller(&self.node, &request)?;
        Ok(Response::new(self.node.auth_enable(&caller).await?))
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let caller = caller(&self.node, &request)?;
        Ok(Response::new(self.node.auth_disable(&caller).await?))
    }

    async fn auth_status(
        &self,
        _request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        Ok(Response::new(self.node.auth_status().await?))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        Ok(Response::new(
            self.node.authenticate(request.into_inner()).await?,
        ))
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        by_caller!(self, request, user_add)
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        by_caller!(self, request, user_get)
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let caller = caller(&self.node, &request)?;
        Ok(Response::new(self.node.user_list(&caller).await?))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        by_caller!(self, request, user_delete)
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        by_caller!(self, request, user_change_password)
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        by_caller!(self, request, user_grant_role)
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        by_caller!(self, request, user_revoke_role)
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        by_caller!(self, request, role_add)
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        by_caller!(self, request, role_get)
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let caller = caller(&self.node, &request)?;
        Ok(Response::new(self.node.role_list(&caller).await?))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        by_caller!(self, request, role_delete)
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        by_caller!(self, request, role_grant_permission)
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        by_caller!(self, request, role_revoke_permission)
    }
}
