//! What IPVS cannot express. IPVS has every scheduler vipd names and NAT, direct routing
//! and tunnelling natively, so the list is short and consists of things the kernel would
//! refuse (or accept and then not forward):
//!
//! - the same service twice, or the same destination (address, port) twice in one
//!   service: IPVS keys them that way and answers EEXIST;
//! - `fwmark 0`: the kernel reads a zero mark as "no mark" and wants an address;
//! - port 0 without persistence: accepted, but the kernel never schedules such a service
//!   ("port zero only supported in persistent services");
//! - a destination of the other address family unless it is tunnelled: IPVS forwards
//!   across families only by encapsulation (kernel 3.18 and later; the kernel also
//!   refuses it while a connection-sync daemon runs, which vipd cannot see here and
//!   reports when the kernel answers). NAT and direct routing cannot cross families
//!   on any kernel;
//! - a destination that is not a unicast address;
//! - weight above 2^31-1 (the kernel's weight is an `int`), a lower connection threshold
//!   above the upper one (the kernel compares them even when the upper is 0 = none);
//! - persistence granularity out of range for the family, an IPv6 prefix of 0 (the
//!   kernel wants 1..=128), a persistence timeout of 0 or so long that the kernel's
//!   `timeout * HZ` overflows 32 bits at HZ=1000 (more than 4294967 s, ~49 days).
//!
//! Not checked, because only the running kernel knows: whether the scheduler module
//! (`ip_vs_mh` needs 4.18, `ip_vs_twos` 6.x) exists; the kernel answers ENOENT and
//! `apply` reports it. `Service::device` and `Dest::mac` are ignored: IPVS routes and
//! resolves neighbours itself.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::model::{Family, Forward, Service, ServiceKey, Table};
use crate::Unsupported;

/// Largest persistence timeout whose `timeout * HZ` fits 32 bits at HZ=1000.
pub const MAX_PERSISTENCE_SECS: u64 = u32::MAX as u64 / 1000;

