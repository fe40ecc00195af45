//! Every error a client can get, in etcd's words, and its one mapping to a gRPC
//! status. The messages and codes are what etcd's client libraries match on
//! (etcd's `rpctypes`), so they must not be reworded.

use oxetcd_storage::StorageError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    BadMemberUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// openraft refused or failed a membership change.
    #[error("etcdserver: re-configuration failed: {0}")]
    Reconfiguration(String),
    #[error("etcdserver: request timed out")]
    RequestTimedOut,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// A write that grows the store, past the quota or with NOSPACE raised.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// A client write while a CORRUPT alarm is active.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// etcd has no word for it: its applier answers nothing.
    #[error("etcdserver: unknown alarm action")]
    UnknownAlarmAction,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// A request checked against an auth state that changed before it was
    /// applied (a user deleted, a role revoked): the client authenticates
    /// again and retries.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// The disk failed under us. The write path stops the process on this
    /// (etcd panics); requests in flight get this error.
    #[error("etcdserver: storage failure: {0}")]
    Storage(String),
}

impl EtcdError {
    /// True when the store may no longer match what was acknowledged.
    pub fn is_fatal(&self) -> bool {
        matches!(self, EtcdError::Storage(_))
    }

    /// A stable number for each error that crosses the wire between members:
    /// what applying a command or a forwarded membership change can give.
    pub fn wire_code(&self) -> u32 {
        use EtcdError::*;
        match self {
            KeyNotFound => 1,
            LeaseNotFound => 2,
            Compacted => 3,
            FutureRevision => 4,
            MemberNotFound => 5,
            MemberExists => 6,
            PeerUrlExists => 7,
            BadMemberUrls => 8,
            MemberNotLearner => 9,
            LearnerNotReady => 10,
            NoLeader => 11,
            LeaseExists => 20,
            LeaseTtlTooLarge => 21,
            NotLeader => 22,
            Reconfiguration(_) => 12,
            NotEnoughStartedMembers => 13,
            Unhealthy => 14,
            NoSpace => 15,
            Corrupt => 16,
            UnknownAlarmAction => 17,
            RootUserNotExist => 30,
            RootRoleNotExist => 31,
            UserAlreadyExist => 32,
            UserEmpty => 33,
            UserNotFound => 34,
            RoleAlreadyExist => 35,
            RoleNotFound => 36,
            RoleEmpty => 37,
            AuthFailed => 38,
            PermissionNotGiven => 39,
            PermissionDenied => 40,
            RoleNotGranted => 41,
            PermissionNotGranted => 42,
            AuthNotEnabled => 43,
            InvalidAuthToken => 44,
            InvalidAuthMgmt => 45,
            AuthOldRevision => 46,
            // Not produced by applying; kept distinct from "none" (0).
            _ => u32::MAX,
        }
    }

    /// The text a wire code alone does not carry.
    pub fn detail(&self) -> String {
        match self {
            EtcdError::Reconfiguration(why) | EtcdError::Storage(why) => why.clone(),
            other => other.to_string(),
        }
    }

    pub fn from_wire_code(code: u32) -> Self {
        Self::from_wire(code, String::new())
    }

    pub fn from_wire(code: u32, detail: String) -> Self {
        match code {
            1 => EtcdError::KeyNotFound,
            2 => EtcdError::LeaseNotFound,
            3 => EtcdError::Compacted,
            4 => EtcdError::FutureRevision,
            5 => EtcdError::MemberNotFound,
            6 => EtcdError::MemberExists,
            7 => EtcdError::PeerUrlExists,
            8 => EtcdError::BadMemberUrls,
            9 => EtcdError::MemberNotLearner,
            10 => EtcdError::LearnerNotReady,
            11 => EtcdError::NoLeader,
            20 => EtcdError::LeaseExists,
            21 => EtcdError::LeaseTtlTooLarge,
            22 => EtcdError::NotLeader,
            12 => EtcdError::Reconfiguration(detail),
            13 => EtcdError::NotEnoughStartedMembers,
            14 => EtcdError::Unhealthy,
            15 => EtcdError::NoSpace,
            16 => EtcdError::Corrupt,
            17 => EtcdError::UnknownAlarmAction,
            30 => EtcdError::RootUserNotExist,
            31 => EtcdError::RootRoleNotExist,
            32 => EtcdError::UserAlreadyExist,
            33 => EtcdError::UserEmpty,
            34 => EtcdError::UserNotFound,
            35 => EtcdError::RoleAlreadyExist,
            36 => EtcdError::RoleNotFound,
            37 => EtcdError::RoleEmpty,
            38 => EtcdError::AuthFailed,
            39 => EtcdError::PermissionNotGiven,
            40 => EtcdError::PermissionDenied,
            41 => EtcdError::RoleNotGranted,
            42 => EtcdError::PermissionNotGranted,
            43 => EtcdError::AuthNotEnabled,
            44 => EtcdError::InvalidAuthToken,
            45 => EtcdError::InvalidAuthMgmt,
            46 => EtcdError::AuthOldRevision,
            other => EtcdError::Storage(format!(
                "unknown error code {other} from another member: {detail}"
            )),
        }
    }

