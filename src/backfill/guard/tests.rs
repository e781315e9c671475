//! The control law on recorded sample series.
use super::*;

fn fed(g: &mut Guard, t0: Instant, secs: f64, calls_per_s: f64, ms_each: f64) {
    // Cumulative statement samples every 250 ms from t0 for `secs`.
    let (mut calls, mut ms) = g.cumulative.back().map_or((0.0, 0.0), |b| (b.1, b.2));
    let start = g.cumulative.back().map_or(t0, |b| b.0);
    let n = (secs * 4.0) as u32;
    for i in 1..=n {
        calls += calls_per_s / 4.0;
        ms += calls_per_s / 4.0 * ms_each;
        g.cumulative
            .push_back((start + Duration::from_millis(250 * u64::from(i)), calls, ms));
    }
}

#[test]
fn yields_when_the_app_slows_and_clears_when_it_recovers() {
    let mut g = Guard::new("public.pgbench_accounts", 1.25);
    assert_eq!(g.pattern, "\\mpgbench_accounts\\M");
    let t0 = g.started;
    fed(&mut g, t0, 2.0, 400.0, 0.5);
    let at = g.cumulative.back().unwrap().0;
    // Baseline taken; the application is there, so the backfill starts slowly.
    match g.advise(at, Duration::ZERO) {
        Advice::Yield { pause, reason } => {
            let start = DutyCycle::free().at_most(START_DUTY, at).pause();
            assert!((pause - start).abs() < 1e-9, "{pause}");
            assert!(reason.contains("easing off"), "{reason}");
        }
        other => panic!("must start slowly: {other:?}"),
    }
    assert_eq!(g.baseline().map(|b| b.source), Some(Source::Statements));
    fed(&mut g, t0, 1.0, 400.0, 0.75);
    let at = g.cumulative.back().unwrap().0;
    match g.advise(at, Duration::ZERO) {
        Advice::Yield { pause, reason } => {
            assert!(pause > 0.0);
            assert!(
                reason.starts_with("yielding: app latency 1.50× baseline > 1.25×"),
                "{reason}"
            );
        }
        other => panic!("must yield: {other:?}"),
    }
    // Back within budget it speeds up window by window, and clears within two minutes.
    for _ in 0..480 {
        fed(&mut g, t0, 0.25, 400.0, 0.5);
        let at = g.cumulative.back().unwrap().0;
        g.advise(at, Duration::ZERO);
    }
    let at = g.cumulative.back().unwrap().0;
    assert_eq!(g.advise(at, Duration::ZERO), Advice::Clear);
}

#[test]
fn holds_for_a_baseline_and_starts_at_once_without_traffic() {
    let mut g = Guard::new("t", 1.25);
    let t0 = g.started;
    assert!(matches!(g.advise(t0, Duration::ZERO), Advice::Hold(_)));
    // Idle: no calls, no sampled backends.
    g.samples
        .push_back((t0 + Duration::from_millis(250), 0.0, 0.0));
    assert_eq!(
        g.advise(t0 + Duration::from_millis(250), Duration::ZERO),
        Advice::Clear
    );
    assert_eq!(g.baseline(), None);
    assert!(
        g.idle_at(t0 + Duration::from_millis(250)),
        "idle: extra workers may run"
    );
    // One active application backend: no longer idle, and not again until the application
    // has stayed away for a while.
    let busy = t0 + Duration::from_millis(500);
    g.samples.push_back((busy, 3.0, 1.0));
    g.advise(busy, Duration::ZERO);
    assert!(!g.idle_at(busy));
    let later = busy + ACTIVITY_WINDOW * 3;
    g.samples.push_back((later, 0.0, 0.0));
    assert!(!g.idle_at(later), "traffic seen 6 s ago");
    let much_later = busy + IDLE_AFTER_TRAFFIC + ACTIVITY_WINDOW * 2;
    g.samples.clear();
    g.samples.push_back((much_later, 0.0, 0.0));
    g.advise(much_later, Duration::ZERO);
    assert!(g.idle_at(much_later));
}

#[test]
fn statement_traffic_alone_holds_for_the_baseline() {
    let mut g = Guard::new("t", 1.25);
    let t0 = g.started;
    g.statements = Some(true);
    g.ids = vec![1];
    g.samples.push_back((t0, 0.0, 0.0));
    g.cumulative.push_back((t0, 100.0, 50.0));
    g.cumulative
        .push_back((t0 + Duration::from_millis(50), 110.0, 55.0));
    assert!(matches!(
        g.advise(t0 + Duration::from_millis(50), Duration::ZERO),
        Advice::Hold(_)
    ));
}

