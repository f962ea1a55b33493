//! What a driver prints: `DriverStatus`, its capabilities, and kubelet's reading of it
//! (`handleCmdResponse`).
//!
//! Kubelet unmarshals with Go's `encoding/json`: unknown keys are ignored, keys match field
//! names case-insensitively (an exact match wins), `null` leaves a field as it was, and a value
//! of the wrong type fails the whole call. The parser below follows those rules, so a driver
//! that works under kubelet works under kvol and the other way round.

use serde_json::{Map, Value};

/// `status` of a successful call.
pub const STATUS_SUCCESS: &str = "Success";
/// `status` of a failed call (any status other than Success and Not supported fails).
pub const STATUS_FAILURE: &str = "Failure";
/// `status` of a call the driver does not implement.
pub const STATUS_NOT_SUPPORTED: &str = "Not supported";

/// What a driver can do, as reported by `init`. Omitted keys keep kubelet's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverCapabilities {
    /// The driver implements attach/detach (default true): the plugin is attachable and
    /// device-mountable.
    pub attach: bool,
    /// Kubelet may relabel the volume for SELinux (default true).
    pub selinux_relabel: bool,
    /// Kubelet reports statfs metrics of the pod dir (default false).
    pub supports_metrics: bool,
    /// Kubelet applies the pod's fsGroup after mount on read-write volumes (default true).
    pub fs_group: bool,
    /// Node-side `expandfs` is needed after `expandvolume` (default true).
    pub requires_fs_resize: bool,
}

impl Default for DriverCapabilities {
    fn default() -> Self {
        DriverCapabilities {
            attach: true,
            selinux_relabel: true,
            supports_metrics: false,
            fs_group: true,
            requires_fs_resize: true,
        }
    }
}

/// A driver's answer, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverStatus {
    /// `Success`, `Failure` or `Not supported` (anything else counts as a failure).
    pub status: String,
    /// Reason for success or failure.
    pub message: String,
    /// `device`: the attached device (attach, waitforattach).
    pub device: String,
    /// `volumeName` (getvolumename).
    pub volume_name: String,
    /// `attached` (isattached).
    pub attached: bool,
    /// `capabilities` (init), defaults filled in.
    pub capabilities: DriverCapabilities,
    /// `volumeNewSize` in bytes (expandvolume).
    pub volume_new_size: i64,
}

impl DriverStatus {
    /// A Success status with no other field set.
    pub fn success() -> Self {
        DriverStatus { status: STATUS_SUCCESS.to_owned(), ..Default::default() }
    }

    /// Parses a driver's combined output as kubelet does. The error says why it is not a status.
    pub fn parse(output: &[u8]) -> Result<Self, String> {
        let text = String::from_utf8_lossy(output);
        let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let object = match value {
            Value::Object(object) => object,
            Value::Null => Map::new(),
            other => return Err(format!("expected a JSON object, got {}", kind(&other))),
        };
        let mut status = DriverStatus::default();
        if let Some(v) = field(&object, "status") {
            status.status = string(v, "status")?;
        }
        if let Some(v) = field(&object, "message") {
            status.message = string(v, "message")?;
        }
        if let Some(v) = field(&object, "device") {
            status.device = string(v, "device")?;
        }
        if let Some(v) = field(&object, "volumeName") {
            status.volume_name = string(v, "volumeName")?;
        }
        if let Some(v) = field(&object, "attached") {
            status.attached = boolean(v, "attached", false)?;
        }
        if let Some(v) = field(&object, "volumeNewSize") {
            status.volume_new_size = match v {
                Value::Null => 0,
                Value::Number(n) => n.as_i64().ok_or_else(|| format!("\"volumeNewSize\" is {n}, not an int64"))?,
                other => return Err(format!("\"volumeNewSize\" is {}, not a number", kind(other))),
            };
        }
        if let Some(v) = field(&object, "capabilities") {
            match v {
                Value::Null => {}
                Value::Object(caps) => {
                    let c = &mut status.capabilities;
                    let get = |name, default| match field(caps, name) {
                        Some(v) => boolean(v, name, default),
                        None => Ok(default),
                    };
                    c.attach = get("attach", c.attach)?;
                    c.selinux_relabel = get("selinuxRelabel", c.selinux_relabel)?;
                    c.supports_metrics = get("supportsMetrics", c.supports_metrics)?;
                    c.fs_group = get("fsGroup", c.fs_group)?;
                    c.requires_fs_resize = get("requiresFSResize", c.requires_fs_resize)?;
                }
                other => return Err(format!("\"capabilities\" is {}, not an object", kind(other))),
            }
        }
        Ok(status)
    }

