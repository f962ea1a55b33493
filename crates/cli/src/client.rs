//! The connection every client command shares: finding the kubeconfig (`--kubeconfig`, `KUBECONFIG`,
//! `<data-dir>/kubeconfig`), raw JSON requests over the `kube` client, the errors kubectl prints for
//! failed requests (`Error from server (NotFound): ...`), and a REST mapper fed by discovery.
//!
//! Design decision: the CLI talks plain Kubernetes REST with `serde_json::Value` bodies and resolves
//! kinds through the server's discovery documents, never through kvol's own resource table, so every
//! command works unchanged against a real Kubernetes API server.

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use std::fmt;
use std::path::PathBuf;

/// The default data directory of `kvol server`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/kvol";

/// `Accept` header kubectl sends for server-side printing.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// How to find and address the server; flattened into every client subcommand.
#[derive(clap::Args, Clone, Debug)]
pub struct ConnectArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then <data-dir>/kubeconfig).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// kvol's data directory, whose kubeconfig is used when no other is given.
    #[arg(long, env = "KVOL_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The namespace (default: the kubeconfig context's namespace, then `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// A failed request, as the server's `metav1.Status` describes it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason` (`NotFound`, `Invalid`, `AlreadyExists`...), empty if the server sent none.
    pub reason: String,
    /// `Status.message`, or the body when it was not a Status.
    pub message: String,
    /// `Status.details.kind` and `.name`, when the server sent details.
    pub details: Option<(String, String)>,
    /// `Status.details.causes` as (field, message).
    pub causes: Vec<(String, String)>,
}

impl ApiError {
    fn from_response(code: StatusCode, body: &[u8]) -> ApiError {
        let status: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            status.as_ref().and_then(|s| s.get(name)).and_then(Value::as_str).unwrap_or_default().to_string()
        };
        let mut message = field("message");
        if message.is_empty() {
            message = String::from_utf8_lossy(body).trim().to_string();
        }
        let mut reason = field("reason");
        if reason.is_empty() {
            reason = default_reason(code).to_string();
        }
        let details = status.as_ref().and_then(|s| s.get("details")).filter(|d| d.is_object());
        let causes = details
            .and_then(|d| d["causes"].as_array())
            .into_iter()
            .flatten()
            .map(|c| {
                let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                (text("field"), text("message"))
            })
            .collect();
        let details = details.map(|d| {
            let text = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            (text("kind"), text("name"))
        });
        ApiError { code: code.as_u16(), reason, message, details, causes }
    }

    /// The same error with `prefix` before its message (kubectl's `AddSourceToErr`).
    pub fn with_prefix(mut self, prefix: &str) -> ApiError {
        self.message = format!("{prefix}{}", self.message);
        self
    }

    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }

    /// kubectl's rendering: `Error from server (Reason): <prefix><message>`.
    pub fn kubectl_message(&self, prefix: &str) -> String {
        if self.reason.is_empty() {
            format!("Error from server: {prefix}{}", self.message)
        } else {
            format!("Error from server ({}): {prefix}{}", self.reason, self.message)
        }
    }
}

/// The reason apimachinery infers for a status code when the body has none.
fn default_reason(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Gone",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kubectl_message(""))
    }
}

impl std::error::Error for ApiError {}

/// One failed step of a multi-object command, kept until the end as kubectl keeps its errors.
#[derive(Debug)]
pub enum Failure {
    /// The server refused.
    Api(ApiError),
    /// Anything else (mapping, validation, I/O), as its message.
    Other(String),
}

impl Failure {
    /// `messageForError`: an API error with its reason, anything else as is.
    fn line(&self) -> String {
        match self {
            Failure::Api(e) => e.kubectl_message(""),
            Failure::Other(m) => m.clone(),
        }
    }
}

/// What kubectl's `CheckErr` prints for the errors of one command: a lone invalid-object error as
/// `The Kind "name" is invalid: field: message`, a lone other error with `error: `, several one per line.
pub fn render_failures(failures: &[Failure]) -> String {
    let text = match failures {
        [] => return String::new(),
        [Failure::Api(e)] if e.code == 422 || e.reason == "Invalid" => match &e.details {
            None => format!("The request is invalid: {}", e.message),
            Some((kind, name)) => {
                let head = format!("The {kind} \"{name}\" is invalid");
                match e.causes.as_slice() {
                    [] => head,
                    [(field, message)] => format!("{head}: {field}: {message}"),
                    many => {
                        let mut out = format!("{head}: \n");
                        for (field, message) in many {
                            out.push_str(&format!("* {field}: {message}\n"));
                        }
                        out
                    }
                }
            }
        },
        [Failure::Api(e)] => e.kubectl_message(""),
        [Failure::Other(m)] if m.starts_with("error: ") => m.clone(),
        [Failure::Other(m)] => format!("error: {m}"),
        many => many.iter().map(Failure::line).collect::<Vec<_>>().join("\n"),
    };
    if text.ends_with('\n') {
        text
    } else {
        text + "\n"
    }
}

