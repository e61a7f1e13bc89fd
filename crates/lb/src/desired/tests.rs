use super::*;
use std::path::Path;

fn load(text: &str) -> vipd_config::Config {
    let opts = vipd_config::LoadOptions {
        config_id: None,
        check_interfaces: false,
        ..Default::default()
    };
    match vipd_config::load_str(text, Path::new("t.conf"), &opts) {
        Ok(l) => l.config,
        Err(d) => panic!("{d:?}"),
    }
}

fn lb(text: &str, up: impl Fn(usize, usize) -> bool) -> Lb {
    let c = load(text);
    Lb::new(&c.virtual_servers, &c.virtual_server_groups, Sched::Wlc, up).unwrap()
}

const SEED: &str = "
virtual_server 192.0.2.100 80 {
    delay_loop 6
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 192.0.2.11 80 {
        weight 1
        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout 3
            retry 3
            delay_before_retry 3
        }
    }
    real_server 192.0.2.12 80 {
        weight 2
        TCP_CHECK {
        }
    }
}
";

fn addrs(t: &Table) -> Vec<(String, u32)> {
    t.services[0]
        .dests
        .iter()
        .map(|d| (d.addr.to_string(), d.weight))
        .collect()
}

#[test]
fn seed_config_becomes_one_dr_service() {
    let l = lb(SEED, |_, _| true);
    let t = l.table();
    assert_eq!(t.services.len(), 1);
    let s = &t.services[0];
    assert_eq!(
        s.key,
        ServiceKey::Addr {
            addr: "192.0.2.100".parse().unwrap(),
            port: 80,
            proto: Proto::Tcp
        }
    );
    assert_eq!(s.sched, Sched::Rr);
    assert_eq!(s.forward, Forward::Dr);
    assert_eq!(
        addrs(&t),
        vec![("192.0.2.11".into(), 1), ("192.0.2.12".into(), 2)]
    );
    assert!(s
        .dests
        .iter()
        .all(|d| d.forward == Forward::Dr && d.port == 80));
    assert!(l.uses_dr(0));
    assert_eq!(l.dr_addresses().len(), 2);
}

#[test]
fn failed_server_leaves_and_returns() {
    let mut l = lb(SEED, |_, _| true);
    assert_eq!(
        l.set_health(0, 0, false, None),
        vec![LbEvent::RealServerDown { vs: 0, rs: 0 }]
    );
    assert_eq!(addrs(&l.table()), vec![("192.0.2.12".into(), 2)]);
    assert_eq!(l.set_health(0, 0, false, None), vec![]);
    assert_eq!(
        l.set_health(0, 0, true, None),
        vec![LbEvent::RealServerUp { vs: 0, rs: 0 }]
    );
    assert_eq!(l.table().services[0].dests.len(), 2);
}

#[test]
fn inhibit_on_failure_keeps_weight_zero() {
    let mut l = lb(
        "virtual_server 192.0.2.100 80 {\n inhibit_on_failure\n real_server 192.0.2.11 80 {\n weight 5\n }\n real_server 192.0.2.12 80 {\n inhibit_on_failure false\n }\n }",
        |_, _| true,
    );
    l.set_health(0, 0, false, None);
    l.set_health(0, 1, false, None);
    assert_eq!(addrs(&l.table()), vec![("192.0.2.11".into(), 0)]);
}

#[test]
fn default_scheduler_and_nat() {
    let l = lb(
        "virtual_server 192.0.2.100 443 {\n real_server 192.0.2.11 8443 {\n }\n }",
        |_, _| true,
    );
    let s = &l.table().services[0];
    assert_eq!(s.sched, Sched::Wlc);
    assert_eq!(s.forward, Forward::Nat);
    assert_eq!(s.dests[0].port, 8443);
}