#[test]
fn the_worse_signal_counts_and_is_named() {
    let mut g = Guard::new("t", 1.25);
    let t0 = g.started;
    let act = |g: &mut Guard, from: f64, secs: f64, age: f64| {
        for i in 0..(secs * 4.0) as u64 {
            let at = t0 + Duration::from_secs_f64(from) + Duration::from_millis(250 * i);
            g.samples.push_back((at, age, 1.0));
        }
    };
    fed(&mut g, t0, 2.0, 400.0, 0.5);
    act(&mut g, 0.0, 2.25, 3.0);
    let at = g.cumulative.back().unwrap().0;
    assert!(
        matches!(g.advise(at, Duration::from_secs(5)), Advice::Yield { .. }),
        "a slow start"
    );
    assert_eq!(g.baselines.len(), 2, "{:?}", g.baselines);
    // Statements as fast as before, but backends twice as old (commits waiting).
    fed(&mut g, t0, 2.0, 400.0, 0.5);
    act(&mut g, 2.25, 2.0, 6.0);
    let at = g.cumulative.back().unwrap().0;
    match g.advise(at, Duration::ZERO) {
        Advice::Yield { reason, .. } => {
            assert!(reason.contains("pg_stat_activity sampling"), "{reason}")
        }
        other => panic!("must yield: {other:?}"),
    }
}

#[test]
fn at_the_maximum_for_long_it_remeasures_the_baseline_in_a_quiet_window() {
    let mut g = Guard::new("t", 1.25);
    let t0 = g.started;
    fed(&mut g, t0, 2.0, 400.0, 0.5);
    let at = g.cumulative.back().unwrap().0;
    g.advise(at, Duration::ZERO);
    // The app got slower on its own (3×) and stays so: the guard climbs to the maximum,
    // then holds for a quiet window and takes the new baseline.
    let mut held = false;
    for _ in 0..200 {
        fed(&mut g, t0, 0.25, 400.0, 1.5);
        let at = g.cumulative.back().unwrap().0;
        if let Advice::Hold(r) = g.advise(at, Duration::ZERO) {
            assert!(r.contains("re-measuring"), "{r}");
            held = true;
            break;
        }
    }
    assert!(held, "must re-measure");
    fed(&mut g, t0, 0.25, 400.0, 1.5);
    let at = g.cumulative.back().unwrap().0;
    g.advise(at, Duration::from_secs(3));
    assert!((g.baseline().unwrap().ms - 1.5).abs() < 1e-9);
    // The duty is kept (no burst after the quiet window); the duty it was cut at, measured
    // against the old baseline, is forgotten.
    assert!(g.cycle.at_minimum(), "{:?}", g.cycle);
    assert_eq!(g.cycle.ceiling(), None);
}

/// One recorded reading at `at`: the application's statements as fast as at the baseline
/// (400 calls/s of 0.5 ms), a probe commit of `commit_ms`, `waits` sessions waiting on the
/// backfill for up to `longest_ms`, and the WAL position `wal` (bytes).
fn reading(g: &mut Guard, at: Instant, commit_ms: f64, waits: (f64, f64), wal: f64) -> Advice {
    let (calls, ms) = g.cumulative.back().map_or((0.0, 0.0), |b| (b.1, b.2));
    g.cumulative.push_back((at, calls + 100.0, ms + 50.0));
    g.tail.push_commit(at, commit_ms);
    g.tail.push_waits(at, waits.0, waits.1);
    g.tail.push_wal(at, wal);
    g.advise(at, Duration::ZERO)
}

/// A guard past its baseline (statements 0.5 ms, commits 1 ms) at `t0 + 2 s`, with a WAL
/// maximum of `wal_limit` MiB/s.
fn started(wal_limit: f64) -> (Guard, Instant) {
    let mut g = Guard::new("t", 1.25);
    g.tail = Tail::new(wal_limit);
    let at = quiet_baseline(&mut g, 1.0, &[]);
    assert_eq!(g.tail.commit_baseline(), Some(1.0));
    (g, at)
}

/// Two quiet seconds from the guard's start (statements of 0.5 ms, probe commits of
/// `commit_ms`, these open-transaction `ages` sampled each reading), then the baseline; returns
/// its time.
fn quiet_baseline(g: &mut Guard, commit_ms: f64, ages: &[f64]) -> Instant {
    let t0 = g.started;
    for i in 1..=8u64 {
        let at = t0 + Duration::from_millis(250 * i);
        let (calls, ms) = g.cumulative.back().map_or((0.0, 0.0), |b| (b.1, b.2));
        g.cumulative.push_back((at, calls + 100.0, ms + 50.0));
        g.tail.push_commit(at, commit_ms);
        g.tail.push_wal(at, 0.0);
        g.xact_ages.extend(ages.iter().map(|a| (at, *a)));
        g.read_transaction_ms();
    }
    let at = t0 + Duration::from_secs(2);
    g.advise(at, Duration::from_secs(5));
    at
}

