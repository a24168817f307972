use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong bringing a local cluster (control plane and node) up or down,
/// one enum for every layer so `dfr-cluster` reports them alike. Each message names the
/// component and, where there is one, its log file.
#[derive(Error, Debug)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the Go toolchain is needed to build the Kubernetes components but `go` was not found on PATH; install Go 1.24 or newer"
    )]
    GoMissing,
    #[error("building the Kubernetes components failed (go build exited with {status}); see {log}")]
    BuildFailed { status: String, log: PathBuf },
    #[error("could not generate certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    #[error("{component} exited during start-up ({status}); last lines of {log}:\n{tail}")]
    ComponentExited {
        component: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{component} did not become ready within {seconds} s; last lines of {log}:\n{tail}")]
    NotReady {
        component: String,
        seconds: u64,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "no control plane named {0} is running (state dir {1} has no kubeconfig); run `dfr-cluster up --name {0}`"
    )]
    NotRunning(String, PathBuf),
    #[error("could not signal process {pid} ({component}): {source}")]
    Signal {
        component: String,
        pid: i32,
        #[source]
        source: nix::Error,
    },
    #[error(
        "another node cluster runs on this machine (state dir {0}); only one can, because kube-proxy's iptables chains and the kubelet's cgroups are machine-wide: stop it with `dfr-cluster down --state-dir {0}`"
    )]
    NodeBusy(PathBuf),
    #[error("building the image {image} failed: {message}")]
    Image { image: String, message: String },
    #[error(
        "control plane {0} already runs without a node; stop it first with `dfr-cluster down --name {0}`"
    )]
    RunningWithoutNode(String),
    #[error("the machine could not be fully restored after stopping the node:\n{0}")]
    Restore(String),
    #[error("HOME is not set; cannot find the cache directory")]
    NoHome,
}

impl Error {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
