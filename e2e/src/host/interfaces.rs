//! Network interfaces of our own, made and removed with `ip`.

use std::net::Ipv4Addr;
use std::path::Path;

use super::command::run;
use super::error::Result;

pub fn exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// A bridge without ports carrying `address`/32, up; replaces one of that name. A bridge
/// because these kernels have no dummy driver.
pub fn create_bridge_with_address(name: &str, address: Ipv4Addr) -> Result<()> {
    if exists(name) {
        run("ip", &["link", "del", name])?;
    }
    run("ip", &["link", "add", name, "type", "bridge"])?;
    run(
        "ip",
        &["addr", "add", &format!("{address}/32"), "dev", name],
    )?;
    run("ip", &["link", "set", name, "up"])?;
    Ok(())
}

/// Removes `name` if it exists.
pub fn delete(name: &str) -> Result<()> {
    if exists(name) {
        run("ip", &["link", "del", name])?;
    }
    Ok(())
}
