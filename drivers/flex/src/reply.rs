//! The one line a call prints, written straight into one buffer.
//!
//! `DriverStatus::to_json` (crates/flex) builds a `serde_json::Value` tree first: a dozen small
//! allocations of assorted sizes. Under musl's allocator, which maps and unmaps a page for a
//! new size class, that was a measurable share of a short call (see the benchmark in
//! tests/bench.rs). This writer produces the same bytes (keys in the same sorted order, strings
//! escaped by serde_json) with one allocation; the tests below hold it to `to_json`. `init`
//! answers from a constant instead (see `init_line`), without allocating at all.

use std::io::Write as _;

use kvol_flex::DriverStatus;

/// `status` as one JSON object and a newline; `capabilities` only when asked (`init`).
pub fn json_line(status: &DriverStatus, with_capabilities: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(192 + status.message.len() + status.device.len() + status.volume_name.len());
    let mut first = true;
    let mut key = |out: &mut Vec<u8>, name: &str| {
        out.extend_from_slice(if first { b"{\"" } else { b",\"" });
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        first = false;
    };
    // Keys in byte order, as serde_json's (BTreeMap) object prints them.
    if status.attached {
        key(&mut out, "attached");
        out.extend_from_slice(b"true");
    }
    if with_capabilities {
        let c = &status.capabilities;
        key(&mut out, "capabilities");
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            r#"{{"attach":{},"fsGroup":{},"requiresFSResize":{},"selinuxRelabel":{},"supportsMetrics":{}}}"#,
            c.attach, c.fs_group, c.requires_fs_resize, c.selinux_relabel, c.supports_metrics
        );
    }
    let strings = [
        ("device", &status.device),
        ("message", &status.message),
        ("status", &status.status),
        ("volumeName", &status.volume_name),
    ];
    for (name, value) in strings {
        // `status` is always present; the others only when set.
        if name == "status" || !value.is_empty() {
            key(&mut out, name);
            string(&mut out, value);
        }
    }
    if status.volume_new_size != 0 {
        key(&mut out, "volumeNewSize");
        let _ = write!(out, "{}", status.volume_new_size);
    }
    out.extend_from_slice(b"}\n");
    out
}

/// The `init` answer of a driver this binary serves, by name; `None` for other names. Each
/// is a constant so that `init` never allocates (see `main`); a test holds them to
/// [`json_line`] of the driver's capabilities.
pub fn init_line(driver: &[u8]) -> Option<&'static [u8]> {
    match driver {
        b"nfs" => Some(NFS_INIT),
        b"loop" => Some(LOOP_INIT),
        _ => None,
    }
}

const NFS_INIT: &[u8] = b"{\"capabilities\":{\"attach\":false,\"fsGroup\":false,\"requiresFSResize\":true,\"selinuxRelabel\":true,\"supportsMetrics\":true},\"status\":\"Success\"}\n";
const LOOP_INIT: &[u8] = b"{\"capabilities\":{\"attach\":true,\"fsGroup\":true,\"requiresFSResize\":true,\"selinuxRelabel\":true,\"supportsMetrics\":true},\"status\":\"Success\"}\n";

fn string(out: &mut Vec<u8>, value: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvol_flex::DriverCapabilities;

    #[test]
    fn writes_the_same_bytes_as_the_protocol_crates_to_json() {
        let statuses = [
            (DriverStatus::success(), false),
            (DriverStatus::success(), true),
            (
                DriverStatus {
                    capabilities: DriverCapabilities { attach: false, supports_metrics: true, ..Default::default() },
                    ..DriverStatus::success()
                },
                true,
            ),
            (DriverStatus { status: "Not supported".into(), ..Default::default() }, false),
            (
                DriverStatus {
                    status: "Failure".into(),
                    message: "quote \" slash \\ nl \n tab \t \u{1} ü".into(),
                    ..Default::default()
                },
                false,
            ),
            (DriverStatus { device: "/dev/loop7".into(), ..DriverStatus::success() }, false),
            (DriverStatus { attached: true, ..DriverStatus::success() }, false),
            (
                DriverStatus {
                    volume_name: "v".into(),
                    volume_new_size: -5,
                    message: "m".into(),
                    device: "d".into(),
                    attached: true,
                    ..DriverStatus::success()
                },
                true,
            ),
            (DriverStatus::default(), false),
        ];
        for (status, caps) in statuses {
            let expected = format!("{}\n", status.to_json(caps));
            assert_eq!(String::from_utf8(json_line(&status, caps)).unwrap(), expected, "{status:?}");
        }
    }

    #[test]
    fn each_drivers_init_constant_is_its_capabilities_as_json_line_writes_them() {
        for (name, capabilities) in [("nfs", crate::nfs::CAPABILITIES), ("loop", crate::loopdev::CAPABILITIES)] {
            assert!(crate::DRIVERS.contains(&name));
            let expected = json_line(&DriverStatus { capabilities, ..DriverStatus::success() }, true);
            let constant = init_line(name.as_bytes()).unwrap_or_else(|| panic!("no init constant for {name}"));
            assert_eq!(String::from_utf8_lossy(constant), String::from_utf8_lossy(&expected), "{name}");
        }
        assert_eq!(crate::DRIVERS.len(), 2, "a new driver needs its init constant");
        assert_eq!(init_line(b"kvol-flex"), None);
    }
}
