//! The shipped defaults, `models/default` and `labels/taxonomy.toml`, found wherever spyglass
//! runs: in the working directory when they are there (a clone's root, where retraining writes
//! them), else the copies built into the binary, written once into the data directory
//! (`$XDG_DATA_HOME/spyglass/builtin/<hash>/`) so an installed `spyglass` works from any folder.

use std::path::{Path, PathBuf};

use crate::util::{data_dir, sha256_hex};

/// Where the default bundle is looked for first, relative to the working directory.
pub const DEFAULT_MODEL: &str = "models/default";
/// Where the default taxonomy is looked for first, relative to the working directory.
pub const DEFAULT_TAXONOMY: &str = "labels/taxonomy.toml";

const BUILTIN_TAXONOMY: &[u8] = include_bytes!("../../labels/taxonomy.toml");
const BUILTIN_MANIFEST: &[u8] = include_bytes!("../../models/default/manifest.json");
const BUILTIN_HEAD: &[u8] = include_bytes!("../../models/default/head.safetensors");

#[derive(Debug, thiserror::Error)]
#[error("cannot write spyglass's built-in {what} to `{path}`: {source}; set `XDG_DATA_HOME` to a writable folder, or pass `{flag}`")]
pub struct DefaultsError {
    what: &'static str,
    flag: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

/// Where a default came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    WorkingDirectory,
    BuiltIn,
}

/// The default bundle folder: `models/default` here, else the built-in copy.
pub fn model_dir() -> Result<(PathBuf, Origin), DefaultsError> {
    let local = PathBuf::from(DEFAULT_MODEL);
    if local.join(crate::model::bundle::MANIFEST_FILE).is_file() {
        return Ok((local, Origin::WorkingDirectory));
    }
    let files = [
        (crate::model::bundle::MANIFEST_FILE, BUILTIN_MANIFEST),
        (crate::model::bundle::WEIGHTS_FILE, BUILTIN_HEAD),
    ];
    let dir = materialise("model", "--model", &files)?;
    Ok((dir, Origin::BuiltIn))
}

/// The default taxonomy file: `labels/taxonomy.toml` here, else the built-in copy.
pub fn taxonomy_path() -> Result<(PathBuf, Origin), DefaultsError> {
    let local = PathBuf::from(DEFAULT_TAXONOMY);
    if local.is_file() {
        return Ok((local, Origin::WorkingDirectory));
    }
    let dir = materialise(
        "taxonomy",
        "--taxonomy",
        &[("taxonomy.toml", BUILTIN_TAXONOMY)],
    )?;
    Ok((dir.join("taxonomy.toml"), Origin::BuiltIn))
}

/// The taxonomy the user named, else the default one.
pub fn taxonomy_or(given: Option<&Path>) -> Result<PathBuf, DefaultsError> {
    match given {
        Some(path) => Ok(path.to_path_buf()),
        None => taxonomy_path().map(|(path, _)| path),
    }
}

/// Writes `files` once into a folder named by their content hash, complete or not at all (a
/// temporary folder renamed into place), and returns the folder.
fn materialise(
    what: &'static str,
    flag: &'static str,
    files: &[(&str, &[u8])],
) -> Result<PathBuf, DefaultsError> {
    materialise_under(&data_dir().join("builtin"), what, flag, files)
}

fn materialise_under(
    base: &Path,
    what: &'static str,
    flag: &'static str,
    files: &[(&str, &[u8])],
) -> Result<PathBuf, DefaultsError> {
    let mut joined = Vec::new();
    for (name, bytes) in files {
        joined.extend_from_slice(name.as_bytes());
        joined.extend_from_slice(&sha256_hex(bytes).into_bytes());
    }
    let dir = base.join(&sha256_hex(&joined)[..16]);
    if files.iter().all(|(name, _)| dir.join(name).is_file()) {
        return Ok(dir);
    }
    let fail = |path: &Path, source| DefaultsError {
        what,
        flag,
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(base).map_err(|e| fail(base, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".spyglass-builtin-")
        .tempdir_in(base)
        .map_err(|e| fail(base, e))?;
    for (name, bytes) in files {
        let path = staging.path().join(name);
        std::fs::write(&path, bytes).map_err(|e| fail(&path, e))?;
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, &dir) {
        let _ = std::fs::remove_dir_all(&staged);
        // Another run may have put it there first; that copy is as good as ours.
        if !files.iter().all(|(name, _)| dir.join(name).is_file()) {
            return Err(fail(&dir, e));
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_files_are_the_shipped_ones() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(
            std::fs::read(root.join(DEFAULT_TAXONOMY)).unwrap(),
            BUILTIN_TAXONOMY
        );
        assert_eq!(
            std::fs::read(root.join(DEFAULT_MODEL).join("manifest.json")).unwrap(),
            BUILTIN_MANIFEST
        );
    }

    #[test]
    fn materialised_defaults_are_written_once_and_whole() {
        let home = tempfile::tempdir().unwrap();
        let files: [(&str, &[u8]); 2] = [("a.txt", b"alpha"), ("b.bin", b"\x00\x01")];
        let dir = materialise_in(home.path(), &files);
        assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"alpha");
        assert_eq!(std::fs::read(dir.join("b.bin")).unwrap(), b"\x00\x01");
        // A second call finds the same folder; no staging folders are left behind.
        assert_eq!(materialise_in(home.path(), &files), dir);
        let entries: Vec<_> = std::fs::read_dir(home.path()).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }

    fn materialise_in(base: &Path, files: &[(&str, &[u8])]) -> PathBuf {
        materialise_under(base, "test files", "--x", files).unwrap()
    }
}
