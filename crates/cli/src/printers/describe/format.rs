//! The writing side of the describers: kubectl's PrefixWriter over Go's tabwriter, and Go's renderings
//! of the values describe.go prints (`%v` of lists, maps and pointers, label and annotation blocks,
//! RFC1123Z times, human durations, access-mode abbreviations, canonical quantities).

use crate::printers::tabwriter::TabWriter;
use jiff::{tz::TimeZone, Timestamp};
use serde_json::{Map, Value};

/// The annotation kubectl's describers never print in `Annotations:`.
pub(super) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
pub(super) const MAX_ANNOTATION_LEN: usize = 140;

/// kubectl's PrefixWriter over a tabwriter: each level indents two spaces.
pub(super) struct Writer {
    tw: TabWriter,
    done: String,
}

impl Writer {
    pub(super) fn new() -> Self {
        Writer { tw: TabWriter::for_describe(), done: String::new() }
    }
    pub(super) fn w(&mut self, level: usize, text: &str) {
        self.tw.write(&"  ".repeat(level));
        self.tw.write(text);
    }
    pub(super) fn line(&mut self, text: &str) {
        self.tw.write(text);
        self.tw.write("\n");
    }
    pub(super) fn flush(&mut self) {
        let text = self.tw.flush();
        self.done.push_str(&text);
    }
    pub(super) fn finish(mut self) -> String {
        self.flush();
        self.done
    }
}

pub(super) fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

pub(super) fn b(v: &Value, pointer: &str) -> bool {
    v.pointer(pointer).and_then(Value::as_bool).unwrap_or(false)
}

pub(super) fn obj<'a>(v: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    v.pointer(pointer).and_then(Value::as_object)
}

pub(super) fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// Go's `%v` of a JSON value as the typed field would print it.
pub(super) fn gov(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => {
            format!("[{}]", a.iter().map(|x| gov(Some(x))).collect::<Vec<_>>().join(" "))
        }
        Some(Value::Object(m)) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!("map[{}]", keys.iter().map(|k| format!("{k}:{}", gov(m.get(*k)))).collect::<Vec<_>>().join(" "))
        }
        Some(other) => other.to_string(),
    }
}

/// `%v` of a `[]string` field (`[]` when absent).
pub(super) fn go_list(v: &Value, pointer: &str) -> String {
    gov(Some(v.pointer(pointer).unwrap_or(&Value::Array(vec![]))))
}

/// `%v` of a `map[string]string` field (`map[]` when absent).
pub(super) fn go_map(v: &Value, pointer: &str) -> String {
    gov(Some(v.pointer(pointer).unwrap_or(&Value::Object(Map::new()))))
}

/// `%v` of a pointer to a reference struct (`nil`, or gogo's `&LocalObjectReference{Name:x,}`).
pub(super) fn go_ref(v: &Value, pointer: &str, type_name: &str) -> String {
    match obj(v, pointer) {
        None => "nil".into(),
        Some(m) => {
            let mut fields = String::new();
            for key in ["name", "namespace"] {
                if m.contains_key(key) || key == "name" {
                    let mut k = key.to_string();
                    k[..1].make_ascii_uppercase();
                    fields.push_str(&format!("{k}:{},", m.get(key).and_then(Value::as_str).unwrap_or_default()));
                }
            }
            format!("&{type_name}{{{fields}}}")
        }
    }
}

/// `labels.FormatLabels`: `k=v,k2=v2` sorted, `<none>` when empty.
pub(super) fn format_labels(m: Option<&Map<String, Value>>) -> String {
    let Some(m) = m.filter(|m| !m.is_empty()) else { return "<none>".into() };
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    keys.iter().map(|k| format!("{k}={}", m[*k].as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
}

pub(super) fn labels_multiline(w: &mut Writer, title: &str, labels: Option<&Map<String, Value>>) {
    labels_multiline_indent(w, "", title, "\t", labels);
}

pub(super) fn labels_multiline_indent(
    w: &mut Writer,
    initial: &str,
    title: &str,
    inner: &str,
    labels: Option<&Map<String, Value>>,
) {
    w!(w, 0, "{initial}{title}:{inner}");
    let Some(labels) = labels.filter(|l| !l.is_empty()) else {
        w.line("<none>");
        return;
    };
    let mut keys: Vec<&String> = labels.keys().collect();
    keys.sort();
    for (i, k) in keys.iter().enumerate() {
        if i != 0 {
            w!(w, 0, "{initial}");
            w!(w, 0, "{inner}");
        }
        w!(w, 0, "{k}={}\n", labels[*k].as_str().unwrap_or_default());
    }
}

pub(super) fn annotations_multiline(w: &mut Writer, title: &str, annotations: Option<&Map<String, Value>>) {
    w!(w, 0, "{title}:\t");
    let mut keys: Vec<&String> =
        annotations.map(|a| a.keys().filter(|k| *k != LAST_APPLIED).collect()).unwrap_or_default();
    if keys.is_empty() {
        w.line("<none>");
        return;
    }
    keys.sort();
    let annotations = annotations.expect("keys come from it");
    for (i, k) in keys.iter().enumerate() {
        if i != 0 {
            w.w(0, "\t");
        }
        let raw = annotations[*k].as_str().unwrap_or_default();
        let value = raw.strip_suffix('\n').unwrap_or(raw);
        if value.len() + k.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
            w!(w, 0, "{k}:\n");
            for line in value.split('\n') {
                w!(w, 0, "\t  {}\n", shorten(line, MAX_ANNOTATION_LEN - 2));
            }
        } else {
            w!(w, 0, "{k}: {value}\n");
        }
    }
}

pub(super) fn shorten(s: &str, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

pub(super) fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse::<Timestamp>().ok()
}

/// Go's `time.RFC1123Z` in the local zone, as kubectl formats `metav1.Time`.
pub(super) fn rfc1123z(s: &str) -> String {
    match parse_time(s) {
        Some(t) => t.to_zoned(TimeZone::system()).strftime("%a, %d %b %Y %H:%M:%S %z").to_string(),
        None => "Mon, 01 Jan 0001 00:00:00 +0000".into(),
    }
}

pub(super) fn since(s: &str, now: Timestamp) -> String {
    match parse_time(s) {
        Some(t) => kvol_apiserver::table::human_duration(now.duration_since(t)),
        None => "<unknown>".into(),
    }
}

pub(super) fn access_modes(v: &Value, pointer: &str) -> String {
    let modes: Vec<&str> = arr(v, pointer).iter().filter_map(Value::as_str).collect();
    let mut out = Vec::new();
    for (mode, short) in
        [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
    {
        if modes.contains(&mode) {
            out.push(short);
        }
    }
    out.join(",")
}

pub(super) fn quantity(v: &Value, pointer: &str) -> String {
    let raw = s(v, pointer);
    if raw.is_empty() {
        return "0".into();
    }
    kvol_api::parse_quantity(raw).map(|q| q.to_canonical()).unwrap_or_else(|_| raw.to_string())
}
