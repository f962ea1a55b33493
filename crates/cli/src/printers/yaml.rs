//! YAML output in the style of kubectl's `-o yaml` (sigs.k8s.io/yaml over go-yaml v2): keys sorted,
//! two-space indents, list dashes at the parent key's indent, multi-line strings as literal blocks, and
//! strings that would read back as something else (`"2"`, `"true"`, timestamps, `""`) double-quoted.

use serde_json::Value;

/// `obj` as kubectl prints it with `-o yaml`.
pub fn to_yaml(obj: &Value) -> String {
    let mut out = String::new();
    match obj {
        Value::Object(m) if !m.is_empty() => emit_map(obj, 0, &mut out),
        Value::Array(a) if !a.is_empty() => emit_list(obj, 0, &mut out),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn sorted(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// A map at `indent`; the first line's indent is assumed already written when `first_inline`.
fn emit_map_entries(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String, first_inline: bool) {
    for (i, (k, v)) in sorted(map).into_iter().enumerate() {
        if i > 0 || !first_inline {
            pad(out, indent);
        }
        out.push_str(&string_scalar(k, indent));
        out.push(':');
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                emit_map(v, indent + 2, out);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                emit_list(v, indent, out);
            }
            _ => {
                out.push(' ');
                let column = line_column(out);
                out.push_str(&fold(&scalar(v, indent), column, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn emit_map(v: &Value, indent: usize, out: &mut String) {
    if let Value::Object(m) = v {
        emit_map_entries(m, indent, out, false);
    }
}

fn emit_list(v: &Value, indent: usize, out: &mut String) {
    let Value::Array(items) = v else { return };
    for item in items {
        pad(out, indent);
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => emit_map_entries(m, indent + 2, out, true),
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                emit_list(item, indent + 2, out);
            }
            _ => {
                let column = line_column(out);
                out.push_str(&fold(&scalar(item, indent), column, indent + 2));
                out.push('\n');
            }
        }
    }
}

/// The column the next character written to `out` lands in.
fn line_column(out: &str) -> usize {
    out.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0)
}

/// go-yaml's line folding (best width 80): a flow scalar (plain or quoted) that runs past column 80
/// breaks at the next single space onto a new line indented by `indent`. Literal blocks never fold.
fn fold(scalar: &str, start_column: usize, indent: usize) -> String {
    if scalar.starts_with('|') || !scalar.contains(' ') {
        return scalar.to_string();
    }
    let chars: Vec<char> = scalar.chars().collect();
    let quoted = matches!(chars.first(), Some('\'' | '"'));
    let mut out = String::with_capacity(scalar.len() + 8);
    let mut column = start_column;
    for (i, &c) in chars.iter().enumerate() {
        let prev_space = i > 0 && chars[i - 1] == ' ';
        let next_space = chars.get(i + 1) == Some(&' ');
        let inner = !quoted || (i > 1 && i + 2 < chars.len());
        if c == ' ' && !prev_space && !next_space && inner && column > 80 {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent));
            column = indent;
            continue;
        }
        out.push(c);
        column += 1;
    }
    out
}

fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_scalar(s, indent),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

fn string_scalar(s: &str, indent: usize) -> String {
    if s.contains('\n') && !s.chars().any(|c| c.is_control() && c != '\n') {
        let chomp = if s.ends_with('\n') { "" } else { "-" };
        let mut out = format!("|{chomp}");
        let body = s.strip_suffix('\n').unwrap_or(s);
        for line in body.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                pad(&mut out, indent + 2);
                out.push_str(line);
            }
        }
        return out;
    }
    if resolves_to_non_string(s) || s.chars().any(|c| c.is_control()) {
        return double_quoted(s);
    }
    if plain_allowed(s) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether YAML 1.1 (go-yaml v2's resolver) would read the plain scalar as a non-string.
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y", "Y", "yes", "Yes",
        "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", ".inf", ".Inf", ".INF", "-.inf",
        "-.Inf", "-.INF", "+.inf", ".nan", ".NaN", ".NAN",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let plain = s.replace('_', "");
    let body = plain.strip_prefix(['+', '-']).unwrap_or(&plain);
    let is_int = !body.is_empty()
        && (body.chars().all(|c| c.is_ascii_digit())
            || body.strip_prefix("0x").is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            || body.strip_prefix("0b").is_some_and(|b| !b.is_empty() && b.chars().all(|c| c == '0' || c == '1')));
    let is_float = body.chars().any(|c| c.is_ascii_digit())
        && body.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && body.parse::<f64>().is_ok();
    is_int || is_float || looks_like_timestamp(s)
}

fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

/// Whether the emitter may write `s` unquoted.
fn plain_allowed(s: &str) -> bool {
    let first = s.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        // `-x` and `:x` are plain in block context when not followed by a space; go-yaml still quotes them.
        return false;
    }
    !(s.starts_with(' ')
        || s.ends_with(' ')
        || s.ends_with(':')
        || s.contains(": ")
        || s.contains(" #")
        || s.contains('\t'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn folds_long_strings_at_eighty_columns_like_go_yaml() {
        let message = "Back-off pulling image \"busybox\": ErrImagePull: rpc error: code = Unknown desc = failed to pull and unpack image";
        let obj = json!({"status": {"message": message}});
        assert_eq!(
            to_yaml(&obj),
            "status:\n  message: 'Back-off pulling image \"busybox\": ErrImagePull: rpc error: code = Unknown\n    desc = failed to pull and unpack image'\n"
        );
    }

    #[test]
    fn prints_like_kubectl() {
        let obj = json!({
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "nfs", "creationTimestamp": "2024-01-02T03:04:05Z", "annotations": {"a": "{\"x\":1}\n"}},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "resources": {"requests": {"storage": "1Mi"}},
                     "x": {}, "containers": [{"name": "c", "ports": [{"containerPort": 80}]}], "n": "2", "b": "true"}
        });
        let expected = "kind: PersistentVolumeClaim\nmetadata:\n  annotations:\n    a: |\n      {\"x\":1}\n  creationTimestamp: \"2024-01-02T03:04:05Z\"\n  name: nfs\nspec:\n  accessModes:\n  - ReadWriteMany\n  b: \"true\"\n  containers:\n  - name: c\n    ports:\n    - containerPort: 80\n  \"n\": \"2\"\n  resources:\n    requests:\n      storage: 1Mi\n  storageClassName: \"\"\n  x: {}\n";
        assert_eq!(to_yaml(&obj), expected);
    }
}
