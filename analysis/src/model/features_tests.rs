use super::*;

fn ev(release: &str, seen: &[(Proof, Seen)]) -> Evidence {
    Evidence {
        release: release.into(),
        seen: seen.iter().map(|(p, s)| (p.key(), s.clone())).collect(),
    }
}

fn present(w: &str) -> Seen {
    Seen::Present(w.into())
}
fn absent(w: &str) -> Seen {
    Seen::Absent(w.into())
}

fn get<'a>(d: &'a [Decided], id: &str) -> &'a Decided {
    d.iter().find(|x| x.id == id).unwrap()
}

const IN_RX: Proof = Proof::Member("softnet_data", "in_net_rx_action");
const IN_THR: Proof = Proof::Member("softnet_data", "in_napi_threaded_poll");

#[test]
fn version_alone_matches_the_mainline_rules() {
    let f = Features::for_release("6.1.0-56-amd64");
    assert!(!f.f1_in_net_rx_action && f.f4_ksoftirqd_deferral && !f.f5_csd_tracepoints);
    assert!(!f.f6_defer_kick_backlog && !f.f7_raise_irqoff);
    let f = Features::for_release("6.12.118+deb13-amd64");
    assert!(f.f1_in_net_rx_action && f.f6_defer_kick_backlog && !f.f7_raise_irqoff);
    let f = Features::for_release("6.18.44");
    assert!(f.f7_raise_irqoff && !f.f4_ksoftirqd_deferral);
    let d = decide(&ev("6.12.0", &[]));
    assert!(d
        .iter()
        .all(|x| !x.from_evidence && x.evidence.starts_with("by version")));
    // An off feature says its rule did not hold (status once read "F4 off … (mainline < 6.5)").
    let f4 = d.iter().find(|x| x.id == "F4").unwrap();
    assert!(
        !f4.on && f4.evidence.contains("(mainline < 6.5: no)"),
        "{}",
        f4.evidence
    );
    let f6 = d.iter().find(|x| x.id == "F6").unwrap();
    assert!(
        f6.on && f6.evidence.contains("(mainline >= 6.10: yes)"),
        "{}",
        f6.evidence
    );
}

#[test]
fn f1_from_the_btf_member_not_the_version() {
    let d = decide(&ev("6.1.0", &[(IN_RX, present("BTF has it"))]));
    assert!(get(&d, "F1").on && get(&d, "F1").from_evidence);
    let d = decide(&ev("6.12.0", &[(IN_RX, absent("BTF lacks it"))]));
    assert!(!get(&d, "F1").on);
}

#[test]
fn f2_needs_both_flags() {
    let d = decide(&ev(
        "6.1.0",
        &[(IN_THR, present("x")), (IN_RX, present("y"))],
    ));
    assert!(get(&d, "F2").on);
    let d = decide(&ev(
        "6.1.0",
        &[(IN_THR, present("x")), (IN_RX, absent("y"))],
    ));
    assert!(!get(&d, "F2").on);
    let d = decide(&ev(
        "6.12.0",
        &[(IN_THR, absent("no in_napi_threaded_poll"))],
    ));
    assert!(!get(&d, "F2").on);
    assert_eq!(get(&d, "F2").evidence, "no in_napi_threaded_poll");
}

#[test]
fn f4_symbol_proves_presence_absence_falls_to_version() {
    let p = Proof::Func("ksoftirqd_running");
    let d = decide(&ev("6.12.0", &[(p, present("kallsyms"))]));
    assert!(get(&d, "F4").on);
    // Absent may be inlined: the version decides, and says so.
    let d = decide(&ev("6.1.0", &[(p, absent("not in kallsyms"))]));
    assert!(get(&d, "F4").on && !get(&d, "F4").from_evidence);
    assert!(get(&d, "F4").evidence.contains("not in kallsyms"));
}

#[test]
fn f5_from_the_tracepoint() {
    let p = Proof::Tracepoint("csd", "csd_queue_cpu");
    let d = decide(&ev("6.1.0", &[(p, present("tracefs"))]));
    assert!(get(&d, "F5").on);
    let d = decide(&ev("6.12.0", &[(p, absent("no events/csd/csd_queue_cpu"))]));
    assert!(!get(&d, "F5").on);
}

#[test]
fn f6_absent_on_a_6_6_backport_style_kernel() {
    let p = Proof::Func("kick_defer_list_purge");
    // 6.6.y backport: the patch's version rule would say off, a newer string on.
    let d = decide(&ev("6.12.0", &[(p, absent("not in kallsyms"))]));
    assert!(!get(&d, "F6").on && get(&d, "F6").from_evidence);
    let d = decide(&ev("6.6.30", &[(p, present("kallsyms"))]));
    assert!(get(&d, "F6").on);
}

#[test]
fn f7_from_a_changelog_backport_else_by_version() {
    let p = Proof::Changelog("net: Handle napi_schedule() calls from non-interrupt");
    let d = decide(&ev(
        "6.12.118+deb13-amd64",
        &[(p, present("changelog.Debian"))],
    ));
    assert!(get(&d, "F7").on && get(&d, "F7").from_evidence);
    let d = decide(&ev("6.12.118+deb13-amd64", &[(p, absent("no line"))]));
    assert!(!get(&d, "F7").on);
    let f7 = get(&d, "F7");
    assert!(f7.evidence.starts_with("by version") && f7.evidence.contains("no symbol or BTF"));
}

#[test]
fn recorded_features_win_over_the_release() {
    let mut m = TraceMeta::default();
    m.set("kernel_release", "6.12.118+deb13-amd64");
    assert!(!Features::from_meta(&m).f7_raise_irqoff);
    let p = Proof::Changelog("net: Handle napi_schedule() calls from non-interrupt");
    let d = decide(&ev("6.12.118+deb13-amd64", &[(p, present("changelog"))]));
    m.set(META_KEY, serde_json::to_string(&d).unwrap());
    assert!(Features::from_meta(&m).f7_raise_irqoff);
}

#[test]
fn every_row_sets_its_own_field() {
    // Flipping one decided row flips exactly that field of Features.
    let base = decide(&ev("6.18.0", &[]));
    let f0 = Features::from_decided(&base);
    for i in 0..base.len() {
        let mut d = base.clone();
        d[i].on = !d[i].on;
        let f = Features::from_decided(&d);
        assert_ne!(f, f0, "{} sets nothing", d[i].id);
        let mut back = d.clone();
        back[i].on = !back[i].on;
        assert_eq!(Features::from_decided(&back), f0);
    }
}

proptest::proptest! {
    /// Whatever the release, a deciding proof's result is what counts.
    #[test]
    fn evidence_beats_any_release(major in 5u32..8, minor in 0u32..20, on in proptest::bool::ANY) {
        let release = format!("{major}.{minor}.0");
        let s = if on { present("p") } else { absent("a") };
        let d = decide(&ev(&release, &[(IN_RX, s.clone()), (IN_THR, s)]));
        proptest::prop_assert_eq!(get(&d, "F1").on, on);
        proptest::prop_assert_eq!(get(&d, "F2").on, on);
    }
}
