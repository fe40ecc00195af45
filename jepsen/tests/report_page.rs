//! The report page in a real browser: headless Chromium (Debian's
//! `chromium`) opens index.html, and its DOM and a screenshot must show the
//! verdict and both plots, with the fault window shaded.
//!
//! Skipped with a message when no Chromium is installed (`apt-get install
//! chromium`); `OXETCD_JEPSEN_CHROMIUM` names another binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oxetcd_jepsen::check::{register, Validity};
use oxetcd_jepsen::history::{Call, FaultWindow, Op, Outcome};
use oxetcd_jepsen::nemesis;
use oxetcd_jepsen::report;
use oxetcd_jepsen::run::RunConfig;

const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
const WINDOW: (u32, u32) = (1000, 1600);

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("OXETCD_JEPSEN_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let paths = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&paths).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `page` with `action` (`--dump-dom` or
/// `--screenshot=...`); returns its stdout.
fn headless(browser: &Path, page: &Path, action: &str, profile: &Path) -> String {
    // A file, not a pipe: the DOM is bigger than a pipe's buffer.
    let out_path = profile.with_extension("stdout");
    let out = std::fs::File::create(&out_path).expect("chromium's stdout file");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
        .arg(action)
        .arg(format!("file://{}", page.display()))
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            assert!(status.success(), "chromium {action}: {status}");
            return std::fs::read_to_string(&out_path).expect("chromium's output");
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {action} did not finish in {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn op(process: u32, invoke_ms: u64, latency_ms: u64, outcome: Outcome, call: Call) -> Op {
    Op {
        process,
        invoke: invoke_ms * 1_000_000,
        complete: (invoke_ms + latency_ms) * 1_000_000,
        outcome,
        call,
        error: None,
    }
}

/// Ten seconds of register traffic by three clients; during the fault
/// (3-6 s) client 2's writes time out.
fn valid_history() -> (Vec<Op>, Vec<FaultWindow>) {
    let mut ops = Vec::new();
    for step in 0..200u64 {
        let t = step * 50;
        let value = step as i64;
        ops.push(op(
            0,
            t,
            5,
            Outcome::Ok,
            Call::Write {
                key: "k".into(),
                value,
            },
        ));
        ops.push(op(
            1,
            t + 10,
            5,
            Outcome::Ok,
            Call::Read {
                key: "k".into(),
                value: Some(value),
            },
        ));
        let faulty = (3000..6000).contains(&t);
        let key = "j".to_owned();
        ops.push(match faulty {
            true => op(
                2 + step as u32,
                t + 20,
                2000,
                Outcome::Info,
                Call::Write { key, value },
            ),
            false => op(2, t + 20, 8, Outcome::Ok, Call::Write { key, value }),
        });
    }
    let faults = vec![FaultWindow {
        kind: "partition".into(),
        target: "isolate: n1 | n2,n3".into(),
        start: 3_000_000_000,
        end: 6_000_000_000,
    }];
    (ops, faults)
}

fn config(out: &Path) -> RunConfig {
    RunConfig {
        server: "/usr/bin/etcd".into(),
        db: None,
        nodes: 3,
        workload: "register".into(),
        nemesis: vec!["partition".into()],
        time_limit_s: 10,
        seed: 42,
        concurrency: 3,
        rate: 60,
        op_timeout_ms: 2000,
        fault_interval_ms: nemesis::DEFAULT_INTERVAL_MS,
        fault_hold_ms: nemesis::DEFAULT_HOLD_MS,
        out: out.to_owned(),
        namespaces: true,
        progress: false,
        server_args: Vec::new(),
        server_env: Vec::new(),
        auth: None,
        compact_keep: oxetcd_jepsen::cluster::maintenance::KEEP,
    }
}

/// Writes the report of `ops` (checked) into a temp dir; returns the dir
/// and the page.
fn page(ops: &[Op], faults: &[FaultWindow], expect: Validity) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let verdicts = vec![register::check(ops, register::DEFAULT_BUDGET)];
    let validity = verdicts[0].validity;
    assert_eq!(validity, expect, "{verdicts:#?}");
    report::write(
        dir.path(),
        &config(dir.path()),
        ops,
        faults,
        &verdicts,
        validity,
    )
    .expect("writing the report");
    let page = dir.path().join("index.html");
    (dir, page)
}

/// Pixels of a screenshot as RGB triples, row by row.
fn screenshot(browser: &Path, page: &Path, dir: &Path) -> (u32, Vec<[u8; 3]>) {
    let shot = dir.join("shot.png");
    headless(
        browser,
        page,
        &format!("--screenshot={}", shot.display()),
        &dir.join("profile-shot"),
    );
    let decoder = png::Decoder::new(std::fs::File::open(&shot).expect("the screenshot"));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, pixels)
}

fn near(pixel: [u8; 3], colour: [u8; 3], tolerance: i32) -> bool {
    pixel
        .iter()
        .zip(colour)
        .all(|(a, b)| (*a as i32 - b as i32).abs() <= tolerance)
}

fn count(pixels: &[[u8; 3]], colour: [u8; 3], tolerance: i32) -> usize {
    pixels
        .iter()
        .filter(|p| near(**p, colour, tolerance))
        .count()
}

#[test]
fn a_valid_run_renders_its_verdict_and_both_plots_with_the_fault_shaded() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no chromium (apt-get install chromium)");
        return;
    };
    let (ops, faults) = valid_history();
    let (dir, page) = page(&ops, &faults, Validity::Valid);
    let dom = headless(
        &browser,
        &page,
        "--dump-dom",
        &dir.path().join("profile-dom"),
    );
    assert!(
        dom.contains(r#"<p id="validity" style="font-size:1.5em;color:#2a7">valid</p>"#),
        "{dom:.2000}"
    );
    assert_eq!(dom.matches("<svg").count(), 2, "two plots");
    assert!(dom.contains("latency") && dom.contains("throughput"));
    assert!(dom.contains("<td>isolate: n1 | n2,n3</td>"));
    assert!(dom.contains("linearizable-register: Valid"));

    let (width, pixels) = screenshot(&browser, &page, dir.path());
    assert_eq!(width, WINDOW.0);
    // The verdict in green (#2a7) near the top.
    let top = &pixels[..(200 * width) as usize];
    assert!(count(top, [0x22, 0xaa, 0x77], 30) > 20, "no green verdict");
    // The fault window: the fault colour (255, 170, 120) at 35 % on white,
    // over 3 s of a 10 s axis in two 900 px wide plots.
    let shaded = count(&pixels, [255, 225, 208], 6);
    assert!(shaded > 20_000, "only {shaded} shaded pixels");
    // Operations drawn: the ok colour (40, 140, 60) and the info colour
    // (230, 150, 0) of the timed-out writes.
    assert!(count(&pixels, [40, 140, 60], 12) > 300, "no ok points");
    assert!(count(&pixels, [230, 150, 0], 12) > 30, "no info points");
}

#[test]
fn an_invalid_run_shows_the_verdict_and_its_counter_example() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no chromium (apt-get install chromium)");
        return;
    };
    let (mut ops, faults) = valid_history();
    // A stale read after the last write.
    ops.push(op(
        1,
        20_000,
        5,
        Outcome::Ok,
        Call::Read {
            key: "k".into(),
            value: Some(3),
        },
    ));
    let (dir, page) = page(&ops, &faults, Validity::Invalid);
    let dom = headless(
        &browser,
        &page,
        "--dump-dom",
        &dir.path().join("profile-dom"),
    );
    assert!(dom.contains(">INVALID</p>"), "{dom:.2000}");
    assert!(dom.contains("<b>nonlinearizable</b>: key k"));
    let (width, pixels) = screenshot(&browser, &page, dir.path());
    let top = &pixels[..(200 * width) as usize];
    assert!(count(top, [0xcc, 0x22, 0x22], 30) > 20, "no red verdict");
    assert_eq!(count(top, [0x22, 0xaa, 0x77], 30), 0);
}
