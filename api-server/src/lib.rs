//! dfr-api: the Digital Farmer Registry service.

pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod consent;
pub mod constraint;
pub mod credentials;
pub mod crypto;
pub mod db;
pub mod error;
pub mod extract;
pub mod geometry;
pub mod metrics;
pub mod openapi;
pub mod reload;
pub mod retention;
pub mod rotation;
pub mod routes;
pub mod server;
pub mod sessions;
pub mod state;
