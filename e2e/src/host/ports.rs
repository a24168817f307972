//! Ports for the components, picked free by the kernel.

use std::net::{Ipv4Addr, TcpListener};

use super::error::{Error, Result};

/// A TCP port on 127.0.0.1 that nothing listens on now.
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::io("finding a free port"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(Error::io("finding a free port"))
}
