//! Label and field selectors: the string syntax of `?labelSelector=` and `?fieldSelector=`
//! (`k8s.io/apimachinery/pkg/labels` and `pkg/fields`), and `metav1.LabelSelector` (matchLabels +
//! matchExpressions) as PVC selectors and node affinity use it. One `Requirement` type serves both forms.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// A selector that does not parse; the message is kube-apiserver's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// The operator of one requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `key=value`, `key==value`, or `key in (a,b)`.
    In(Vec<String>),
    /// `key!=value` or `key notin (a,b)`.
    NotIn(Vec<String>),
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
}

/// One `key <op> values` requirement; a selector matches when all of its requirements do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key or field path.
    pub key: String,
    /// What the value must be.
    pub op: Op,
}

impl Requirement {
    /// Whether a set of labels (or fields) satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.op {
            Op::In(values) => value.is_some_and(|v| values.contains(v)),
            Op::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
        }
    }
}

/// A parsed selector. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// All requirements, ANDed.
    pub requirements: Vec<Requirement>,
}

impl Selector {
    /// Whether every requirement holds.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Parse the label selector syntax: `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse_labels(s: &str) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_terms(s)? {
            requirements.push(parse_label_term(&term)?);
        }
        Ok(Selector { requirements })
    }

    /// Parse the field selector syntax: `metadata.name=x,spec.nodeName!=y` (`==` allowed).
    pub fn parse_fields(s: &str) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (key, op) = if let Some((k, v)) = term.split_once("!=") {
                (k, Op::NotIn(vec![v.to_string()]))
            } else if let Some((k, v)) = term.split_once("==") {
                (k, Op::In(vec![v.to_string()]))
            } else if let Some((k, v)) = term.split_once('=') {
                (k, Op::In(vec![v.to_string()]))
            } else {
                return Err(SelectorError(format!("invalid selector: '{s}'; can't understand '{term}'")));
            };
            requirements.push(Requirement { key: key.trim().to_string(), op });
        }
        Ok(Selector { requirements })
    }

    /// Convert a `metav1.LabelSelector`; a `nil` selector is `None` (matches nothing in most callers), an
    /// empty one matches everything.
    pub fn from_label_selector(ls: &LabelSelector) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in ls.match_labels.iter().flatten() {
            requirements.push(Requirement { key: k.clone(), op: Op::In(vec![v.clone()]) });
        }
        for expr in ls.match_expressions.iter().flatten() {
            let values = expr.values.clone().unwrap_or_default();
            let op = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError(format!(
                        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty (key {:?})",
                        expr.key
                    )))
                }
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError(format!(
                        "values: Invalid value: {values:?}: values set must be empty for exists and does not exist (key {:?})",
                        expr.key
                    )))
                }
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => return Err(SelectorError(format!("{other:?} is not a valid label selector operator"))),
            };
            requirements.push(Requirement { key: expr.key.clone(), op });
        }
        Ok(Selector { requirements })
    }
}

/// Split on commas that are not inside parentheses.
fn split_terms(s: &str) -> Result<Vec<String>, SelectorError> {
    let mut terms = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(SelectorError(format!("unable to parse requirement: unexpected ')' in {s:?}")));
                }
                cur.push(c)
            }
            ',' if depth == 0 => terms.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if depth != 0 {
        return Err(SelectorError(format!("unable to parse requirement: unclosed '(' in {s:?}")));
    }
    terms.push(cur);
    Ok(terms.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect())
}

