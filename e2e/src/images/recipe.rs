//! The files under images/<name>/ that both recipes read: the Dockerfile copies them into the
//! build and runs setup.sh; dfr-images copies them into a chroot and runs the same setup.sh.

use std::path::{Path, PathBuf};

use super::error::{Error, Result};

/// Where the Dockerfiles copy the recipe files, and so where dfr-images puts them in the chroot.
pub const BUILD_DIR: &str = "/tmp/dfr-build";

/// One image's recipe: its directory and the files setup.sh reads from next to itself.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub dir: PathBuf,
    pub files: &'static [&'static str],
}

pub const POSTGRES_FILES: &[&str] = &["packages", "requirements.txt", "setup.sh"];
pub const BINARY_FILES: &[&str] = &["packages", "setup.sh"];

impl Recipe {
    /// Each file's name and content, after checking the package list.
    pub fn read(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        self.files
            .iter()
            .map(|name| {
                let path = self.dir.join(name);
                let content = std::fs::read(&path).map_err(Error::io(format!(
                    "reading the recipe file {}",
                    path.display()
                )))?;
                if *name == "packages" {
                    parse_packages(&String::from_utf8_lossy(&content), &path)?;
                }
                Ok((*name, content))
            })
            .collect()
    }
}

/// The packages of a `packages` file: one per line, blank lines and `#` comments allowed (setup.sh
/// filters them the same way before xargs).
pub fn parse_packages(text: &str, file: &Path) -> Result<Vec<String>> {
    let mut packages = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let problem = |message: &str| Error::PackageList {
            file: file.to_path_buf(),
            line: index + 1,
            message: format!("{line:?} {message}"),
        };
        if line.split_whitespace().count() > 1 {
            return Err(problem(
                "holds more than one word; list one package per line",
            ));
        }
        let valid = line.len() >= 2
            && line.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && line.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
            });
        if !valid {
            return Err(problem("is not a Debian package name"));
        }
        packages.push(line.to_string());
    }
    if packages.is_empty() {
        return Err(Error::PackageList {
            file: file.to_path_buf(),
            line: 0,
            message: "lists no package".into(),
        });
    }
    Ok(packages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_lists_allow_comments_and_blank_lines() {
        let text = "# base\nca-certificates\n\n  postgresql-15  \n# patroni\npython3-yaml\n";
        let packages = parse_packages(text, Path::new("packages")).expect("parses");
        assert_eq!(
            packages,
            vec!["ca-certificates", "postgresql-15", "python3-yaml"]
        );
    }

    #[test]
    fn package_lists_reject_what_xargs_would_split_or_apt_would_not_know() {
        for bad in [
            "postgresql-15 pgbackrest\n",
            "Postgres\n",
            "-y\n",
            "pkg;rm\n",
            "# none\n",
        ] {
            let error = parse_packages(bad, Path::new("images/x/packages"))
                .expect_err(bad)
                .to_string();
            assert!(error.starts_with("images/x/packages, line "), "{error}");
        }
    }
}
