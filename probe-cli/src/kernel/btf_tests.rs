//! `btf`'s tests: a BTF blob built by hand, parsed and damaged.

use super::*;

/// Builds a BTF blob type by type, as the kernel lays it out.
#[derive(Default)]
struct Builder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            strings: vec![0],
            next_id: 1,
            ..Default::default()
        }
    }
    fn s(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }
    fn ty(&mut self, name: &str, kind: u32, vlen: u32, flag: bool, st: u32, extra: &[u32]) -> u32 {
        let name = self.s(name);
        let info = (kind << 24) | vlen | if flag { 1 << 31 } else { 0 };
        for w in [name, info, st].iter().chain(extra) {
            self.types.extend_from_slice(&w.to_ne_bytes());
        }
        self.next_id += 1;
        self.next_id - 1
    }
    fn int(&mut self, name: &str, size: u32) -> u32 {
        self.ty(name, INT, 0, false, size, &[size * 8])
    }
    fn record(&mut self, kind: u32, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        let mut extra = Vec::new();
        for (m, t, bits) in members {
            extra.extend([self.s(m), *t, *bits]);
        }
        self.ty(name, kind, members.len() as u32, false, size, &extra)
    }
    fn bytes(self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_ne_bytes());
        b.extend_from_slice(&[1, 0]);
        let tl = self.types.len() as u32;
        for w in [24u32, 0, tl, tl, self.strings.len() as u32] {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        b.extend(self.types);
        b.extend(self.strings);
        b
    }
}

/// sk_buff with `dev` two anonymous levels down, as in Linux 6.x.
fn kernel_like() -> Vec<u8> {
    let mut b = Builder::new();
    let uint = b.int("unsigned int", 4);
    let int = b.int("int", 4);
    let ulong = b.int("long unsigned int", 8);
    let ch = b.int("char", 1);
    let idx = b.int("", 4);
    let name_arr = b.ty("", ARRAY, 0, false, 0, &[ch, idx, 16]);
    let netdev = b.record(
        STRUCT,
        "net_device",
        64,
        &[("flags", uint, 0), ("name", name_arr, 64)],
    );
    let netdev_ptr = b.ty("", PTR, 0, false, netdev, &[]);
    let dev_union = b.record(
        UNION,
        "",
        8,
        &[("dev", netdev_ptr, 0), ("dev_scratch", ulong, 0)],
    );
    let skb_fwd = b.ty("sk_buff", 7, 0, false, 0, &[]);
    let fwd_ptr = b.ty("", PTR, 0, false, skb_fwd, &[]);
    let anon = b.record(
        STRUCT,
        "",
        24,
        &[("next", fwd_ptr, 0), ("", dev_union, 128)],
    );
    let skb = b.record(STRUCT, "sk_buff", 128, &[("", anon, 0), ("len", uint, 896)]);
    let napi = b.record(
        STRUCT,
        "napi_struct",
        64,
        &[("weight", int, 0), ("dev", netdev_ptr, 192)],
    );
    let napi_ptr = b.ty("", PTR, 0, false, napi, &[]);
    let void_ptr = b.ty("", PTR, 0, false, 0, &[]);
    let skb_ptr2 = b.ty("", PTR, 0, false, skb, &[]);
    for (ev, args) in [
        ("netif_rx", vec![skb_ptr2]),
        ("netif_receive_skb", vec![skb_ptr2]),
        ("napi_poll", vec![napi_ptr, int, int]),
    ] {
        let mut extra = vec![0, void_ptr];
        for a in &args {
            extra.extend([0, *a]);
        }
        let proto = b.ty("", FUNC_PROTO, 1 + args.len() as u32, false, 0, &extra);
        let fp = b.ty("", PTR, 0, false, proto, &[]);
        b.ty(&format!("btf_trace_{ev}"), TYPEDEF, 0, false, fp, &[]);
    }
    b.bytes()
}

#[test]
fn finds_members_inside_anonymous_structs_and_unions() {
    let btf = Btf::parse(kernel_like()).unwrap();
    let found = kernel_offsets(&btf);
    found.net.unwrap();
    let o = found.offsets;
    assert_eq!(o.skb_len, 112);
    assert_eq!(o.skb_dev, 16);
    assert_eq!(o.netdev_name, 8);
    assert_eq!(o.napi_dev, 24);
    // No task_struct here: programs keep the pid/comm helpers, sched stays classic.
    assert_eq!(o.task_found, 0);
    assert!(found.sched.unwrap_err().contains("task_struct"));
    assert_eq!(
        btf.tracepoint_args("napi_poll").unwrap(),
        ["struct napi_struct *", "int", "int"]
    );
}

#[test]
fn a_missing_member_or_changed_argument_names_what_differs() {
    let btf = Btf::parse(kernel_like()).unwrap();
    let e = btf.member_path("sk_buff", "no_such").unwrap_err();
    assert!(e.contains("no member no_such"), "{e}");
    assert!(btf
        .tracepoint_args("kfree_skb")
        .unwrap_err()
        .contains("btf_trace_kfree_skb"));
    let e = btf.member_path("task_struct", "pid").unwrap_err();
    assert!(e.contains("no struct task_struct"), "{e}");
}

#[test]
fn damaged_btf_is_an_error_not_a_panic() {
    let good = kernel_like();
    assert!(Btf::parse(good[..good.len() / 2].to_vec()).is_err());
    assert!(Btf::parse(vec![0; 64]).unwrap_err().contains("magic"));
    let mut bad_kind = good.clone();
    bad_kind[24 + 7] = 0x1f; // the first type's kind byte
    assert!(Btf::parse(bad_kind).unwrap_err().contains("kind"));
    for cut in [0, 10, 23, 30, 100] {
        let _ = Btf::parse(good[..cut.min(good.len())].to_vec());
    }
}

#[test]
fn reads_this_kernels_btf_when_there_is_one() {
    let Ok(btf) = Btf::from_sys_fs() else { return };
    let found = kernel_offsets(&btf);
    assert_eq!(found.net, Ok(()));
    assert_eq!(found.sched, Ok(()));
    let o = found.offsets;
    // skb->len is well past the list pointers; the name is a char[16] inside net_device.
    assert!(o.skb_len >= 16 && o.skb_dev >= 16, "{o:?}");
    assert_eq!(o.task_found, 1, "{o:?}");
    // task_cpu() reads thread_info.cpu, which sits inside the task (x86-64).
    let ti = btf.member_path("task_struct", "thread_info").unwrap();
    assert!(
        o.task_cpu >= ti.offset && o.task_cpu < ti.offset + 64,
        "{o:?}"
    );
}
