//! Turns (installed plan, desired plan) into one batch that changes only what differs.
//!
//! Per table, in this order (every step inside the same transaction):
//! 1. flush the base chains if their rules change or anything they reference goes away,
//! 2. delete base chains no longer wanted, then verdict maps no longer wanted and the
//!    elements of kept maps that go or change (they name service chains deleted next),
//! 3. update kept services: flush their chain when its rules change (or one of its sets
//!    is replaced), replace sets whose definition changed, otherwise add/delete only the
//!    elements that differ — so counters and persistence entries survive,
//! 4. delete removed services (chains, then sets), 5. create new services, then the
//!    new verdict maps and the elements kept maps gain (naming the new chains),
//! 6. create new base chains, 7. (re)fill base chains, 8. delete `ct timeout` objects
//!    no longer wanted (those wanted are created first of all, before rules name them).
//!
//! With no installed plan (unknown kernel state) every vipd table is first created if
//! missing and deleted, then built from scratch.

use super::consts::NFT_DATA_VERDICT;
use super::elems::Elems;
use super::encode::Batch;
use super::plan::{post_chain, Fam, Plan, SetPlan, SvcPlan, TablePlan, TABLE};

/// Appends to `b` what turns `old` (None: unknown) into `new`.
pub fn diff(old: Option<&Plan>, new: &Plan, b: &mut Batch) {
    let empty = Plan::default();
    let old = match old {
        Some(o) => o,
        None => {
            for fam in Fam::ALL {
                b.new_table(fam.nfproto(), TABLE);
                b.del_table(fam.nfproto(), TABLE);
            }
            &empty
        }
    };
    for fam in Fam::ALL {
        let f = fam.nfproto();
        match (old.tables.get(&fam), new.tables.get(&fam)) {
            (None, None) => {}
            (Some(_), None) => b.del_table(f, TABLE),
            (None, Some(n)) => {
                b.new_table(f, TABLE);
                update_table(f, &TablePlan::default(), n, b);
            }
            (Some(o), Some(n)) => {
                if o != n {
                    update_table(f, o, n, b);
                }
            }
        }
    }
}

fn update_table(f: u8, o: &TablePlan, n: &TablePlan, b: &mut Batch) {
    // 0. (A name carries its values: a changed policy is a new object.)
    let l3proto = if f == super::consts::NFPROTO_IPV6 {
        libc::AF_INET6 as u16
    } else {
        libc::AF_INET as u16
    };
    for (name, t) in &n.ct_timeouts {
        if !o.ct_timeouts.contains_key(name) {
            b.new_ct_timeout(f, TABLE, name, l3proto, t.l4proto, &t.policy);
        }
    }
    // Does any base chain rule reference something that is deleted or replaced?
    let mut refs_gone = false;
    for (name, os) in &o.services {
        match n.services.get(name) {
            None => refs_gone = true,
            Some(ns) => {
                if os
                    .sets
                    .iter()
                    .any(|(sn, s)| ns.sets.get(sn).map(|x| x.def != s.def).unwrap_or(true))
                {
                    refs_gone = true;
                }
            }
        }
    }
    let kept_base: Vec<&String> = n
        .base
        .keys()
        .filter(|k| {
            o.base
                .get(*k)
                .map(|c| c.hook == n.base[*k].hook)
                .unwrap_or(false)
        })
        .collect();
    let rewrite: Vec<&String> = kept_base
        .iter()
        .copied()
        .filter(|k| refs_gone || o.base[*k].rules != n.base[*k].rules)
        .collect();

    // 1.
    for name in &rewrite {
        if !o.base[*name].rules.is_empty() {
            b.flush_chain(f, TABLE, name);
        }
    }
    // 2.
    for (name, c) in &o.base {
        if n.base.get(name).map(|x| x.hook != c.hook).unwrap_or(true) {
            b.del_chain(f, TABLE, name);
        }
    }
    // 2b.
    for (name, om) in &o.maps {
        match n.maps.get(name) {
            Some(nm) if nm.def == om.def => {
                let (del, _) = element_changes(&om.elems, &nm.elems);
                if !del.is_empty() {
                    b.del_elems(f, TABLE, name, del);
                }
            }
            _ => b.del_set(f, TABLE, name),
        }
    }
    // 3.
    for (name, ns) in &n.services {
        if let Some(os) = o.services.get(name) {
            if os != ns {
                update_service(f, name, os, ns, b);
            }
        }
    }
    // 4.
    for (name, os) in &o.services {
        if !n.services.contains_key(name) {
            b.del_chain(f, TABLE, name);
            if !os.post_rules.is_empty() {
                b.del_chain(f, TABLE, &post_chain(name));
            }
            for set in os.sets.keys() {
                b.del_set(f, TABLE, set);
            }
        }
    }
    // 5.
    for (name, ns) in &n.services {
        if !o.services.contains_key(name) {
            for s in ns.sets.values() {
                create_set(f, s, b);
            }
            b.new_chain(f, TABLE, name, None);
            for r in &ns.rules {
                b.new_rule(f, TABLE, name, r);
            }
            if !ns.post_rules.is_empty() {
                let post = post_chain(name);
                b.new_chain(f, TABLE, &post, None);
                for r in &ns.post_rules {
                    b.new_rule(f, TABLE, &post, r);
                }
            }
        }
    }
    // 5b.
    for (name, nm) in &n.maps {
        match o.maps.get(name) {
            Some(om) if om.def == nm.def => {
                let (_, add) = element_changes(&om.elems, &nm.elems);
                if !add.is_empty() {
                    add_elems(f, nm, add, b);
                }
            }
            _ => create_set(f, nm, b),
        }
    }
    // 6.
    for (name, c) in &n.base {
        if !kept_base.contains(&name) {
            b.new_chain(f, TABLE, name, Some(&c.hook));
            for r in &c.rules {
                b.new_rule(f, TABLE, name, r);
            }
        }
    }
    // 7.
    for name in &rewrite {
        for r in &n.base[*name].rules {
            b.new_rule(f, TABLE, name, r);
        }
    }
    // 8.
    for name in o.ct_timeouts.keys() {
        if !n.ct_timeouts.contains_key(name) {
            b.del_ct_timeout(f, TABLE, name);
        }
    }
}