#[test]
fn quorum_with_hysteresis_and_sorry_server() {
    let text =
        "virtual_server 192.0.2.100 80 {\n quorum 3\n hysteresis 1\n sorry_server 192.0.2.99 8080
        real_server 192.0.2.11 80 {\n weight 2\n }
        real_server 192.0.2.12 80 {\n weight 2\n }
        real_server 192.0.2.13 80 {\n weight 1\n }\n }";
    let mut l = lb(text, |_, _| true);
    assert!(l.quorum_up(0));
    // 5 -> 3: still >= quorum - hysteresis (2)
    assert_eq!(
        l.set_health(0, 0, false, None),
        vec![LbEvent::RealServerDown { vs: 0, rs: 0 }]
    );
    assert!(l.quorum_up(0));
    // 3 -> 1: lost
    assert_eq!(
        l.set_health(0, 1, false, None),
        vec![
            LbEvent::RealServerDown { vs: 0, rs: 1 },
            LbEvent::QuorumDown { vs: 0 }
        ]
    );
    assert_eq!(addrs(&l.table()), vec![("192.0.2.99".into(), 1)]);
    assert_eq!(l.table().services[0].dests[0].port, 8080);
    // 1 -> 3: needs quorum + hysteresis = 4, so still down
    l.set_health(0, 1, true, None);
    assert!(!l.quorum_up(0));
    assert_eq!(addrs(&l.table()), vec![("192.0.2.99".into(), 1)]);
    // 3 -> 5: regained; sorry server leaves
    assert_eq!(
        l.set_health(0, 0, true, None),
        vec![
            LbEvent::RealServerUp { vs: 0, rs: 0 },
            LbEvent::QuorumUp { vs: 0 }
        ]
    );
    assert_eq!(l.table().services[0].dests.len(), 3);
}

#[test]
fn sorry_server_inhibit_keeps_it_at_weight_zero() {
    let l = lb(
        "virtual_server 192.0.2.100 80 {\n sorry_server 192.0.2.99 80\n sorry_server_inhibit\n real_server 192.0.2.11 80 {\n }\n }",
        |_, _| true,
    );
    assert_eq!(
        addrs(&l.table()),
        vec![("192.0.2.11".into(), 1), ("192.0.2.99".into(), 0)]
    );
}

#[test]
fn alpha_servers_start_down_and_quorum_follows() {
    let l = lb(SEED, |_, _| false);
    assert!(!l.quorum_up(0));
    assert!(l.table().services[0].dests.is_empty());
}

#[test]
fn inactive_virtual_servers_are_not_in_the_table() {
    let mut l = lb(SEED, |_, _| true);
    l.set_active(0, false);
    assert!(l.table().services.is_empty());
    l.set_active(0, true);
    assert_eq!(l.table().services.len(), 1);
}

#[test]
fn misc_dynamic_weight_counts_for_quorum() {
    let mut l = lb(
        "virtual_server 192.0.2.100 80 {\n quorum 10\n real_server 192.0.2.11 80 {\n weight 1\n }\n }",
        |_, _| true,
    );
    assert!(!l.quorum_up(0));
    assert_eq!(
        l.set_health(0, 0, true, Some(20)),
        vec![LbEvent::QuorumUp { vs: 0 }]
    );
    assert_eq!(addrs(&l.table()), vec![("192.0.2.11".into(), 20)]);
}

#[test]
fn groups_expand_to_one_service_per_key() {
    let l = lb(
        "virtual_server_group web {\n 192.0.2.100-102 80\n fwmark 7\n }
         virtual_server group web {\n persistence_timeout 60\n persistence_granularity 255.255.255.0
           real_server 192.0.2.11 80 {\n }\n }",
        |_, _| true,
    );
    let t = l.table();
    assert_eq!(t.services.len(), 4);
    assert_eq!(
        t.services[3].key,
        ServiceKey::Fwmark {
            mark: 7,
            family: Family::V4
        }
    );
    let p = t.services[0].persistence.unwrap();
    assert_eq!((p.timeout.as_secs(), p.prefix_len), (60, 24));
}

#[test]
fn macs_reach_the_destinations() {
    let mut l = lb(SEED, |_, _| true);
    let a: IpAddr = "192.0.2.12".parse().unwrap();
    assert!(l.set_mac(a, Some([2, 0, 0, 0, 0, 12])));
    assert!(!l.set_mac(a, Some([2, 0, 0, 0, 0, 12])));
    l.set_device(0, Some("eth0".into()));
    let t = l.table();
    assert_eq!(t.services[0].device.as_deref(), Some("eth0"));
    assert_eq!(t.services[0].dests[1].mac, Some([2, 0, 0, 0, 0, 12]));
    assert_eq!(t.services[0].dests[0].mac, None);
}