fn ms(t: Instant, i: u64) -> Instant {
    t + Duration::from_millis(250 * i)
}

#[test]
fn a_commit_spike_yields_naming_commit_latency_and_clears_after_it() {
    let (mut g, t) = started(0.0);
    // Commits take 3 ms in one reading out of four: the p95 triples.
    let mut reason = None;
    for i in 1..=16 {
        let c = if i % 4 == 0 { 3.0 } else { 1.0 };
        if let Advice::Yield { reason: r, .. } = reading(&mut g, ms(t, i), c, (0.0, 0.0), 0.0) {
            reason = Some(r);
        }
    }
    let reason = reason.expect("must yield");
    assert!(
        reason.starts_with(
            "yielding: commit latency 3.00× baseline > 1.25× (p95 3.00 ms vs 1.00 ms)"
        ),
        "{reason}"
    );
    let high = g.pause();
    assert!(high >= 1.0, "{high}");
    // Back within budget it speeds up window by window: free again within two minutes.
    for i in 17..=480 {
        reading(&mut g, ms(t, i), 1.0, (0.0, 0.0), 0.0);
    }
    assert_eq!(
        reading(&mut g, ms(t, 481), 1.0, (0.0, 0.0), 0.0),
        Advice::Clear
    );
}

#[test]
fn a_lock_wait_burst_yields_naming_it() {
    let (mut g, t) = started(0.0);
    for i in 1..=8 {
        reading(&mut g, ms(t, i), 1.0, (0.0, 0.0), 0.0);
    }
    let before = g.pause();
    let advice = reading(&mut g, ms(t, 9), 1.0, (2.0, 40.0), 0.0);
    match advice {
        Advice::Yield { reason, pause } => {
            assert!(pause > before, "{pause} > {before}");
            assert!(
                reason.starts_with("yielding: lock waits on the backfill 41.00× baseline > 1.25×"),
                "{reason}"
            );
            assert!(reason.contains("2 session(s), longest 40 ms"), "{reason}");
        }
        other => panic!("must yield: {other:?}"),
    }
    // The burst is over: the pause never rises again, and eases off once a whole window has
    // been read without it.
    let cut = g.pause();
    let mut last = cut;
    for i in 10..=40 {
        reading(&mut g, ms(t, i), 1.0, (0.0, 0.0), 0.0);
        assert!(g.pause() <= last);
        last = g.pause();
    }
    assert!(last < cut, "{last} < {cut}");
}

#[test]
fn a_wal_surge_over_the_maximum_yields_naming_the_wal_rate() {
    let (mut g, t) = started(8.0);
    let mib = 1_048_576.0;
    let mut reason = None;
    // 32 MiB/s (8 MiB each reading) against a maximum of 8 MiB/s.
    for i in 1..=12u64 {
        if let Advice::Yield { reason: r, .. } =
            reading(&mut g, ms(t, i), 1.0, (0.0, 0.0), i as f64 * 8.0 * mib)
        {
            reason = Some(r);
        }
    }
    let reason = reason.expect("must yield");
    assert!(
        reason.starts_with("yielding: WAL rate 5.00× budget > 1.25× (32.0 MiB/s vs max 8 MiB/s)"),
        "{reason}"
    );
    assert_eq!(g.last().map(|j| j.signal), Some("WAL rate"));
}

#[test]
fn a_quiet_server_reads_clear_and_protects_nobody() {
    let (mut g, t) = started(8.0);
    for i in 1..=200 {
        let c = 1.0 + (i % 3) as f64 * 0.05;
        reading(&mut g, ms(t, i), c, (0.0, 0.0), i as f64 * 1000.0);
    }
    assert_eq!(
        reading(&mut g, ms(t, 201), 1.0, (0.0, 0.0), 201_000.0),
        Advice::Clear
    );
    // No application at all: a commit spike (the backfill's own WAL) holds nothing back.
    let mut g = Guard::new("t", 1.25);
    let t0 = g.started;
    g.samples.push_back((t0, 0.0, 0.0));
    assert_eq!(g.advise(t0, Duration::ZERO), Advice::Clear);
    for i in 1..=20 {
        let at = ms(t0, i);
        g.samples.push_back((at, 0.0, 0.0));
        g.tail.push_commit(at, if i > 8 { 9.0 } else { 1.0 });
        assert_eq!(g.advise(at, Duration::ZERO), Advice::Clear);
    }
}

