//! Reading `-f FILE|DIR|-` the way kubectl does: a directory contributes its `.yaml`, `.yml` and `.json`
//! files in name order, `-` is stdin, and every file may hold several YAML documents. Each object keeps
//! the name of the file it came from, because kubectl's messages quote it.

use anyhow::{bail, Context};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One object read from a manifest.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file it came from, as the user wrote it (`STDIN` for `-`).
    pub source: String,
    /// The object.
    pub object: Value,
}

/// Every object in `paths`, in order.
pub fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Document>> {
    let mut docs = Vec::new();
    for path in paths {
        for file in expand(path)? {
            docs.extend(read_file(&file)?);
        }
    }
    Ok(docs)
}

fn expand(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.as_os_str() == "-" || !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading directory {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")))
        .collect();
    files.sort();
    Ok(files)
}

fn read_file(path: &Path) -> anyhow::Result<Vec<Document>> {
    let (source, text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
        ("STDIN".to_string(), text)
    } else {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("the path \"{}\" does not exist", path.display()))?;
        (path.display().to_string(), text)
    };
    let objects = parse_documents(&text).with_context(|| format!("error parsing {source}"))?;
    Ok(objects.into_iter().map(|object| Document { source: source.clone(), object }).collect())
}

/// The objects of a multi-document YAML (or JSON) text; empty documents are skipped, a `List` is unpacked.
pub fn parse_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let values: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    for value in values {
        match value {
            Value::Null => {}
            Value::Object(ref map) if map.is_empty() => {}
            Value::Object(ref map)
                if map.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"))
                    && map.get("items").is_some_and(Value::is_array) =>
            {
                out.extend(map["items"].as_array().cloned().unwrap_or_default());
            }
            Value::Object(_) => out.push(value),
            other => bail!("a document is not an object: {other}"),
        }
    }
    Ok(out)
}

/// `metadata.name`, or "".
pub fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// `metadata.namespace`, or "".
pub fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_skips_comment_only_ones() {
        let docs = parse_documents("a: 1\nkind: X\n---\n# only a comment\n---\nkind: Z\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["kind"], "Z");
    }

    #[test]
    fn unpacks_lists() {
        let docs = parse_documents("kind: List\nitems:\n- kind: A\n- kind: B\n").unwrap();
        assert_eq!(docs.len(), 2);
    }
}
