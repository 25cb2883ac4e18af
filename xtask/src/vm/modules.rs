//! The kernel modules the guest loads from its kernel's own package, and their order.

/// Modules the guest loads, each after what it depends on: veth, for verify's veth
/// scenarios; virtio-net (with virtio-pci and failover under it) for the two NICs on
/// QEMU's internal hub, a real driver with interrupts. A module a kernel has built in is
/// not in its package and is skipped.
pub const GUEST_MODULES: &[&str] = &[
    "veth",
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// The `depends=` of a module's .modinfo section (`depends=` alone when it needs none).
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    ko.windows(key.len())
        .position(|w| w == key)
        .map(|i| {
            let rest = &ko[i + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
