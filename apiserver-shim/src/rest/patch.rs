//! PATCH: the four patch types kube-apiserver takes (reference:
//! kubernetes-apiserver.md §4, §5), each turned into the wanted object
//! inside the guarded update loop.
//!
//! - application/json-patch+json (RFC 6902) and
//!   application/merge-patch+json (RFC 7386), for every kind;
//! - application/strategic-merge-patch+json, for built-in kinds with a
//!   schema (custom resources get 415, as from kube-apiserver: their
//!   schemas carry no patch strategies);
//! - application/apply-patch+yaml: server-side apply, which creates the
//!   object when it is missing.

use serde_json::Value;

use super::update::{check_fresh, write, Scope};
use super::{create, object, Api, Reply, Request, Target};
use crate::error::{ApiError, Cause};
use crate::managed::{self, Operation, Writer};
use crate::registry::Kind;
use crate::rest::strategic;
use crate::schema::{schemas, Shape};

/// kube-apiserver's cap on JSON patch operations.
const MAX_PATCH_OPS: usize = 10_000;

pub(super) enum Patch {
    Json(json_patch::Patch),
    Merge(Value),
    Strategic(Value),
    Apply(Value),
}

impl Patch {
    /// The patched copy of `doc` (not for Apply, which merges by ownership).
    pub(super) fn apply(&self, doc: &Value, shape: Option<Shape<'_>>) -> Result<Value, ApiError> {
        let mut out = doc.clone();
        match self {
            Patch::Json(p) => json_patch::patch(&mut out, p)
                .map_err(|e| ApiError::Unprocessable(e.to_string()))?,
            Patch::Merge(m) => json_patch::merge(&mut out, m),
            Patch::Strategic(p) => {
                out = strategic::apply(doc, p, shape)
                    .map_err(|e| ApiError::Unprocessable(e.to_string()))?
            }
            Patch::Apply(_) => {
                return Err(ApiError::UnsupportedMediaType(
                    "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json".into(),
                ))
            }
        }
        Ok(out)
    }
}

/// The media types a PATCH of this target takes, as the 415 lists them.
fn accepted(strategic: bool, apply: bool) -> String {
    let mut types = vec![
        "application/json-patch+json",
        "application/merge-patch+json",
    ];
    if apply {
        types.push("application/apply-patch+yaml");
    }
    if strategic {
        types.push("application/strategic-merge-patch+json");
    }
    types.join(", ")
}

/// Reads the body as the Content-Type says. `strategic`: the target has a
/// schema for strategic merge patch; `apply`: server-side apply is served.
pub(super) fn parse(req: &Request, strategic: bool, apply: bool) -> Result<Patch, ApiError> {
    let bad = |e: serde_json::Error| ApiError::BadRequest(format!("error decoding patch: {e}"));
    match req.content_type.as_deref() {
        Some("application/json-patch+json") => {
            let p: json_patch::Patch = serde_json::from_slice(&req.body).map_err(bad)?;
            if p.0.len() > MAX_PATCH_OPS {
                return Err(ApiError::Unprocessable(format!(
                    "The allowed maximum operations in a JSON patch is {MAX_PATCH_OPS}, got {}",
                    p.0.len()
                )));
            }
            Ok(Patch::Json(p))
        }
        Some("application/merge-patch+json") => Ok(Patch::Merge(
            serde_json::from_slice(&req.body).map_err(bad)?,
        )),
        Some("application/strategic-merge-patch+json") if strategic => Ok(Patch::Strategic(
            serde_json::from_slice(&req.body).map_err(bad)?,
        )),
        Some("application/apply-patch+yaml") if apply => {
            // JSON is YAML; most clients (kubectl) send JSON.
            let v: Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(_) => serde_saphyr::from_slice(&req.body)
                    .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?,
            };
            if !v.is_object() {
                return Err(ApiError::BadRequest(
                    "error decoding YAML: the applied configuration is not an object".into(),
                ));
            }
            Ok(Patch::Apply(v))
        }
        _ => Err(ApiError::UnsupportedMediaType(accepted(strategic, apply))),
    }
}

fn patch_options_invalid(field: &str, reason: &'static str, message: &str) -> ApiError {
    ApiError::Invalid {
        group: "meta.k8s.io",
        kind: "PatchOptions.meta.k8s.io".into(),
        name: String::new(),
        causes: vec![Cause {
            reason,
            field: field.into(),
            message: message.into(),
        }],
    }
}

/// Who a write is by: ?fieldManager=, else the User-Agent up to its first
/// "/" (kube-apiserver's default).
pub(super) fn writer(
    req: &Request,
    kind: &Kind,
    sub: Option<&str>,
    operation: Operation,
) -> Result<Writer, ApiError> {
    let manager = match req.query.get("fieldManager") {
        Some(m) => m.to_string(),
        None if operation == Operation::Apply => {
            return Err(patch_options_invalid(
                "fieldManager",
                "FieldValueRequired",
                "Required value: is required for apply patch",
            ))
        }
        None => req
            .user_agent
            .as_deref()
            .and_then(|ua| ua.split('/').next())
            .unwrap_or("")
            .to_string(),
    };
    if manager.chars().count() > 128 {
        return Err(patch_options_invalid(
            "fieldManager",
            "FieldValueTooLong",
            "Too long: may not be more than 128 bytes",
        ));
    }
    Ok(Writer {
        manager,
        operation,
        subresource: sub.map(String::from),
        api_version: kind.api_version(),
    })
}

