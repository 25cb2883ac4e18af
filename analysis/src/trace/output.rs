//! Where a trace is written, so that its file loses nothing: a recording goes to a temporary
//! file beside its target and is renamed into place only when complete (file fsync'd, rename,
//! directory fsync'd); an existing file or a symbolic link is never replaced unless asked,
//! and never written through.
//!
//! While a recording runs, each flushed row group is followed by a checkpoint: a sidecar
//! file, atomically replaced, that holds the Parquet footer of the row groups written so far
//! and the length of the data they take. If the recorder dies (SIGKILL, OOM, power loss after
//! the fsync), `recover` truncates the partial file to that length and appends that footer:
//! a valid trace of every row up to the last checkpoint, marked `napiscope.partial=true`.
//!
//! Names, beside the target `DIR/NAME`:
//!   `DIR/.NAME.napiscope-PID.partial`  the data being written
//!   `DIR/.NAME.napiscope-PID.footer`   the last checkpoint (magic, data length, rows, footer)

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context as _, Result};
use parquet::{
    file::metadata::{FileMetaData, ParquetMetaData, ParquetMetaDataReader, ParquetMetaDataWriter},
    format::KeyValue,
};

const PARTIAL_EXT: &str = "partial";
const FOOTER_EXT: &str = "footer";
const TAG: &str = ".napiscope-";
const MAGIC: &[u8; 16] = b"napiscope-ckpt1\n";

/// The files of one recording in progress.
#[derive(Clone, Debug)]
pub struct Paths {
    pub target: PathBuf,
    pub partial: PathBuf,
    pub footer: PathBuf,
}

impl Paths {
    /// The partial and checkpoint files of this process's recording of `target`.
    pub fn for_target(target: &Path) -> Result<Paths> {
        let name = target
            .file_name()
            .ok_or_else(|| anyhow!("{} names no file", target.display()))?
            .to_string_lossy()
            .into_owned();
        let dir = dir_of(target);
        let base = format!(".{name}{TAG}{}", std::process::id());
        Ok(Paths {
            target: target.to_path_buf(),
            partial: dir.join(format!("{base}.{PARTIAL_EXT}")),
            footer: dir.join(format!("{base}.{FOOTER_EXT}")),
        })
    }

    /// The files of a partial recording, from its `.partial` file's name.
    pub fn of_partial(partial: &Path) -> Option<Paths> {
        let name = partial.file_name()?.to_str()?;
        let stem = name
            .strip_prefix('.')?
            .strip_suffix(&format!(".{PARTIAL_EXT}"))?;
        let at = stem.rfind(TAG)?;
        let (target, pid) = (&stem[..at], &stem[at + TAG.len()..]);
        if target.is_empty() || pid.parse::<u32>().is_err() {
            return None;
        }
        let dir = dir_of(partial);
        Some(Paths {
            target: dir.join(target),
            partial: partial.to_path_buf(),
            footer: dir.join(format!(".{target}{TAG}{pid}.{FOOTER_EXT}")),
        })
    }

    /// The pid of the recorder that wrote these files.
    pub fn pid(&self) -> Option<u32> {
        let name = self.partial.file_name()?.to_str()?;
        let stem = name.strip_suffix(&format!(".{PARTIAL_EXT}"))?;
        stem[stem.rfind(TAG)? + TAG.len()..].parse().ok()
    }

    /// True while the recorder that writes these files still runs.
    pub fn writer_running(&self) -> bool {
        self.pid().is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end().starts_with("napiscope"))
        })
    }

    fn tmp_footer(&self) -> PathBuf {
        let mut s = self.footer.clone().into_os_string();
        s.push(".tmp");
        PathBuf::from(s)
    }

    /// Remove the partial and checkpoint files (what is missing is fine).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.partial);
        let _ = std::fs::remove_file(&self.footer);
        let _ = std::fs::remove_file(self.tmp_footer());
    }
}

fn dir_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Partial recordings of `target` left by recorders that no longer run (killed), oldest
/// first.
pub fn leftovers(target: &Path) -> Vec<Paths> {
    let Some(name) = target.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let prefix = format!(".{name}{TAG}");
    let Ok(rd) = std::fs::read_dir(dir_of(target)) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, Paths)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&format!(".{PARTIAL_EXT}")))
        })
        .filter_map(|e| {
            let p = Paths::of_partial(&dir_of(target).join(e.file_name()))?;
            let t = e.metadata().ok()?.modified().ok()?;
            (!p.writer_running()).then_some((t, p))
        })
        .collect();
    found.sort_by_key(|(t, _)| *t);
    found.into_iter().map(|(_, p)| p).collect()
}

