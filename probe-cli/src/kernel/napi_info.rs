//! What the kernel says about its NAPI instances, to join with the polls napiscope counts:
//! the netdev generic-netlink family's `napi-get` dump (ifindex, napi id, IRQ, the pid of the
//! instance's thread; Linux 6.9+, this network namespace's devices only), and, for every
//! namespace and older kernels, the `napi/<dev>-<napi id>` kernel threads in /proc
//! (napi_kthread_create names them "napi/%s-%d").

use std::collections::BTreeMap;

/// One NAPI instance by its napi id: the type `record` also keeps in its metadata.
pub use analysis::trace::KernelNapi as NapiInfo;

/// Every instance the kernel tells of, by napi id; and why the netlink part is missing, if
/// it is.
pub fn gather() -> (BTreeMap<u32, NapiInfo>, Option<String>) {
    let mut by_id: BTreeMap<u32, NapiInfo> = BTreeMap::new();
    let genl = genl::napi_dump();
    let why = match genl {
        Ok(list) => {
            for n in list {
                by_id.insert(n.napi_id, n);
            }
            None
        }
        Err(e) => Some(e),
    };
    for (dev, id, pid) in napi_threads() {
        let n = by_id.entry(id).or_insert_with(|| NapiInfo {
            napi_id: id,
            ..NapiInfo::default()
        });
        n.dev.get_or_insert(dev);
        n.thread_pid.get_or_insert(pid);
    }
    (by_id, why)
}

/// Interrupt number → the name its handler registered, from /proc/interrupts (the last
/// column of a numbered row: `virtio1-input.0`, `eth0-TxRx-3`).
pub fn irq_names() -> BTreeMap<i32, String> {
    parse_irq_names(&std::fs::read_to_string("/proc/interrupts").unwrap_or_default())
}

fn parse_irq_names(text: &str) -> BTreeMap<i32, String> {
    text.lines()
        .filter_map(|l| {
            let (num, rest) = l.trim_start().split_once(':')?;
            let name = rest.split_whitespace().last()?;
            Some((num.parse().ok()?, name.to_string()))
        })
        .collect()
}

/// `napi/<dev>-<id>` → (dev, id), as napi_kthread_create formats it. A comm is at most 15
/// bytes, so a long device name can leave the id cut (then it is not returned).
pub fn parse_thread_comm(comm: &str) -> Option<(String, u32)> {
    let rest = comm.strip_prefix("napi/")?;
    let (dev, id) = rest.rsplit_once('-')?;
    Some((dev.to_string(), id.parse().ok()?))
}

/// The kernel threads named `napi/<dev>-<id>`: (dev, napi id, pid).
pub fn napi_threads() -> Vec<(String, u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let (dev, id) = parse_thread_comm(comm.trim_end())?;
            Some((dev, id, pid))
        })
        .collect()
}

mod genl {
    //! Just enough generic netlink for one dump: resolve the "netdev" family, then
    //! NETDEV_CMD_NAPI_GET with NLM_F_DUMP (include/uapi/linux/netdev.h).

    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::NapiInfo;

    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLM_F_DUMP: u16 = 0x300;
    const GENL_ID_CTRL: u16 = 0x10;
    const CTRL_CMD_GETFAMILY: u8 = 3;
    const CTRL_ATTR_FAMILY_ID: u16 = 1;
    const CTRL_ATTR_FAMILY_NAME: u16 = 2;
    const NETDEV_CMD_NAPI_GET: u8 = 11;
    const NETDEV_A_NAPI_IFINDEX: u16 = 1;
    const NETDEV_A_NAPI_ID: u16 = 2;
    const NETDEV_A_NAPI_IRQ: u16 = 3;
    const NETDEV_A_NAPI_PID: u16 = 4;

