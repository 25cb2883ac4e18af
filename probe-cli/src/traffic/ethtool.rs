//! Device features as `ethtool -K` sets them, through the legacy ethtool ioctl (SIOCETHTOOL
//! with ETHTOOL_S*: net/ethtool/ioctl.c ethtool_set_one_feature), so a scenario needs no
//! ethtool binary. Run inside the device's network namespace (the socket's namespace
//! names the device).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Result};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// tcp-segmentation-offload (NETIF_F_ALL_TSO).
pub const ETHTOOL_STSO: u32 = 0x1f;
/// generic-receive-offload (NETIF_F_GRO).
pub const ETHTOOL_SGRO: u32 = 0x2c;

/// struct ethtool_value.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// struct ifreq with ifr_data: a name, then a pointer in the 24-byte union.
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _rest: [u8; 16],
}

/// Turn feature `cmd` (ETHTOOL_S*) of `dev` on or off.
pub fn set_feature(dev: &str, cmd: u32, on: bool) -> Result<()> {
    if dev.len() >= libc::IFNAMSIZ {
        bail!("device name {dev} too long");
    }
    // SAFETY: a plain socket; the fd is owned (closed) by `sock`.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut value = EthtoolValue {
        cmd,
        data: u32::from(on),
    };
    let mut req = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _rest: [0; 16],
    };
    req.name[..dev.len()].copy_from_slice(dev.as_bytes());
    // SAFETY: SIOCETHTOOL reads the ifreq and the ethtool_value it points to, both live here.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) } != 0 {
        bail!(
            "ethtool ioctl {cmd:#x} on {dev}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ifreq_has_the_kernels_size() {
        assert_eq!(std::mem::size_of::<super::IfreqData>(), 40);
    }
}
