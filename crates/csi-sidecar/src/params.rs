//! StorageClass parameters, parsed once at the boundary: the driver's own parameters, and the reserved
//! `csi.storage.k8s.io/*` keys (fsType and the six secret name/namespace pairs) with their templates
//! (`${pvc.name}`, `${pvc.namespace}`, `${pv.name}`, `${pvc.annotations['…']}`), as external-provisioner
//! reads them.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::SecretReference;

/// The reserved prefix; keys under it are the CO's, never passed to the driver.
pub const RESERVED_PREFIX: &str = "csi.storage.k8s.io/";
/// The filesystem type parameter.
pub const PARAM_FSTYPE: &str = "csi.storage.k8s.io/fstype";

/// Which secret a parameter pair names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretKind {
    /// CreateVolume / DeleteVolume.
    Provisioner,
    /// ControllerPublish / ControllerUnpublish (stored on the PV).
    ControllerPublish,
    /// NodeStage (stored on the PV).
    NodeStage,
    /// NodePublish (stored on the PV).
    NodePublish,
    /// ControllerExpandVolume (stored on the PV).
    ControllerExpand,
    /// NodeExpandVolume (stored on the PV).
    NodeExpand,
}

impl SecretKind {
    /// All kinds, in parameter order.
    pub const ALL: [SecretKind; 6] = [
        SecretKind::Provisioner,
        SecretKind::ControllerPublish,
        SecretKind::NodeStage,
        SecretKind::NodePublish,
        SecretKind::ControllerExpand,
        SecretKind::NodeExpand,
    ];

    /// The parameter prefix: `csi.storage.k8s.io/<this>-secret-name` / `-secret-namespace`.
    pub fn param(self) -> &'static str {
        match self {
            SecretKind::Provisioner => "provisioner",
            SecretKind::ControllerPublish => "controller-publish",
            SecretKind::NodeStage => "node-stage",
            SecretKind::NodePublish => "node-publish",
            SecretKind::ControllerExpand => "controller-expand",
            SecretKind::NodeExpand => "node-expand",
        }
    }
}

/// A secret's name and namespace templates, as written in the class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretTemplate {
    /// The name template.
    pub name: String,
    /// The namespace template.
    pub namespace: String,
}

/// A StorageClass's parameters, split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassParams {
    /// What goes to CreateVolume's `parameters`.
    pub driver: HashMap<String, String>,
    /// `csi.storage.k8s.io/fstype` (also the deprecated `fsType` is left to the driver).
    pub fs_type: Option<String>,
    /// The secret templates, by kind.
    pub secrets: HashMap<SecretKind, SecretTemplate>,
}

impl TryFrom<&BTreeMap<String, String>> for ClassParams {
    type Error = String;

