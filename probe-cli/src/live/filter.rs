//! The device / task filter that `top` and `serve` apply in the kernel (the FILTER map).

/// The `/` filter, applied in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextFilter {
    Dev(String),
    Comm(String),
}

impl TextFilter {
    /// `dev=veth`, `comm=iperf3`, or a bare name (a device).
    pub fn parse(s: &str) -> Result<Option<TextFilter>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let (kind, name) = match s.split_once('=') {
            Some(("dev", n)) => ("dev", n),
            Some(("comm", n)) => ("comm", n),
            Some((k, _)) => {
                return Err(format!("unknown filter `{k}=`; use dev=NAME or comm=NAME"))
            }
            None => ("dev", s),
        };
        if name.is_empty() || name.len() > 15 {
            return Err(format!("`{name}`: a name prefix of 1 to 15 bytes"));
        }
        Ok(Some(if kind == "dev" {
            TextFilter::Dev(name.into())
        } else {
            TextFilter::Comm(name.into())
        }))
    }
    pub fn describe(&self) -> String {
        match self {
            TextFilter::Dev(n) => format!("dev={n}*"),
            TextFilter::Comm(n) => format!("comm={n}*"),
        }
    }
}
