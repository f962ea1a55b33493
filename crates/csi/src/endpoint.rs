//! CSI endpoint strings: `unix:///path/csi.sock`, `unix:/path`, or a bare path.

use std::path::PathBuf;

use crate::{Error, Result};

/// The socket path named by a CSI endpoint (`--csi-address`, `--endpoint`, `CSI_ENDPOINT`).
///
/// Accepts `unix:///abs/path`, `unix://rel/path` (as kubernetes-csi's sidecars do), `unix:path` and a
/// bare path; any other scheme (`tcp://…`) is refused.
pub fn parse_endpoint(endpoint: &str) -> Result<PathBuf> {
    let path = if let Some(rest) = endpoint.strip_prefix("unix://") {
        rest
    } else if let Some(rest) = endpoint.strip_prefix("unix:") {
        rest
    } else if endpoint.contains("://") {
        ""
    } else {
        endpoint
    };
    if path.is_empty() {
        return Err(Error::Endpoint { endpoint: endpoint.to_owned() });
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_forms_sidecars_use_and_refuses_tcp() {
        struct Case {
            input: &'static str,
            want: Option<&'static str>,
        }
        let cases = [
            Case { input: "unix:///run/csi/csi.sock", want: Some("/run/csi/csi.sock") },
            Case { input: "unix:/run/csi.sock", want: Some("/run/csi.sock") },
            Case { input: "/run/csi.sock", want: Some("/run/csi.sock") },
            Case { input: "csi.sock", want: Some("csi.sock") },
            Case { input: "tcp://127.0.0.1:10000", want: None },
            Case { input: "unix://", want: None },
            Case { input: "", want: None },
        ];
        for case in cases {
            let got = parse_endpoint(case.input).ok();
            assert_eq!(got.as_deref(), case.want.map(std::path::Path::new), "{}", case.input);
        }
    }
}