/// A `kube` client from a kubeconfig file: what the long-running subcommands (controllers, agent, CSI
/// roles, and `kvol server`'s in-process parts) talk to the API server with.
pub async fn client_from_kubeconfig(path: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", path.display()))?;
    kube::Client::try_from(config).context("building the API client")
}

/// A client from the pod's service account (`KUBERNETES_SERVICE_HOST`, the token and CA under
/// `/var/run/secrets/kubernetes.io/serviceaccount`), for the parts run inside a cluster.
pub fn client_in_cluster() -> anyhow::Result<kube::Client> {
    let config = kube::Config::incluster().context("no --kubeconfig and not running in a cluster")?;
    kube::Client::try_from(config).context("building the API client")
}

/// This machine's hostname, lower-cased: kubelet's default node name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// The outcome of one request: transport failures are `anyhow` errors, API failures an [`ApiError`].
pub type ApiResult<T> = anyhow::Result<Result<T, ApiError>>;

/// A connection to one API server.
#[derive(Clone)]
pub struct Connection {
    client: kube::Client,
    /// The namespace for namespaced resources when an object or `-n` names none.
    pub namespace: String,
    /// Whether `-n` was given explicitly.
    pub namespace_explicit: bool,
}

impl Connection {
    /// Connects as `args` say.
    pub async fn connect(args: &ConnectArgs) -> anyhow::Result<Connection> {
        let kubeconfig = load_kubeconfig(args)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .context("reading the kubeconfig")?;
        let context_namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).context("building the client")?;
        let namespace_explicit = args.namespace.is_some();
        let namespace = args.namespace.clone().unwrap_or(context_namespace);
        Ok(Connection { client, namespace, namespace_explicit })
    }

    /// Sends one request and returns the raw response body, or the API error.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> ApiResult<Bytes> {
        let response = self.send(method.clone(), path, accept, body).await?;
        let code = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the response to {method} {path}"))?
            .to_bytes();
        if code.is_success() {
            Ok(Ok(bytes))
        } else {
            Ok(Err(ApiError::from_response(code, &bytes)))
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<http::Response<Body>> {
        let mut builder = Request::builder().method(method.clone()).uri(path).header(http::header::ACCEPT, accept);
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(http::header::CONTENT_TYPE, content_type);
                Body::from(bytes)
            }
            None => Body::from(Vec::new()),
        };
        let request = builder.body(body).with_context(|| format!("building {method} {path}"))?;
        self.client.send(request).await.with_context(|| format!("{method} {path}"))
    }

    /// A JSON request; the response parsed as JSON.
    pub async fn json(&self, method: Method, path: &str, body: Option<(&str, &Value)>) -> ApiResult<Value> {
        self.json_accept(method, path, "application/json", body).await
    }

    /// A JSON request with an explicit `Accept` header.
    pub async fn json_accept(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        body: Option<(&str, &Value)>,
    ) -> ApiResult<Value> {
        let body = match body {
            Some((ct, v)) => Some((ct, serde_json::to_vec(v)?)),
            None => None,
        };
        match self.raw(method.clone(), path, accept, body).await? {
            Ok(bytes) => {
                let value = serde_json::from_slice(&bytes)
                    .with_context(|| format!("decoding the response to {method} {path}"))?;
                Ok(Ok(value))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// GET as JSON.
    pub async fn get(&self, path: &str) -> ApiResult<Value> {
        self.json(Method::GET, path, None).await
    }

    /// Opens a watch and returns a stream of its events (one JSON object per line).
    pub async fn watch(
        &self,
        path: &str,
        accept: &str,
    ) -> ApiResult<impl futures::Stream<Item = anyhow::Result<Value>> + use<>> {
        let response = self.send(Method::GET, path, accept, None).await?;
        let code = response.status();
        if !code.is_success() {
            let bytes = response.into_body().collect().await?.to_bytes();
            return Ok(Err(ApiError::from_response(code, &bytes)));
        }
        let frames = response.into_body().into_data_stream();
        let lines = futures::stream::unfold((frames, Vec::<u8>::new()), |(mut frames, mut pending)| async move {
            loop {
                if let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let event = serde_json::from_slice::<Value>(&line).context("decoding a watch event");
                    return Some((event, (frames, pending)));
                }
                match frames.next().await {
                    Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(anyhow::anyhow!("reading the watch: {e}")), (frames, pending))),
                    None => return None,
                }
            }
        });
        Ok(Ok(lines))
    }
}

