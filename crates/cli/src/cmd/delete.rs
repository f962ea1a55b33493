//! `kvol delete KIND NAME...` and `kvol delete -f FILE`: deletes, prints `persistentvolume "nfs" deleted`
//! as kubectl does, then (like kubectl's default `--wait=true`) waits until each object is really gone,
//! which with finalizers can be well after the DELETE returned.

use crate::client::{render_failures, unknown_resource_type, ConnectArgs, Connection, Failure, Mapping, RestMapper};
use crate::cmd::apply::{resolve, Target};
use crate::manifest;
use anyhow::bail;
use http::Method;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The resource type and names, or TYPE/NAME pairs.
    args: Vec<String>,
    /// Delete the objects in these files, directories or `-`.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Wait until the objects are gone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    wait: bool,
    /// Give up waiting after this many seconds (0: wait forever).
    #[arg(long, default_value_t = 0)]
    timeout: u64,
    /// Treat "not found" as success.
    #[arg(long)]
    ignore_not_found: bool,
}

pub async fn run(args: Args) -> anyhow::Result<bool> {
    let conn = Connection::connect(&args.connect).await?;
    let mut mapper = RestMapper::new(&conn);
    let mut targets: Vec<(Target, Option<String>)> = Vec::new();
    let mut failures = Vec::new();
    if !args.files.is_empty() {
        if !args.args.is_empty() {
            bail!("resource(s) were provided, but no name was specified");
        }
        for doc in manifest::read_all(&args.files)? {
            match resolve(&conn, &mut mapper, &doc).await? {
                Ok(t) => targets.push((t, Some(doc.source.clone()))),
                Err(message) => failures.push(Failure::Other(message)),
            }
        }
    } else {
        let Some((first, rest)) = args.args.split_first() else {
            bail!("You must provide one or more resources by argument or filename.");
        };
        let pairs: Vec<(String, String)> = match first.split_once('/') {
            Some(_) => args
                .args
                .iter()
                .map(|a| a.split_once('/').map(|(k, n)| (k.to_string(), n.to_string())).unwrap_or_default())
                .collect(),
            None if rest.is_empty() => bail!("resource(s) were provided, but no name was specified"),
            None => rest.iter().map(|n| (first.clone(), n.clone())).collect(),
        };
        for (word, name) in pairs {
            let Some(mapping) = mapper.for_name(&word).await? else {
                eprintln!("{}", unknown_resource_type(&word));
                return Ok(false);
            };
            let namespace = mapping.namespaced.then(|| conn.namespace.clone());
            targets.push((Target { mapping, namespace, name }, None));
        }
    }
    let mut deleted: Vec<(Mapping, Option<String>, String, String)> = Vec::new();
    for (target, source) in targets {
        let path = target.mapping.object_path(target.namespace.as_deref(), &target.name);
        let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
        match conn.json(Method::DELETE, &path, Some(("application/json", &body))).await? {
            Ok(response) => {
                println!("{} \"{}\" deleted", target.mapping.qualified_singular(), target.name);
                // The response is the object (graceful deletion) or a Status; either way wait by uid.
                let uid = response["metadata"]["uid"]
                    .as_str()
                    .or_else(|| response["details"]["uid"].as_str())
                    .unwrap_or_default()
                    .to_string();
                deleted.push((target.mapping, target.namespace, target.name, uid));
            }
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e) => {
                let prefix = source.map(|s| format!("error when deleting \"{s}\": ")).unwrap_or_default();
                failures.push(Failure::Api(e.with_prefix(&prefix)));
            }
        }
    }
    if args.wait {
        let deadline = (args.timeout > 0).then(|| Instant::now() + Duration::from_secs(args.timeout));
        for (mapping, namespace, name, uid) in &deleted {
            if !wait_gone(&conn, mapping, namespace.as_deref(), name, uid, deadline).await? {
                failures
                    .push(Failure::Other(format!("timed out waiting for the condition on {}/{name}", mapping.plural)));
            }
        }
    }
    eprint!("{}", render_failures(&failures));
    Ok(failures.is_empty())
}

/// Polls until the object is gone (or replaced by one with another uid); false on timeout.
async fn wait_gone(
    conn: &Connection,
    mapping: &Mapping,
    namespace: Option<&str>,
    name: &str,
    uid: &str,
    deadline: Option<Instant>,
) -> anyhow::Result<bool> {
    let path = mapping.object_path(namespace, name);
    let mut delay = Duration::from_millis(20);
    loop {
        match conn.get(&path).await? {
            Err(e) if e.is_not_found() => return Ok(true),
            Ok(obj) if !uid.is_empty() && obj["metadata"]["uid"].as_str() != Some(uid) => return Ok(true),
            _ => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}
