//! A SIGHUP storm under 10 ms adverts: a hundred reloads on both routers cost no probe
//! and no transition. Alone in its test binary: Master_Down_Interval is 36 ms here, so
//! the CPU of sibling tests running beside it (cargo runs a binary's tests in parallel)
//! could delay a busy router's adverts past it and fail it for reasons of the machine,
//! not of vipd (seen once in CI with the other ops tests beside it).

mod common;

use common::{Cluster, Spec};
use std::time::Duration;
use vipd_netns::{ProbeOptions, Prober, Signal};

fn fast() -> Spec {
    Spec {
        advert_int: "0.01",
        ..Spec::v3()
    }
}

#[test]
fn a_hundred_sighups_under_10ms_adverts_cost_nothing() {
    let spec = fast();
    let Some(mut c) = Cluster::new(2, "hup") else {
        return;
    };
    let vip = spec.vip();
    c.start_vipd(1, &spec.config(200));
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    std::thread::sleep(Duration::from_millis(300));
    let before = (
        c.instance(1)["transitions"].clone(),
        c.instance(2)["transitions"].clone(),
    );
    let prober = Prober::start(
        c.lan.client(),
        vip,
        ProbeOptions::every(Duration::from_millis(1)),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..100 {
        c.signal(1, Signal::SIGHUP);
        c.signal(2, Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(15));
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = prober.stop();
    // Every request answered: no moment without the VIP. (Gaps between replies are not
    // the measure: a prober thread that the loaded test machine does not schedule for
    // 10 ms makes one too; they are printed for context.)
    let lost = report.lost();
    assert!(
        lost.is_empty() && report.send_errors == 0 && report.sent > 500,
        "{} of {} requests unanswered ({:?}...), {} send errors; gaps over 10 ms: {:?}\n{}",
        lost.len(),
        report.sent,
        &lost[..lost.len().min(10)],
        report.send_errors,
        report.outages(Duration::from_millis(10)),
        c.logs()
    );
    assert_eq!(
        (
            c.instance(1)["transitions"].clone(),
            c.instance(2)["transitions"].clone()
        ),
        before
    );
    assert_eq!(
        c.instance(2)["drops"].as_array().unwrap().len(),
        0,
        "{}",
        c.instance(2)
    );
    assert!(c.log(1).contains("reloaded"), "{}", c.log(1));
}