pub async fn patch(
    api: &Api,
    t: &Target<'_>,
    name: &str,
    sub: Option<&str>,
    req: &Request,
) -> Result<Reply, ApiError> {
    let kind = t.kind;
    let shape = schemas().root(kind);
    let patch = parse(req, shape.is_some() && kind.custom.is_none(), true)?;
    let dry_run = req.query.dry_run()?;
    let force = req.query.flag("force")?;
    let scope = Scope::of(sub);
    if let Patch::Apply(config) = patch {
        let writer = writer(req, kind, sub, Operation::Apply)?;
        return apply(api, t, name, scope, &writer, force, dry_run, req, config).await;
    }
    if force {
        return Err(patch_options_invalid(
            "force",
            "FieldValueForbidden",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    let writer = writer(req, kind, sub, Operation::Update)?;
    let obj = write(api, t, name, scope, dry_run, &writer, |current| {
        let mut doc = patch.apply(current, shape)?;
        // A resourceVersion in the patch is a precondition.
        check_fresh(kind, current, &doc)?;
        super::check_fields(kind, req, Some(current), &mut doc)?;
        Ok(doc)
    })
    .await?;
    Ok(Reply::Json {
        code: 200,
        body: obj,
    })
}

/// Server-side apply: merged into the object, or creating it (201).
#[allow(clippy::too_many_arguments)]
async fn apply(
    api: &Api,
    t: &Target<'_>,
    name: &str,
    scope: Scope,
    writer: &Writer,
    force: bool,
    dry_run: bool,
    req: &Request,
    mut config: Value,
) -> Result<Reply, ApiError> {
    let kind = t.kind;
    object::check_type(kind, &mut config)?;
    let in_body = object::name(&config);
    if !in_body.is_empty() && in_body != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({in_body}) does not match the name on the URL ({name})"
        )));
    }
    if config.pointer("/metadata/managedFields").is_some() {
        return Err(ApiError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    // Unknown fields: Strict refuses them (below); otherwise they are
    // dropped before the applier can own them (warned of under Warn).
    if req.query.get("fieldValidation") != Some("Strict") {
        super::check_fields(kind, req, None, &mut config)?;
    }
    let shape = schemas().root(kind);
    let ownable = super::update::ownable(kind, scope);
    let now = object::now();
    let updated = write(api, t, name, scope, dry_run, writer, |current| {
        check_fresh(kind, current, &config)?;
        super::strict_fields(kind, &req.query, Some(current), &config)?;
        managed::apply(shape, ownable, writer, &now, force, current, &config)
    })
    .await;
    match updated {
        Ok(obj) => Ok(Reply::Json {
            code: 200,
            body: obj,
        }),
        Err(ApiError::NotFound { .. }) if scope == Scope::Main => {
            super::strict_fields(kind, &req.query, None, &config)?;
            let mut obj =
                managed::apply(shape, ownable, writer, &now, force, &Value::Null, &config)?;
            let meta = object::metadata_mut(&mut obj);
            meta.insert("name".into(), Value::from(name));
            let body = create::insert(api, t, obj, dry_run).await?;
            Ok(Reply::Json { code: 201, body })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{self, Route};
    use bytes::Bytes;

    fn request(content_type: &str, body: &str, query: &str) -> Request {
        let Route::Resource(path) = route::parse("/apis/apps/v1/namespaces/d/deployments/web")
        else {
            panic!("a resource path")
        };
        Request {
            method: hyper::Method::PATCH,
            path,
            query: super::super::Query::parse(Some(query)),
            content_type: Some(content_type.into()),
            user_agent: Some("kubectl/v1.32.0 (linux/amd64) kubernetes/abc".into()),
            body: Bytes::from(body.to_string()),
            warnings: Default::default(),
        }
    }

    #[test]
    fn strategic_merge_patch_needs_a_schema_as_for_custom_resources() {
        let req = request("application/strategic-merge-patch+json", "{}", "");
        assert!(matches!(parse(&req, true, true), Ok(Patch::Strategic(_))));
        let err = parse(&req, false, true).err().unwrap();
        assert_eq!(err.code(), 415);
        assert_eq!(
            err.to_string(),
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        );
    }

    #[test]
    fn apply_bodies_are_yaml_and_need_a_field_manager() {
        let req = request(
            "application/apply-patch+yaml",
            "metadata:\n  name: web\n",
            "",
        );
        let Ok(Patch::Apply(v)) = parse(&req, true, true) else {
            panic!("an apply patch")
        };
        assert_eq!(v["metadata"]["name"], "web");
        let d = crate::registry::find("apps", "v1", "deployments").unwrap();
        let err = writer(&req, d, None, Operation::Apply).unwrap_err();
        assert_eq!(
            (err.code(), err.to_string().as_str()),
            (
                422,
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
            )
        );
        // Updates default to the User-Agent's product.
        let w = writer(&req, d, Some("scale"), Operation::Update).unwrap();
        assert_eq!(
            (w.manager.as_str(), w.subresource.as_deref()),
            ("kubectl", Some("scale"))
        );
        let req = request("application/apply-patch+yaml", "{}", "fieldManager=me");
        assert_eq!(
            writer(&req, d, None, Operation::Apply).unwrap().manager,
            "me"
        );
    }
}