    /// Serializes the status as a driver prints it: one compact object, empty fields omitted
    /// (as Go's `omitempty`), capabilities only when `with_capabilities`.
    pub fn to_json(&self, with_capabilities: bool) -> String {
        let mut object = Map::new();
        object.insert("status".into(), Value::String(self.status.clone()));
        for (key, value) in [("message", &self.message), ("device", &self.device), ("volumeName", &self.volume_name)] {
            if !value.is_empty() {
                object.insert(key.into(), Value::String(value.clone()));
            }
        }
        if self.attached {
            object.insert("attached".into(), Value::Bool(true));
        }
        if self.volume_new_size != 0 {
            object.insert("volumeNewSize".into(), Value::from(self.volume_new_size));
        }
        if with_capabilities {
            let c = &self.capabilities;
            let caps: Map<String, Value> = [
                ("attach", c.attach),
                ("selinuxRelabel", c.selinux_relabel),
                ("supportsMetrics", c.supports_metrics),
                ("fsGroup", c.fs_group),
                ("requiresFSResize", c.requires_fs_resize),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::Bool(v)))
            .collect();
            object.insert("capabilities".into(), Value::Object(caps));
        }
        Value::Object(object).to_string()
    }
}

/// Go's field lookup: the exact key if present, else the first key equal ignoring ASCII case.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

fn string(v: &Value, name: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        other => Err(format!("{name:?} is {}, not a string", kind(other))),
    }
}

fn boolean(v: &Value, name: &str, default: bool) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(default),
        other => Err(format!("{name:?} is {}, not a bool", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_capabilities_keep_kubelets_defaults() {
        let s = DriverStatus::parse(br#"{"status": "Success", "capabilities": {"attach": false}}"#).unwrap();
        assert_eq!(s.capabilities, DriverCapabilities { attach: false, ..DriverCapabilities::default() });
        let s = DriverStatus::parse(br#"{"status":"Success"}"#).unwrap();
        assert_eq!(
            s.capabilities,
            DriverCapabilities {
                attach: true,
                selinux_relabel: true,
                supports_metrics: false,
                fs_group: true,
                requires_fs_resize: true
            }
        );
    }

    #[test]
    fn every_field_is_read_and_keys_match_ignoring_case_as_go_does() {
        let s = DriverStatus::parse(
            br#" {"Status":"Success","MESSAGE":"m","device":"/dev/loop1","volumeName":"v",
                 "attached":true,"volumeNewSize":1073741824,"unknown":[1],
                 "Capabilities":{"supportsmetrics":true,"fsGroup":false}}
            "#,
        )
        .unwrap();
        assert_eq!(s.status, "Success");
        assert_eq!(s.message, "m");
        assert_eq!(s.device, "/dev/loop1");
        assert_eq!(s.volume_name, "v");
        assert!(s.attached);
        assert_eq!(s.volume_new_size, 1 << 30);
        assert!(s.capabilities.supports_metrics && !s.capabilities.fs_group && s.capabilities.attach);
    }

    #[test]
    fn garbage_and_wrong_types_are_rejected() {
        for bad in [
            &b""[..],
            b"mount: permission denied",
            b"{\"status\":\"Success\"} trailing",
            b"\"Success\"",
            b"{\"status\":1}",
            b"{\"attached\":\"true\"}",
            b"{\"volumeNewSize\":1.5}",
            b"{\"capabilities\":[]}",
        ] {
            assert!(DriverStatus::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // Go leaves fields alone on null; the status is then empty (a failure later).
        assert_eq!(DriverStatus::parse(b"null").unwrap().status, "");
    }

    #[test]
    fn to_json_omits_empty_fields_and_parses_back() {
        let s = DriverStatus { device: "/dev/loop0".into(), ..DriverStatus::success() };
        assert_eq!(s.to_json(false), r#"{"device":"/dev/loop0","status":"Success"}"#);
        let init = DriverStatus {
            capabilities: DriverCapabilities { attach: false, ..Default::default() },
            ..DriverStatus::success()
        };
        assert_eq!(DriverStatus::parse(init.to_json(true).as_bytes()).unwrap(), init);
    }
}