fn unicast(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

fn check_service(s: &Service) -> Result<(), String> {
    let family = s.key.family();
    match s.key {
        ServiceKey::Fwmark { mark: 0, .. } => {
            return Err("fwmark 0 is not a mark to IPVS (it means \"match by address\")".into())
        }
        ServiceKey::Addr { port: 0, .. } if s.persistence.is_none() => {
            return Err(
                "port 0 (all ports) needs persistence_timeout: IPVS schedules a port-0 service only when it is persistent"
                    .into(),
            )
        }
        _ => {}
    }
    if let Some(p) = &s.persistence {
        let max_prefix = match family {
            Family::V4 => 32,
            Family::V6 => 128,
        };
        if p.prefix_len > max_prefix {
            return Err(format!(
                "persistence_granularity /{} is longer than the address",
                p.prefix_len
            ));
        }
        if family == Family::V6 && p.prefix_len == 0 {
            return Err("IPVS wants an IPv6 persistence_granularity of 1..128, not 0".into());
        }
        if p.timeout.is_zero() {
            return Err("persistence_timeout 0".into());
        }
        if p.timeout.as_secs() > MAX_PERSISTENCE_SECS {
            return Err(format!(
                "persistence_timeout {} s is longer than IPVS can hold ({MAX_PERSISTENCE_SECS} s)",
                p.timeout.as_secs()
            ));
        }
    }
    let mut seen = HashSet::new();
    for d in &s.dests {
        let what = match d.addr {
            IpAddr::V4(a) => format!("real_server {a} {}", d.port),
            IpAddr::V6(a) => format!("real_server {a} {}", d.port),
        };
        if !seen.insert((d.addr, d.port)) {
            return Err(format!("{what} is listed twice"));
        }
        if !unicast(&d.addr) {
            return Err(format!("{what}: not a unicast address"));
        }
        if let IpAddr::V6(a) = d.addr {
            if a.segments()[0] & 0xffc0 == 0xfe80 {
                return Err(format!(
                    "{what}: IPVS refuses link-local real servers (EINVAL); use a global or unique-local address"
                ));
            }
        }
        if Family::of(&d.addr) != family && d.forward != Forward::Tun {
            return Err(format!(
                "{what}: IPVS reaches a real server of the other address family only by tunnelling (lb_kind TUN), not {}",
                match d.forward {
                    Forward::Nat => "NAT",
                    Forward::Dr => "DR",
                    Forward::Tun => unreachable!(),
                }
            ));
        }
        if d.weight > i32::MAX as u32 {
            return Err(format!(
                "{what}: weight {} is above IPVS's maximum {}",
                d.weight,
                i32::MAX
            ));
        }
        if d.lower_threshold > d.upper_threshold {
            return Err(format!(
                "{what}: lthreshold {} is above uthreshold {} (IPVS refuses it; 0 = no upper threshold)",
                d.lower_threshold, d.upper_threshold
            ));
        }
    }
    Ok(())
}

/// Why `table` cannot be programmed into IPVS (the first problem found), if it cannot.
pub fn check_table(table: &Table) -> Result<(), Unsupported> {
    let mut keys = HashSet::new();
    for s in &table.services {
        let fail = |reason: String| Unsupported {
            service: s.key.config_name(),
            reason,
        };
        if !keys.insert(s.key) {
            return Err(fail(format!("{} is configured twice", s.key)));
        }
        check_service(s).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dest, Persistence, Proto, Sched, SchedFlags};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    fn v4(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
    }
    fn v6(d: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, d))
    }

    fn dest(addr: IpAddr, forward: Forward) -> Dest {
        Dest {
            addr,
            port: 80,
            weight: 1,
            forward,
            upper_threshold: 0,
            lower_threshold: 0,
            mac: None,
        }
    }

    fn svc(addr: IpAddr, dests: Vec<Dest>) -> Service {
        Service {
            key: ServiceKey::Addr {
                addr,
                port: 80,
                proto: Proto::Tcp,
            },
            sched: Sched::Wrr,
            flags: SchedFlags::default(),
            forward: Forward::Nat,
            persistence: None,
            pe_name: None,
            device: None,
            dests,
        }
    }

    fn one(s: Service) -> Result<(), Unsupported> {
        check_table(&Table { services: vec![s] })
    }

    fn reason(s: Service) -> String {
        one(s).expect_err("should be rejected").reason
    }

    #[test]
    fn every_scheduler_and_method_is_accepted() {
        for sched in Sched::ALL {
            for fwd in [Forward::Nat, Forward::Dr, Forward::Tun] {
                let mut s = svc(v4(100), vec![dest(v4(11), fwd), dest(v4(12), fwd)]);
                s.sched = sched;
                s.flags = SchedFlags {
                    fallback: true,
                    port: true,
                    sched3: true,
                    one_packet: true,
                };
                s.pe_name = Some("sip".into());
                s.device = Some("eth0".into());
                s.dests[0].mac = Some([2, 0, 0, 0, 0, 1]);
                assert_eq!(one(s), Ok(()), "{sched:?} {fwd:?}");
            }
        }
        let mut s6 = svc(v6(1), vec![dest(v6(0x11), Forward::Dr)]);
        s6.persistence = Some(Persistence {
            timeout: Duration::from_secs(300),
            prefix_len: 64,
        });
        assert_eq!(one(s6), Ok(()));
    }

    #[test]
    fn mixed_families_only_by_tunnel() {
        assert_eq!(
            one(svc(v4(100), vec![dest(v6(0x11), Forward::Tun)])),
            Ok(())
        );
        assert_eq!(one(svc(v6(1), vec![dest(v4(11), Forward::Tun)])), Ok(()));
        let e = one(svc(v4(100), vec![dest(v6(0x11), Forward::Nat)])).unwrap_err();
        assert_eq!(e.service, "virtual_server 192.0.2.100 80");
        assert!(e.reason.contains("real_server 2001:db8::11 80"), "{e}");
        assert!(e.reason.contains("not NAT"), "{e}");
        assert!(reason(svc(v6(1), vec![dest(v4(11), Forward::Dr)])).contains("not DR"));
    }

    #[test]
    fn duplicates_are_rejected() {
        let s = svc(
            v4(100),
            vec![dest(v4(11), Forward::Dr), dest(v4(11), Forward::Nat)],
        );
        assert!(reason(s).contains("listed twice"));
        let mut other_port = dest(v4(11), Forward::Nat);
        other_port.port = 81;
        assert_eq!(
            one(svc(v4(100), vec![dest(v4(11), Forward::Nat), other_port])),
            Ok(())
        );
        let t = Table {
            services: vec![svc(v4(100), vec![]), svc(v4(100), vec![])],
        };
        let e = check_table(&t).unwrap_err();
        assert_eq!(e.reason, "tcp 192.0.2.100:80 is configured twice");
        let mut udp = svc(v4(100), vec![]);
        udp.key = ServiceKey::Addr {
            addr: v4(100),
            port: 80,
            proto: Proto::Udp,
        };
        let t = Table {
            services: vec![svc(v4(100), vec![]), udp],
        };
        assert_eq!(check_table(&t), Ok(()));
    }

    #[test]
    fn kernel_limits_on_destinations() {
        let mut d = dest(v4(11), Forward::Nat);
        d.weight = i32::MAX as u32;
        assert_eq!(one(svc(v4(100), vec![d])), Ok(()));
        d.weight += 1;
        assert!(reason(svc(v4(100), vec![d])).contains("weight 2147483648"));

        let mut d = dest(v4(11), Forward::Nat);
        d.upper_threshold = 100;
        d.lower_threshold = 50;
        assert_eq!(one(svc(v4(100), vec![d])), Ok(()));
        d.upper_threshold = 0;
        assert!(reason(svc(v4(100), vec![d])).contains("lthreshold 50"));

        for bad in [
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)),
            IpAddr::V4(Ipv4Addr::BROADCAST),
            "ff02::1".parse().unwrap(),
        ] {
            let fam = if bad.is_ipv4() { v4(100) } else { v6(1) };
            assert!(
                reason(svc(fam, vec![dest(bad, Forward::Dr)])).contains("not a unicast"),
                "{bad}"
            );
        }
        // The kernel refuses link-local real servers (seen on 6.1).
        let ll: IpAddr = "fe80::1".parse().unwrap();
        assert!(reason(svc(v6(1), vec![dest(ll, Forward::Dr)])).contains("link-local"));
    }

    #[test]
    fn service_keys_and_persistence_limits() {
        let mut s = svc(v4(100), vec![]);
        s.key = ServiceKey::Fwmark {
            mark: 0,
            family: Family::V4,
        };
        assert!(reason(s.clone()).contains("fwmark 0"));
        s.key = ServiceKey::Fwmark {
            mark: 1,
            family: Family::V6,
        };
        assert_eq!(one(s.clone()), Ok(()));
        s.persistence = Some(Persistence {
            timeout: Duration::from_secs(60),
            prefix_len: 0,
        });
        let e = one(s.clone()).unwrap_err();
        assert_eq!(e.service, "virtual_server fwmark 1 (inet6)");
        s.persistence = Some(Persistence {
            timeout: Duration::from_secs(60),
            prefix_len: 129,
        });
        assert!(reason(s).contains("/129"));

        let mut p0 = svc(v4(100), vec![]);
        p0.key = ServiceKey::Addr {
            addr: v4(100),
            port: 0,
            proto: Proto::Tcp,
        };
        assert!(reason(p0.clone()).contains("port 0"));
        p0.persistence = Some(Persistence {
            timeout: Duration::from_secs(60),
            prefix_len: 0,
        });
        assert_eq!(one(p0.clone()), Ok(()), "an IPv4 /0 granularity is fine");
        p0.persistence = Some(Persistence {
            timeout: Duration::from_secs(60),
            prefix_len: 33,
        });
        assert!(reason(p0.clone()).contains("/33"));
        p0.persistence = Some(Persistence {
            timeout: Duration::ZERO,
            prefix_len: 32,
        });
        assert!(reason(p0.clone()).contains("persistence_timeout 0"));
        p0.persistence = Some(Persistence {
            timeout: Duration::from_secs(MAX_PERSISTENCE_SECS),
            prefix_len: 32,
        });
        assert_eq!(one(p0.clone()), Ok(()));
        p0.persistence = Some(Persistence {
            timeout: Duration::from_secs(MAX_PERSISTENCE_SECS + 1),
            prefix_len: 32,
        });
        assert!(reason(p0).contains("longer than IPVS can hold"));
    }
}