    pub fn napi_dump() -> Result<Vec<NapiInfo>, String> {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(format!(
                "netlink socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0");
        let replies = request(&sock, GENL_ID_CTRL, NLM_F_ACK, CTRL_CMD_GETFAMILY, &name, 1)
            .map_err(|e| format!("the netdev netlink family: {e}"))?;
        let family = replies
            .iter()
            .find_map(|m| find(m, CTRL_ATTR_FAMILY_ID).map(u16_at))
            .ok_or("no netdev netlink family (before Linux 6.5)")?;
        let replies = request(&sock, family, NLM_F_DUMP, NETDEV_CMD_NAPI_GET, &[], 2)
            .map_err(|e| format!("netdev napi-get: {e} (before Linux 6.9)"))?;
        Ok(replies
            .iter()
            .filter_map(|m| {
                let u32_of = |t| find(m, t).map(u32_at);
                let napi_id = u32_of(NETDEV_A_NAPI_ID)?;
                Some(NapiInfo {
                    napi_id,
                    dev: u32_of(NETDEV_A_NAPI_IFINDEX).and_then(if_name),
                    irq: u32_of(NETDEV_A_NAPI_IRQ),
                    thread_pid: u32_of(NETDEV_A_NAPI_PID).filter(|&p| p != 0),
                })
            })
            .collect())
    }

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = 4 + payload.len();
        let mut a = Vec::with_capacity(len.next_multiple_of(4));
        a.extend_from_slice(&(len as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(len.next_multiple_of(4), 0);
        a
    }

    /// Send one request; collect the attribute areas of every reply message until the dump
    /// is done (or the ACK of a plain request arrives).
    fn request(
        sock: &OwnedFd,
        kind: u16,
        flags: u16,
        cmd: u8,
        attrs: &[u8],
        seq: u32,
    ) -> Result<Vec<Vec<u8>>, String> {
        let len = 16 + 4 + attrs.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[cmd, 1, 0, 0]);
        msg.extend_from_slice(attrs);
        // SAFETY: sending our own buffer on our socket (the kernel is the default peer).
        if unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: receiving into our own buffer of the given size.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(std::io::Error::last_os_error().to_string());
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= 16 {
                let mlen = u32_at(&rest[0..4]) as usize;
                let mtype = u16_at(&rest[4..6]);
                if mlen < 16 || mlen > rest.len() {
                    return Err("malformed netlink reply".into());
                }
                match mtype {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let errno = -(u32_at(&rest[16..20]) as i32);
                        if errno == 0 {
                            return Ok(out);
                        }
                        return Err(std::io::Error::from_raw_os_error(errno).to_string());
                    }
                    _ if mlen >= 20 => out.push(rest[20..mlen].to_vec()),
                    _ => {}
                }
                rest = &rest[mlen.next_multiple_of(4).min(rest.len())..];
            }
            if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 {
                return Ok(out);
            }
        }
    }

    /// The payload of the first attribute of `kind` in an attribute area.
    fn find(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
        while attrs.len() >= 4 {
            let len = u16_at(&attrs[0..2]) as usize;
            let t = u16_at(&attrs[2..4]) & 0x3fff;
            if len < 4 || len > attrs.len() {
                return None;
            }
            if t == kind {
                return Some(&attrs[4..len]);
            }
            attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
        }
        None
    }

    fn u16_at(b: &[u8]) -> u16 {
        u16::from_ne_bytes([b[0], b[1]])
    }

    fn u32_at(b: &[u8]) -> u32 {
        if b.len() < 4 {
            return 0;
        }
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    }

    fn if_name(ifindex: u32) -> Option<String> {
        let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into buf.
        let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: on success buf holds a NUL-terminated name.
        let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        Some(s.to_string_lossy().into_owned())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn attributes_are_padded_and_found_again() {
            let mut area = attr(NETDEV_A_NAPI_IFINDEX, &7u32.to_ne_bytes());
            // An odd-sized payload (7 bytes) is padded to 8.
            area.extend(attr(9, b"netdev\0"));
            area.extend(attr(NETDEV_A_NAPI_ID, &8193u32.to_ne_bytes()));
            assert_eq!(area.len(), 8 + 12 + 8);
            assert_eq!(find(&area, NETDEV_A_NAPI_ID).map(u32_at), Some(8193));
            assert_eq!(find(&area, 9), Some(&b"netdev\0"[..]));
            assert_eq!(find(&area, NETDEV_A_NAPI_PID), None);
            assert_eq!(
                find(&area[..5], NETDEV_A_NAPI_ID),
                None,
                "a cut area is not read past"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupt_names_come_from_the_numbered_rows() {
        let t = "           CPU0       CPU1\n \
                 28:       8792          0  PCI-MSIX-0000:00:03.0   1-edge      virtio1-input.0\n \
                  1:          9          0   IO-APIC   1-edge      i8042\n\
                 NMI:          0          0   Non-maskable interrupts\n";
        let m = parse_irq_names(t);
        assert_eq!(m.get(&28).map(String::as_str), Some("virtio1-input.0"));
        assert_eq!(m.get(&1).map(String::as_str), Some("i8042"));
        assert_eq!(m.len(), 2, "{m:?}");
    }

    #[test]
    fn thread_names_give_device_and_napi_id() {
        assert_eq!(
            parse_thread_comm("napi/nsc1-8193"),
            Some(("nsc1".into(), 8193))
        );
        assert_eq!(
            parse_thread_comm("napi/eth-x-0-17"),
            Some(("eth-x-0".into(), 17))
        );
        assert_eq!(
            parse_thread_comm("napi/enp1s0f0-8"),
            Some(("enp1s0f0".into(), 8))
        );
        assert_eq!(
            parse_thread_comm("napi/enp1s0f0np"),
            None,
            "id cut by TASK_COMM_LEN"
        );
        assert_eq!(parse_thread_comm("ksoftirqd/1"), None);
    }
}
