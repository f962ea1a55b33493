//! The JSON options object: its keys (in one place), how the caller builds it
//! (`NewOptionsForDriver`), and how a driver parses it into a typed struct at the boundary.

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::{Error, Result};

/// The `kubernetes.io/*` option keys kubelet and the controller manager set
/// (`driver-call.go` constants; the code wins over the documentation where they differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OptionKey {
    /// `kubernetes.io/fsType`: the spec's `fsType` (may be empty). Every call with options.
    FsType,
    /// `kubernetes.io/readwrite`: `"ro"` or `"rw"`. Every call with options.
    ReadWrite,
    /// `kubernetes.io/pvOrVolumeName`: the PV name, or the pod volume name for inline volumes.
    PvOrVolumeName,
    /// `kubernetes.io/pod.name` (mount only).
    PodName,
    /// `kubernetes.io/pod.namespace` (mount only).
    PodNamespace,
    /// `kubernetes.io/pod.uid` (mount only; the documentation's `pod.UID` is wrong).
    PodUid,
    /// `kubernetes.io/serviceAccount.name` (mount only).
    ServiceAccountName,
    /// `kubernetes.io/mounterArgs.FsGroup` (mount only, when the pod sets an fsGroup; the
    /// documentation's `kubernetes.io/fsGroup` is wrong).
    FsGroup,
}

/// Prefix of secret keys: `kubernetes.io/secret/<key>` = base64 (standard, padded) of the value.
pub const SECRET_KEY_PREFIX: &str = "kubernetes.io/secret/";

impl OptionKey {
    /// Every key.
    pub const ALL: [OptionKey; 8] = [
        OptionKey::FsType,
        OptionKey::ReadWrite,
        OptionKey::PvOrVolumeName,
        OptionKey::PodName,
        OptionKey::PodNamespace,
        OptionKey::PodUid,
        OptionKey::ServiceAccountName,
        OptionKey::FsGroup,
    ];

    /// The key as it appears in the JSON object.
    pub const fn as_str(self) -> &'static str {
        match self {
            OptionKey::FsType => "kubernetes.io/fsType",
            OptionKey::ReadWrite => "kubernetes.io/readwrite",
            OptionKey::PvOrVolumeName => "kubernetes.io/pvOrVolumeName",
            OptionKey::PodName => "kubernetes.io/pod.name",
            OptionKey::PodNamespace => "kubernetes.io/pod.namespace",
            OptionKey::PodUid => "kubernetes.io/pod.uid",
            OptionKey::ServiceAccountName => "kubernetes.io/serviceAccount.name",
            OptionKey::FsGroup => "kubernetes.io/mounterArgs.FsGroup",
        }
    }
}

/// What kubelet takes from a `volume.Spec` (inline `flexVolume` or a PV's) for the options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeSpec {
    /// `spec.Name()`: the PV name, or the pod's volume name for an inline volume.
    pub name: String,
    /// `flexVolume.fsType` (may be empty).
    pub fs_type: String,
    /// Inline: `flexVolume.readOnly`; PV: the PV-level read-only flag of the spec.
    pub read_only: bool,
    /// `flexVolume.options`: the user's options; they win over kubelet's keys on a collision.
    pub options: BTreeMap<String, String>,
}

/// The pod a `mount` call is for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.serviceAccountName` (may be empty).
    pub service_account_name: String,
}

/// The extra inputs of a `mount` call (kubelet's `SetUpAt`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountArgs {
    /// The pod.
    pub pod: PodInfo,
    /// The data of the secret named by `flexVolume.secretRef`, already fetched, raw bytes.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// The pod's `securityContext.fsGroup`.
    pub fs_group: Option<i64>,
}

/// Builds the options object as `NewOptionsForDriver` does: kubelet's defaults, then `extra`,
/// then the user's options, each overriding the previous on a key collision.
pub fn options_for_driver(spec: &VolumeSpec, extra: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut options = BTreeMap::new();
    options.insert(OptionKey::FsType.as_str().to_owned(), spec.fs_type.clone());
    let rw = if spec.read_only { "ro" } else { "rw" };
    options.insert(OptionKey::ReadWrite.as_str().to_owned(), rw.to_owned());
    options.insert(OptionKey::PvOrVolumeName.as_str().to_owned(), spec.name.clone());
    options.extend(extra);
    options.extend(spec.options.iter().map(|(k, v)| (k.clone(), v.clone())));
    options
}