/// Refusal to replace an existing file or a symbolic link (a usage error for the CLI).
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// May a trace be written to `target`? Not over an existing file unless `replace`; never
/// through a symbolic link (with `replace` the link itself is replaced); never over a
/// directory.
pub fn check_target(target: &Path, replace: bool) -> Result<()> {
    let md = match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot create output file {}", target.display()))
        }
        Ok(md) => md,
    };
    let t = target.display();
    if md.is_dir() {
        return Err(Refused(format!("{t} is a directory; give a file name")).into());
    }
    if replace {
        return Ok(());
    }
    if md.file_type().is_symlink() {
        let to = std::fs::read_link(target)
            .map(|p| format!(" (to {})", p.display()))
            .unwrap_or_default();
        return Err(Refused(format!(
            "{t} is a symbolic link{to}; napiscope never writes through a link: use --force to \
             replace the link itself, or give another path"
        ))
        .into());
    }
    Err(Refused(format!("{t} exists; use --force to replace it")).into())
}

/// Create the partial file of a recording of `paths.target` (refusing as `check_target`).
pub fn create_partial(paths: &Paths, replace: bool) -> Result<File> {
    check_target(&paths.target, replace)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&paths.partial)
        .with_context(|| format!("cannot create output file {}", paths.target.display()))
}

/// Put a complete file in place: fsync it, rename it over `target` (only if `target` does
/// not exist, unless `replace`), fsync the directory.
pub fn commit(file: &File, from: &Path, target: &Path, replace: bool) -> Result<()> {
    file.sync_all()
        .with_context(|| format!("syncing {}", from.display()))?;
    rename(from, target, replace)?;
    sync_dir(target);
    Ok(())
}

fn rename(from: &Path, to: &Path, replace: bool) -> Result<()> {
    if !replace {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
        let (f, t) = (c(from)?, c(to)?);
        // SAFETY: two NUL-terminated paths, relative to the working directory.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EEXIST) => {
                return Err(Refused(format!(
                    "{} was created while napiscope wrote it; the complete recording is kept \
                     in {}",
                    to.display(),
                    from.display()
                ))
                .into())
            }
            // A file system without RENAME_NOREPLACE: check, then a plain rename.
            Some(libc::EINVAL) | Some(libc::ENOSYS) => check_target(to, false)?,
            _ => {
                return Err(e)
                    .with_context(|| format!("renaming {} to {}", from.display(), to.display()))
            }
        }
    }
    std::fs::rename(from, to)
        .with_context(|| format!("renaming {} to {}", from.display(), to.display()))
}

fn sync_dir(p: &Path) {
    if let Ok(d) = File::open(dir_of(p)) {
        let _ = d.sync_all();
    }
}

/// A checkpoint's content.
pub struct Checkpoint {
    /// Bytes of the partial file the footer covers.
    pub data_len: u64,
    pub rows: u64,
    /// The Parquet footer (metadata, its length, `PAR1`), to append at `data_len`.
    pub footer: Vec<u8>,
}

/// The footer bytes of `md` (thrift metadata, length, magic).
pub fn footer_bytes(md: &ParquetMetaData) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    ParquetMetaDataWriter::new(&mut buf, md).finish()?;
    Ok(buf)
}

/// Atomically replace the checkpoint file (written, fsync'd, renamed).
pub fn write_checkpoint(paths: &Paths, ck: &Checkpoint) -> Result<()> {
    let tmp = paths.tmp_footer();
    let written = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&ck.data_len.to_le_bytes())?;
        f.write_all(&ck.rows.to_le_bytes())?;
        f.write_all(&ck.footer)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &paths.footer)
    })();
    if written.is_err() {
        // (The last checkpoint stays as it was.)
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(written?)
}

pub fn read_checkpoint(paths: &Paths) -> Result<Option<Checkpoint>> {
    let mut b = Vec::new();
    match File::open(&paths.footer) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", paths.footer.display())),
        Ok(mut f) => f.read_to_end(&mut b)?,
    };
    if b.len() < 32 + 8 || &b[..16] != MAGIC || &b[b.len() - 4..] != b"PAR1" {
        bail!("{} is not a napiscope checkpoint", paths.footer.display());
    }
    let num = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
    Ok(Some(Checkpoint {
        data_len: num(16),
        rows: num(24),
        footer: b[32..].to_vec(),
    }))
}

