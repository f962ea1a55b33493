//! The sidecar roles' errors, and the one place where a CSI driver's gRPC status is classified.

use std::time::Duration;

/// What went wrong in a sidecar role. Every variant names the object (or driver call) involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CSI endpoint could not be parsed or reached.
    #[error("connecting to the CSI driver at {endpoint}")]
    Connect {
        /// The `--csi-address` given.
        endpoint: String,
        /// Cause.
        #[source]
        source: kvol_csi::Error,
    },
    /// The driver answered a call with a non-OK status.
    #[error("{call} for {object}: rpc error: code = {code:?} desc = {message}", code = status.code(), message = status.message())]
    Driver {
        /// The RPC (`CreateVolume`, …).
        call: &'static str,
        /// The Kubernetes object (or volume id) the call was for.
        object: String,
        /// The driver's status.
        status: tonic::Status,
    },
    /// The driver did not answer within the per-call timeout (the operation may still be running).
    #[error("{call} for {object}: no answer from the driver within {timeout:?}")]
    Timeout {
        /// The RPC.
        call: &'static str,
        /// The object the call was for.
        object: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The driver answered OK with a reply that breaks the CSI spec: a driver bug.
    #[error("{call} for {object}: the driver's reply is invalid (driver bug): {reason}")]
    BadReply {
        /// The RPC.
        call: &'static str,
        /// The object the call was for.
        object: String,
        /// What is wrong with the reply.
        reason: String,
    },
    /// A Kubernetes API request failed.
    #[error("{action} {object}")]
    Api {
        /// What was being done (`creating PersistentVolume`, …).
        action: &'static str,
        /// The object, as `kind ns/name` or `kind name`.
        object: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// An object the operation needs does not exist (yet).
    #[error("{kind} {name} not found")]
    NotFound {
        /// Its kind.
        kind: &'static str,
        /// Its name (`ns/name` when namespaced).
        name: String,
    },
    /// An object (StorageClass parameters, PV, claim) cannot be acted upon as it is.
    #[error("{object}: {reason}")]
    Invalid {
        /// The object.
        object: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// Serving the kubelet plugin-registration socket failed.
    #[error("serving plugin registration")]
    Serve(#[source] kvol_csi::Error),
    /// Kubelet told the registrar that registration failed.
    #[error("kubelet failed to register plugin {driver}: {error}")]
    RegistrationFailed {
        /// The driver name.
        driver: String,
        /// Kubelet's message.
        error: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a failed driver call leaves the volume: the CSI spec and kubernetes-csi's `isFinalError` decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The call definitely failed; nothing is in progress on the driver's side.
    Final,
    /// The operation may still be running or may have happened (timeouts, ABORTED, UNAVAILABLE,
    /// RESOURCE_EXHAUSTED, cancellation): the same call must be repeated until it gives a final answer.
    InProgress,
}

/// Classifies a driver's gRPC status code. The only place the sidecar roles look at status codes.
pub fn classify(code: tonic::Code) -> Outcome {
    use tonic::Code;
    match code {
        // external-provisioner's isFinalError: these mean "the driver may still be working on it".
        Code::Cancelled | Code::DeadlineExceeded | Code::Unavailable | Code::ResourceExhausted | Code::Aborted => {
            Outcome::InProgress
        }
        _ => Outcome::Final,
    }
}

impl Error {
    /// Whether a driver may still be carrying out the operation that produced this error.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Driver { status, .. } => classify(status.code()),
            Error::Timeout { .. } => Outcome::InProgress,
            _ => Outcome::Final,
        }
    }

    /// Whether the error is the driver answering NOT_FOUND (for deletions: already gone).
    pub fn is_driver_not_found(&self) -> bool {
        matches!(self, Error::Driver { status, .. } if status.code() == tonic::Code::NotFound)
    }

    /// Whether a Kubernetes API request failed with HTTP `code`.
    pub fn is_api_status(&self, code: u16) -> bool {
        matches!(self, Error::Api { source, .. } if api_status(source) == Some(code))
    }
}

/// The HTTP status of a Kubernetes API error response, if it was one.
pub fn api_status(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_codes_count_as_in_progress() {
        struct Case {
            code: tonic::Code,
            want: Outcome,
        }
        let cases = [
            Case { code: tonic::Code::DeadlineExceeded, want: Outcome::InProgress },
            Case { code: tonic::Code::Aborted, want: Outcome::InProgress },
            Case { code: tonic::Code::Unavailable, want: Outcome::InProgress },
            Case { code: tonic::Code::ResourceExhausted, want: Outcome::InProgress },
            Case { code: tonic::Code::InvalidArgument, want: Outcome::Final },
            Case { code: tonic::Code::OutOfRange, want: Outcome::Final },
            Case { code: tonic::Code::Unimplemented, want: Outcome::Final },
            Case { code: tonic::Code::NotFound, want: Outcome::Final },
        ];
        for case in cases {
            assert_eq!(classify(case.code), case.want, "{:?}", case.code);
        }
    }
}
