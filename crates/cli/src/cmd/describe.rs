//! `kvol describe KIND NAME...`: fetches the object and what kubectl's describer for its kind looks up
//! besides (its events by `involvedObject` field selector, the pods using a claim or running on a node,
//! a node's lease, a namespace's quotas), then prints it with the describers in `printers::describe`.

use crate::client::{unknown_resource_type, ConnectArgs, Connection, Mapping, RestMapper};
use crate::cmd::get::escape_query;
use crate::printers::describe::{self, Extra};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The resource type (`pv`, `pvc`, `pod`, `sc`...), or TYPE/NAME.
    kind: String,
    /// Object names (default: every object of the type).
    names: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<bool> {
    let conn = Connection::connect(&args.connect).await?;
    let mut mapper = RestMapper::new(&conn);
    let (word, mut names) = match args.kind.split_once('/') {
        Some((k, n)) => (k.to_string(), vec![n.to_string()]),
        None => (args.kind.clone(), args.names.clone()),
    };
    if args.kind.contains('/') {
        names.extend(args.names.iter().map(|n| n.rsplit('/').next().unwrap_or(n).to_string()));
    }
    let Some(mapping) = mapper.for_name(&word).await? else {
        eprintln!("{}", unknown_resource_type(&word));
        return Ok(false);
    };
    let namespace = mapping.namespaced.then(|| conn.namespace.clone());
    let mut objects = Vec::new();
    let mut ok = true;
    if names.is_empty() {
        match conn.get(&mapping.collection_path(namespace.as_deref())).await? {
            Ok(list) => objects.extend(list["items"].as_array().cloned().unwrap_or_default()),
            Err(e) => {
                eprintln!("{e}");
                return Ok(false);
            }
        }
        if objects.is_empty() {
            match &namespace {
                Some(ns) => eprintln!("No resources found in {ns} namespace."),
                None => eprintln!("No resources found"),
            }
        }
    }
    for name in &names {
        match conn.get(&mapping.object_path(namespace.as_deref(), name)).await? {
            Ok(o) => objects.push(o),
            Err(e) => {
                ok = false;
                eprintln!("{e}");
            }
        }
    }
    let mut first = true;
    for object in &objects {
        let extra = gather(&conn, &mapping, object).await?;
        let text = describe::describe(&mapping.kind, object, &extra);
        if first {
            print!("{text}");
            first = false;
        } else {
            print!("\n\n{text}");
        }
    }
    Ok(ok)
}

/// Everything the kind's describer shows besides the object itself.
async fn gather(conn: &Connection, mapping: &Mapping, object: &Value) -> anyhow::Result<Extra> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
    let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
    let mut extra = Extra { now: Some(jiff::Timestamp::now()), ..Default::default() };
    if describe::shows_events(&mapping.kind) {
        // kubectl drops the kind from a pod's event reference, and looks node events up by uid and by name.
        let kind = if mapping.kind == "Pod" { "" } else { mapping.kind.as_str() };
        let mut events = search_events(conn, kind, name, namespace, uid).await?;
        if mapping.kind == "Node" {
            events.extend(search_events(conn, kind, name, namespace, name).await?);
        }
        extra.events = Some(events);
    }
    match mapping.kind.as_str() {
        "PersistentVolumeClaim" => {
            let pods = list_items(conn, &format!("/api/v1/namespaces/{namespace}/pods"), "").await?.unwrap_or_default();
            extra.pods = describe::pods_using_claim(&pods, name).into_iter().cloned().collect();
        }
        "Node" => {
            let selector = format!("spec.nodeName={name},status.phase!=Succeeded,status.phase!=Failed");
            extra.pods = match list_items(conn, "/api/v1/pods", &format!("fieldSelector={}", escape_query(&selector)))
                .await?
            {
                Some(pods) => pods,
                None => {
                    let only_node = format!("spec.nodeName={name}");
                    let pods = list_items(conn, "/api/v1/pods", &format!("fieldSelector={}", escape_query(&only_node)))
                        .await?
                        .unwrap_or_default();
                    pods.into_iter()
                        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
                        .collect()
                }
            };
            let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}");
            extra.lease = Some(match conn.get(&lease_path).await? {
                Ok(lease) => Ok(lease),
                Err(e) => Err(e.message),
            });
        }
        "Namespace" => {
            extra.quotas = list_items(conn, &format!("/api/v1/namespaces/{name}/resourcequotas"), "").await?;
            extra.limit_ranges = list_items(conn, &format!("/api/v1/namespaces/{name}/limitranges"), "").await?;
        }
        _ => {}
    }
    Ok(extra)
}

/// A list's items, or None if the server refused the list (kubectl then leaves the section out).
async fn list_items(conn: &Connection, path: &str, query: &str) -> anyhow::Result<Option<Vec<Value>>> {
    let url = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
    Ok(match conn.get(&url).await? {
        Ok(list) => Some(list["items"].as_array().cloned().unwrap_or_default()),
        Err(_) => None,
    })
}

/// client-go's `Events.Search`: events whose involvedObject matches, by field selector.
async fn search_events(
    conn: &Connection,
    kind: &str,
    name: &str,
    namespace: &str,
    uid: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut terms = Vec::new();
    if !kind.is_empty() {
        terms.push(format!("involvedObject.kind={kind}"));
    }
    terms.push(format!("involvedObject.name={name}"));
    terms.push(format!("involvedObject.namespace={namespace}"));
    if !uid.is_empty() {
        terms.push(format!("involvedObject.uid={uid}"));
    }
    let path = if namespace.is_empty() {
        "/api/v1/events".to_string()
    } else {
        format!("/api/v1/namespaces/{namespace}/events")
    };
    let query = format!("fieldSelector={}", escape_query(&terms.join(",")));
    Ok(list_items(conn, &path, &query).await?.unwrap_or_default())
}
