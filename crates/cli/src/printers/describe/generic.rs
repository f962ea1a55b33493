//! kubectl's generic describer, used for kinds without their own (VolumeAttachment, CSIDriver, Event):
//! every field, sorted, with `smartLabelFor` labels.

use super::format::*;
use serde_json::{Map, Value};

/// kubectl's generic describer: every field, sorted, with "smart" labels.
pub(super) fn generic(w: &mut Writer, o: &Value) {
    w!(w, 0, "Name:\t{}\n", s(o, "/metadata/name"));
    w!(w, 0, "Namespace:\t{}\n", s(o, "/metadata/namespace"));
    labels_multiline(w, "Labels", obj(o, "/metadata/labels"));
    annotations_multiline(w, "Annotations", obj(o, "/metadata/annotations"));
    if let Some(m) = o.as_object() {
        let skip = [
            ".metadata.managedFields",
            ".metadata.name",
            ".metadata.namespace",
            ".metadata.labels",
            ".metadata.annotations",
        ];
        unstructured(w, 0, m, "", &skip);
    }
}

pub(super) fn unstructured(w: &mut Writer, level: usize, content: &Map<String, Value>, prefix: &str, skip: &[&str]) {
    let mut keys: Vec<&String> = content.keys().collect();
    keys.sort();
    for field in keys {
        let path = format!("{prefix}.{field}");
        if skip.contains(&path.as_str()) {
            continue;
        }
        match &content[field] {
            Value::Object(m) => {
                w!(w, level, "{}:\n", smart_label(field));
                unstructured(w, level + 1, m, &path, skip);
            }
            Value::Array(items) => {
                w!(w, level, "{}:\n", smart_label(field));
                for item in items {
                    match item {
                        Value::Object(m) => unstructured(w, level + 1, m, &path, skip),
                        other => w!(w, level + 1, "{}\n", gov(Some(other))),
                    }
                }
            }
            other => w!(w, level, "{}:\t{}\n", smart_label(field), gov(Some(other))),
        }
    }
}

/// kubectl's `smartLabelFor`: `apiVersion` → `API Version`, `attachRequired` → `Attach Required`.
pub(super) fn smart_label(field: &str) -> String {
    if field.chars().any(|c| !c.is_alphabetic() && c != '-') {
        return field.to_string();
    }
    let parts = camel_split(field);
    let mut merged: Vec<String> = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let part = &parts[i];
        if i + 1 < parts.len() {
            let next = &parts[i + 1];
            let all_upper = part.chars().all(|c| !c.is_alphabetic() || c.is_uppercase());
            if part.chars().count() >= 2 && all_upper && next.chars().next().is_some_and(char::is_uppercase) {
                merged.push(format!("{part}{next}"));
                i += 2;
                continue;
            }
        }
        merged.push(part.clone());
        i += 1;
    }
    merged
        .into_iter()
        .filter(|p| p != "_")
        .map(|p| {
            if ["API", "URL", "UID", "GUID"].contains(&p.to_uppercase().as_str()) {
                p.to_uppercase()
            } else if p.to_lowercase() == p {
                let mut c = p.chars();
                c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
            } else {
                p
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// fatih/camelcase's Split: runs of one character class; an upper run followed by lower gives its
/// last letter to the next word (`CSIDriver` → `CSI`, `Driver`).
pub(super) fn camel_split(s: &str) -> Vec<String> {
    fn class(c: char) -> u8 {
        if c.is_lowercase() {
            1
        } else if c.is_uppercase() {
            2
        } else if c.is_numeric() {
            3
        } else {
            4
        }
    }
    let mut runs: Vec<Vec<char>> = Vec::new();
    let mut last = 0;
    for c in s.chars() {
        let k = class(c);
        if k == last && !runs.is_empty() {
            runs.last_mut().expect("non-empty").push(c);
        } else {
            runs.push(vec![c]);
        }
        last = k;
    }
    for i in 0..runs.len().saturating_sub(1) {
        if runs[i].first().is_some_and(|c| c.is_uppercase()) && runs[i + 1].first().is_some_and(|c| c.is_lowercase()) {
            let moved = runs[i].pop().expect("non-empty run");
            runs[i + 1].insert(0, moved);
        }
    }
    runs.into_iter().filter(|r| !r.is_empty()).map(|r| r.into_iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_labels_match_kubectl() {
        for (field, label) in [
            ("apiVersion", "API Version"),
            ("attachRequired", "Attach Required"),
            ("uid", "UID"),
            ("CSIDriver", "CSIDriver"),
            ("nodeName", "Node Name"),
            ("kubernetes.io/x", "kubernetes.io/x"),
        ] {
            assert_eq!(smart_label(field), label, "{field}");
        }
    }
}