#[test]
fn a_quiet_window_inside_a_write_back_stall_does_not_raise_the_baselines() {
    let (mut g, t) = started(0.0);
    // No chunk for 3 s, but the server is still writing back: commits take 5 ms and the
    // application's statements 2 ms.
    for i in 1..=12u64 {
        let at = ms(t, i);
        let (calls, total) = g.cumulative.back().map_or((0.0, 0.0), |b| (b.1, b.2));
        g.cumulative.push_back((at, calls + 100.0, total + 200.0));
        g.tail.push_commit(at, 5.0);
        g.advise(at, Duration::from_secs(3));
    }
    assert_eq!(g.tail.commit_baseline(), Some(1.0));
    assert!(
        (g.baseline().unwrap().ms - 0.5).abs() < 1e-9,
        "{:?}",
        g.baseline()
    );
    // The stall is judged against the quiet baseline.
    let advice = reading(&mut g, ms(t, 13), 5.0, (0.0, 0.0), 0.0);
    assert!(
        matches!(&advice, Advice::Yield { reason, .. } if reason.contains("> 1.25×")),
        "{advice:?}"
    );
    // Past the horizon the earlier quiet windows no longer count: a slower application
    // becomes the baseline.
    let later = t + BASELINE_HORIZON + Duration::from_secs(5);
    for i in 1..=12u64 {
        let at = ms(later, i);
        let (calls, total) = g.cumulative.back().map_or((0.0, 0.0), |b| (b.1, b.2));
        g.cumulative.push_back((at, calls + 100.0, total + 100.0));
        g.tail.push_commit(at, 2.0);
        g.advise(at, Duration::from_secs(3));
    }
    assert_eq!(g.tail.commit_baseline(), Some(2.0));
    assert!(
        (g.baseline().unwrap().ms - 1.0).abs() < 1e-9,
        "{:?}",
        g.baseline()
    );
}

#[test]
fn a_commit_baseline_taken_at_a_slow_moment_comes_down_to_a_faster_window() {
    let (mut g, t) = started(0.0);
    assert_eq!(g.tail.commit_baseline(), Some(1.0));
    // Chunks running, but the probe commits in 0.6 ms: the start was a slow moment.
    for i in 1..=20 {
        reading(&mut g, ms(t, i), 0.6, (0.0, 0.0), 0.0);
    }
    assert_eq!(g.tail.commit_baseline(), Some(0.6));
    // A commit spike is now judged against it.
    let mut reason = None;
    for i in 21..=28 {
        if let Advice::Yield { reason: r, .. } = reading(&mut g, ms(t, i), 1.5, (0.0, 0.0), 0.0) {
            reason = Some(r);
        }
    }
    let reason = reason.expect("must yield");
    assert!(reason.contains("vs 0.60 ms"), "{reason}");
}

#[test]
fn a_commit_rise_counts_on_the_applications_transaction_time() {
    // Two ages a reading: 16 are too few for a transaction time.
    let mut few = Guard::new("t", 1.25);
    quiet_baseline(&mut few, 0.5, &[0.8, 1.2]);
    assert_eq!(few.app_transaction_ms(), None);
    // Quiet: 0.5-ms probe commits; the application's open transactions sampled at a median
    // age of 1 ms (2-ms transactions, caught halfway through in the median).
    let mut g = Guard::new("t", 1.25);
    let at = quiet_baseline(&mut g, 0.5, &[0.6, 0.8, 1.0, 1.2, 1.4]);
    assert_eq!(g.app_transaction_ms(), Some(2.0));
    let start = g.pause();
    // The probe commits 0.3 ms slower: 1.6× its own baseline, 1.15× the application's 2 ms.
    for i in 1..=16 {
        reading(&mut g, ms(at, i), 0.8, (0.0, 0.0), 0.0);
    }
    let judged = g.last().cloned().expect("a reading");
    assert_eq!(judged.signal, "commit latency");
    assert!((judged.ratio - 1.15).abs() < 1e-9, "{judged:?}");
    assert!(g.pause() <= start, "within budget: no slowing down");
    // 1.5 ms slower is 1.75× for the application: it yields.
    for i in 17..=32 {
        reading(&mut g, ms(at, i), 2.0, (0.0, 0.0), 0.0);
    }
    assert!(g.last().is_some_and(|j| j.ratio > 1.25), "{:?}", g.last());
    assert!(g.pause() > start);
}