/// The extra options of a `mount` call: pod metadata, secrets (base64) and fsGroup.
pub fn mount_extra_options(args: &MountArgs) -> BTreeMap<String, String> {
    let mut extra = BTreeMap::new();
    extra.insert(OptionKey::PodName.as_str().to_owned(), args.pod.name.clone());
    extra.insert(OptionKey::PodNamespace.as_str().to_owned(), args.pod.namespace.clone());
    extra.insert(OptionKey::PodUid.as_str().to_owned(), args.pod.uid.clone());
    extra.insert(OptionKey::ServiceAccountName.as_str().to_owned(), args.pod.service_account_name.clone());
    for (key, value) in &args.secrets {
        extra.insert(format!("{SECRET_KEY_PREFIX}{key}"), base64::engine::general_purpose::STANDARD.encode(value));
    }
    if let Some(gid) = args.fs_group {
        extra.insert(OptionKey::FsGroup.as_str().to_owned(), gid.to_string());
    }
    extra
}

/// Parses the options argv string into a map. Values must be strings, as kubelet sends them.
pub fn parse_options_json(json: &str) -> Result<BTreeMap<String, String>> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Error::OptionsJson { reason: e.to_string() })?;
    let serde_json::Value::Object(object) = value else {
        return Err(Error::OptionsJson { reason: format!("expected an object, got {value}") });
    };
    object
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            other => Err(Error::OptionsJson { reason: format!("option {k:?} is {other}, not a string") }),
        })
        .collect()
}

/// The options every driver may use, typed: what kubelet adds, plus the user's options.
///
/// Parse it at the driver's boundary (`DriverOptions::try_from(&map)`), then read fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverOptions {
    /// `kubernetes.io/fsType`, `None` when absent or empty.
    pub fs_type: Option<String>,
    /// `kubernetes.io/readwrite` is `"ro"`.
    pub read_only: bool,
    /// `kubernetes.io/pvOrVolumeName`.
    pub volume_name: Option<String>,
    /// The pod (mount only): present when `kubernetes.io/pod.uid` is.
    pub pod: Option<PodInfo>,
    /// `kubernetes.io/mounterArgs.FsGroup`.
    pub fs_group: Option<i64>,
    /// `kubernetes.io/secret/*`, decoded.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// Every other option: the user's `flexVolume.options`.
    pub user: BTreeMap<String, String>,
}

impl DriverOptions {
    /// Parses the options argv string.
    pub fn from_json(json: &str) -> Result<Self> {
        Self::try_from(&parse_options_json(json)?)
    }

    /// A user option that must be present and non-empty.
    pub fn required(&self, key: &str) -> Result<&str> {
        match self.user.get(key).map(String::as_str) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(Error::MissingOption { key: key.to_owned() }),
        }
    }

    /// A user option that may be absent; empty counts as absent.
    pub fn optional(&self, key: &str) -> Option<&str> {
        self.user.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }
}

impl TryFrom<&BTreeMap<String, String>> for DriverOptions {
    type Error = Error;