fn load_kubeconfig(args: &ConnectArgs) -> anyhow::Result<Kubeconfig> {
    if let Some(path) = &args.kubeconfig {
        return Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()));
    }
    if let Some(config) = Kubeconfig::from_env().context("reading $KUBECONFIG")? {
        return Ok(config);
    }
    let path = args.data_dir.join("kubeconfig");
    if !path.exists() {
        bail!(
            "no kubeconfig: pass --kubeconfig, set KUBECONFIG, or start `kvol server --data-dir {}` (looked for {})",
            args.data_dir.display(),
            path.display()
        );
    }
    Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))
}

/// One resource as discovery describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// API group, `""` for core.
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// URL plural.
    pub plural: String,
    /// Singular name (kubectl prints `persistentvolume/nfs`); falls back to the lower-cased kind.
    pub singular: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names.
    pub short_names: Vec<String>,
}

impl Mapping {
    /// `v1` or `storage.k8s.io/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `persistentvolume` or `storageclass.storage.k8s.io`, as kubectl names the resource in messages.
    pub fn qualified_singular(&self) -> String {
        if self.group.is_empty() {
            self.singular.clone()
        } else {
            format!("{}.{}", self.singular, self.group)
        }
    }

    /// The collection path: `/api/v1/namespaces/default/pods`, or cluster-wide when `namespace` is None.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }

    /// The path of one object.
    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{}", self.collection_path(namespace), name)
    }

    fn matches_word(&self, word: &str) -> bool {
        let w = word.to_ascii_lowercase();
        w == self.plural || w == self.singular || w == self.kind.to_ascii_lowercase() || self.short_names.contains(&w)
    }
}

/// `/api/v1` or `/apis/<group>/<version>`.
fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// Resolves kinds and kubectl's resource names through discovery, caching each group-version.
pub struct RestMapper {
    conn: Connection,
    cache: std::collections::HashMap<String, Option<Vec<Mapping>>>,
}

impl RestMapper {
    /// A mapper over `conn`'s discovery.
    pub fn new(conn: &Connection) -> RestMapper {
        RestMapper { conn: conn.clone(), cache: Default::default() }
    }

