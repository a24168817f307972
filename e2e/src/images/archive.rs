//! The docker-archive format (`docker save`, read by `ctr images import`) for a single-layer
//! image: manifest.json, the config JSON and the uncompressed layer, in a plain ustar file.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use super::error::{Error, Result};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The runtime part of an image config, the same fields a Dockerfile's ENV, USER, WORKDIR,
/// ENTRYPOINT and CMD set. Empty values are left out, as Docker leaves them out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl ImageConfig {
    /// The image config JSON. serde_json keeps keys sorted, so equal inputs give equal bytes.
    pub fn to_json(&self, diff_ids: &[String], created_by: &str) -> Value {
        let mut config = serde_json::Map::new();
        let mut set = |key: &str, value: Value, empty: bool| {
            if !empty {
                config.insert(key.into(), value);
            }
        };
        set("Env", json!(self.env), self.env.is_empty());
        set("User", json!(self.user), self.user.is_empty());
        set(
            "WorkingDir",
            json!(self.working_dir),
            self.working_dir.is_empty(),
        );
        set(
            "Entrypoint",
            json!(self.entrypoint),
            self.entrypoint.is_empty(),
        );
        set("Cmd", json!(self.cmd), self.cmd.is_empty());
        json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": created_by}],
        })
    }

    /// The Dockerfile instructions that give this config, for checking the Dockerfiles against it.
    pub fn dockerfile_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.env.iter().map(|env| format!("ENV {env}")).collect();
        if !self.user.is_empty() {
            lines.push(format!("USER {}", self.user));
        }
        if !self.working_dir.is_empty() {
            lines.push(format!("WORKDIR {}", self.working_dir));
        }
        if !self.entrypoint.is_empty() {
            lines.push(format!("ENTRYPOINT {}", json!(self.entrypoint)).replace("\",\"", "\", \""));
        }
        if !self.cmd.is_empty() {
            lines.push(format!("CMD {}", json!(self.cmd)).replace("\",\"", "\", \""));
        }
        lines
    }
}

pub fn manifest_json(reference: &str, config_name: &str, layer_name: &str) -> Value {
    json!([{"Config": config_name, "RepoTags": [reference], "Layers": [layer_name]}])
}

/// Writes the archive of `reference` with `layer` (an uncompressed tar whose SHA-256 is
/// `layer_sha256`) to `out`.
pub fn write_archive(
    out: &Path,
    reference: &str,
    config: &Value,
    layer: &Path,
    layer_sha256: &str,
) -> Result<()> {
    let config_bytes = serde_json::to_vec(config).map_err(|source| Error::Io {
        what: format!("serialising the config of {reference}"),
        source: source.into(),
    })?;
    let config_name = format!("{}.json", super::layer::sha256_hex(&config_bytes));
    let layer_name = format!("{layer_sha256}/layer.tar");
    let manifest = manifest_json(reference, &config_name, &layer_name).to_string();

    let what = || format!("writing {}", out.display());
    let file = std::fs::File::create(out).map_err(Error::io(what()))?;
    let mut writer = std::io::BufWriter::new(file);
    append(&mut writer, "manifest.json", manifest.as_bytes()).map_err(Error::io(what()))?;
    append(&mut writer, &config_name, &config_bytes).map_err(Error::io(what()))?;
    let mut layer_file = std::fs::File::open(layer)
        .map_err(Error::io(format!("opening the layer {}", layer.display())))?;
    let size = layer_file
        .metadata()
        .map_err(Error::io(format!(
            "reading the size of {}",
            layer.display()
        )))?
        .len();
    writer
        .write_all(&header(&layer_name, size)?)
        .map_err(Error::io(what()))?;
    let copied = std::io::copy(&mut layer_file, &mut writer).map_err(Error::io(what()))?;
    if copied != size {
        return Err(Error::Io {
            what: what(),
            source: std::io::Error::other(format!("{} changed while copied", layer.display())),
        });
    }
    writer
        .write_all(&padding(size))
        .map_err(Error::io(what()))?;
    // Two zero blocks end a tar.
    writer.write_all(&[0; 1024]).map_err(Error::io(what()))?;
    let file = writer
        .into_inner()
        .map_err(|error| Error::io(what())(error.into_error()))?;
    file.sync_all().map_err(Error::io(what()))
}

