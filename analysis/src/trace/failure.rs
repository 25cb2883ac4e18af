//! When writing fails (a full disk, an I/O error): the error, and what was kept of the file
//! — the rows up to the last checkpoint made into the target, or the partial file left for
//! `napiscope recover`.

use std::path::PathBuf;

use super::{encoder::meta_kv, output, TraceMeta, META_PREFIX, SCHEMA_VERSION};

/// A failed write (the file system full, an I/O error), with what was kept of the file.
#[derive(Debug)]
pub struct WriteFailed {
    /// The error, as text.
    pub cause: String,
    /// Its errno when it was an I/O error (ENOSPC, EIO, EFBIG ...).
    pub errno: Option<i32>,
    pub target: PathBuf,
    pub kept: Kept,
}

/// What a failed recording left.
#[derive(Debug)]
pub enum Kept {
    /// The rows up to the last checkpoint, made into the target (marked partial).
    Recovered(output::Recovered),
    /// The partial file and its checkpoint, for `napiscope recover` (making the file failed
    /// too: the reason).
    Partial(PathBuf, String),
    /// Nothing was complete; the partial file was removed.
    Nothing,
}

impl std::fmt::Display for WriteFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.target.display();
        match self.errno {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => {
                let what = match self.errno {
                    Some(libc::ENOSPC) => "no space left on device",
                    Some(libc::EDQUOT) => "disk quota exceeded",
                    _ => "file too large (the file size limit, ulimit -f)",
                };
                write!(f, "{what} writing {t}")?;
                if let Some(fs) = output::file_system_of(&self.target) {
                    write!(f, " ({fs})")?;
                }
            }
            _ => write!(f, "writing {t} failed: {}", self.cause)?,
        }
        match &self.kept {
            Kept::Recovered(r) => write!(
                f,
                "; the {} events written before it are kept in {}, marked partial \
                 (napiscope.partial=true)",
                r.rows,
                r.path.display()
            ),
            Kept::Partial(p, why) => write!(
                f,
                "; the events up to the last checkpoint are kept in {} (making {t} from it \
                 failed: {why}); free some space, then run `napiscope recover {}`",
                p.display(),
                p.display()
            ),
            Kept::Nothing => write!(f, "; nothing complete had been written, no file was left"),
        }
    }
}

impl std::error::Error for WriteFailed {}

/// The writer failed (`cause`): make the target from the last checkpoint, with `meta` and
/// `partial=true`, or leave the partial file for `recover`, or nothing.
pub(super) fn salvage(
    paths: &output::Paths,
    replace: bool,
    meta: &TraceMeta,
    cause: &anyhow::Error,
) -> WriteFailed {
    let kept = match output::read_checkpoint(paths) {
        Ok(Some(ck)) => {
            let mut m = meta.clone();
            m.set("partial", "true");
            m.set("rows", ck.rows.to_string());
            m.set("schema_version", SCHEMA_VERSION);
            m.set("error", format!("{cause:#}"));
            if m.get("stop_reason").is_none() {
                m.set("stop_reason", "write_error");
            }
            let kv = output::checkpoint_kv(&ck).map(|kv| {
                kv.into_iter()
                    .filter(|k| !k.key.starts_with(META_PREFIX))
                    .chain(meta_kv(&m))
                    .collect()
            });
            match kv.and_then(|kv| output::recover_to(paths, &paths.target, replace, Some(kv))) {
                Ok(Some(r)) => Kept::Recovered(r),
                Ok(None) => Kept::Nothing,
                Err(e) => Kept::Partial(paths.partial.clone(), format!("{e:#}")),
            }
        }
        Ok(None) => {
            paths.remove();
            Kept::Nothing
        }
        Err(e) => Kept::Partial(paths.partial.clone(), format!("{e:#}")),
    };
    let errno = cause
        .chain()
        .find_map(|c| c.downcast_ref::<WriterError>().and_then(|w| w.errno))
        .or_else(|| output::io_errno(cause));
    let text = match errno {
        // The system's words for it, once (not parquet's wrapping of them, twice).
        Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
        None => {
            let t = format!("{cause:#}");
            let prefix = format!("writing {}: ", paths.target.display());
            t.strip_prefix(&prefix).map_or(t.clone(), str::to_string)
        }
    };
    WriteFailed {
        cause: text,
        errno,
        target: paths.target.clone(),
        kept,
    }
}

/// The writer thread stopped on an error: its text and errno, kept for every later call.
#[derive(Clone, Debug)]
pub struct WriterError {
    pub msg: String,
    pub errno: Option<i32>,
}

impl std::fmt::Display for WriterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for WriterError {}

impl WriterError {
    pub(super) fn of(e: &anyhow::Error) -> WriterError {
        WriterError {
            msg: format!("{e:#}"),
            errno: output::io_errno(e),
        }
    }
}