    async fn resources(&mut self, group: &str, version: &str) -> anyhow::Result<Option<Vec<Mapping>>> {
        let path = group_version_path(group, version);
        if let Some(cached) = self.cache.get(&path) {
            return Ok(cached.clone());
        }
        let list = match self.conn.get(&path).await? {
            Ok(list) => Some(parse_resource_list(group, version, &list)),
            Err(e) if e.code == 404 || e.code == 503 => None,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("discovery of {path}"))),
        };
        self.cache.insert(path, list.clone());
        Ok(list)
    }

    /// The resource for an object's `apiVersion` and `kind`, or None (kubectl's "no matches for kind").
    pub async fn for_kind(&mut self, api_version: &str, kind: &str) -> anyhow::Result<Option<Mapping>> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        if version.is_empty() || kind.is_empty() {
            return Ok(None);
        }
        Ok(self.resources(group, version).await?.and_then(|rs| rs.into_iter().find(|m| m.kind == kind)))
    }

    /// The resource a user means by `word` (`pv`, `pvc`, `storageclasses`, `sc.storage.k8s.io`).
    pub async fn for_name(&mut self, word: &str) -> anyhow::Result<Option<Mapping>> {
        let (base, group) = match word.split_once('.') {
            Some((b, g)) => (b, Some(if g == "core" { "" } else { g })),
            None => (word, None),
        };
        // Try the group-version kvol knows the word from first: one discovery request instead of all of them.
        if let Some(known) = kvol_api::resources::by_name(word) {
            let found = self.resources(known.group, known.version).await?;
            if let Some(found) = found.and_then(|rs| rs.into_iter().find(|m| m.matches_word(base))) {
                return Ok(Some(found));
            }
        }
        for (g, v) in self.group_versions().await? {
            if group.is_some_and(|wanted| wanted != g) {
                continue;
            }
            if let Some(found) =
                self.resources(&g, &v).await?.and_then(|rs| rs.into_iter().find(|m| m.matches_word(base)))
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Every served group's preferred version, core first.
    async fn group_versions(&mut self) -> anyhow::Result<Vec<(String, String)>> {
        let mut out = vec![(String::new(), "v1".to_string())];
        let groups = match self.conn.get("/apis").await? {
            Ok(v) => v,
            Err(e) => return Err(anyhow::Error::new(e).context("discovery of /apis")),
        };
        for g in groups["groups"].as_array().into_iter().flatten() {
            let name = g["name"].as_str().unwrap_or_default();
            let version = g["preferredVersion"]["version"]
                .as_str()
                .or_else(|| g["versions"][0]["version"].as_str())
                .unwrap_or_default();
            if !name.is_empty() && !version.is_empty() {
                out.push((name.to_string(), version.to_string()));
            }
        }
        Ok(out)
    }
}

fn parse_resource_list(group: &str, version: &str, list: &Value) -> Vec<Mapping> {
    let mut out = Vec::new();
    for r in list["resources"].as_array().into_iter().flatten() {
        let plural = r["name"].as_str().unwrap_or_default();
        if plural.is_empty() || plural.contains('/') {
            continue;
        }
        let kind = r["kind"].as_str().unwrap_or_default().to_string();
        let singular = match r["singularName"].as_str() {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => kind.to_ascii_lowercase(),
        };
        let short_names =
            r["shortNames"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
        out.push(Mapping {
            group: group.to_string(),
            version: version.to_string(),
            kind,
            plural: plural.to_string(),
            singular,
            namespaced: r["namespaced"].as_bool().unwrap_or(false),
            short_names,
        });
    }
    out
}

/// kubectl's error for a resource name it cannot map.
pub fn unknown_resource_type(word: &str) -> String {
    format!("error: the server doesn't have a resource type \"{word}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_paths_for_core_and_grouped_resources() {
        let list = json!({"resources": [
            {"name": "persistentvolumeclaims", "singularName": "persistentvolumeclaim", "namespaced": true,
             "kind": "PersistentVolumeClaim", "shortNames": ["pvc"]},
            {"name": "persistentvolumeclaims/status", "namespaced": true, "kind": "PersistentVolumeClaim"},
        ]});
        let ms = parse_resource_list("", "v1", &list);
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].object_path(Some("default"), "c"), "/api/v1/namespaces/default/persistentvolumeclaims/c");
        assert!(ms[0].matches_word("PVC"));
        let sc = Mapping {
            group: "storage.k8s.io".into(),
            version: "v1".into(),
            kind: "StorageClass".into(),
            plural: "storageclasses".into(),
            singular: "storageclass".into(),
            namespaced: false,
            short_names: vec!["sc".into()],
        };
        assert_eq!(sc.object_path(Some("default"), "fast"), "/apis/storage.k8s.io/v1/storageclasses/fast");
        assert_eq!(sc.qualified_singular(), "storageclass.storage.k8s.io");
    }

    #[test]
    fn renders_api_errors_like_kubectl() {
        let body = br#"{"kind":"Status","status":"Failure","reason":"NotFound","message":"persistentvolumes \"x\" not found","code":404}"#;
        let e = ApiError::from_response(StatusCode::NOT_FOUND, body);
        assert_eq!(e.to_string(), "Error from server (NotFound): persistentvolumes \"x\" not found");
        let plain = ApiError::from_response(StatusCode::BAD_REQUEST, b"bad");
        assert_eq!(plain.kubectl_message("when creating: "), "Error from server (BadRequest): when creating: bad");
    }

    #[test]
    fn a_lone_invalid_error_prints_its_causes_like_kubectl() {
        let body = br#"{"kind":"Status","reason":"Invalid","code":422,"message":"StorageClass \"fast\" is invalid: parameters: Forbidden: updates to parameters are forbidden.","details":{"kind":"StorageClass","name":"fast","causes":[{"field":"parameters","message":"Forbidden: updates to parameters are forbidden."}]}}"#;
        let e = ApiError::from_response(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(
            render_failures(&[Failure::Api(e.clone())]),
            "The StorageClass \"fast\" is invalid: parameters: Forbidden: updates to parameters are forbidden.\n"
        );
        let two = render_failures(&[
            Failure::Api(e.with_prefix("error when creating \"f\": ")),
            Failure::Other("boom".into()),
        ]);
        assert!(two.starts_with("Error from server (Invalid): error when creating \"f\": StorageClass"), "{two}");
        assert!(two.ends_with("\nboom\n"), "{two}");
        assert_eq!(render_failures(&[Failure::Other("x".into())]), "error: x\n");
    }
}
