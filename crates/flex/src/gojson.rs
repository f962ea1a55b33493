//! Go's `json.Marshal` of a `map[string]string`, byte for byte.
//!
//! Drivers see the options as one argv string. Kubelet builds it with Go's encoder, which sorts
//! keys and escapes `<`, `>`, `&`, U+2028 and U+2029; a driver that greps its argv (the seeds'
//! lvm example uses awk on it) must see the same bytes from kvol.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Encodes `map` as Go's `json.Marshal(map[string]string)` does (keys in byte order, compact).
pub fn marshal_string_map(map: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(2 + map.iter().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>());
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(&mut out, k);
        out.push(':');
        push_string(&mut out, v);
    }
    out.push('}');
    out
}

/// Appends `s` as a Go JSON string (`encoding/json` `appendString` with `escapeHTML`).
fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        value: &'static str,
        go: &'static str,
    }

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        let cases = [
            Case { value: "plain", go: r#""plain""# },
            Case { value: "a\"b\\c", go: r#""a\"b\\c""# },
            Case { value: "<x>&y", go: r#""\u003cx\u003e\u0026y""# },
            Case { value: "l\nt\tr\r", go: r#""l\nt\tr\r""# },
            Case { value: "\u{1}\u{1f}\u{7f}", go: "\"\\u0001\\u001f\u{7f}\"" },
            Case { value: "\u{2028}é", go: "\"\\u2028é\"" },
        ];
        for case in cases {
            let mut out = String::new();
            push_string(&mut out, case.value);
            assert_eq!(out, case.go, "value {:?}", case.value);
        }
    }

    #[test]
    fn keys_are_sorted_and_output_is_compact() {
        let map: BTreeMap<String, String> = [("b", "2"), ("a", "1"), ("kubernetes.io/fsType", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(marshal_string_map(&map), r#"{"a":"1","b":"2","kubernetes.io/fsType":""}"#);
        assert_eq!(marshal_string_map(&BTreeMap::new()), "{}");
    }
}