fn create_set(f: u8, s: &SetPlan, b: &mut Batch) {
    b.new_set(f, TABLE, &s.def);
    if !s.elems.is_empty() {
        add_elems(
            f,
            s,
            s.elems.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
            b,
        );
    }
}

/// Adds elements to `s`; a verdict map's data are the names of the chains its
/// elements `goto`.
fn add_elems<'a>(
    f: u8,
    s: &SetPlan,
    elems: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    b: &mut Batch,
) {
    if matches!(s.def.data, Some((NFT_DATA_VERDICT, _))) {
        b.new_goto_elems(f, TABLE, &s.def.name, elems);
    } else {
        b.new_elems(f, TABLE, &s.def.name, elems);
    }
}

fn update_service(f: u8, chain: &str, o: &SvcPlan, n: &SvcPlan, b: &mut Batch) {
    let replaced: Vec<&String> = o
        .sets
        .iter()
        .filter(|(name, s)| n.sets.get(*name).map(|x| x.def != s.def).unwrap_or(true))
        .map(|(name, _)| name)
        .collect();
    let flush = o.rules != n.rules || !replaced.is_empty();
    if flush && !o.rules.is_empty() {
        b.flush_chain(f, TABLE, chain);
    }
    // (Within one table a service's post chain exists for as long as the service.)
    let post = post_chain(chain);
    let flush_post = o.post_rules != n.post_rules || !replaced.is_empty();
    if flush_post && !o.post_rules.is_empty() {
        b.flush_chain(f, TABLE, &post);
    }
    for name in &replaced {
        b.del_set(f, TABLE, name);
    }
    for (name, s) in &n.sets {
        match o.sets.get(name) {
            Some(os) if os.def == s.def => {
                let (del, add) = element_changes(&os.elems, &s.elems);
                if !del.is_empty() {
                    b.del_elems(f, TABLE, name, del);
                }
                if !add.is_empty() {
                    add_elems(f, s, add, b);
                }
            }
            _ => create_set(f, s, b),
        }
    }
    if flush {
        for r in &n.rules {
            b.new_rule(f, TABLE, chain, r);
        }
    }
    if flush_post {
        if o.post_rules.is_empty() && !n.post_rules.is_empty() {
            b.new_chain(f, TABLE, &post, None);
        }
        for r in &n.post_rules {
            b.new_rule(f, TABLE, &post, r);
        }
    }
}

/// Keys to delete, and key/data pairs to add.
type Changes<'a> = (Vec<&'a [u8]>, Vec<(&'a [u8], &'a [u8])>);

/// Keys to delete (gone, or their data changed) and elements to add (new, or changed),
/// by one merge of the two sorted maps: linear in their size (10,000-element sets are
/// common), where a lookup per element would cost a logarithm of comparisons each.
fn element_changes<'a>(old: &'a Elems, new: &'a Elems) -> Changes<'a> {
    use std::cmp::Ordering;
    let (mut del, mut add) = (Vec::new(), Vec::new());
    let mut o = old.iter().peekable();
    let mut n = new.iter().peekable();
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some((ok, _)), None) => {
                del.push(ok.as_slice());
                o.next();
            }
            (None, Some((nk, nv))) => {
                add.push((nk.as_slice(), nv.as_slice()));
                n.next();
            }
            (Some((ok, ov)), Some((nk, nv))) => match ok.cmp(nk) {
                Ordering::Less => {
                    del.push(ok.as_slice());
                    o.next();
                }
                Ordering::Greater => {
                    add.push((nk.as_slice(), nv.as_slice()));
                    n.next();
                }
                Ordering::Equal => {
                    if ov != nv {
                        del.push(ok.as_slice());
                        add.push((nk.as_slice(), nv.as_slice()));
                    }
                    o.next();
                    n.next();
                }
            },
        }
    }
    (del, add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_changes_by_merge() {
        let m = |v: &[(&str, &str)]| -> Elems {
            v.iter()
                .map(|(k, d)| (k.as_bytes().into(), d.as_bytes().into()))
                .collect()
        };
        let old = m(&[("a", "1"), ("b", "2"), ("c", "3"), ("e", "5")]);
        let new = m(&[("b", "2"), ("c", "9"), ("d", "4"), ("e", "5"), ("f", "6")]);
        let (del, add) = element_changes(&old, &new);
        assert_eq!(del, vec![b"a".as_slice(), b"c"]);
        assert_eq!(
            add,
            vec![
                (b"c".as_slice(), b"9".as_slice()),
                (b"d", b"4"),
                (b"f", b"6")
            ]
        );
        let (del, add) = element_changes(&old, &old);
        assert!(del.is_empty() && add.is_empty());
    }
}
