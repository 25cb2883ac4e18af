//! Just enough of a BTF reader (the kernel's `/sys/kernel/btf/vmlinux`) to find where struct
//! members live and what a raw tracepoint's arguments are on the running kernel.
//!
//! The tp_btf (and raw) programs for netif_rx, netif_receive_skb and napi_poll read
//! `skb->len`, `skb->dev->name` and `napi->dev->name` themselves instead of letting the
//! classic tracepoint fill a record first, and every program reads the current task's pid
//! and comm from its task_struct. Rust BPF programs have no CO-RE relocations, so the
//! offsets come from here and are written into the programs before loading; where any of
//! them is missing the classic tracepoints (and the pid/comm helpers) stay in use, and
//! `status` says why.
//! Format: Documentation/bpf/btf.rst.

use std::path::Path;

use probe_common::KernelOffsets;

const MAGIC: u16 = 0xeb9f;

const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const FUNC: u32 = 12;
const FUNC_PROTO: u32 = 13;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const DECL_TAG: u32 = 17;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

/// One type: its header words and where its kind-specific data starts.
#[derive(Clone, Copy)]
struct Type {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` for INT/STRUCT/UNION/ENUM, the referenced type id for PTR/TYPEDEF/CONST/....
    size_or_type: u32,
    data: usize,
}

pub struct Btf {
    bytes: Vec<u8>,
    /// Index = type id; id 0 is `void`.
    types: Vec<Type>,
    strings: std::ops::Range<usize>,
}

/// A struct member found by name: byte offset from the start of the outer struct, its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub offset: u32,
    pub type_id: u32,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Btf({} types)", self.types.len() - 1)
    }
}

impl Btf {
    pub fn from_sys_fs() -> Result<Btf, String> {
        Btf::read(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn read(path: &Path) -> Result<Btf, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Btf::parse(bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(bytes: Vec<u8>) -> Result<Btf, String> {
        let u32_at = |b: &[u8], at: usize| -> Result<u32, String> {
            b.get(at..at + 4)
                .map(|s| u32::from_ne_bytes(s.try_into().unwrap()))
                .ok_or_else(|| format!("truncated at byte {at}"))
        };
        if bytes.len() < 24 || u16::from_ne_bytes([bytes[0], bytes[1]]) != MAGIC {
            return Err("not BTF (bad magic)".into());
        }
        let hdr_len = u32_at(&bytes, 4)? as usize;
        let (type_off, type_len) = (u32_at(&bytes, 8)? as usize, u32_at(&bytes, 12)? as usize);
        let (str_off, str_len) = (u32_at(&bytes, 16)? as usize, u32_at(&bytes, 20)? as usize);
        let types_at = hdr_len + type_off;
        let types_end = types_at + type_len;
        let strings = hdr_len + str_off..hdr_len + str_off + str_len;
        if types_end > bytes.len() || strings.end > bytes.len() {
            return Err("sections run past the end of the file".into());
        }
        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            vlen: 0,
            kind_flag: false,
            size_or_type: 0,
            data: 0,
        }];
        let mut at = types_at;
        while at < types_end {
            let info = u32_at(&bytes, at + 4)?;
            let t = Type {
                name_off: u32_at(&bytes, at)?,
                kind: (info >> 24) & 0x1f,
                vlen: (info & 0xffff) as usize,
                kind_flag: info >> 31 == 1,
                size_or_type: u32_at(&bytes, at + 8)?,
                data: at + 12,
            };
            let extra = match t.kind {
                INT | VAR | DECL_TAG => 4,
                ARRAY => 12,
                STRUCT | UNION | DATASEC | ENUM64 => 12 * t.vlen,
                ENUM | FUNC_PROTO => 8 * t.vlen,
                0 | 20.. => return Err(format!("unknown type kind {} at byte {at}", t.kind)),
                _ => 0,
            };
            types.push(t);
            at = t.data + extra;
        }
        if at != types_end {
            return Err("type section ends inside a type".into());
        }
        Ok(Btf {
            bytes,
            types,
            strings,
        })
    }

    fn u32_at(&self, at: usize) -> u32 {
        // In range: `parse` checked every type's data against the type section.
        u32::from_ne_bytes(self.bytes[at..at + 4].try_into().unwrap())
    }

    fn name(&self, name_off: u32) -> &str {
        let start = self.strings.start + name_off as usize;
        let Some(s) = self.bytes.get(start..self.strings.end) else {
            return "";
        };
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    fn ty(&self, id: u32) -> Result<Type, String> {
        self.types
            .get(id as usize)
            .copied()
            .ok_or_else(|| format!("type id {id} out of range"))
    }

    /// Through typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> Result<u32, String> {
        for _ in 0..32 {
            let t = self.ty(id)?;
            match t.kind {
                TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => id = t.size_or_type,
                _ => return Ok(id),
            }
        }
        Err(format!("type id {id}: qualifier chain too long"))
    }

    /// The id of the struct (or union, `union = true`) named `name` that has members — not a
    /// forward declaration.
    fn find(&self, name: &str, kind: u32) -> Result<u32, String> {
        self.types
            .iter()
            .position(|t| t.kind == kind && t.vlen > 0 && self.name(t.name_off) == name)
            .map(|i| i as u32)
            .ok_or_else(|| format!("no struct {name} in the kernel's BTF"))
    }

    /// `a.b.c`: member `a` of struct `strct`, then `b` of that member's struct, and so on;
    /// each looked up inside anonymous structs and unions too (as C does: `skb->dev` sits
    /// in an anonymous union inside an anonymous struct).
    pub fn member_path(&self, strct: &str, path: &str) -> Result<Member, String> {
        let mut id = self.find(strct, STRUCT)?;
        let mut offset = 0;
        let mut found = None;
        for (i, name) in path.split('.').enumerate() {
            if i > 0 {
                id = self.resolve(found.map_or(0, |m: Member| m.type_id))?;
                if !matches!(self.ty(id)?.kind, STRUCT | UNION) {
                    return Err(format!("{strct}.{path}: {name}'s parent is not a struct"));
                }
            }
            let m = self
                .member_in(id, name, offset)?
                .ok_or_else(|| format!("struct {strct} has no member {path}"))?;
            offset = m.offset;
            found = Some(m);
        }
        found.ok_or_else(|| format!("empty member path for {strct}"))
    }

    fn member_in(&self, id: u32, member: &str, base: u32) -> Result<Option<Member>, String> {
        let t = self.ty(id)?;
        for i in 0..t.vlen {
            let at = t.data + 12 * i;
            let (name_off, type_id, raw) =
                (self.u32_at(at), self.u32_at(at + 4), self.u32_at(at + 8));
            // With kind_flag, the low 24 bits are the bit offset and the top 8 a bitfield size.
            let bits = if t.kind_flag { raw & 0xff_ffff } else { raw };
            let offset = base + bits / 8;
            if name_off == 0 {
                let inner = self.resolve(type_id)?;
                if matches!(self.ty(inner)?.kind, STRUCT | UNION) {
                    if let Some(m) = self.member_in(inner, member, offset)? {
                        return Ok(Some(m));
                    }
                }
                continue;
            }
            if self.name(name_off) == member {
                if bits % 8 != 0 || (t.kind_flag && raw >> 24 != 0) {
                    return Err(format!("{member} is a bitfield"));
                }
                return Ok(Some(Member { offset, type_id }));
            }
        }
        Ok(None)
    }

    /// Whether the kernel's BTF has a function `name` (static ones too, when not inlined).
    pub fn has_func(&self, name: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.kind == FUNC && self.name(t.name_off) == name)
    }

    /// Whether the kernel's BTF has typedef `name` (`btf_trace_<event>` for a tracepoint).
    pub fn has_typedef(&self, name: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.kind == TYPEDEF && self.name(t.name_off) == name)
    }

    /// A short C-like spelling of a type, enough to compare argument lists:
    /// `int`, `unsigned int`, `struct sk_buff *`, `char[16]`, `void *`.
    pub fn describe(&self, id: u32) -> Result<String, String> {
        let id = self.resolve(id)?;
        if id == 0 {
            return Ok("void".into());
        }
        let t = self.ty(id)?;
        Ok(match t.kind {
            INT | ENUM | ENUM64 => self.name(t.name_off).to_string(),
            PTR => format!("{} *", self.describe(t.size_or_type)?),
            STRUCT => format!("struct {}", self.name(t.name_off)),
            UNION => format!("union {}", self.name(t.name_off)),
            ARRAY => {
                let elem = self.u32_at(t.data);
                let n = self.u32_at(t.data + 8);
                format!("{}[{n}]", self.describe(elem)?)
            }
            k => format!("kind {k}"),
        })
    }

    /// The arguments a raw tracepoint program gets for tracepoint `event`, from the kernel's
    /// `btf_trace_<event>` typedef (a pointer to a function whose first argument is the
    /// tracepoint's private data, not passed to the program).
    pub fn tracepoint_args(&self, event: &str) -> Result<Vec<String>, String> {
        let want = format!("btf_trace_{event}");
        let td = self
            .types
            .iter()
            .find(|t| t.kind == TYPEDEF && self.name(t.name_off) == want)
            .copied()
            .ok_or_else(|| format!("no {want} in the kernel's BTF"))?;
        let ptr = self.ty(self.resolve(td.size_or_type)?)?;
        let proto = self.ty(self.resolve(ptr.size_or_type)?)?;
        if ptr.kind != PTR || proto.kind != FUNC_PROTO {
            return Err(format!("{want} is not a function pointer"));
        }
        (1..proto.vlen)
            .map(|i| self.describe(self.u32_at(proto.data + 8 * i + 4)))
            .collect()
    }
}

/// What the BTF programs can read on this kernel: the offsets, and per group of programs
/// whether every offset and argument it needs was found (else why not).
#[derive(Clone, Debug)]
pub struct Found {
    pub offsets: KernelOffsets,
    /// netif_rx, netif_receive_skb, napi_poll.
    pub net: Result<(), String>,
    /// sched_switch, sched_waking, sched_wakeup.
    pub sched: Result<(), String>,
}

impl Found {
    /// Nothing found (no BTF): every program keeps its classic/raw form and the helpers.
    pub fn none(why: &str) -> Found {
        Found {
            offsets: KernelOffsets::default(),
            net: Err(why.to_string()),
            sched: Err(why.to_string()),
        }
    }
}

/// Where the BTF programs find what the classic tracepoints would have copied, after
/// checking each tracepoint's arguments and each member's type. An error names the first
/// thing that is not as expected; that group's programs are not used then.
pub fn kernel_offsets(btf: &Btf) -> Found {
    let mut o = KernelOffsets::default();
    let net = net_offsets(btf, &mut o);
    let task = (|| -> Result<(), String> {
        o.task_pid = typed(btf, "task_struct", "pid", "int")?;
        o.task_comm = typed(btf, "task_struct", "comm", "char[16]")?;
        o.task_found = 1;
        Ok(())
    })();
    let sched = task.and_then(|()| sched_offsets(btf, &mut o));
    Found {
        offsets: o,
        net,
        sched,
    }
}

fn expect_args(btf: &Btf, event: &str, args: &[&str]) -> Result<(), String> {
    let got = btf.tracepoint_args(event)?;
    if got != args {
        return Err(format!(
            "{event}'s arguments are {got:?} here, napiscope reads {args:?}"
        ));
    }
    Ok(())
}

/// The offset of `strct.member` (a dotted path walks into member structs), checked to be
/// of type `ty`.
fn typed(btf: &Btf, strct: &str, member: &str, ty: &str) -> Result<u32, String> {
    let m = btf.member_path(strct, member)?;
    let got = btf.describe(m.type_id)?;
    if got != ty {
        return Err(format!(
            "{strct}.{member} is {got} here, napiscope reads {ty}"
        ));
    }
    Ok(m.offset)
}

fn net_offsets(btf: &Btf, o: &mut KernelOffsets) -> Result<(), String> {
    expect_args(btf, "netif_rx", &["struct sk_buff *"])?;
    expect_args(btf, "netif_receive_skb", &["struct sk_buff *"])?;
    expect_args(btf, "napi_poll", &["struct napi_struct *", "int", "int"])?;
    o.skb_len = typed(btf, "sk_buff", "len", "unsigned int")?;
    o.skb_dev = typed(btf, "sk_buff", "dev", "struct net_device *")?;
    o.netdev_name = typed(btf, "net_device", "name", "char[16]")?;
    o.napi_dev = typed(btf, "napi_struct", "dev", "struct net_device *")?;
    // Per-NAPI rows only; a kernel without them still gets every other program.
    o.napi_id = typed(btf, "napi_struct", "napi_id", "unsigned int")
        .or_else(|_| typed(btf, "napi_struct", "napi_id", "u32"))
        .unwrap_or(0);
    // napi->irq: netif_napi_set_irq (v6.8); 0 (none) before.
    o.napi_irq = typed(btf, "napi_struct", "irq", "int").unwrap_or(0);
    Ok(())
}

fn sched_offsets(btf: &Btf, o: &mut KernelOffsets) -> Result<(), String> {
    let task = "struct task_struct *";
    // prev_state became an argument in 5.18; before, the record computed it from prev.
    expect_args(btf, "sched_switch", &["_Bool", task, task, "unsigned int"])?;
    expect_args(btf, "sched_waking", &[task])?;
    expect_args(btf, "sched_wakeup", &[task])?;
    o.task_exit_state = typed(btf, "task_struct", "exit_state", "int")?;
    // task_cpu(): thread_info.cpu where thread_info lives in the task (x86, arm64 ...),
    // else task_struct.cpu.
    o.task_cpu = typed(btf, "task_struct", "thread_info.cpu", "unsigned int")
        .or_else(|_| typed(btf, "task_struct", "cpu", "unsigned int"))?;
    Ok(())
}

#[cfg(test)]
#[path = "btf_tests.rs"]
mod tests;