    /// Refuses unknown `csi.storage.k8s.io/` keys and a secret name without its namespace (or the
    /// reverse), naming the key, as external-provisioner does.
    fn try_from(params: &BTreeMap<String, String>) -> Result<ClassParams, String> {
        let mut out = ClassParams::default();
        let mut names: HashMap<SecretKind, &String> = HashMap::new();
        let mut namespaces: HashMap<SecretKind, &String> = HashMap::new();
        for (key, value) in params {
            let Some(reserved) = key.strip_prefix(RESERVED_PREFIX) else {
                out.driver.insert(key.clone(), value.clone());
                continue;
            };
            if key == PARAM_FSTYPE {
                out.fs_type = Some(value.clone()).filter(|v| !v.is_empty());
                continue;
            }
            let found = SecretKind::ALL.iter().find_map(|kind| {
                let rest = reserved.strip_prefix(kind.param())?;
                match rest {
                    "-secret-name" => Some((*kind, true)),
                    "-secret-namespace" => Some((*kind, false)),
                    _ => None,
                }
            });
            match found {
                Some((kind, true)) => {
                    names.insert(kind, value);
                }
                Some((kind, false)) => {
                    namespaces.insert(kind, value);
                }
                None => {
                    return Err(format!("parameters: unknown key {key:?} in the reserved namespace {RESERVED_PREFIX}"))
                }
            }
        }
        for kind in SecretKind::ALL {
            match (names.get(&kind), namespaces.get(&kind)) {
                (None, None) => {}
                (Some(name), Some(namespace)) => {
                    out.secrets.insert(kind, SecretTemplate { name: (*name).clone(), namespace: (*namespace).clone() });
                }
                (Some(_), None) => {
                    return Err(format!(
                        "parameters: {RESERVED_PREFIX}{}-secret-name is set but {RESERVED_PREFIX}{}-secret-namespace is not",
                        kind.param(),
                        kind.param()
                    ))
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "parameters: {RESERVED_PREFIX}{}-secret-namespace is set but {RESERVED_PREFIX}{}-secret-name is not",
                        kind.param(),
                        kind.param()
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// What a template may refer to.
#[derive(Debug, Clone, Default)]
pub struct TemplateInput<'a> {
    /// `${pv.name}`.
    pub pv_name: &'a str,
    /// `${pvc.name}`.
    pub pvc_name: Option<&'a str>,
    /// `${pvc.namespace}`.
    pub pvc_namespace: Option<&'a str>,
    /// `${pvc.annotations['key']}`.
    pub pvc_annotations: Option<&'a BTreeMap<String, String>>,
}

/// Replaces every `${token}` in `template`; a token not in `lookup` is an error naming it.
fn resolve(template: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("template {template:?}: unterminated ${{"))?;
        let token = &after[..end];
        out.push_str(&lookup(token).ok_or_else(|| format!("template {template:?}: ${{{token}}} is not allowed here"))?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

impl SecretTemplate {
    /// Resolves the templates for `kind`: the namespace may use `${pv.name}` and `${pvc.namespace}`
    /// (nothing the claim's author controls); the name may also use `${pvc.name}` and, except for the
    /// provisioner secret, `${pvc.annotations['…']}`. The results must be a DNS subdomain (name) and a
    /// DNS label (namespace).
    pub fn resolve(&self, kind: SecretKind, input: &TemplateInput<'_>) -> Result<SecretReference, String> {
        let what = kind.param();
        let namespace = resolve(&self.namespace, |token| match token {
            "pv.name" => Some(input.pv_name.to_owned()),
            "pvc.namespace" => input.pvc_namespace.map(str::to_owned),
            _ => None,
        })
        .map_err(|e| format!("{RESERVED_PREFIX}{what}-secret-namespace: {e}"))?;
        let name = resolve(&self.name, |token| match token {
            "pv.name" => Some(input.pv_name.to_owned()),
            "pvc.namespace" => input.pvc_namespace.map(str::to_owned),
            "pvc.name" => input.pvc_name.map(str::to_owned),
            _ if kind != SecretKind::Provisioner => {
                let key = token.strip_prefix("pvc.annotations['")?.strip_suffix("']")?;
                Some(input.pvc_annotations?.get(key)?.clone())
            }
            _ => None,
        })
        .map_err(|e| format!("{RESERVED_PREFIX}{what}-secret-name: {e}"))?;
        if !is_dns_label(&namespace) {
            return Err(format!("{RESERVED_PREFIX}{what}-secret-namespace resolves to {namespace:?}, not a DNS label"));
        }
        if !is_dns_subdomain(&name) {
            return Err(format!("{RESERVED_PREFIX}{what}-secret-name resolves to {name:?}, not a DNS subdomain"));
        }
        Ok(SecretReference { name: Some(name), namespace: Some(namespace) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn splits_driver_parameters_from_reserved_ones() {
        let p = ClassParams::try_from(&map(&[
            ("pool", "fast"),
            ("csi.storage.k8s.io/fstype", "xfs"),
            ("csi.storage.k8s.io/provisioner-secret-name", "s"),
            ("csi.storage.k8s.io/provisioner-secret-namespace", "ns"),
        ]))
        .unwrap();
        assert_eq!(p.driver, HashMap::from([("pool".to_string(), "fast".to_string())]));
        assert_eq!(p.fs_type.as_deref(), Some("xfs"));
        assert_eq!(p.secrets[&SecretKind::Provisioner], SecretTemplate { name: "s".into(), namespace: "ns".into() });
    }

    #[test]
    fn refuses_unknown_reserved_keys_and_half_pairs() {
        for bad in [
            map(&[("csi.storage.k8s.io/bogus", "x")]),
            map(&[("csi.storage.k8s.io/node-stage-secret-name", "x")]),
            map(&[("csi.storage.k8s.io/controller-expand-secret-namespace", "x")]),
        ] {
            let err = ClassParams::try_from(&bad).unwrap_err();
            assert!(err.contains("csi.storage.k8s.io/"), "{err}");
        }
    }

    #[test]
    fn resolves_templates_per_secret_kind() {
        struct Case {
            kind: SecretKind,
            name: &'static str,
            namespace: &'static str,
            want: Result<(&'static str, &'static str), &'static str>,
        }
        let annotations = map(&[("team", "blue")]);
        let input = TemplateInput {
            pv_name: "pvc-1",
            pvc_name: Some("data"),
            pvc_namespace: Some("apps"),
            pvc_annotations: Some(&annotations),
        };
        let cases = [
            Case {
                kind: SecretKind::NodeStage,
                name: "${pvc.name}-${pvc.annotations['team']}",
                namespace: "${pvc.namespace}",
                want: Ok(("data-blue", "apps")),
            },
            Case {
                kind: SecretKind::Provisioner,
                name: "${pv.name}",
                namespace: "kube-system",
                want: Ok(("pvc-1", "kube-system")),
            },
            Case {
                kind: SecretKind::Provisioner,
                name: "${pvc.annotations['team']}",
                namespace: "x",
                want: Err("is not allowed"),
            },
            Case { kind: SecretKind::NodePublish, name: "s", namespace: "${pvc.name}", want: Err("is not allowed") },
            Case { kind: SecretKind::NodePublish, name: "S_1", namespace: "x", want: Err("not a DNS subdomain") },
            Case {
                kind: SecretKind::NodePublish,
                name: "${pvc.annotations['none']}",
                namespace: "x",
                want: Err("not allowed"),
            },
        ];
        for case in cases {
            let t = SecretTemplate { name: case.name.into(), namespace: case.namespace.into() };
            match (t.resolve(case.kind, &input), case.want) {
                (Ok(r), Ok((name, ns))) => {
                    assert_eq!((r.name.as_deref(), r.namespace.as_deref()), (Some(name), Some(ns)), "{}", case.name)
                }
                (Err(e), Err(want)) => assert!(e.contains(want), "{}: {e}", case.name),
                (got, want) => panic!("{}: got {got:?}, want {want:?}", case.name),
            }
        }
    }
}
