//! tracefs: find (or mount) it, and read tracepoint field offsets from `format` files.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context as _, Result};

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// How tracefs was found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TracefsInfo {
    pub path: Option<String>,
    /// "mounted" (already there), "mounted_by_napiscope", or why it is not available.
    pub state: String,
}

pub fn find() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

/// Find tracefs; mount it at /sys/kernel/tracing when absent and we are allowed to.
pub fn find_or_mount() -> TracefsInfo {
    if let Some(p) = find() {
        return TracefsInfo {
            path: Some(p.display().to_string()),
            state: "mounted".into(),
        };
    }
    let mounted = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("tracefs"))
        .find_map(|l| l.split_whitespace().nth(1).map(str::to_string));
    if let Some(m) = mounted {
        return TracefsInfo {
            path: None,
            state: format!(
                "mounted at {m} but not readable by this user: run as root, or give the \
                 binary CAP_DAC_READ_SEARCH too"
            ),
        };
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: plain mount(2) with static NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 && find().is_some() {
        return TracefsInfo {
            path: Some("/sys/kernel/tracing".into()),
            state: "mounted_by_napiscope".into(),
        };
    }
    let err = std::io::Error::last_os_error();
    TracefsInfo {
        path: None,
        state: format!(
            "not mounted and mounting failed ({err}); as root run \
             `mount -t tracefs tracefs /sys/kernel/tracing`"
        ),
    }
}

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
    pub decl: String,
}

/// Parse a tracefs `format` file into name → field.
pub fn parse_format(text: &str) -> HashMap<String, Field> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.trim().parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.trim().parse().ok();
            } else if decl.is_none() && !part.is_empty() && !part.contains(':') {
                decl = Some(part.to_string());
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            continue;
        };
        // The name is the last identifier of the declaration, before any array suffix:
        // "char prev_comm[16]" -> prev_comm, "__data_loc char[] name" -> name.
        let base = decl.split('[').next().unwrap_or(&decl);
        let base = if decl.starts_with("__data_loc") {
            decl.rsplit(' ').next().unwrap_or(&decl)
        } else {
            base
        };
        let name = base
            .rsplit(|c: char| c.is_whitespace() || c == '*')
            .next()
            .unwrap_or("")
            .to_string();
        if !name.is_empty() {
            out.insert(name, Field { offset, size, decl });
        }
    }
    out
}

/// Read the fields of `category/event` from the running kernel.
pub fn event_fields(tracefs: &Path, category: &str, event: &str) -> Result<HashMap<String, Field>> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(event)
        .join("format");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "tracepoint {category}:{event} is not available ({})",
            path.display()
        )
    })?;
    Ok(parse_format(&text))
}

/// Offset of `field`, checking its size matches what the program reads.
pub fn offset(
    fields: &HashMap<String, Field>,
    tp: &str,
    field: &str,
    sizes: &[u32],
) -> Result<u32> {
    let f = fields
        .get(field)
        .ok_or_else(|| anyhow!("{tp}: field `{field}` not in this kernel's format"))?;
    if !sizes.contains(&f.size) {
        bail!(
            "{tp}: field `{field}` is {} bytes on this kernel, napiscope reads {:?}",
            f.size,
            sizes
        );
    }
    Ok(f.offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAPI_POLL: &str = "name: napi_poll
ID: 1745
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:struct napi_struct * napi;\toffset:8;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] dev_name;\toffset:16;\tsize:4;\tsigned:0;
\tfield:int work;\toffset:20;\tsize:4;\tsigned:1;
\tfield:int budget;\toffset:24;\tsize:4;\tsigned:1;

print fmt: \"napi poll on napi struct %p for device %s work %d budget %d\"";

    #[test]
    fn parses_pointer_data_loc_and_plain_fields() {
        let f = parse_format(NAPI_POLL);
        assert_eq!(f["napi"].offset, 8);
        assert_eq!(f["napi"].size, 8);
        assert_eq!(f["dev_name"].offset, 16);
        assert_eq!(f["work"].offset, 20);
        assert_eq!(f["budget"].offset, 24);
        assert_eq!(f["common_pid"].offset, 4);
    }

    #[test]
    fn parses_arrays() {
        let text = "\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
                    \tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;";
        let f = parse_format(text);
        assert_eq!(f["prev_comm"].offset, 8);
        assert_eq!(f["prev_comm"].size, 16);
        assert_eq!(f["prev_state"].offset, 32);
    }

    #[test]
    fn offset_checks_presence_and_size() {
        let f = parse_format(NAPI_POLL);
        assert_eq!(offset(&f, "napi_poll", "work", &[4]).unwrap(), 20);
        let e = offset(&f, "napi_poll", "nope", &[4])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`nope` not in"), "{e}");
        let e = offset(&f, "napi_poll", "napi", &[4])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is 8 bytes"), "{e}");
    }
}
