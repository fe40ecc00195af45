//! The objects the load writes: Nodes for the simulated kubelets, and Pods
//! of about `--pod-size` bytes of JSON as sent (labels, annotations, a
//! container with ports, env and resources, tolerations, spec.nodeName),
//! the patches that update them, and where each version of a pod says
//! which mutation wrote it.
//!
//! Every mutation has a sequence number, unique in the run. A create or a
//! labels patch writes it in the annotation `bench.oxetcd.io/seq`; a status patch
//! (which cannot change metadata) in the message of the pod condition
//! `bench.oxetcd.io/seq`. The mutation that wrote a version is the higher of
//! the two ([`written_by`]). A delete's event carries the pod's last
//! version, so deletes are told by name instead (`super::ledger`).

use bytes::Bytes;
use serde_json::{json, Value};

/// The annotation and the condition type holding the sequence number.
pub const SEQ: &str = "bench.oxetcd.io/seq";
/// The label every object of a run carries (the run's id).
pub const RUN_LABEL: &str = "bench.oxetcd.io/run";

/// The name of simulated node `i`.
pub fn node_name(i: usize) -> String {
    format!("bench-node-{i:05}")
}

/// A Node object, registered as a kubelet would (so that a real cluster's
/// pod garbage collector keeps the pods bound to it).
pub fn node_json(name: &str, run: &str) -> Bytes {
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                RUN_LABEL: run,
            },
        },
    });
    Bytes::from(node.to_string())
}

/// What the load knows of one pod.
#[derive(Clone, Debug)]
pub struct PodState {
    pub name: String,
    pub node: usize,
    /// The resourceVersion of the last version this run wrote.
    pub rv: String,
    /// How many times its labels were updated (a label carries it).
    pub generation: u64,
    /// The Ready condition the next status patch reports.
    pub ready: bool,
}

/// The pod as created.
pub fn pod_json(namespace: &str, run: &str, pod: &PodState, seq: u64, size: usize) -> Bytes {
    let node = node_name(pod.node);
    let mut value = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "namespace": namespace,
            "labels": {
                "app": format!("bench-app-{}", pod.node % 20),
                "pod-template-hash": "7f9c8d6b5c",
                "tier": "backend",
                "bench.oxetcd.io/generation": pod.generation.to_string(),
                RUN_LABEL: run,
            },
            "annotations": {
                "kubernetes.io/config.source": "api",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9102",
                SEQ: seq.to_string(),
            },
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "containers": [{
                "name": "app",
                "image": "registry.k8s.io/pause:3.9",
                "imagePullPolicy": "IfNotPresent",
                "args": ["--port=8080", "--log-level=info"],
                "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": 9102, "protocol": "TCP"},
                ],
                "env": [
                    {"name": "POD_NAME", "value": pod.name},
                    {"name": "NODE_NAME", "value": node},
                    {"name": "LOG_FORMAT", "value": "json"},
                ],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"memory": "128Mi"},
                },
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                    "periodSeconds": 10,
                },
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            }],
            // Simulated nodes never become Ready: the pods stay bound to them.
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
            ],
        },
    });
    // Padding up to the size, in an annotation (padding in the spec would
    // not survive validation).
    let bare = value.to_string().len();
    let padding_key = "bench.oxetcd.io/padding";
    let overhead = padding_key.len() + 6; // ,"key":""
    let padding = size.saturating_sub(bare + overhead);
    if padding > 0 {
        value["metadata"]["annotations"][padding_key] = json!("x".repeat(padding));
    }
    Bytes::from(value.to_string())
}

/// The merge patch of an update, as a controller relabelling a pod: the
/// generation label and the sequence annotation, with the known
/// resourceVersion as a precondition (a conflict if the pod changed since).
/// A patch rather than a PUT of the whole pod: a real kube-apiserver fills
/// spec fields at create (admission) that a PUT would have to send back.
pub fn labels_patch(pod: &PodState, seq: u64) -> Bytes {
    let patch = json!({
        "metadata": {
            "resourceVersion": pod.rv,
            "labels": {"bench.oxetcd.io/generation": pod.generation.to_string()},
            "annotations": {SEQ: seq.to_string()},
        },
    });
    Bytes::from(patch.to_string())
}

/// The merge patch of a status update: the Ready condition flipped and the
/// sequence number in a condition of its own.
pub fn status_patch(pod: &PodState, seq: u64) -> Bytes {
    let ready = if pod.ready { "True" } else { "False" };
    let patch = json!({
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": ready},
                {"type": "ContainersReady", "status": ready},
                {"type": SEQ, "status": "True", "message": seq.to_string()},
            ],
        },
    });
    Bytes::from(patch.to_string())
}

/// The sequence number of the mutation that wrote this version of a pod
/// (0: none of this run's, e.g. a pod of the setup has 0 too).
pub fn written_by(pod: &Value) -> u64 {
    let annotation = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SEQ))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let condition = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(SEQ))
        })
        .and_then(|c| c.get("message").and_then(Value::as_str))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    annotation.max(condition)
}

/// metadata.resourceVersion of an object.
pub fn resource_version(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodState {
        PodState {
            name: "pod-1".into(),
            node: 3,
            rv: "10".into(),
            generation: 0,
            ready: true,
        }
    }

    #[test]
    fn pods_are_about_the_size_asked_and_say_who_wrote_them() {
        let json = pod_json("ns", "run1", &pod(), 42, 2048);
        assert!((2040..=2060).contains(&json.len()), "{}", json.len());
        let value: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["spec"]["nodeName"], "bench-node-00003");
        assert_eq!(written_by(&value), 42);
        // Too small a size: no padding, never an invalid object.
        let small: Value = serde_json::from_slice(&pod_json("ns", "r", &pod(), 1, 10)).unwrap();
        assert!(small["metadata"]["annotations"]
            .get("bench.oxetcd.io/padding")
            .is_none());
        let patch: Value = serde_json::from_slice(&labels_patch(&pod(), 8)).unwrap();
        assert_eq!(resource_version(&patch), Some("10"));
        assert_eq!(written_by(&patch), 8);
    }

    #[test]
    fn a_status_patch_outranks_an_older_annotation() {
        let mut value: Value = serde_json::from_slice(&pod_json("ns", "r", &pod(), 5, 0)).unwrap();
        let patch: Value = serde_json::from_slice(&status_patch(&pod(), 7)).unwrap();
        value["status"] = patch["status"].clone();
        assert_eq!(written_by(&value), 7);
        value["metadata"]["annotations"][SEQ] = json!("9");
        assert_eq!(written_by(&value), 9);
        assert_eq!(written_by(&json!({})), 0);
    }
}
