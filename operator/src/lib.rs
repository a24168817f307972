//! dfr-operator: reconciles each DfrCountry into an isolated tenant namespace.

pub mod apply;
pub mod autoscaling;
pub mod backup;
pub mod cache;
pub mod children;
pub mod client;
pub mod controller;
pub mod diff;
pub mod duration;
pub mod error;
pub mod failover;
pub mod labels;
pub mod lifecycle;
pub mod maintenance;
pub mod metrics;
pub mod monitoring;
pub mod naming;
pub mod observe;
pub mod patroni_state;
pub mod reconcile;
pub mod settings;
pub mod status;
pub mod switchover;
pub mod tenant;
pub mod tenant_metrics;
pub mod validate;