    fn code(&self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | InvalidSortOption | RequestTooLarge => Code::InvalidArgument,
            Compacted | FutureRevision => Code::OutOfRange,
            LeaseNotFound => Code::NotFound,
            LeaseExists | NotLeader => Code::FailedPrecondition,
            LeaseTtlTooLarge => Code::OutOfRange,
            Stopped | NoLeader | RequestTimedOut => Code::Unavailable,
            MemberNotFound => Code::NotFound,
            MemberExists | PeerUrlExists | MemberNotLearner | LearnerNotReady
            | Reconfiguration(_) => Code::FailedPrecondition,
            BadMemberUrls => Code::InvalidArgument,
            BadLeaderTransferee | NotEnoughStartedMembers => Code::FailedPrecondition,
            Unhealthy => Code::Unavailable,
            NoSpace => Code::ResourceExhausted,
            Corrupt => Code::DataLoss,
            UnknownAlarmAction => Code::InvalidArgument,
            // etcd's rpctypes codes for its auth errors.
            RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound
            | RoleAlreadyExist | RoleNotFound | RoleNotGranted | PermissionNotGranted
            | AuthNotEnabled => Code::FailedPrecondition,
            UserEmpty | RoleEmpty | AuthFailed | PermissionNotGiven | InvalidAuthMgmt
            | AuthOldRevision => Code::InvalidArgument,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            // etcd has no gRPC error of its own for it.
            LeaderTransferTimeout => Code::Unknown,
            Storage(_) => Code::Internal,
        }
    }
}

impl From<StorageError> for EtcdError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Compacted => EtcdError::Compacted,
            StorageError::FutureRevision => EtcdError::FutureRevision,
            other => EtcdError::Storage(other.to_string()),
        }
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_etcds_codes_and_words() {
        let s = Status::from(EtcdError::from(StorageError::Compacted));
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s = Status::from(EtcdError::DuplicateKey);
        assert_eq!(
            (s.code(), s.message()),
            (
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request"
            )
        );
        assert!(EtcdError::from(StorageError::Backend("disk".into())).is_fatal());
        let s = Status::from(EtcdError::NoSpace);
        assert_eq!(
            (s.code(), s.message()),
            (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded"
            )
        );
        let s = Status::from(EtcdError::Corrupt);
        assert_eq!(
            (s.code(), s.message()),
            (Code::DataLoss, "etcdserver: corrupt cluster")
        );
    }

    #[test]
    fn apply_errors_survive_the_wire() {
        for e in [
            EtcdError::KeyNotFound,
            EtcdError::LeaseNotFound,
            EtcdError::LeaseExists,
            EtcdError::LeaseTtlTooLarge,
            EtcdError::Compacted,
            EtcdError::FutureRevision,
            EtcdError::NotEnoughStartedMembers,
            EtcdError::Unhealthy,
            EtcdError::NoSpace,
            EtcdError::Corrupt,
            EtcdError::UnknownAlarmAction,
            EtcdError::RootUserNotExist,
            EtcdError::RootRoleNotExist,
            EtcdError::UserAlreadyExist,
            EtcdError::UserEmpty,
            EtcdError::UserNotFound,
            EtcdError::RoleAlreadyExist,
            EtcdError::RoleNotFound,
            EtcdError::RoleEmpty,
            EtcdError::AuthFailed,
            EtcdError::PermissionNotGiven,
            EtcdError::PermissionDenied,
            EtcdError::RoleNotGranted,
            EtcdError::PermissionNotGranted,
            EtcdError::AuthNotEnabled,
            EtcdError::InvalidAuthToken,
            EtcdError::InvalidAuthMgmt,
            EtcdError::AuthOldRevision,
        ] {
            assert_eq!(
                EtcdError::from_wire_code(e.wire_code()).to_string(),
                e.to_string()
            );
        }
    }
}
