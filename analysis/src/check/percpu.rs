//! `PerCpu<T>`: a value per CPU number, in a vector for the usual small numbers and a map
//! for the rest. The checker looks such values up per event: an index, not a hash.

use crate::trace::fastmap::FastMap;

/// CPU numbers below this index a vector; the rest (a parsed `backlog_napi/N` can be any
/// number) a map.
const DENSE: u32 = 4096;

#[derive(Debug)]
pub struct PerCpu<T> {
    dense: Vec<T>,
    rest: FastMap<u32, T>,
}

impl<T> Default for PerCpu<T> {
    fn default() -> Self {
        PerCpu {
            dense: Vec::new(),
            rest: FastMap::default(),
        }
    }
}

impl<T: Default> PerCpu<T> {
    /// The CPU's value, made (`T::default()`) if it has none.
    #[inline]
    pub fn entry(&mut self, cpu: u32) -> &mut T {
        if cpu < DENSE {
            let i = cpu as usize;
            if i >= self.dense.len() {
                self.dense.resize_with(i + 1, T::default);
            }
            &mut self.dense[i]
        } else {
            self.rest.entry(cpu).or_default()
        }
    }

    /// The CPU's value, if `entry` made one (a vector's slots below the highest CPU
    /// `entry` saw read as `T::default()`).
    #[inline]
    pub fn get(&self, cpu: u32) -> Option<&T> {
        if cpu < DENSE {
            self.dense.get(cpu as usize)
        } else {
            self.rest.get(&cpu)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_cpu_numbers_keep_their_values() {
        let mut p: PerCpu<Vec<u64>> = PerCpu::default();
        p.entry(3).push(30);
        p.entry(3).push(31);
        p.entry(5_000_000).push(7);
        p.entry(DENSE).push(8);
        assert_eq!(p.get(3), Some(&vec![30, 31]));
        assert_eq!(p.get(5_000_000), Some(&vec![7]));
        assert_eq!(p.get(DENSE), Some(&vec![8]));
        assert_eq!(p.get(1), Some(&vec![]), "below the highest: default");
        assert_eq!(p.get(4), None);
        assert_eq!(p.get(DENSE + 1), None);
    }
}