fn parse_label_term(term: &str) -> Result<Requirement, SelectorError> {
    let bad = |why: &str| SelectorError(format!("unable to parse requirement: {why}: {term:?}"));
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        check_label_key(key).map_err(|e| bad(&e))?;
        return Ok(Requirement { key: key.to_string(), op: Op::DoesNotExist });
    }
    let set_op = |word: &str| -> Option<(String, String)> {
        let idx = term.find(word)?;
        let key = term[..idx].trim();
        let rest = term[idx + word.len()..].trim();
        (!key.is_empty() && !key.contains(char::is_whitespace)).then(|| (key.to_string(), rest.to_string()))
    };
    for (word, negate) in [(" notin ", true), (" in ", false)] {
        if let Some((key, rest)) = set_op(word) {
            check_label_key(&key).map_err(|e| bad(&e))?;
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| bad("expected a parenthesised set of values"))?;
            let values: Vec<String> =
                inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
            for v in &values {
                check_label_value(v).map_err(|e| bad(&e))?;
            }
            if values.is_empty() {
                return Err(bad("for 'in', 'notin' operators, values set can't be empty"));
            }
            let op = if negate { Op::NotIn(values) } else { Op::In(values) };
            return Ok(Requirement { key, op });
        }
    }
    let (key, op) = if let Some((k, v)) = term.split_once("!=") {
        (k, Op::NotIn(vec![v.trim().to_string()]))
    } else if let Some((k, v)) = term.split_once("==") {
        (k, Op::In(vec![v.trim().to_string()]))
    } else if let Some((k, v)) = term.split_once('=') {
        (k, Op::In(vec![v.trim().to_string()]))
    } else {
        (term, Op::Exists)
    };
    let key = key.trim();
    check_label_key(key).map_err(|e| bad(&e))?;
    if let Op::In(v) | Op::NotIn(v) = &op {
        check_label_value(&v[0]).map_err(|e| bad(&e))?;
    }
    Ok(Requirement { key: key.to_string(), op })
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() || p.len() > 253 || !p.split('.').all(is_dns_label) {
            return Err(format!("prefix part of {key:?} must be a DNS-1123 subdomain"));
        }
    }
    if name.is_empty() || name.len() > 63 || !is_qualified_name_part(name) {
        return Err(format!(
            "name part of {key:?} must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters of the qualified-name alphabet.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || (value.len() <= 63 && is_qualified_name_part(value)) {
        Ok(())
    } else {
        Err(format!(
            "values[0][{value}]: Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
        && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    struct Case {
        name: &'static str,
        selector: &'static str,
        labels: &'static [(&'static str, &'static str)],
        want: bool,
    }

    #[test]
    fn label_selectors_match_as_kubernetes_does() {
        let cases = [
            Case { name: "empty selects all", selector: "", labels: &[], want: true },
            Case { name: "equality", selector: "app=web", labels: &[("app", "web")], want: true },
            Case { name: "double equals", selector: "app==web", labels: &[("app", "web")], want: true },
            Case { name: "inequality with absent key", selector: "app!=web", labels: &[], want: true },
            Case { name: "inequality", selector: "app!=web", labels: &[("app", "web")], want: false },
            Case { name: "set in", selector: "tier in (a, b)", labels: &[("tier", "b")], want: true },
            Case { name: "set notin", selector: "tier notin (a,b)", labels: &[("tier", "b")], want: false },
            Case { name: "exists", selector: "release", labels: &[("release", "x")], want: true },
            Case { name: "does not exist", selector: "!release", labels: &[("release", "x")], want: false },
            Case {
                name: "all terms must hold",
                selector: "app=web,tier in (a,b),!canary",
                labels: &[("app", "web"), ("tier", "a")],
                want: true,
            },
            Case {
                name: "prefixed key",
                selector: "kubernetes.io/hostname=n1",
                labels: &[("kubernetes.io/hostname", "n1")],
                want: true,
            },
        ];
        for c in cases {
            let s = Selector::parse_labels(c.selector).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(s.matches(&labels(c.labels)), c.want, "{}", c.name);
        }
    }

    #[test]
    fn rejects_malformed_label_selectors() {
        for bad in ["a in (b", "a in ()", "-a=b", "a=b c", "a b"] {
            assert!(Selector::parse_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_field_selectors() {
        let s = Selector::parse_fields("metadata.name=pv1,spec.nodeName!=n2").unwrap();
        assert!(s.matches(&labels(&[("metadata.name", "pv1"), ("spec.nodeName", "n1")])));
        assert!(!s.matches(&labels(&[("metadata.name", "pv2")])));
        assert!(Selector::parse_fields("metadata.name").is_err());
    }

    #[test]
    fn converts_match_expressions() {
        let ls = LabelSelector {
            match_labels: Some([("release".to_string(), "stable".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "environment".into(),
                operator: "In".into(),
                values: Some(vec!["dev".into()]),
            }]),
        };
        let s = Selector::from_label_selector(&ls).unwrap();
        assert!(s.matches(&labels(&[("release", "stable"), ("environment", "dev")])));
        assert!(!s.matches(&labels(&[("release", "stable"), ("environment", "prod")])));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: "In".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(Selector::from_label_selector(&bad).is_err());
    }
}
