//! Writes command output: standard output, or a file replaced atomically (temp file + rename),
//! so an interrupted run never leaves a half-written file behind.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot create output next to `{path}`: {source}; check that the folder exists and is writable")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write output `{path}`: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot move finished output into place at `{path}`: {source}")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("output `{path}` is not a regular file (a device, pipe, socket or folder); pass a file path, or `-` for standard output")]
    NotAFile { path: PathBuf },
    #[error("output `{path}` is a symbolic link to nothing ({reason}); pass a file path")]
    DanglingLink {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("output `{output}` is the input `{input}`; write to another file (the input would be overwritten while it is read)")]
    SameAsInput { output: String, input: String },
}

/// Temporary files of unfinished outputs in this process, removed by
/// [`remove_partial_files`] when the process is interrupted (destructors do not run then).
static PARTIALS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A temporary file's place in [`PARTIALS`], given up when the output is finished or dropped.
struct Registered(PathBuf);

impl Registered {
    fn new(path: &Path) -> Self {
        if let Ok(mut partials) = PARTIALS.lock() {
            partials.push(path.to_path_buf());
        }
        Self(path.to_path_buf())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut partials) = PARTIALS.lock() {
            partials.retain(|p| p != &self.0);
        }
    }
}

/// Deletes every unfinished output's temporary file; for signal handlers, before exiting.
pub fn remove_partial_files() {
    if let Ok(mut partials) = PARTIALS.lock() {
        for path in partials.drain(..) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes `.spyglass-<pid>-*.partial` files in `dir` whose process is gone (Linux), left by a
/// run that was killed outright; files of live processes are someone's work in progress.
fn sweep_stale_partials(dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(".spyglass-"))
            .filter(|n| n.ends_with(".partial"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The one device spyglass writes into rather than refusing: writing there replaces nothing.
const NULL_DEVICE: &str = "/dev/null";

/// Names of standard output that users pass as a path.
const STDOUT_PATHS: [&str; 3] = ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"];

/// Where a file output really goes: the target of a symbolic link (so the link survives and
/// its target is replaced atomically), refusing anything that exists but is not a regular file.
fn file_target(spec: &str) -> Result<PathBuf, OutputError> {
    let path = PathBuf::from(spec);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return Ok(path); // a new file
    };
    let real = if meta.file_type().is_symlink() {
        match std::fs::canonicalize(&path) {
            Ok(real) => real,
            Err(reason) => return Err(OutputError::DanglingLink { path, reason }),
        }
    } else {
        path.clone()
    };
    match std::fs::metadata(&real) {
        Ok(m) if m.is_file() => Ok(real),
        Ok(_) => Err(OutputError::NotAFile { path }),
        Err(_) => Ok(real),
    }
}

/// Refuses an output that is the input file itself (by file identity, not spelling).
pub fn refuse_input(output: &str, input: &str) -> Result<(), OutputError> {
    if output == "-" || input == "-" {
        return Ok(());
    }
    let same = match (std::fs::canonicalize(output), std::fs::canonicalize(input)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(OutputError::SameAsInput {
            output: output.to_string(),
            input: input.to_string(),
        });
    }
    Ok(())
}

/// A destination for lines of output. Call [`Output::finish`] to publish a file; dropping it
/// unfinished deletes the temporary file and leaves any existing output untouched.
pub struct Output {
    sink: Sink,
    name: String,
}

enum Sink {
    Stdout(BufWriter<std::io::Stdout>),
    /// `/dev/null` (or a link to it): output thrown away, the device left as it is.
    Discard(std::io::Sink),
    File {
        writer: BufWriter<tempfile::NamedTempFile>,
        target: PathBuf,
        _registered: Registered,
    },
}

impl Output {
    /// `-` is standard output; anything else a file path.
    pub fn create(spec: &str) -> Result<Self, OutputError> {
        if spec == "-" || STDOUT_PATHS.contains(&spec) {
            return Ok(Self {
                sink: Sink::Stdout(BufWriter::new(std::io::stdout())),
                name: "<stdout>".into(),
            });
        }
        if std::fs::canonicalize(spec).is_ok_and(|real| real == Path::new(NULL_DEVICE)) {
            return Ok(Self {
                sink: Sink::Discard(std::io::sink()),
                name: NULL_DEVICE.into(),
            });
        }
        let target = file_target(spec)?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        sweep_stale_partials(&dir);
        let temp = tempfile::Builder::new()
            .prefix(&format!(".spyglass-{}-", std::process::id()))
            .suffix(".partial")
            .tempfile_in(&dir)
            .map_err(|source| OutputError::Create {
                path: target.clone(),
                source,
            })?;
        let registered = Registered::new(temp.path());
        Ok(Self {
            sink: Sink::File {
                writer: BufWriter::with_capacity(1 << 16, temp),
                target,
                _registered: registered,
            },
            name: spec.to_string(),
        })
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        match &mut self.sink {
            Sink::Stdout(w) => w,
            Sink::Discard(w) => w,
            Sink::File { writer, .. } => writer,
        }
    }

    /// Writes one value as a JSON line.
    pub fn write_json<T: serde::Serialize>(&mut self, value: &T) -> Result<(), OutputError> {
        let name = self.name.clone();
        let w = self.writer();
        serde_json::to_writer(&mut *w, value)
            .map_err(std::io::Error::from)
            .and_then(|_| w.write_all(b"\n"))
            .map_err(|source| OutputError::Write { path: name, source })
    }

    pub fn write_str(&mut self, text: &str) -> Result<(), OutputError> {
        let name = self.name.clone();
        self.writer()
            .write_all(text.as_bytes())
            .map_err(|source| OutputError::Write { path: name, source })
    }

    /// Flushes and, for files, renames the finished temporary file over the target.
    pub fn finish(self) -> Result<(), OutputError> {
        match self.sink {
            Sink::Stdout(mut w) => w.flush().map_err(|source| OutputError::Write {
                path: self.name,
                source,
            }),
            Sink::Discard(_) => Ok(()),
            Sink::File {
                writer,
                target,
                _registered,
            } => {
                let temp = writer.into_inner().map_err(|e| OutputError::Write {
                    path: self.name.clone(),
                    source: e.into_error(),
                })?;
                // Temp files are created private (0600); give the result the usual file mode,
                // or keep the mode of the file it replaces.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(&target)
                        .map(|m| m.permissions().mode())
                        .unwrap_or(0o644);
                    let _ = temp
                        .as_file()
                        .set_permissions(std::fs::Permissions::from_mode(mode));
                }
                temp.as_file()
                    .sync_all()
                    .map_err(|source| OutputError::Write {
                        path: self.name.clone(),
                        source,
                    })?;
                temp.persist(&target).map_err(|e| OutputError::Persist {
                    path: target.clone(),
                    source: e.error,
                })?;
                Ok(())
            }
        }
    }
}

/// Writes `contents` to `path` atomically (temp file in the same folder, then rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), OutputError> {
    let mut out = Output::create(&path.to_string_lossy())?;
    let name = path.display().to_string();
    out.writer()
        .write_all(contents)
        .map_err(|source| OutputError::Write { path: name, source })?;
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_output_leaves_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        std::fs::write(&target, "old\n").unwrap();
        {
            let mut out = Output::create(target.to_str().unwrap()).unwrap();
            out.write_str("new partial").unwrap();
            // dropped without finish(), as when a run fails midway
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let mut out = Output::create(target.to_str().unwrap()).unwrap();
        out.write_json(&serde_json::json!({"a": 1})).unwrap();
        out.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "{\"a\":1}\n");
    }

    #[cfg(unix)]
    #[test]
    fn links_are_written_through_dev_null_discards_and_other_devices_and_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.jsonl");
        std::fs::write(&real, "old\n").unwrap();
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut out = Output::create(link.to_str().unwrap()).unwrap();
        out.write_str("new\n").unwrap();
        out.finish().unwrap();
        // The link is still a link, and its target holds the new text.
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new\n");

        // `/dev/null`, or a link to it, discards the output and stays a device.
        let to_null = dir.path().join("to-null");
        std::os::unix::fs::symlink("/dev/null", &to_null).unwrap();
        for spec in ["/dev/null", to_null.to_str().unwrap()] {
            let mut out = Output::create(spec).unwrap();
            out.write_str("dropped\n").unwrap();
            out.finish().unwrap();
        }
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        assert!(std::fs::symlink_metadata(&to_null)
            .unwrap()
            .file_type()
            .is_symlink());
        for spec in ["/dev/zero", dir.path().to_str().unwrap()] {
            let err = Output::create(spec).err().expect("refused");
            assert!(
                err.to_string().contains("not a regular file"),
                "{spec}: {err}"
            );
        }
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("missing/x"), &dangling).unwrap();
        assert!(Output::create(dangling.to_str().unwrap()).is_err());
        // Standard output by its device names is standard output, not a file to replace.
        assert_eq!(Output::create("/dev/stdout").unwrap().name, "<stdout>");
    }

    #[test]
    fn stale_partials_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".spyglass-4000000000-abc.partial");
        let mine = dir
            .path()
            .join(format!(".spyglass-{}-abc.partial", std::process::id()));
        let other = dir.path().join("notes.partial");
        for p in [&dead, &mine, &other] {
            std::fs::write(p, "x").unwrap();
        }
        let out = Output::create(dir.path().join("out.jsonl").to_str().unwrap()).unwrap();
        if Path::new("/proc/self").exists() {
            assert!(!dead.exists());
        }
        assert!(mine.exists() && other.exists());
        // The new output's own temporary file is registered until it is finished or dropped
        // (other tests register theirs in the same process, so count only this folder's).
        let here = || {
            PARTIALS
                .lock()
                .unwrap()
                .iter()
                .filter(|p| p.starts_with(dir.path()))
                .count()
        };
        assert_eq!(here(), 1);
        drop(out);
        assert_eq!(here(), 0);
    }

    #[test]
    fn the_input_file_is_never_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, "{}\n").unwrap();
        let spelled = format!("{}/./in.jsonl", dir.path().display());
        let err = refuse_input(&spelled, input.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("is the input"), "{err}");
        assert!(refuse_input(
            dir.path().join("out.jsonl").to_str().unwrap(),
            input.to_str().unwrap()
        )
        .is_ok());
        assert!(refuse_input("-", "-").is_ok());
    }
}