fn append(writer: &mut impl Write, name: &str, content: &[u8]) -> std::io::Result<()> {
    let header = header(name, content.len() as u64).map_err(std::io::Error::other)?;
    writer.write_all(&header)?;
    writer.write_all(content)?;
    writer.write_all(&padding(content.len() as u64))
}

fn padding(size: u64) -> Vec<u8> {
    vec![0; ((512 - size % 512) % 512) as usize]
}

/// A ustar header for a regular file owned by root, mode 0644, mtime 0.
pub fn header(name: &str, size: u64) -> Result<[u8; 512]> {
    if name.len() > 99 {
        return Err(Error::TooLarge {
            what: format!("the archive member name {name}"),
            size: name.len() as u64,
        });
    }
    // Eleven octal digits.
    if size >= 1 << 33 {
        return Err(Error::TooLarge {
            what: name.to_string(),
            size,
        });
    }
    let mut block = [0u8; 512];
    let mut field = |offset: usize, value: &[u8]| {
        block[offset..offset + value.len()].copy_from_slice(value);
    };
    field(0, name.as_bytes());
    field(100, b"0000644\0");
    field(108, b"0000000\0");
    field(116, b"0000000\0");
    field(124, format!("{size:011o}\0").as_bytes());
    field(136, b"00000000000\0");
    field(156, b"0");
    field(257, b"ustar\0");
    field(263, b"00");
    // The checksum is computed with its own field as spaces.
    field(148, b"        ");
    let sum: u32 = block.iter().map(|byte| u32::from(*byte)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postgres_like() -> ImageConfig {
        ImageConfig {
            env: vec![format!("PATH=/usr/lib/postgresql/15/bin:{DEFAULT_PATH}")],
            user: "999:999".into(),
            working_dir: "/var/lib/postgresql".into(),
            entrypoint: vec![],
            cmd: vec!["patroni".into(), "/etc/patroni/patroni.yml".into()],
        }
    }

    #[test]
    fn the_config_is_what_containerd_reads_for_amd64() {
        let config = postgres_like().to_json(&["sha256:abc".into()], "dfr-images");
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(
            config["rootfs"],
            json!({"type": "layers", "diff_ids": ["sha256:abc"]})
        );
        assert_eq!(config["config"]["User"], "999:999");
        assert_eq!(config["config"]["WorkingDir"], "/var/lib/postgresql");
        assert_eq!(config["config"]["Cmd"][0], "patroni");
        assert!(config["config"].get("Entrypoint").is_none());
        assert!(
            config["config"]["Env"][0]
                .as_str()
                .is_some_and(|path| path.starts_with("PATH=/usr/lib/postgresql/15/bin:"))
        );
    }

    #[test]
    fn the_config_and_its_dockerfile_lines_agree() {
        assert_eq!(
            postgres_like().dockerfile_lines(),
            vec![
                format!("ENV PATH=/usr/lib/postgresql/15/bin:{DEFAULT_PATH}"),
                "USER 999:999".to_string(),
                "WORKDIR /var/lib/postgresql".to_string(),
                r#"CMD ["patroni", "/etc/patroni/patroni.yml"]"#.to_string(),
            ]
        );
    }

    #[test]
    fn the_manifest_names_config_tag_and_layer() {
        let manifest = manifest_json("dfr-postgres:15", "c.json", "l/layer.tar");
        assert_eq!(
            manifest,
            json!([{"Config": "c.json", "RepoTags": ["dfr-postgres:15"], "Layers": ["l/layer.tar"]}])
        );
    }

    #[test]
    fn the_archive_is_a_tar_that_gnu_tar_lists() {
        let dir = std::env::temp_dir().join(format!("dfr-images-archive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let layer = dir.join("layer.tar");
        std::fs::write(&layer, vec![7u8; 1500]).expect("layer");
        let out = dir.join("image.tar");
        let config = postgres_like().to_json(&[], "test");
        write_archive(&out, "dfr-test:1", &config, &layer, "ab12").expect("archive");
        let listing = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&out)
            .output()
            .expect("tar runs");
        let _ = std::fs::remove_dir_all(&dir);
        let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
        assert!(listing.contains("manifest.json"), "{listing}");
        assert!(
            listing.contains(" 1500 1970-01-01 00:00 ab12/layer.tar"),
            "{listing}"
        );
        assert_eq!(listing.lines().count(), 3, "{listing}");
    }
}
