//! The elements of one planned set: key → data, kept as a vector sorted by key.
//!
//! A 10,000-server service plans tens of thousands of elements per change. The planner
//! produces them already in key order, so a sorted vector is built without comparing
//! keys (a `BTreeMap` would sort and deduplicate them again, and allocate its nodes),
//! and the diff against the installed set is one merge of two sorted vectors.

use std::ops::Index;

/// The bytes of one element's key or data: an address, address . port, MAC or slot
/// mark — at most 20 bytes, so kept inline instead of in a heap allocation each.
pub type Elem = smallvec::SmallVec<[u8; 20]>;

/// Key → data (data empty for plain sets), sorted by key, keys unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elems(Vec<(Elem, Elem)>);

impl Elems {
    pub fn new() -> Elems {
        Elems(Vec::new())
    }

    /// From elements whose keys the caller produced in ascending order; of equal keys
    /// (two destinations with one MAC address) the first is kept. Out-of-order input is
    /// sorted, so the result is right either way, only slower.
    pub fn from_ordered(mut v: Vec<(Elem, Elem)>) -> Elems {
        if !v.windows(2).all(|w| w[0].0 <= w[1].0) {
            v.sort_by(|a, b| a.0.cmp(&b.0));
        }
        v.dedup_by(|later, first| later.0 == first.0);
        Elems(v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Elem, &Elem)> + Clone {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &Elem> + Clone {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &Elem> + Clone {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn get(&self, key: &[u8]) -> Option<&Elem> {
        self.0
            .binary_search_by(|(k, _)| k.as_slice().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Adds or replaces one element.
    pub fn insert(&mut self, key: Elem, data: Elem) {
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => self.0[i].1 = data,
            Err(i) => self.0.insert(i, (key, data)),
        }
    }
}

impl FromIterator<(Elem, Elem)> for Elems {
    fn from_iter<I: IntoIterator<Item = (Elem, Elem)>>(iter: I) -> Elems {
        Elems::from_ordered(iter.into_iter().collect())
    }
}

impl Index<&[u8]> for Elems {
    type Output = Elem;

    fn index(&self, key: &[u8]) -> &Elem {
        self.get(key).expect("no element with this key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> Elem {
        Elem::from_slice(s.as_bytes())
    }

    #[test]
    fn ordered_input_unsorted_input_and_duplicates() {
        let a = Elems::from_ordered(vec![(e("a"), e("1")), (e("b"), e("2")), (e("b"), e("3"))]);
        assert_eq!(a.len(), 2);
        assert_eq!(a.get(b"b").map(|v| v.as_slice()), Some(&b"2"[..]));
        let b: Elems = [(e("c"), e("3")), (e("a"), e("1")), (e("b"), e("2"))]
            .into_iter()
            .collect();
        assert_eq!(b.keys().map(|k| k[0]).collect::<Vec<_>>(), b"abc");
        assert_eq!(&b[&b"c"[..]][..], b"3");
        assert_eq!(b.get(b"d"), None);
    }

    #[test]
    fn insert_keeps_the_order() {
        let mut m = Elems::new();
        for k in ["m", "c", "x", "a", "c"] {
            m.insert(e(k), e(k));
        }
        assert_eq!(m.keys().map(|k| k[0]).collect::<Vec<_>>(), b"acmx");
    }
}
