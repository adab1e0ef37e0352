//! An index entry's members, packed: one allocation holding, for each member, its 32-byte key,
//! its payload's length (4 bytes, little-endian) and the payload (a sealed session listing, or
//! nothing). Most entries list one session; as a `Vec` of keys and `Bytes` payloads, each cost
//! two allocations and their headers besides the bytes themselves (BENCHMARKS.md).

use super::StoreKey;
use bytes::Bytes;

const KEY: usize = 32;
const LEN: usize = 4;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Members(Box<[u8]>);

impl Members {
    /// Members in order, from `(key, payload)` pairs. A payload longer than `u32::MAX` bytes
    /// cannot be one (a listing is a few hundred); it is stored empty rather than cut.
    pub(super) fn of<'a>(members: impl IntoIterator<Item = (&'a StoreKey, &'a [u8])>) -> Self {
        let mut packed = Vec::new();
        for (key, payload) in members {
            let (len, payload) = match u32::try_from(payload.len()) {
                Ok(len) => (len, payload),
                Err(_) => (0, &[][..]),
            };
            packed.extend_from_slice(&key.0);
            packed.extend_from_slice(&len.to_le_bytes());
            packed.extend_from_slice(payload);
        }
        Members(packed.into_boxed_slice())
    }

    pub(super) fn iter(&self) -> Iter<'_> {
        Iter(&self.0)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = StoreKey> + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// Keeps the members `keep` says to, in order (repacked only when one goes).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&StoreKey) -> bool) {
        if self.iter().all(|(key, _)| keep(&key)) {
            return;
        }
        let kept: Vec<(StoreKey, &[u8])> = self.iter().filter(|(key, _)| keep(key)).collect();
        *self = Members::of(kept.iter().map(|(key, payload)| (key, *payload)));
    }

    /// The members as the store trait hands them out (payloads copied).
    pub(super) fn to_vec(&self) -> Vec<(StoreKey, Bytes)> {
        self.iter().map(|(key, payload)| (key, Bytes::copy_from_slice(payload))).collect()
    }
}

pub(super) struct Iter<'a>(&'a [u8]);

impl<'a> Iterator for Iter<'a> {
    type Item = (StoreKey, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, rest) = self.0.split_first_chunk::<KEY>()?;
        let (len, rest) = rest.split_first_chunk::<LEN>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        let payload = rest.get(..len)?;
        self.0 = rest.get(len..)?;
        Some((StoreKey(*key), payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> StoreKey {
        StoreKey([i; 32])
    }

    #[test]
    fn packs_and_reads_back_in_order_and_retains() {
        let (a, b, c) = (key(1), key(2), key(3));
        let listing = vec![7u8; 300];
        let mut members = Members::of([(&a, &b"one"[..]), (&b, &[][..]), (&c, &listing[..])]);
        let read: Vec<(StoreKey, Vec<u8>)> = members.iter().map(|(k, p)| (k, p.to_vec())).collect();
        assert_eq!(read, vec![(a, b"one".to_vec()), (b, vec![]), (c, listing.clone())]);
        assert_eq!(members.0.len(), 3 * (KEY + LEN) + 3 + 300, "one allocation, nothing else");
        members.retain(|k| *k != b);
        assert_eq!(members.to_vec(), vec![(a, Bytes::from_static(b"one")), (c, Bytes::from(listing))]);
        members.retain(|_| false);
        assert!(members.is_empty() && members.keys().next().is_none());
        assert!(Members::default().iter().next().is_none());
    }
}
