//! Kernel function addresses → names, from /proc/kallsyms (addresses are real only as root;
//! with kptr_restrict they read as 0 and names cannot be resolved).

use std::collections::HashMap;

#[derive(Default)]
pub struct Symbols {
    by_addr: HashMap<u64, String>,
}

impl Symbols {
    pub fn load() -> Symbols {
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        Symbols::parse(&text)
    }

    pub fn parse(text: &str) -> Symbols {
        let mut by_addr = HashMap::new();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if !matches!(kind, "t" | "T") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if addr != 0 {
                by_addr.entry(addr).or_insert_with(|| name.to_string());
            }
        }
        Symbols { by_addr }
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// The address of a function by name.
    pub fn addr_of(&self, name: &str) -> Option<u64> {
        self.by_addr
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(a, _)| *a)
    }

    /// The function starting at `addr`, or the address in hex when it is unknown.
    pub fn name(&self, addr: u64) -> String {
        match self.by_addr.get(&addr) {
            Some(n) => n.clone(),
            None => format!("{addr:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_text_symbols_only() {
        let s = Symbols::parse(
            "ffffffff81e5dbc0 t rps_trigger_softirq\n\
             ffffffff81000000 D some_data\n\
             0000000000000000 T hidden\n",
        );
        assert_eq!(s.name(0xffffffff81e5dbc0), "rps_trigger_softirq");
        assert_eq!(s.name(0xffffffff81000000), "0xffffffff81000000");
    }
}
