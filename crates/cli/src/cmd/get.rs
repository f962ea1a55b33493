//! `kvol get KIND [NAME...]`: asks the server for `meta.k8s.io/v1` Tables (server-side printing, as
//! kubectl does, so the columns are the server's) and prints them with kubectl's table printer; `-o
//! yaml|json|name` print the objects instead; `-w` keeps printing rows as watch events arrive.

use crate::client::{unknown_resource_type, ApiError, ConnectArgs, Connection, Mapping, RestMapper, TABLE_ACCEPT};
use crate::printers::table::{TableOptions, TablePrinter};
use crate::printers::yaml;
use anyhow::bail;
use futures::StreamExt;
use serde_json::{json, Value};
use std::io::Write;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The resource type (`pv`, `pvc`, `storageclasses`...), or TYPE/NAME pairs.
    #[arg(required = true)]
    kind: String,
    /// Object names.
    names: Vec<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Label selector (`app=web,tier!=db`).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Field selector (`metadata.name=x`).
    #[arg(long)]
    field_selector: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    output: Option<Output>,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    watch: bool,
}

/// What to fetch: one resource, and either names or a selector.
struct Query {
    mapping: Mapping,
    namespace: Option<String>,
    names: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<bool> {
    let conn = Connection::connect(&args.connect).await?;
    let mut mapper = RestMapper::new(&conn);
    let (words, names) = split_type_and_names(&args.kind, &args.names)?;
    let mut queries = Vec::new();
    for word in words.split(',').filter(|w| !w.is_empty()) {
        let Some(mapping) = mapper.for_name(word).await? else {
            eprintln!("{}", unknown_resource_type(word));
            return Ok(false);
        };
        let namespace = match (mapping.namespaced, args.all_namespaces) {
            (true, false) => Some(conn.namespace.clone()),
            _ => None,
        };
        queries.push(Query { mapping, namespace, names: names.clone() });
    }
    match queries.as_slice() {
        [] => bail!("You must specify the type of resource to get."),
        [query] => match args.output {
            None | Some(Output::Wide) => print_tables(&conn, &args, query, false).await.map(|(ok, _)| ok),
            Some(format) => print_objects(&conn, &args, query, format).await,
        },
        _ if args.watch => bail!("you may only specify a single resource type"),
        many => print_several(&conn, &args, many).await,
    }
}

/// `kvol get pv,pvc`: one table per type, names prefixed with the kind and tables separated by a
/// blank line, or one List of every object.
async fn print_several(conn: &Connection, args: &Args, queries: &[Query]) -> anyhow::Result<bool> {
    let mut ok = true;
    match args.output {
        None | Some(Output::Wide) => {
            let mut printed = false;
            for query in queries {
                if printed {
                    println!();
                }
                let (query_ok, rows) = print_tables(conn, args, query, true).await?;
                ok &= query_ok;
                printed |= rows;
            }
            if !printed && queries.iter().all(|q| q.names.is_empty()) {
                // kubectl names the namespace only when every listed type is namespaced.
                match queries.iter().find(|q| q.namespace.is_none()) {
                    Some(cluster_wide) => eprintln!("{}", no_resources_message(cluster_wide)),
                    None => eprintln!("{}", no_resources_message(&queries[0])),
                }
            }
        }
        Some(format) => {
            let mut objects = Vec::new();
            for query in queries {
                let path = query.mapping.collection_path(query.namespace.as_deref());
                match list_all(conn, &path, &list_query(args, None), "application/json").await? {
                    Ok(list) => {
                        for mut item in list["items"].as_array().cloned().unwrap_or_default() {
                            if format == Output::Name {
                                println!("{}", name_line(&query.mapping, &item));
                                continue;
                            }
                            item["apiVersion"] = json!(query.mapping.api_version());
                            item["kind"] = json!(query.mapping.kind);
                            objects.push(item);
                        }
                    }
                    Err(e) => {
                        ok = false;
                        eprintln!("{e}");
                    }
                }
            }
            if format != Output::Name {
                let list =
                    json!({"apiVersion": "v1", "items": objects, "kind": "List", "metadata": {"resourceVersion": ""}});
                print!("{}", render(&list, format)?);
            }
        }
    }
    Ok(ok)
}

/// `pv nfs` or `pv/nfs`: kubectl accepts both.
fn split_type_and_names(kind: &str, names: &[String]) -> anyhow::Result<(String, Vec<String>)> {
    match kind.split_once('/') {
        None => Ok((kind.to_string(), names.to_vec())),
        Some((k, n)) => {
            let mut out = vec![n.to_string()];
            for arg in names {
                match arg.split_once('/') {
                    Some((k2, n2)) if k2 == k => out.push(n2.to_string()),
                    _ => bail!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'kubectl get resource/<resource_name>' instead of 'kubectl get resource resource/<resource_name>'"),
                }
            }
            Ok((k.to_string(), out))
        }
    }
}

fn list_query(args: &Args, extra_field: Option<String>) -> String {
    let mut params: Vec<(String, String)> = vec![("limit".into(), "500".into())];
    if let Some(l) = &args.selector {
        params.push(("labelSelector".into(), l.clone()));
    }
    let fields: Vec<String> = args.field_selector.iter().cloned().chain(extra_field).collect();
    if !fields.is_empty() {
        params.push(("fieldSelector".into(), fields.join(",")));
    }
    encode(&params)
}

fn encode(params: &[(String, String)]) -> String {
    params.iter().map(|(k, v)| format!("{}={}", escape_query(k), escape_query(v))).collect::<Vec<_>>().join("&")
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for query values.
pub fn escape_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Fetches every page of a list (as Tables or objects, per `accept`).
async fn list_all(conn: &Connection, path: &str, query: &str, accept: &str) -> anyhow::Result<Result<Value, ApiError>> {
    let mut merged: Option<Value> = None;
    let mut cont = String::new();
    loop {
        let mut url = format!("{path}?{query}");
        if !cont.is_empty() {
            url.push_str(&format!("&continue={}", escape_query(&cont)));
        }
        let page = match conn.json_accept(http::Method::GET, &url, accept, None).await? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        cont = page["metadata"]["continue"].as_str().unwrap_or_default().to_string();
        let key = if page.get("rows").is_some() { "rows" } else { "items" };
        match merged.as_mut() {
            None => merged = Some(page),
            Some(m) => {
                let more = page[key].as_array().cloned().unwrap_or_default();
                if let Some(arr) = m[key].as_array_mut() {
                    arr.extend(more);
                }
                m["metadata"]["resourceVersion"] = page["metadata"]["resourceVersion"].clone();
            }
        }
        if cont.is_empty() {
            return Ok(Ok(merged.unwrap_or(Value::Null)));
        }
    }
}

fn no_resources_message(query: &Query) -> String {
    match &query.namespace {
        Some(ns) => format!("No resources found in {ns} namespace."),
        None => "No resources found".to_string(),
    }
}

/// Prints one type's table; returns (no errors, printed rows).
async fn print_tables(conn: &Connection, args: &Args, query: &Query, show_kind: bool) -> anyhow::Result<(bool, bool)> {
    let options = TableOptions {
        wide: args.output == Some(Output::Wide),
        with_namespace: args.all_namespaces && query.mapping.namespaced,
    };
    let mut printer = if show_kind {
        TablePrinter::with_kind_prefix(options, &query.mapping.qualified_singular())
    } else {
        TablePrinter::new(options)
    };
    let mut ok = true;
    let path = query.mapping.collection_path(query.namespace.as_deref());
    let mut columns: Vec<Value> = Vec::new();
    let mut resource_version = String::new();
    let mut any_rows = false;
    if query.names.is_empty() || (args.watch && query.names.len() == 1) {
        let field = query.names.first().map(|n| format!("metadata.name={n}"));
        let table = match list_all(conn, &path, &list_query(args, field), TABLE_ACCEPT).await? {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{e}");
                return Ok((false, false));
            }
        };
        columns = table["columnDefinitions"].as_array().cloned().unwrap_or_default();
        resource_version = table["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
        any_rows = table["rows"].as_array().is_some_and(|r| !r.is_empty());
        print!("{}", printer.print(&table, &columns));
        if query.names.len() == 1 && !any_rows {
            eprintln!("Error from server (NotFound): {} \"{}\" not found", query.mapping.plural, query.names[0]);
            return Ok((false, false));
        }
    } else {
        let mut merged: Option<Value> = None;
        for name in &query.names {
            let path = query.mapping.object_path(query.namespace.as_deref(), name);
            match conn.json_accept(http::Method::GET, &path, TABLE_ACCEPT, None).await? {
                Ok(table) => match merged.as_mut() {
                    None => merged = Some(table),
                    Some(m) => {
                        let rows = table["rows"].as_array().cloned().unwrap_or_default();
                        if let Some(arr) = m["rows"].as_array_mut() {
                            arr.extend(rows);
                        }
                    }
                },
                Err(e) => {
                    // kubectl prints what it found first, then the errors.
                    ok = false;
                    if let Some(m) = merged.take() {
                        print!("{}", printer.print(&m, &columns));
                    }
                    eprintln!("{e}");
                }
            }
        }
        if let Some(m) = merged {
            any_rows = true;
            print!("{}", printer.print(&m, &columns));
        }
    }
    if !any_rows && query.names.is_empty() && !args.watch && !show_kind {
        eprintln!("{}", no_resources_message(query));
    }
    std::io::stdout().flush()?;
    if args.watch {
        let field = query.names.first().map(|n| format!("metadata.name={n}"));
        watch_tables(conn, args, &path, field, resource_version, &mut printer, &columns).await?;
    }
    Ok((ok, any_rows))
}

async fn watch_tables(
    conn: &Connection,
    args: &Args,
    path: &str,
    field: Option<String>,
    mut resource_version: String,
    printer: &mut TablePrinter,
    columns: &[Value],
) -> anyhow::Result<()> {
    let mut columns = columns.to_vec();
    loop {
        let url = format!(
            "{path}?{}&watch=true&resourceVersion={}",
            list_query(args, field.clone()),
            escape_query(&resource_version)
        );
        let mut events = match conn.watch(&url, TABLE_ACCEPT).await? {
            Ok(s) => Box::pin(s),
            Err(e) => bail!("{e}"),
        };
        while let Some(event) = events.next().await {
            let event = event?;
            let object = &event["object"];
            match event["type"].as_str().unwrap_or_default() {
                "ERROR" => bail!("{}", object["message"].as_str().unwrap_or("the watch failed")),
                "BOOKMARK" => {}
                _ => {
                    if let Some(defs) = object["columnDefinitions"].as_array().filter(|d| !d.is_empty()) {
                        columns = defs.clone();
                    }
                    print!("{}", printer.print(object, &columns));
                    std::io::stdout().flush()?;
                }
            }
            if let Some(rv) = object["metadata"]["resourceVersion"]
                .as_str()
                .or_else(|| object["rows"][0]["object"]["metadata"]["resourceVersion"].as_str())
            {
                resource_version = rv.to_string();
            }
        }
    }
}

async fn print_objects(conn: &Connection, args: &Args, query: &Query, format: Output) -> anyhow::Result<bool> {
    let mut ok = true;
    let mut objects = Vec::new();
    let path = query.mapping.collection_path(query.namespace.as_deref());
    let mut resource_version = String::new();
    let single = query.names.len() == 1;
    if query.names.is_empty() {
        let list = match list_all(conn, &path, &list_query(args, None), "application/json").await? {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{e}");
                return Ok(false);
            }
        };
        resource_version = list["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
        for mut item in list["items"].as_array().cloned().unwrap_or_default() {
            item["apiVersion"] = json!(query.mapping.api_version());
            item["kind"] = json!(query.mapping.kind);
            objects.push(item);
        }
    } else {
        for name in &query.names {
            match conn.get(&query.mapping.object_path(query.namespace.as_deref(), name)).await? {
                Ok(obj) => objects.push(obj),
                Err(e) => {
                    ok = false;
                    eprintln!("{e}");
                }
            }
        }
    }
    let text = match format {
        Output::Name => objects.iter().map(|o| format!("{}\n", name_line(&query.mapping, o))).collect(),
        _ if single && objects.len() == 1 => render(&objects[0], format)?,
        _ if objects.is_empty() && !query.names.is_empty() => String::new(),
        _ => render(
            &json!({"apiVersion": "v1", "items": objects, "kind": "List", "metadata": {"resourceVersion": ""}}),
            format,
        )?,
    };
    print!("{text}");
    std::io::stdout().flush()?;
    if args.watch {
        let field = query.names.first().map(|n| format!("metadata.name={n}"));
        loop {
            let url = format!(
                "{path}?{}&watch=true&resourceVersion={}",
                list_query(args, field.clone()),
                escape_query(&resource_version)
            );
            let mut events = match conn.watch(&url, "application/json").await? {
                Ok(s) => Box::pin(s),
                Err(e) => bail!("{e}"),
            };
            while let Some(event) = events.next().await {
                let event = event?;
                let obj = &event["object"];
                match event["type"].as_str().unwrap_or_default() {
                    "ERROR" => bail!("{}", obj["message"].as_str().unwrap_or("the watch failed")),
                    "BOOKMARK" => {}
                    _ => {
                        let text = match format {
                            Output::Name => format!("{}\n", name_line(&query.mapping, obj)),
                            Output::Yaml => format!("---\n{}", render(obj, format)?),
                            _ => render(obj, format)?,
                        };
                        print!("{text}");
                        std::io::stdout().flush()?;
                    }
                }
                if let Some(rv) = obj["metadata"]["resourceVersion"].as_str() {
                    resource_version = rv.to_string();
                }
            }
        }
    }
    Ok(ok)
}

fn name_line(mapping: &Mapping, obj: &Value) -> String {
    format!("{}/{}", mapping.qualified_singular(), obj["metadata"]["name"].as_str().unwrap_or_default())
}

fn render(obj: &Value, format: Output) -> anyhow::Result<String> {
    Ok(match format {
        Output::Json => {
            // kubectl indents JSON with four spaces.
            let mut buf = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
            serde::Serialize::serialize(obj, &mut ser)?;
            String::from_utf8(buf)? + "\n"
        }
        _ => yaml::to_yaml(obj),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_type_slash_name_arguments() {
        let (k, n) = split_type_and_names("pv/a", &["pv/b".to_string()]).unwrap();
        assert_eq!((k.as_str(), n), ("pv", vec!["a".to_string(), "b".to_string()]));
        assert!(split_type_and_names("pv/a", &["b".to_string()]).is_err());
    }

    #[test]
    fn encodes_selectors_in_queries() {
        assert_eq!(escape_query("a=b,c!=d"), "a%3Db%2Cc%21%3Dd");
    }
}
