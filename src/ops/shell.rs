//! Shell integration files: the man pages the CLI renders from its parser, written into a
//! directory.
use std::path::Path;

use super::OpsError;
use crate::fsutil;

/// A rendered man page: its file name (`vault-keys-create.1`) and its roff text.
pub struct ManPage {
    pub name: String,
    pub roff: Vec<u8>,
}

/// Writes `pages` into `dir` (created if missing), each atomically with mode 0644, and
/// returns their names in order. A name that is not a plain file name is refused.
pub fn write_manpages(dir: &Path, pages: &[ManPage]) -> Result<Vec<String>, OpsError> {
    let io = |source| OpsError::Write {
        what: "man pages to",
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut names = Vec::with_capacity(pages.len());
    for p in pages {
        if Path::new(&p.name).file_name() != Some(p.name.as_ref()) {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{:?} is not a file name", p.name),
            )));
        }
        fsutil::write_atomic(&dir.join(&p.name), &p.roff, 0o644).map_err(io)?;
        names.push(p.name.clone());
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_written_and_named_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("man");
        let pages = [
            ManPage {
                name: "vault-keys.1".into(),
                roff: b".TH vault-keys 1".to_vec(),
            },
            ManPage {
                name: "vault.1".into(),
                roff: b".TH vault 1".to_vec(),
            },
        ];
        let names = write_manpages(&out, &pages).unwrap();
        assert_eq!(names, ["vault-keys.1", "vault.1"]);
        assert_eq!(std::fs::read(out.join("vault.1")).unwrap(), b".TH vault 1");
        let bad = [ManPage {
            name: "../vault.1".into(),
            roff: Vec::new(),
        }];
        assert!(write_manpages(&out, &bad).is_err());
    }
}
