//! The operator's one error type. Each variant maps to a status condition reason, an Event
//! reason and a metrics label, so a failure is visible where a person looks for it.

use thiserror::Error;

#[derive(Error, Debug)]
pub enum Error {
    #[error("Kubernetes API request failed while {action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },

    #[error("the DfrCountry could not be read: {0}")]
    InvalidObject(String),

    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    #[error(
        "namespace {namespace} already exists and does not belong to this DfrCountry ({detail}); \
         the operator never adopts or overwrites objects another owner made: rename or remove \
         that namespace"
    )]
    NamespaceConflict { namespace: String, detail: String },

    #[error(
        "{kind} {namespace}/{name} exists and was not created by the operator for this DfrCountry; \
         it is left untouched: remove it or rename it"
    )]
    ForeignObject {
        kind: String,
        namespace: String,
        name: String,
    },

    #[error("namespace {0} is still being deleted; the tenant is recreated once it is gone")]
    NamespaceTerminating(String),

    #[error("could not generate credentials or certificates: {0}")]
    SecretGeneration(String),

    #[error("could not serialize {what}: {source}")]
    Serialization {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("the DfrCountry has no {0}; it was not read from the API server")]
    MissingMetadata(&'static str),

    #[error("finalizer: {0}")]
    Finalizer(String),

    #[error(
        "the operator's watches did not finish their first list within {0} s; check its list and \
         watch permissions and the API server's health"
    )]
    CachesNotReady(u64),

    #[error("the PII key ring in Secret {secret} cannot be rotated: {problem}")]
    PiiKeyRing { secret: String, problem: String },

    #[error("cannot restore: {0}")]
    RestoreRefused(String),

    /// Something a person is about to create (a Secret in the new namespace): retried soon.
    #[error("{0}")]
    WaitingFor(String),

    /// spec.tls.issuerRef is set and cert-manager has not written a Certificate's Secret yet.
    #[error(
        "waiting for cert-manager to issue Certificate {namespace}/{name} into Secret {name}: \
         {readiness}; the database and the API start once the Secret exists"
    )]
    CertificateNotIssued {
        namespace: String,
        name: String,
        readiness: String,
    },

    #[error(
        "spec.tls.issuerRef is set but the cluster does not serve {0} Certificates: install \
         cert-manager, or remove spec.tls.issuerRef to let the operator issue the certificates \
         from its own tenant CA"
    )]
    CertManagerAbsent(&'static str),
}

impl Error {
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }

    /// A CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "KubernetesApiError",
            Error::InvalidObject(_) => "InvalidObject",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::NamespaceConflict { .. } => "NamespaceConflict",
            Error::ForeignObject { .. } => "ForeignObjectConflict",
            Error::NamespaceTerminating(_) => "WaitingForNamespaceDeletion",
            Error::SecretGeneration(_) => "SecretGenerationFailed",
            Error::Serialization { .. } => "SerializationFailed",
            Error::MissingMetadata(_) => "MissingMetadata",
            Error::Finalizer(_) => "FinalizerFailed",
            Error::CachesNotReady(_) => "CachesNotReady",
            Error::PiiKeyRing { .. } => "PiiKeyRingInvalid",
            Error::RestoreRefused(_) => "RestoreRefused",
            Error::WaitingFor(_) => "WaitingForSecret",
            Error::CertificateNotIssued { .. } => "WaitingForCertificate",
            Error::CertManagerAbsent(_) => "CertManagerNotInstalled",
        }
    }

    /// Short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube_api",
            Error::InvalidObject(_) => "invalid_object",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::NamespaceConflict { .. } => "namespace_conflict",
            Error::ForeignObject { .. } => "foreign_object",
            Error::NamespaceTerminating(_) => "namespace_terminating",
            Error::SecretGeneration(_) => "secret_generation",
            Error::Serialization { .. } => "serialization",
            Error::MissingMetadata(_) => "missing_metadata",
            Error::Finalizer(_) => "finalizer",
            Error::CachesNotReady(_) => "caches_not_ready",
            Error::PiiKeyRing { .. } => "pii_key_ring",
            Error::RestoreRefused(_) => "restore_refused",
            Error::WaitingFor(_) => "waiting",
            Error::CertificateNotIssued { .. } => "waiting_for_certificate",
            Error::CertManagerAbsent(_) => "cert_manager_absent",
        }
    }

    /// Conflicts and invalid input need a person; retrying quickly only adds load.
    pub fn needs_a_person(&self) -> bool {
        matches!(
            self,
            Error::InvalidObject(_)
                | Error::InvalidSpec(_)
                | Error::NamespaceConflict { .. }
                | Error::ForeignObject { .. }
                | Error::RestoreRefused(_)
                | Error::PiiKeyRing { .. }
                | Error::CertManagerAbsent(_)
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
