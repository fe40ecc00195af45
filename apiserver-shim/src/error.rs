//! Every error the API answers, and its one mapping to a Kubernetes Status
//! object and HTTP code (reference: kubernetes-apiserver.md §6). The
//! reasons, codes and message shapes are what kubectl and client-go match on.

use serde_json::{json, Value};

use crate::registry::Kind;
use crate::store::StoreError;

/// One invalid field of an Invalid error.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    /// FieldValueInvalid, FieldValueRequired, ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// A path the server does not serve (kube-apiserver's plain 404).
    #[error("the server could not find the requested resource")]
    UnknownPath,
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        group: &'static str,
        resource: String,
        name: String,
    },
    #[error("{prefix}{resource} \"{name}\" already exists")]
    AlreadyExists {
        group: &'static str,
        resource: String,
        name: String,
        /// "object is being deleted: " when the name is still terminating.
        prefix: &'static str,
    },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {why}")]
    Conflict {
        group: &'static str,
        resource: String,
        name: String,
        why: String,
    },
    /// Server-side apply meeting fields other managers own: 409 Conflict
    /// with one FieldManagerConflict cause (message, field) per field.
    #[error("{message}")]
    ApplyConflict {
        message: String,
        causes: Vec<(String, String)>,
    },
    #[error("{kind} \"{name}\" is invalid: {}", causes_text(.causes))]
    Invalid {
        group: &'static str,
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    #[error("{0}")]
    BadRequest(String),
    /// A 422 with kube-apiserver's own words (a JSON patch that does not
    /// apply, bad list options), not a per-field Invalid.
    #[error("{0}")]
    Unprocessable(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{resource} \"{name}\" is forbidden: {why}")]
    Forbidden {
        group: &'static str,
        resource: String,
        name: String,
        why: String,
    },
    #[error("{verb} is not supported on resources of kind \"{resource}\"")]
    MethodNotAllowed { verb: String, resource: String },
    #[error("only the following media types are accepted: application/json")]
    NotAcceptable,
    #[error("{0}")]
    Expired(String),
    #[error("Request entity too large: limit is {0}")]
    TooLarge(usize),
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {0}"
    )]
    UnsupportedMediaType(String),
    #[error("Internal error occurred: {0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("Timeout: {0}")]
    Timeout(String),
}

fn causes_text(causes: &[Cause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    pub fn not_found(kind: &Kind, name: &str) -> Self {
        ApiError::NotFound {
            group: kind.group,
            resource: kind.qualified_resource(),
            name: name.to_string(),
        }
    }

    pub fn already_exists(kind: &Kind, name: &str) -> Self {
        ApiError::AlreadyExists {
            group: kind.group,
            resource: kind.qualified_resource(),
            name: name.to_string(),
            prefix: "",
        }
    }

    /// The 409 for a write based on a stale resourceVersion.
    pub fn stale(kind: &Kind, name: &str) -> Self {
        Self::conflict(
            kind,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn conflict(kind: &Kind, name: &str, why: &str) -> Self {
        ApiError::Conflict {
            group: kind.group,
            resource: kind.qualified_resource(),
            name: name.to_string(),
            why: why.to_string(),
        }
    }

    pub fn invalid(kind: &Kind, name: &str, causes: Vec<Cause>) -> Self {
        ApiError::Invalid {
            group: kind.group,
            kind: kind.qualified_kind(),
            name: name.to_string(),
            causes,
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            ApiError::UnknownPath | ApiError::NotFound { .. } => 404,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => 409,
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden { .. } => 403,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::NotAcceptable => 406,
            ApiError::Expired(_) => 410,
            ApiError::TooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
            ApiError::Timeout(_) => 504,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::UnknownPath | ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ApiError::NotAcceptable => "NotAcceptable",
            ApiError::Expired(_) => "Expired",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Internal(_) => "InternalError",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Timeout(_) => "Timeout",
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::UnknownPath => Some(json!({})),
            ApiError::NotFound {
                group,
                resource,
                name,
            }
            | ApiError::AlreadyExists {
                group,
                resource,
                name,
                ..
            }
            | ApiError::Conflict {
                group,
                resource,
                name,
                ..
            }
            | ApiError::Forbidden {
                group,
                resource,
                name,
                ..
            } => {
                // details.kind holds the plural resource, without its group.
                let plural = resource.split('.').next().unwrap_or(resource);
                let mut d = json!({"name": name, "kind": plural});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            ApiError::ApplyConflict { causes, .. } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|(message, field)| {
                        json!({"reason": "FieldManagerConflict", "message": message, "field": field})
                    })
                    .collect();
                Some(json!({ "causes": causes }))
            }
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => {
                let bare = kind.split('.').next().unwrap_or(kind);
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                let mut d = json!({"name": name, "kind": bare, "causes": causes});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            _ => None,
        }
    }

    /// The Status object kube-apiserver answers with.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if let Some(d) = self.details() {
            s["details"] = d;
        }
        s
    }
}

/// Store failures the REST layer does not handle itself.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted { .. } => {
                ApiError::Expired("The resourceVersion for the provided list is too old.".into())
            }
            StoreError::Unavailable(why) => ApiError::Unavailable(why),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    #[test]
    fn not_found_names_the_group_qualified_resource() {
        let d = find("apps", "v1", "deployments").unwrap();
        let s = ApiError::not_found(d, "web").status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(
            s["details"],
            json!({"name": "web", "group": "apps", "kind": "deployments"})
        );
    }

    #[test]
    fn a_stale_write_is_kubernetes_conflict() {
        let cm = find("", "v1", "configmaps").unwrap();
        let s = ApiError::stale(cm, "c").status();
        assert_eq!(s["code"], 409);
        assert_eq!(s["reason"], "Conflict");
        assert_eq!(
            s["message"],
            "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; \
             please apply your changes to the latest version and try again"
        );
    }

    #[test]
    fn invalid_lists_its_causes_and_names_the_kind() {
        let d = find("apps", "v1", "deployments").unwrap();
        let cause = Cause {
            reason: "FieldValueInvalid",
            field: "metadata.name".into(),
            message: "Invalid value: \"A\": bad".into(),
        };
        let s = ApiError::invalid(d, "A", vec![cause]).status();
        assert_eq!(s["code"], 422);
        assert_eq!(
            s["message"],
            "Deployment.apps \"A\" is invalid: metadata.name: Invalid value: \"A\": bad"
        );
        assert_eq!(s["details"]["kind"], "Deployment");
        assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
    }

    #[test]
    fn a_compacted_read_is_expired_410() {
        let e = ApiError::from(StoreError::Compacted {
            compact_revision: None,
        });
        assert_eq!((e.code(), e.reason()), (410, "Expired"));
        assert_eq!(ApiError::Unauthorized.status()["code"], 401);
    }
}
