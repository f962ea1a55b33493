//! The CSI plugin's errors, classified as kubelet's `isFinalError` does, and carried into the crate's
//! [`crate::Error`] so that the node agent sees the right [`ErrorClass`].

use std::time::Duration;

use crate::error::ErrorClass;

/// Why a CSI step failed.
#[derive(Debug, thiserror::Error)]
pub enum CsiError {
    /// The driver has not registered (yet) through the plugin watcher.
    #[error("driver name {driver} not found in the list of registered CSI drivers")]
    NotRegistered { driver: String },
    /// A registration was refused (unsupported versions, a newer driver of that name already there).
    #[error("registration of CSI driver {driver:?} failed: {reason}")]
    Registration { driver: String, reason: String },
    /// A driver call answered with an error status.
    #[error("{call} failed for volume {volume:?}: rpc error: code = {code:?} desc = {message}")]
    Call { call: &'static str, volume: String, code: tonic::Code, message: String, timeout: Duration },
    /// A driver call did not answer in time; it may still be running.
    #[error("{call} for volume {volume:?} did not answer within {timeout:?}")]
    Timeout { call: &'static str, volume: String, timeout: Duration },
    /// The volume's VolumeAttachment is not (yet) attached, failed, or is being deleted.
    #[error("volume {volume} is not attached for volume attachment {attachment}: {reason}")]
    Attach { attachment: String, volume: String, reason: String },
    /// The volume's VolumeAttachment is not gone: its attacher reported a `detachError`, or has not finished.
    #[error("volume {volume} is not detached for volume attachment {attachment}: {reason}")]
    Detach { attachment: String, volume: String, reason: String },
    /// The CSIDriver object does not allow the volume's lifecycle mode (an inline volume needs
    /// `Ephemeral` in `volumeLifecycleModes`), or cannot be read.
    #[error("CSI driver {driver}: {reason}")]
    Driver { driver: String, reason: String },
    /// A host step after NodePublishVolume of a block volume failed (the device check, the global map
    /// bind, the pod's link): the volume is published, so the agent must map it again or unmap it.
    #[error("mapping block volume {volume:?} at {}: {reason}", path.display())]
    BlockMap { volume: String, path: std::path::PathBuf, reason: String },
    /// Pods still have the block volume mapped (device files under its global map path): it is not
    /// unstaged (kubelet's "The device ... is still referenced from other Pods").
    #[error("block volume {volume:?} is still referenced from other pods: {paths:?}")]
    BlockInUse { volume: String, paths: Vec<std::path::PathBuf> },
}

/// gRPC codes after which the call may still be in progress (kubelet's `isFinalError` is false for them).
const IN_PROGRESS_CODES: [tonic::Code; 5] = [
    tonic::Code::Cancelled,
    tonic::Code::DeadlineExceeded,
    tonic::Code::Unavailable,
    tonic::Code::ResourceExhausted,
    tonic::Code::Aborted,
];

impl CsiError {
    /// Uncertain when the driver may still be working on the call (a timeout; the codes kubelet treats as
    /// not final) and when a published block volume could not be mapped; final for any other answer of the
    /// driver; transient for what happened before a call.
    pub fn class(&self) -> ErrorClass {
        match self {
            CsiError::Timeout { .. } => ErrorClass::Uncertain,
            CsiError::Call { code, .. } if IN_PROGRESS_CODES.contains(code) => ErrorClass::Uncertain,
            CsiError::Call { .. } => ErrorClass::Final,
            CsiError::BlockMap { .. } => ErrorClass::Uncertain,
            _ => ErrorClass::Transient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_that_may_still_run_are_uncertain_for_the_agent_and_other_answers_are_not() {
        let call = |code| CsiError::Call {
            call: "NodeStageVolume",
            volume: "v".into(),
            code,
            message: "m".into(),
            timeout: Duration::from_secs(120),
        };
        struct Case {
            err: CsiError,
            want: ErrorClass,
        }
        let cases = [
            Case { err: call(tonic::Code::DeadlineExceeded), want: ErrorClass::Uncertain },
            Case { err: call(tonic::Code::Unavailable), want: ErrorClass::Uncertain },
            Case { err: call(tonic::Code::Aborted), want: ErrorClass::Uncertain },
            Case { err: call(tonic::Code::Internal), want: ErrorClass::Final },
            Case { err: call(tonic::Code::NotFound), want: ErrorClass::Final },
            Case {
                err: CsiError::Timeout {
                    call: "NodePublishVolume",
                    volume: "v".into(),
                    timeout: Duration::from_secs(1),
                },
                want: ErrorClass::Uncertain,
            },
            Case { err: CsiError::NotRegistered { driver: "d".into() }, want: ErrorClass::Transient },
        ];
        for case in cases {
            let text = case.err.to_string();
            assert_eq!(case.err.class(), case.want, "{text}");
            let converted: crate::Error = case.err.into();
            assert_eq!(converted.class(), case.want, "{text} → {converted}");
            assert_eq!(converted.to_string(), text, "the CSI error is shown as it is");
        }
    }
}
