//! The owner of the links a plan asks for: `use_vmac` macvlans and `use_ipvlan` ipvlans.
//! [`bind`] creates (or
//! finds) them, prepares them and writes their indexes into the plan; [`Links::undo`]
//! removes what one `bind` created when the step it was for fails, so a failed start
//! or reload leaves no link behind.

use crate::netlink::{AddressSpec, Rtnetlink};
use crate::plan::{InstancePlan, LinkKind, Plan, Vmac, UNBOUND};
use anyhow::{Context, Result};
use std::net::IpAddr;
use vipd_vrrp::wire::Family;

/// The VMACs one [`bind`] created (not those it found).
#[derive(Debug, Default)]
#[must_use = "undo() them if what they were created for fails"]
pub struct Links {
    pub created: Vec<u32>,
}

impl Links {
    /// Delete the links this `bind` created.
    pub fn undo(self) {
        delete(&self.created);
    }
}

/// Delete links by index (a link already gone is not an error).
pub fn delete(indexes: &[u32]) {
    if indexes.is_empty() {
        return;
    }
    if let Ok(mut nl) = Rtnetlink::open() {
        for &index in indexes {
            if let Err(e) = nl.delete_link(index) {
                tracing::warn!("{e:#}");
            }
        }
    }
}

/// Create or find every VMAC of `plan` and replace [`UNBOUND`] indexes with theirs. On
/// error, the VMACs created so far are deleted again.
pub fn bind(plan: &mut Plan) -> Result<Links> {
    let mut links = Links::default();
    let mut bound: Vec<(String, u32)> = Vec::new();
    for inst in &mut plan.instances {
        let name = inst.name.clone();
        let mut step = |v: &mut Vmac, what: &str| match ensure(v) {
            Ok(()) => {
                if v.created {
                    links.created.push(v.index);
                }
                bound.push((v.name.clone(), v.index));
                Ok(())
            }
            Err(e) => Err(e.context(format!("vrrp_instance {name}: {what}"))),
        };
        let mut result = Ok(());
        if let Some(v) = &mut inst.vmac {
            result = step(v, "use_vmac");
        }
        for (v, _) in &mut inst.address_vmacs {
            if result.is_ok() {
                result = step(v, "use_vmac_addr");
            }
        }
        if let Err(e) = result {
            links.undo();
            return Err(e);
        }
        bind_instance(inst);
    }
    // Routes may name a VMAC (`dev vrrp.51`), also another instance's or a static one.
    let index_of = |name: &str| bound.iter().find(|(n, _)| n == name).map(|(_, i)| *i);
    for r in plan
        .instances
        .iter_mut()
        .flat_map(|i| i.routes.iter_mut())
        .chain(plan.static_routes.iter_mut())
    {
        if r.dev == Some(UNBOUND) {
            r.dev = r.dev_name.as_deref().and_then(index_of);
        }
    }
    Ok(links)
}

/// The instance's addresses and announcement frames that live on its VMACs.
fn bind_instance(inst: &mut InstancePlan) {
    // `use_vmac_addr` first: the rest of UNBOUND is the instance's own VMAC.
    for (v, ks) in &inst.address_vmacs {
        for &k in ks {
            inst.addresses[k].ifindex = v.index;
            let frame = &mut inst.announce_frames[k];
            if let Some((_, extra)) = &mut inst.extra_garp {
                for f in extra
                    .iter_mut()
                    .filter(|f| f.0 == UNBOUND && f.1 == frame.1)
                {
                    f.0 = v.index;
                }
            }
            frame.0 = v.index;
        }
    }
    let Some(index) = inst.vmac.as_ref().map(|v| v.index) else {
        return;
    };
    for a in &mut inst.addresses {
        if a.ifindex == UNBOUND {
            a.ifindex = index;
        }
    }
    for (i, _) in &mut inst.announce_frames {
        if *i == UNBOUND {
            *i = index;
        }
    }
}

/// Create or find the link and prepare it.
///
/// A macvlan, IPv4: the base interface neither answers ARP for the VIPs
/// (`arp_ignore=1`) nor names them as the sender of its own ARP requests
/// (`arp_announce=2`), so neighbours only ever learn the virtual MAC; these sysctls
/// stay set after vipd stops. An ipvlan gets its own address. IPv6, both: the base
/// interface's link-local address is added to the link, so adverts leave from it with
/// the router's own source address.
fn ensure(v: &mut Vmac) -> Result<()> {
    let mut nl = Rtnetlink::open()?;
    // keepalived: the VMAC joins the base interface's link group unless `group` says.
    let group = match v.group {
        Some(g) => g,
        None => std::fs::read_to_string(format!("/sys/class/net/{}/netdev_group", v.base.name))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0),
    };
    let (index, created) = match v.kind {
        LinkKind::Macvlan => nl.ensure_vmac(&v.name, v.base.index, v.mac, group)?,
        LinkKind::Ipvlan { mode, .. } => nl.ensure_ipvlan(&v.name, &v.base, mode, group)?,
    };
    (v.index, v.created) = (index, created);
    let prepared = match (v.kind, v.family) {
        (LinkKind::Ipvlan { addr, .. }, family) => addr
            .map(|(addr, prefix_len)| AddressSpec {
                ifindex: index,
                addr,
                prefix_len,
                brd: None,
                scope: 0,
                label: None,
                opts: Default::default(),
            })
            .into_iter()
            .chain(link_local(index, v.base_link_local).filter(|_| family == Family::V6))
            .try_for_each(|spec| nl.add_address(&spec).map(drop)),
        (LinkKind::Macvlan, Family::V4) => [
            (v.base.name.as_str(), "arp_ignore", "1"),
            (v.base.name.as_str(), "arp_announce", "2"),
            (v.name.as_str(), "arp_ignore", "0"),
        ]
        .into_iter()
        .try_for_each(|(dev, key, value)| {
            let path = format!("/proc/sys/net/ipv4/conf/{dev}/{key}");
            std::fs::write(&path, value)
                .with_context(|| format!("setting {path} to {value} for use_vmac"))
        }),
        (LinkKind::Macvlan, Family::V6) => link_local(index, v.base_link_local)
            .map_or(Ok(()), |spec| nl.add_address(&spec).map(drop)),
    };
    if let Err(e) = prepared {
        // Whatever was added goes with the link, when vipd made it.
        if created {
            let _ = nl.delete_link(index);
        }
        return Err(e);
    }
    Ok(())
}

/// The base interface's link-local address, on the link `index`.
fn link_local(index: u32, ll: Option<std::net::Ipv6Addr>) -> Option<AddressSpec> {
    ll.map(|ll| AddressSpec {
        ifindex: index,
        addr: IpAddr::V6(ll),
        prefix_len: 64,
        brd: None,
        scope: 253,
        label: None,
        opts: Default::default(),
    })
}