/// The footer `ck` with its key/value metadata replaced by `kv` (when given).
fn with_kv(footer: &[u8], kv: Option<Vec<KeyValue>>) -> Result<Vec<u8>> {
    let Some(kv) = kv else {
        return Ok(footer.to_vec());
    };
    let md = ParquetMetaDataReader::decode_metadata(&footer[..footer.len() - 8])?;
    let f = md.file_metadata();
    let file = FileMetaData::new(
        f.version(),
        f.num_rows(),
        f.created_by().map(str::to_string),
        Some(kv),
        f.schema_descr_ptr(),
        f.column_orders().cloned(),
    );
    footer_bytes(&ParquetMetaData::new(file, md.row_groups().to_vec()))
}

/// The key/value metadata of a checkpoint's footer.
pub fn checkpoint_kv(ck: &Checkpoint) -> Result<Vec<KeyValue>> {
    let md = ParquetMetaDataReader::decode_metadata(&ck.footer[..ck.footer.len() - 8])?;
    Ok(md
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default())
}

/// What a recovery made.
#[derive(Debug)]
pub struct Recovered {
    pub path: PathBuf,
    pub rows: u64,
}

/// Turn a partial recording into a trace at `out`: the partial file cut to its last
/// checkpoint, that checkpoint's footer appended (its key/value metadata replaced by `kv`
/// when given), then renamed to `out` (replacing it only if `replace`). `Ok(None)` when there
/// was no checkpoint (nothing complete): the partial file is removed.
pub fn recover_to(
    paths: &Paths,
    out: &Path,
    replace: bool,
    kv: Option<Vec<KeyValue>>,
) -> Result<Option<Recovered>> {
    let Some(ck) = read_checkpoint(paths)? else {
        paths.remove();
        return Ok(None);
    };
    check_target(out, replace)?;
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&paths.partial)
        .with_context(|| format!("opening {}", paths.partial.display()))?;
    let len = f.metadata()?.len();
    if len < ck.data_len {
        bail!(
            "{} is shorter ({len} bytes) than its last checkpoint says ({} bytes): it was cut \
             or overwritten; nothing can be recovered from it",
            paths.partial.display(),
            ck.data_len
        );
    }
    let footer = with_kv(&ck.footer, kv)?;
    f.set_len(ck.data_len)
        .with_context(|| format!("truncating {}", paths.partial.display()))?;
    f.seek(SeekFrom::Start(ck.data_len))?;
    f.write_all(&footer)
        .with_context(|| format!("writing the footer to {}", paths.partial.display()))?;
    let same_dir = std::fs::canonicalize(dir_of(out)).ok()
        == std::fs::canonicalize(dir_of(&paths.partial)).ok();
    if same_dir {
        commit(&f, &paths.partial, out, replace)?;
    } else {
        // Another file system, maybe: copy beside `out`, then rename there.
        let dest = Paths::for_target(out)?;
        let mut g = create_partial(&dest, replace)?;
        f.seek(SeekFrom::Start(0))?;
        let copied = std::io::copy(&mut f, &mut g).and_then(|_| g.flush());
        if let Err(e) = copied
            .map_err(anyhow::Error::from)
            .and_then(|_| commit(&g, &dest.partial, out, replace))
        {
            let _ = std::fs::remove_file(&dest.partial);
            return Err(e.context(format!("writing {}", out.display())));
        }
        let _ = std::fs::remove_file(&paths.partial);
    }
    let _ = std::fs::remove_file(&paths.footer);
    let _ = std::fs::remove_file(paths.tmp_footer());
    Ok(Some(Recovered {
        path: out.to_path_buf(),
        rows: ck.rows,
    }))
}

/// The errno of the first I/O error in an error's chain (ENOSPC, EIO, ...).
pub fn io_errno(e: &anyhow::Error) -> Option<i32> {
    e.chain().find_map(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
            .or_else(|| match c.downcast_ref::<parquet::errors::ParquetError>() {
                Some(parquet::errors::ParquetError::External(x)) => x
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.raw_os_error()),
                _ => None,
            })
    })
}

/// The file system holding `path`, as "DEVICE on MOUNTPOINT (TYPE)", from /proc/self/mounts.
pub fn file_system_of(path: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir_of(path)).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, ty) = (f.next()?, f.next()?, f.next()?);
            let at = at.replace("\\040", " ");
            dir.starts_with(&at)
                .then(|| (at.len(), format!("{dev} on {at} ({ty})")))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, s)| s)
}
