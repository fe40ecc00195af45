//! kube-apiserver's printers for the built-in kinds
//! (pkg/printers/internalversion/printers.go): the columns after Name and
//! each object's cells, computed from the JSON as those printers compute
//! them from the typed objects (absent fields read as Go's zero values).

use std::time::SystemTime;

use serde_json::{json, Value};

use super::{since, Cells, Column};
use crate::registry::Kind;

const AGE: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";

fn cols(defs: &[(&str, &str, i64, &str)]) -> Vec<Column> {
    defs.iter()
        .map(|(name, kind, priority, description)| Column::new(name, kind, *priority, description))
        .collect()
}

fn s<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn len(obj: &Value, pointer: &str) -> usize {
    match obj.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.to_string()
    }
}

fn age(obj: &Value, now: SystemTime) -> Value {
    json!(since(obj.pointer("/metadata/creationTimestamp"), now))
}

/// Container names and images, comma-separated (layoutContainerCells).
fn containers(obj: &Value, pointer: &str) -> (Value, Value) {
    let cs = arr(obj, pointer);
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// A map of labels as "a=b,c=d", sorted by key (labels.FormatLabels).
fn label_map(v: Option<&Value>) -> String {
    let Some(m) = v.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut kv: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    kv.sort();
    kv.join(",")
}

/// A LabelSelector as its selector string (metav1.LabelSelectorAsSelector).
fn selector(v: Option<&Value>) -> String {
    let Some(sel) = v.filter(|v| v.is_object()) else {
        return "<none>".into();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
    }
    for e in arr(sel, "/matchExpressions") {
        let key = s(e, "/key");
        let mut values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        values.sort();
        let text = match s(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

fn pod(p: &Value, now: SystemTime) -> Vec<Value> {
    let mut reason = match s(p, "/status/reason") {
        "" => s(p, "/status/phase").to_string(),
        r => r.to_string(),
    };
    for c in arr(p, "/status/conditions") {
        if s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }
    let init_specs = arr(p, "/spec/initContainers");
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| s(c, "/name") == name && s(c, "/restartPolicy") == "Always")
    };
    let total = arr(p, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| s(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut initializing = false;
    let init_count = init_specs.len();
    for (i, c) in arr(p, "/status/initContainerStatuses").iter().enumerate() {
        restarts += int(c, "/restartCount");
        if restartable(s(c, "/name")) {
            sidecar_restarts += int(c, "/restartCount");
        }
        let terminated = c.pointer("/state/terminated");
        let waiting = s(c, "/state/waiting/reason");
        if terminated.is_some() && int(c, "/state/terminated/exitCode") == 0 {
            continue;
        }
        if restartable(s(c, "/name")) && c["started"] == true {
            if c["ready"] == true {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            match (s(t, "/reason"), int(t, "/signal"), int(t, "/exitCode")) {
                ("", 0, code) => format!("Init:ExitCode:{code}"),
                ("", signal, _) => format!("Init:Signal:{signal}"),
                (r, _, _) => format!("Init:{r}"),
            }
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{i}/{init_count}")
        };
        initializing = true;
        break;
    }
    let initialized = arr(p, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == "Initialized" && s(c, "/status") == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        let mut running = false;
        for c in arr(p, "/status/containerStatuses").iter().rev() {
            restarts += int(c, "/restartCount");
            let waiting = s(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = match (s(t, "/reason"), int(t, "/signal"), int(t, "/exitCode")) {
                    ("", 0, code) => format!("ExitCode:{code}"),
                    ("", signal, _) => format!("Signal:{signal}"),
                    (r, _, _) => r.to_string(),
                };
            } else if c["ready"] == true && c.pointer("/state/running").is_some() {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            let ready_condition = arr(p, "/status/conditions")
                .iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            reason = if ready_condition {
                "Running"
            } else {
                "NotReady"
            }
            .into();
        }
    }
    let terminal = matches!(s(p, "/status/phase"), "Succeeded" | "Failed");
    if p.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        if s(p, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if !terminal {
            reason = "Terminating".into();
        }
    }
    let ip = arr(p, "/status/podIPs")
        .first()
        .map(|i| s(i, "/ip"))
        .unwrap_or("");
    let gates = arr(p, "/spec/readinessGates");
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let ok = gates
            .iter()
            .filter(|g| {
                arr(p, "/status/conditions")
                    .iter()
                    .find(|c| s(c, "/type") == s(g, "/conditionType"))
                    .is_some_and(|c| s(c, "/status") == "True")
            })
            .count();
        format!("{ok}/{}", gates.len())
    };
    vec![
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts.to_string()),
        age(p, now),
        json!(or_none(ip)),
        json!(or_none(s(p, "/spec/nodeName"))),
        json!(or_none(s(p, "/status/nominatedNodeName"))),
        json!(gates_cell),
    ]
}

fn replicas(obj: &Value) -> i64 {
    // spec.replicas defaults to 1.
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn job_status(j: &Value) -> &'static str {
    let has = |t: &str| {
        arr(j, "/status/conditions")
            .iter()
            .any(|c| s(c, "/type") == t && s(c, "/status") == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if j
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

fn job(j: &Value, now: SystemTime) -> Vec<Value> {
    let succeeded = int(j, "/status/succeeded");
    let completions = match (
        j.pointer("/spec/completions"),
        j.pointer("/spec/parallelism"),
    ) {
        (Some(c), _) if c.is_i64() => format!("{succeeded}/{}", c.as_i64().unwrap_or(0)),
        (_, Some(p)) if p.as_i64().unwrap_or(0) > 1 => {
            format!("{succeeded}/1 of {}", p.as_i64().unwrap_or(0))
        }
        _ => format!("{succeeded}/1"),
    };
    let start = j.pointer("/status/startTime");
    let duration = match (start, j.pointer("/status/completionTime")) {
        (None, _) => String::new(),
        (Some(st), None) => since(Some(st), now),
        (Some(st), Some(end)) => {
            let end = end
                .as_str()
                .and_then(|e| humantime::parse_rfc3339_weak(e).ok())
                .unwrap_or(now);
            since(Some(st), end)
        }
    };
    let (names, images) = containers(j, "/spec/template/spec/containers");
    vec![
        json!(job_status(j)),
        json!(completions),
        json!(duration),
        age(j, now),
        names,
        images,
        json!(selector(j.pointer("/spec/selector"))),
    ]
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = match s(p, "/protocol") {
                "" => "TCP",
                x => x,
            };
            match int(p, "/nodePort") {
                0 => format!("{}/{proto}", int(p, "/port")),
                n => format!("{}:{n}/{proto}", int(p, "/port")),
            }
        })
        .collect();
    or_none(&ports.join(","))
}

fn external_ip(svc: &Value) -> String {
    let external: Vec<&str> = arr(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match s(svc, "/spec/type") {
        "" | "ClusterIP" | "NodePort" => or_none(&external.join(",")),
        "LoadBalancer" => {
            let mut ips: Vec<&str> = arr(svc, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match s(i, "/ip") {
                    "" => s(i, "/hostname"),
                    ip => ip,
                })
                .filter(|i| !i.is_empty())
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => s(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

fn node_status(n: &Value) -> String {
    let mut out: Vec<&str> = Vec::new();
    match arr(n, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == "Ready")
    {
        Some(c) if s(c, "/status") == "True" => out.push("Ready"),
        Some(_) => out.push("NotReady"),
        None => out.push("Unknown"),
    }
    if n.pointer("/spec/unschedulable") == Some(&json!(true)) {
        out.push("SchedulingDisabled");
    }
    out.join(",")
}

fn node_roles(n: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in n
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == "kubernetes.io/role" {
            if let Some(r) = v.as_str().filter(|r| !r.is_empty()) {
                roles.push(r.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    or_none(&roles.join(","))
}

fn node_address(n: &Value, kind: &str) -> String {
    or_none(
        arr(n, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == kind)
            .map(|a| s(a, "/address"))
            .unwrap_or(""),
    )
}

/// "ip:port,ip:port + N more..." of Endpoints subsets (formatEndpoints).
fn endpoints(e: &Value) -> String {
    const MAX: usize = 3;
    let mut all: Vec<String> = Vec::new();
    for subset in arr(e, "/subsets") {
        let ports = arr(subset, "/ports");
        for a in arr(subset, "/addresses") {
            let ip = s(a, "/ip");
            if ports.is_empty() {
                all.push(ip.to_string());
            }
            for p in ports {
                all.push(format!("{ip}:{}", int(p, "/port")));
            }
        }
    }
    if all.is_empty() {
        return "<none>".into();
    }
    let more = all.len().saturating_sub(MAX);
    let shown = all[..all.len().min(MAX)].join(",");
    if more > 0 {
        format!("{shown} + {more} more...")
    } else {
        shown
    }
}

fn slice_endpoints(e: &Value) -> String {
    const MAX: usize = 3;
    let all: Vec<&str> = arr(e, "/endpoints")
        .iter()
        .flat_map(|ep| arr(ep, "/addresses").iter().filter_map(Value::as_str))
        .collect();
    if all.is_empty() {
        return "<unset>".into();
    }
    let more = all.len().saturating_sub(MAX);
    let shown = all[..all.len().min(MAX)].join(",");
    if more > 0 {
        format!("{shown} + {more} more...")
    } else {
        shown
    }
}

fn access_modes(v: &[Value]) -> String {
    let short: Vec<&str> = v
        .iter()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    short.join(",")
}

fn event(e: &Value, now: SystemTime) -> Vec<Value> {
    let last = ["/lastTimestamp", "/eventTime", "/firstTimestamp"]
        .iter()
        .filter_map(|p| e.pointer(p))
        .find(|v| v.as_str().is_some_and(|s| !s.is_empty()));
    let first = ["/firstTimestamp", "/eventTime"]
        .iter()
        .filter_map(|p| e.pointer(p))
        .find(|v| v.as_str().is_some_and(|s| !s.is_empty()));
    let source = match (s(e, "/source/component"), s(e, "/reportingComponent")) {
        ("", r) => r,
        (c, _) => c,
    };
    let source = match s(e, "/source/host") {
        "" => source.to_string(),
        host => format!("{source}, {host}"),
    };
    let count = match int(e, "/count") {
        0 => int(e, "/series/count").max(1),
        n => n,
    };
    vec![
        json!(since(last, now)),
        json!(s(e, "/type")),
        json!(s(e, "/reason")),
        json!(format!(
            "{}/{}",
            s(e, "/involvedObject/kind").to_ascii_lowercase(),
            s(e, "/involvedObject/name")
        )),
        json!(s(e, "/involvedObject/fieldPath")),
        json!(source),
        json!(s(e, "/message")),
        json!(since(first, now)),
        json!(count),
        json!(s(e, "/metadata/name")),
    ]
}

/// The columns after Name and the cells of `kind`; None for kinds without a
/// printer (kube-apiserver's default convertor then applies).
pub(super) fn built_in(kind: &Kind) -> Option<(Vec<Column>, Cells)> {
    let (defs, cells): (&[(&str, &str, i64, &str)], Cells) = match (kind.group, kind.resource) {
        ("", "pods") => (
            &[
                ("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
                ("Status", "string", 0, "The aggregate status of the containers in this pod."),
                ("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
                ("Age", "string", 0, AGE),
                ("IP", "string", 1, "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
                ("Node", "string", 1, "NodeName is a request to schedule this pod onto a specific node."),
                ("Nominated Node", "string", 1, "nominatedNodeName is set only when this pod preempts other pods on the node."),
                ("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
            ],
            Box::new(pod),
        ),
        ("apps", "deployments") => (
            &[
                ("Ready", "string", 0, "Number of the pod with ready state"),
                ("Up-to-date", "string", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
                ("Available", "string", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
                ("Age", "string", 0, AGE),
                ("Containers", "string", 1, "Names of each container in the template."),
                ("Images", "string", 1, "Images referenced by each container in the template."),
                ("Selector", "string", 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
            ],
            Box::new(|d, now| {
                let (names, images) = containers(d, "/spec/template/spec/containers");
                vec![
                    json!(format!("{}/{}", int(d, "/status/readyReplicas"), replicas(d))),
                    json!(int(d, "/status/updatedReplicas")),
                    json!(int(d, "/status/availableReplicas")),
                    age(d, now),
                    names,
                    images,
                    json!(selector(d.pointer("/spec/selector"))),
                ]
            }),
        ),
        ("apps", "replicasets") => (
            &[
                ("Desired", "integer", 0, "Number of desired pods. This is a pointer to distinguish between explicit zero and unspecified."),
                ("Current", "integer", 0, "Replicas is the most recently observed number of replicas."),
                ("Ready", "integer", 0, "The number of ready replicas for this replica set."),
                ("Age", "string", 0, AGE),
                ("Containers", "string", 1, "Names of each container in the template."),
                ("Images", "string", 1, "Images referenced by each container in the template."),
                ("Selector", "string", 1, "Selector is a label query over pods that should match the replica count."),
            ],
            Box::new(|r, now| {
                let (names, images) = containers(r, "/spec/template/spec/containers");
                vec![
                    json!(replicas(r)),
                    json!(int(r, "/status/replicas")),
                    json!(int(r, "/status/readyReplicas")),
                    age(r, now),
                    names,
                    images,
                    json!(selector(r.pointer("/spec/selector"))),
                ]
            }),
        ),
        ("apps", "statefulsets") => (
            &[
                ("Ready", "string", 0, "Number of the pod with ready state"),
                ("Age", "string", 0, AGE),
                ("Containers", "string", 1, "Names of each container in the template."),
                ("Images", "string", 1, "Images referenced by each container in the template."),
            ],
            Box::new(|st, now| {
                let (names, images) = containers(st, "/spec/template/spec/containers");
                vec![
                    json!(format!("{}/{}", int(st, "/status/readyReplicas"), replicas(st))),
                    age(st, now),
                    names,
                    images,
                ]
            }),
        ),
        ("apps", "daemonsets") => (
            &[
                ("Desired", "integer", 0, "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
                ("Current", "integer", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
                ("Ready", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
                ("Up-to-date", "integer", 0, "The total number of nodes that are running updated daemon pod"),
                ("Available", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
                ("Node Selector", "string", 0, "NodeSelector is a selector which must be true for the pod to fit on a node."),
                ("Age", "string", 0, AGE),
                ("Containers", "string", 1, "Names of each container in the template."),
                ("Images", "string", 1, "Images referenced by each container in the template."),
                ("Selector", "string", 1, "A label query over pods that are managed by the daemon set."),
            ],
            Box::new(|ds, now| {
                let (names, images) = containers(ds, "/spec/template/spec/containers");
                vec![
                    json!(int(ds, "/status/desiredNumberScheduled")),
                    json!(int(ds, "/status/currentNumberScheduled")),
                    json!(int(ds, "/status/numberReady")),
                    json!(int(ds, "/status/updatedNumberScheduled")),
                    json!(int(ds, "/status/numberAvailable")),
                    json!(label_map(ds.pointer("/spec/template/spec/nodeSelector"))),
                    age(ds, now),
                    names,
                    images,
                    json!(selector(ds.pointer("/spec/selector"))),
                ]
            }),
        ),
        ("batch", "jobs") => (
            &[
                ("Status", "string", 0, "Status of the job."),
                ("Completions", "string", 0, "The desired number of successfully finished pods the job should be run with."),
                ("Duration", "string", 0, "Time required to complete the job."),
                ("Age", "string", 0, AGE),
                ("Containers", "string", 1, "Names of each container in the template."),
                ("Images", "string", 1, "Images referenced by each container in the template."),
                ("Selector", "string", 1, "A label query over pods that should match the pod count."),
            ],
            Box::new(job),
        ),
        ("batch", "cronjobs") => (
            &[
                ("Schedule", "string", 0, "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
                ("Timezone", "string", 0, "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
                ("Suspend", "boolean", 0, "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
                ("Active", "integer", 0, "A list of pointers to currently running jobs."),
                ("Last Schedule", "string", 0, "Information when was the last time the job was successfully scheduled."),
                ("Age", "string", 0, AGE),
                ("Containers", "string", 1, "Names of each container in the template."),
                ("Images", "string", 1, "Images referenced by each container in the template."),
                ("Selector", "string", 1, "A label query over pods that should match the pod count."),
            ],
            Box::new(|cj, now| {
                let (names, images) =
                    containers(cj, "/spec/jobTemplate/spec/template/spec/containers");
                let last = match cj.pointer("/status/lastScheduleTime") {
                    Some(t) if !t.is_null() => since(Some(t), now),
                    _ => "<none>".into(),
                };
                vec![
                    json!(s(cj, "/spec/schedule")),
                    json!(or_none(s(cj, "/spec/timeZone"))),
                    json!(cj.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false)),
                    json!(len(cj, "/status/active")),
                    json!(last),
                    age(cj, now),
                    names,
                    images,
                    json!(selector(cj.pointer("/spec/jobTemplate/spec/selector"))),
                ]
            }),
        ),
        ("", "services") => (
            &[
                ("Type", "string", 0, "type determines how the Service is exposed."),
                ("Cluster-IP", "string", 0, "clusterIP is the IP address of the service and is usually assigned randomly."),
                ("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
                ("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
                ("Age", "string", 0, AGE),
                ("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector."),
            ],
            Box::new(|svc, now| {
                vec![
                    json!(match s(svc, "/spec/type") {
                        "" => "ClusterIP",
                        t => t,
                    }),
                    json!(or_none(s(svc, "/spec/clusterIP"))),
                    json!(external_ip(svc)),
                    json!(service_ports(svc)),
                    age(svc, now),
                    json!(label_map(svc.pointer("/spec/selector"))),
                ]
            }),
        ),
        ("", "endpoints") => (
            &[
                ("Endpoints", "string", 0, "Endpoints of the service"),
                ("Age", "string", 0, AGE),
            ],
            Box::new(|e, now| vec![json!(endpoints(e)), age(e, now)]),
        ),
        ("", "configmaps") => (
            &[
                ("Data", "string", 0, "Data contains the configuration data."),
                ("Age", "string", 0, AGE),
            ],
            Box::new(|cm, now| {
                vec![
                    json!(len(cm, "/data") + len(cm, "/binaryData")),
                    age(cm, now),
                ]
            }),
        ),
        ("", "secrets") => (
            &[
                ("Type", "string", 0, "Used to facilitate programmatic handling of secret data."),
                ("Data", "string", 0, "Data contains the secret data."),
                ("Age", "string", 0, AGE),
            ],
            Box::new(|sec, now| {
                vec![
                    json!(s(sec, "/type")),
                    json!(len(sec, "/data")),
                    age(sec, now),
                ]
            }),
        ),
        ("", "serviceaccounts") => (
            &[
                ("Secrets", "string", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
                ("Age", "string", 0, AGE),
            ],
            Box::new(|sa, now| vec![json!(len(sa, "/secrets")), age(sa, now)]),
        ),
        ("", "namespaces") => (
            &[
                ("Status", "string", 0, "The status of the namespace"),
                ("Age", "string", 0, AGE),
            ],
            Box::new(|ns, now| vec![json!(s(ns, "/status/phase")), age(ns, now)]),
        ),
        ("", "nodes") => (
            &[
                ("Status", "string", 0, "The status of the node"),
                ("Roles", "string", 0, "The roles of the node"),
                ("Age", "string", 0, AGE),
                ("Version", "string", 0, "Kubelet Version reported by the node."),
                ("Internal-IP", "string", 1, "List of addresses reachable to the node. Queried from cloud provider, if available."),
                ("External-IP", "string", 1, "List of addresses reachable to the node. Queried from cloud provider, if available."),
                ("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
                ("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
                ("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
            ],
            Box::new(|n, now| {
                vec![
                    json!(node_status(n)),
                    json!(node_roles(n)),
                    age(n, now),
                    json!(s(n, "/status/nodeInfo/kubeletVersion")),
                    json!(node_address(n, "InternalIP")),
                    json!(node_address(n, "ExternalIP")),
                    json!(or_none(s(n, "/status/nodeInfo/osImage"))),
                    json!(or_none(s(n, "/status/nodeInfo/kernelVersion"))),
                    json!(or_none(s(n, "/status/nodeInfo/containerRuntimeVersion"))),
                ]
            }),
        ),
        ("", "events") => (
            &[
                ("Last Seen", "string", 0, "Time when this Event was last observed"),
                ("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
                ("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
                ("Object", "string", 0, "The object that this event is about."),
                ("Subobject", "string", 1, "The subobject (fieldPath) this event is about."),
                ("Source", "string", 1, "The component reporting this event."),
                ("Message", "string", 0, "A human-readable description of the status of this operation."),
                ("First Seen", "string", 1, "The time at which the event was first recorded."),
                ("Count", "string", 1, "The number of times this event has occurred."),
                ("Name", "string", 1, "Name of the event."),
            ],
            Box::new(event),
        ),
        ("", "persistentvolumes") => (
            &[
                ("Capacity", "string", 0, "capacity is the description of the persistent volume's resources and capacity."),
                ("Access Modes", "string", 0, "accessModes contains all ways the volume can be mounted."),
                ("Reclaim Policy", "string", 0, "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
                ("Status", "string", 0, "phase indicates if a volume is available, bound to a claim, or released by a claim."),
                ("Claim", "string", 0, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
                ("StorageClass", "string", 0, "storageClassName is the name of StorageClass to which this persistent volume belongs."),
                ("VolumeAttributesClass", "string", 0, "Name of VolumeAttributesClass to which this persistent volume belongs."),
                ("Reason", "string", 0, "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
                ("Age", "string", 0, AGE),
                ("VolumeMode", "string", 1, "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
            ],
            Box::new(|pv, now| {
                let claim = match s(pv, "/spec/claimRef/name") {
                    "" => String::new(),
                    name => format!("{}/{name}", s(pv, "/spec/claimRef/namespace")),
                };
                vec![
                    json!(s(pv, "/spec/capacity/storage")),
                    json!(access_modes(arr(pv, "/spec/accessModes"))),
                    json!(s(pv, "/spec/persistentVolumeReclaimPolicy")),
                    json!(s(pv, "/status/phase")),
                    json!(claim),
                    json!(s(pv, "/spec/storageClassName")),
                    json!(match s(pv, "/spec/volumeAttributesClassName") {
                        "" => "<unset>",
                        c => c,
                    }),
                    json!(s(pv, "/status/reason")),
                    age(pv, now),
                    json!(match s(pv, "/spec/volumeMode") {
                        "" => "<unset>",
                        m => m,
                    }),
                ]
            }),
        ),
        ("", "persistentvolumeclaims") => (
            &[
                ("Status", "string", 0, "phase represents the current phase of PersistentVolumeClaim."),
                ("Volume", "string", 0, "volumeName is the binding reference to the PersistentVolume backing this claim."),
                ("Capacity", "string", 0, "capacity represents the actual resources of the underlying volume."),
                ("Access Modes", "string", 0, "accessModes contains the actual access modes the volume backing the PVC has."),
                ("StorageClass", "string", 0, "storageClassName is the name of the StorageClass required by the claim."),
                ("VolumeAttributesClass", "string", 0, "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim."),
                ("Age", "string", 0, AGE),
                ("VolumeMode", "string", 1, "volumeMode defines what type of volume is required by the claim."),
            ],
            Box::new(|pvc, now| {
                let bound = s(pvc, "/status/phase") == "Bound";
                vec![
                    json!(s(pvc, "/status/phase")),
                    json!(s(pvc, "/spec/volumeName")),
                    json!(if bound { s(pvc, "/status/capacity/storage") } else { "" }),
                    json!(if bound { access_modes(arr(pvc, "/status/accessModes")) } else { String::new() }),
                    json!(s(pvc, "/spec/storageClassName")),
                    json!(match s(pvc, "/spec/volumeAttributesClassName") {
                        "" => "<unset>",
                        c => c,
                    }),
                    age(pvc, now),
                    json!(match s(pvc, "/spec/volumeMode") {
                        "" => "<unset>",
                        m => m,
                    }),
                ]
            }),
        ),
        ("coordination.k8s.io", "leases") => (
            &[
                ("Holder", "string", 0, "holderIdentity contains the identity of the holder of a current lease."),
                ("Age", "string", 0, AGE),
            ],
            Box::new(|l, now| vec![json!(s(l, "/spec/holderIdentity")), age(l, now)]),
        ),
        ("discovery.k8s.io", "endpointslices") => (
            &[
                ("AddressType", "string", 0, "addressType specifies the type of address carried by this EndpointSlice."),
                ("Ports", "string", 0, "ports specifies the list of network ports exposed by each endpoint in this slice."),
                ("Endpoints", "string", 0, "endpoints is a list of unique endpoints in this slice."),
                ("Age", "string", 0, AGE),
            ],
            Box::new(|es, now| {
                let ports: Vec<String> = arr(es, "/ports")
                    .iter()
                    .map(|p| int(p, "/port").to_string())
                    .collect();
                vec![
                    json!(s(es, "/addressType")),
                    json!(if ports.is_empty() { "<unset>".to_string() } else { ports.join(",") }),
                    json!(slice_endpoints(es)),
                    age(es, now),
                ]
            }),
        ),
        _ => return None,
    };
    Some((cols(defs), cells))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    fn cells(group: &str, resource: &str, obj: Value) -> Vec<Value> {
        let (_, f) = built_in(find(group, "v1", resource).unwrap()).unwrap();
        f(&obj, SystemTime::now())
    }

    #[test]
    fn pods_show_readiness_status_restarts_and_wide_columns() {
        let p = json!({"metadata": {"name": "web"}, "spec": {"nodeName": "n1",
                "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
                    {"name": "b", "ready": false, "restartCount": 1,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let c = cells("", "pods", p);
        assert_eq!(
            c[..3],
            [json!("1/2"), json!("CrashLoopBackOff"), json!("3")]
        );
        assert_eq!(
            c[4..],
            [
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
                             "status": {"phase": "Pending"}});
        let c = cells("", "pods", pending);
        assert_eq!(c[..3], [json!("0/1"), json!("Pending"), json!("0")]);
        assert_eq!(c[4], json!("<none>"));
    }

    #[test]
    fn workloads_services_and_nodes() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"},
                                                  {"name": "side", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let c = cells("apps", "deployments", d);
        assert_eq!(c[..3], [json!("2/3"), json!(3), json!(2)]);
        assert_eq!(
            c[4..],
            [
                json!("nginx,side"),
                json!("nginx:1.27,busybox"),
                json!("app=web")
            ]
        );
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}],
            "selector": {"b": "2", "a": "1"}}});
        let c = cells("", "services", svc);
        assert_eq!(
            c[..4],
            [
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP")
            ]
        );
        assert_eq!(c[5], json!("a=1,b=2"));
        let n = json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0"}}});
        let c = cells("", "nodes", n);
        assert_eq!(
            c[..2],
            [json!("Ready,SchedulingDisabled"), json!("control-plane")]
        );
        assert_eq!(c[3], json!("v1.32.0"));
        let cm = cells(
            "",
            "configmaps",
            json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}}),
        );
        assert_eq!(cm[0], json!(3));
        let job = cells(
            "batch",
            "jobs",
            json!({"spec": {"completions": 2},
            "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}),
        );
        assert_eq!(job[..2], [json!("Complete"), json!("1/2")]);
    }

    #[test]
    fn selectors_print_sorted_requirements() {
        let sel = json!({"matchLabels": {"b": "2"}, "matchExpressions": [
            {"key": "a", "operator": "In", "values": ["y", "x"]},
            {"key": "c", "operator": "DoesNotExist"}]});
        assert_eq!(selector(Some(&sel)), "a in (x,y),b=2,!c");
    }
}
