//! Shards: several Ferry controllers split the namespaces between them, so adding one adds
//! capacity and a dead one stops only its own share until its standby takes over.
//!
//! A namespace belongs to shard `fnv1a64(name) mod count`. Everything Ferry reconciles for an
//! Application lives in its namespace (its Environments, Releases, BuildJobs and build pods)
//! or carries its namespace in a label (its workloads, wherever they run), so one shard holds
//! and decides all of it, and no two shards ever write the same object. The rule only reads the
//! name, so it is the same on every replica, at every version, and `ferry shard` prints it.

use std::fmt;
use std::str::FromStr;

/// This controller's share: shard `index` of `count` (`0/1`, the default, is everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl Shard {
    /// The shard of `count` that serves `namespace`.
    pub fn of(namespace: &str, count: u32) -> u32 {
        // FNV-1a, 64 bits: small, fixed by its definition, and spreads short similar names.
        let hash = namespace
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        (hash % u64::from(count.max(1))) as u32
    }

    /// Whether this shard serves `namespace`.
    pub fn serves(&self, namespace: &str) -> bool {
        self.count <= 1 || Self::of(namespace, self.count) == self.index
    }

    /// Whether there is more than one shard.
    pub fn is_split(&self) -> bool {
        self.count > 1
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage =
            || format!("{text:?} is not a shard: write INDEX/COUNT, e.g. 0/2 (the first of two)");
        let (index, count) = text.split_once('/').ok_or_else(usage)?;
        let index: u32 = index.trim().parse().map_err(|_| usage())?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        if count == 0 || index >= count {
            return Err(format!(
                "{text:?} is not a shard: the index counts from 0 and is below the count (0/{count} to {}/{count})",
                count.saturating_sub(1)
            ));
        }
        Ok(Self { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn a_namespace_always_goes_to_the_same_shard() {
        // Fixed values (FNV-1a 64 of the name, computed apart from this code): a change of the
        // rule would move namespaces between running shards.
        assert_eq!(Shard::of("team-a", 2), 0);
        assert_eq!(Shard::of("team-b", 2), 1);
        assert_eq!(Shard::of("team-a", 3), 1);
        assert_eq!(Shard::of("", 4), 1);
        assert_eq!(Shard::of("team-a", 1), 0);
    }

    #[test]
    fn every_namespace_is_served_by_exactly_one_shard() {
        for count in 1..=5 {
            let shards: Vec<Shard> = (0..count).map(|index| Shard { index, count }).collect();
            let mut served = vec![0; count as usize];
            for n in 0..1000 {
                let namespace = format!("scale-{n}");
                let serving: Vec<&Shard> = shards.iter().filter(|s| s.serves(&namespace)).collect();
                assert_eq!(serving.len(), 1, "{namespace} of {count}");
                served[serving[0].index as usize] += 1;
            }
            // Spread: no shard gets less than half its fair share.
            let fair = 1000 / count as usize;
            assert!(served.iter().all(|s| *s * 2 > fair), "{count}: {served:?}");
        }
    }

    #[test]
    fn a_shard_is_written_index_over_count() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(Shard::default().to_string(), "0/1");
        for bad in ["", "1", "2/2", "0/0", "a/2", "-1/2", "1/2/3"] {
            let error = bad.parse::<Shard>().expect_err(bad);
            assert!(error.contains("is not a shard"), "{bad}: {error}");
        }
    }
}