    fn try_from(map: &BTreeMap<String, String>) -> Result<Self> {
        let get = |key: OptionKey| map.get(key.as_str()).map(String::as_str);
        let read_only = match get(OptionKey::ReadWrite) {
            None | Some("rw") | Some("") => false,
            Some("ro") => true,
            Some(other) => {
                return Err(Error::InvalidOption {
                    key: OptionKey::ReadWrite.as_str().to_owned(),
                    value: other.to_owned(),
                    reason: "expected \"ro\" or \"rw\"".to_owned(),
                })
            }
        };
        let fs_group = match get(OptionKey::FsGroup) {
            None | Some("") => None,
            Some(v) => Some(v.parse::<i64>().map_err(|e| Error::InvalidOption {
                key: OptionKey::FsGroup.as_str().to_owned(),
                value: v.to_owned(),
                reason: e.to_string(),
            })?),
        };
        let pod = get(OptionKey::PodUid).map(|uid| PodInfo {
            name: get(OptionKey::PodName).unwrap_or_default().to_owned(),
            namespace: get(OptionKey::PodNamespace).unwrap_or_default().to_owned(),
            uid: uid.to_owned(),
            service_account_name: get(OptionKey::ServiceAccountName).unwrap_or_default().to_owned(),
        });
        let mut secrets = BTreeMap::new();
        let mut user = BTreeMap::new();
        for (key, value) in map {
            if let Some(name) = key.strip_prefix(SECRET_KEY_PREFIX) {
                let bytes =
                    base64::engine::general_purpose::STANDARD.decode(value).map_err(|e| Error::InvalidOption {
                        key: key.clone(),
                        value: "<secret>".to_owned(),
                        reason: format!("not base64: {e}"),
                    })?;
                secrets.insert(name.to_owned(), bytes);
            } else if !OptionKey::ALL.iter().any(|k| k.as_str() == key) {
                user.insert(key.clone(), value.clone());
            }
        }
        Ok(DriverOptions {
            fs_type: get(OptionKey::FsType).filter(|v| !v.is_empty()).map(str::to_owned),
            read_only,
            volume_name: get(OptionKey::PvOrVolumeName).map(str::to_owned),
            pod,
            fs_group,
            secrets,
            user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn nfs_spec() -> VolumeSpec {
        VolumeSpec {
            name: "test".into(),
            fs_type: "nfs".into(),
            read_only: false,
            options: map(&[("server", "172.16.0.25"), ("share", "dws_nas_scratch")]),
        }
    }

    #[test]
    fn kubelet_keys_come_first_and_user_options_win_on_collision() {
        let mut spec = nfs_spec();
        spec.options.insert("kubernetes.io/fsType".into(), "ext4".into());
        spec.options.insert("kubernetes.io/pod.name".into(), "user".into());
        let extra = mount_extra_options(&MountArgs {
            pod: PodInfo {
                name: "nginx-nfs".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                ..Default::default()
            },
            ..Default::default()
        });
        let options = options_for_driver(&spec, extra);
        assert_eq!(options["kubernetes.io/fsType"], "ext4");
        assert_eq!(options["kubernetes.io/pod.name"], "user");
        assert_eq!(options["kubernetes.io/pod.namespace"], "default");
        assert_eq!(options["kubernetes.io/readwrite"], "rw");
        assert_eq!(options["kubernetes.io/pvOrVolumeName"], "test");
        assert_eq!(options["kubernetes.io/serviceAccount.name"], "");
    }

    #[test]
    fn mount_options_carry_secrets_in_base64_and_the_fs_group() {
        let extra = mount_extra_options(&MountArgs {
            pod: PodInfo::default(),
            secrets: [("password".to_owned(), b"s3cr\xffet".to_vec())].into(),
            fs_group: Some(2000),
        });
        assert_eq!(extra["kubernetes.io/secret/password"], "czNjcv9ldA==");
        assert_eq!(extra["kubernetes.io/mounterArgs.FsGroup"], "2000");
        assert!(!extra.contains_key("kubernetes.io/fsGroup"));
    }

    #[test]
    fn driver_options_split_kubelet_keys_from_user_options() {
        let parsed = DriverOptions::try_from(&map(&[
            ("kubernetes.io/fsType", "xfs"),
            ("kubernetes.io/readwrite", "ro"),
            ("kubernetes.io/pvOrVolumeName", "pv1"),
            ("kubernetes.io/pod.uid", "abc"),
            ("kubernetes.io/pod.name", "p"),
            ("kubernetes.io/mounterArgs.FsGroup", "7"),
            ("kubernetes.io/secret/token", "aGk="),
            ("volumeID", "vol1"),
        ]))
        .unwrap();
        assert_eq!(parsed.fs_type.as_deref(), Some("xfs"));
        assert!(parsed.read_only);
        assert_eq!(parsed.volume_name.as_deref(), Some("pv1"));
        assert_eq!(parsed.pod.as_ref().unwrap().name, "p");
        assert_eq!(parsed.fs_group, Some(7));
        assert_eq!(parsed.secrets["token"], b"hi");
        assert_eq!(parsed.user, map(&[("volumeID", "vol1")]));
        assert_eq!(parsed.required("volumeID").unwrap(), "vol1");
        assert_eq!(parsed.required("pool").unwrap_err().to_string(), "missing option \"pool\"");
    }

    #[test]
    fn bad_values_name_the_option() {
        let err = DriverOptions::try_from(&map(&[("kubernetes.io/readwrite", "yes")])).unwrap_err();
        assert!(err.to_string().contains("kubernetes.io/readwrite"), "{err}");
        let err = DriverOptions::try_from(&map(&[("kubernetes.io/secret/k", "!!")])).unwrap_err();
        assert!(err.to_string().contains("kubernetes.io/secret/k") && !err.to_string().contains("!!"), "{err}");
        assert!(DriverOptions::from_json(r#"{"a":1}"#).unwrap_err().to_string().contains("\"a\""));
        assert!(DriverOptions::from_json("[]").is_err());
    }
}