#[test]
fn flag_3_and_the_sip_engine_reach_the_table() {
    let l = lb(
        "virtual_server 192.0.2.100 5060 {\n protocol UDP\n lb_algo sh\n flag-3\n sh-port\n persistence_timeout 60\n persistence_engine sip\n real_server 198.51.100.9 5060 { }\n}\n",
        |_, _| true,
    );
    let s = &l.table().services[0];
    assert!(
        s.flags.sched3 && s.flags.port && !s.flags.fallback,
        "{:?}",
        s.flags
    );
    assert_eq!(s.pe_name.as_deref(), Some("sip"));
    let plain = lb(
        "virtual_server 192.0.2.100 80 {\n real_server 198.51.100.9 80 { }\n}\n",
        |_, _| true,
    );
    let p = &plain.table().services[0];
    assert!(!p.flags.sched3);
    assert_eq!(p.pe_name, None);
}

#[test]
fn errors_name_the_line() {
    let mut c = load(
        "virtual_server 192.0.2.100 80 {\n persistence_engine sip_with_a_long_name\n real_server 198.51.100.9 80 { }\n}\nvirtual_server 192.0.2.101 {\n real_server 198.51.100.1 {\n }\n}\n",
    );
    // The loader refuses a real server of the other family at its line already; the
    // model can still hold one.
    c.virtual_servers[0].real_servers[0].addr = "2001:db8::1".parse().unwrap();
    let e = Lb::new(
        &c.virtual_servers,
        &c.virtual_server_groups,
        Sched::Rr,
        |_, _| true,
    )
    .unwrap_err();
    let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert!(
        text[0].starts_with("t.conf:2:2:") && text[0].contains("persistence_engine"),
        "{text:?}"
    );
    assert!(
        text[1].starts_with("t.conf:3:") && text[1].contains("address family"),
        "{text:?}"
    );
    assert!(
        text[2].starts_with("t.conf:5:") && text[2].contains("persistence_timeout"),
        "{text:?}"
    );
}

/// keepalived's `notify_fifo` / `lvs_notify_fifo` lines (check/ipwrapper.c's format).
#[test]
fn fifo_lines_in_keepalived_format() {
    let l = lb(
        "
virtual_server 192.0.2.15 80 {
    protocol TCP
    real_server 198.51.100.1 8080 {
        TCP_CHECK {
        }
    }
}
virtual_server 2001:db8::15 443 {
    protocol UDP
    real_server 2001:db8:1::1 443 {
        TCP_CHECK {
        }
    }
}
virtual_server fwmark 5 {
    real_server 198.51.100.2 80 {
        TCP_CHECK {
        }
    }
}
virtual_server_group WEB {
    192.0.2.20 80
}
virtual_server group WEB {
    protocol SCTP
    real_server 198.51.100.3 80 {
        TCP_CHECK {
        }
    }
}
",
        |_, _| true,
    );
    let rs_down = |vs, rs| l.fifo_line(&LbEvent::RealServerDown { vs, rs });
    assert_eq!(
        rs_down(0, 0),
        "RS [198.51.100.1]:tcp:8080 [192.0.2.15]:tcp:80 DOWN"
    );
    assert_eq!(
        l.fifo_line(&LbEvent::QuorumUp { vs: 0 }),
        "VS [192.0.2.15]:tcp:80 UP"
    );
    assert_eq!(
        l.fifo_line(&LbEvent::RealServerUp { vs: 1, rs: 0 }),
        "RS [2001:db8:1::1]:udp:443 [2001:db8::15]:udp:443 UP"
    );
    assert_eq!(
        l.fifo_line(&LbEvent::QuorumDown { vs: 1 }),
        "VS [2001:db8::15]:udp:443 DOWN"
    );
    assert_eq!(rs_down(2, 0), "RS [198.51.100.2]:none:80 FWM 5 DOWN");
    assert_eq!(l.fifo_line(&LbEvent::QuorumDown { vs: 2 }), "VS FWM 5 DOWN");
    assert_eq!(rs_down(3, 0), "RS [198.51.100.3]:sctp:80 [WEB]:0 DOWN");
    assert_eq!(l.fifo_line(&LbEvent::QuorumUp { vs: 3 }), "VS [WEB]:0 UP");
}
