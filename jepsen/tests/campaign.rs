//! `oxetcd-jepsen campaign` as a process, on real oxetcd clusters, kept
//! short (about 13 s in all here):
//!
//! - a plan of three runs (a valid one; one refused before it starts, a
//!   partition without network namespaces; one of a broken oxetcd whose
//!   read-only txns are served stale, the failpoint
//!   `OXETCD_FAILPOINT_STALE_READ_ONLY_TXN`) makes every run, the error not
//!   stopping the campaign; the index lists each with its verdict (the
//!   anomaly named, the error given), every link in it leads to a file or
//!   directory that exists, and the exit status is 1;
//! - Ctrl-C during a run stops its members and leaves an index that says
//!   the run was interrupted and the next one never started.

mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::{members_of, oxetcd};

/// One cluster at a time: two would share the machine's cores and time
/// out.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

fn campaign(plan: &str, dir: &Path) -> Command {
    let plan_path = dir.join("plan");
    std::fs::write(&plan_path, plan).expect("write the plan");
    let mut command = Command::new(env!("CARGO_BIN_EXE_oxetcd-jepsen"));
    command
        .arg("campaign")
        .arg("--plan")
        .arg(&plan_path)
        .arg("--out")
        .arg(dir.join("campaign"))
        .arg("--server")
        .arg(oxetcd())
        .arg("--quiet");
    command
}

/// The index's row for run `n` (from 1), as HTML.
fn row(page: &str, n: usize) -> &str {
    let start = page
        .find(&format!("<tr id=\"run-{n}\""))
        .unwrap_or_else(|| panic!("no row for run {n}: {page}"));
    let end = page[start..].find("</tr>").expect("the row's end");
    &page[start..start + end]
}

fn verdict(row: &str) -> &str {
    let start = row.find("class=\"verdict\">").expect("a verdict cell") + 16;
    let end = row[start..].find('<').expect("the verdict's end");
    &row[start..start + end]
}

/// Every `href` and `src` of a page.
fn links(page: &str) -> Vec<&str> {
    let mut links = Vec::new();
    for attribute in ["href=\"", "src=\""] {
        for (at, _) in page.match_indices(attribute) {
            let rest = &page[at + attribute.len()..];
            links.push(&rest[..rest.find('"').expect("a closed attribute")]);
        }
    }
    links
}

#[test]
fn a_campaign_indexes_every_run_with_its_verdict() {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = "\
# valid, with a kill or two; refused before it starts; a broken oxetcd
--workload register --nemesis kill --time-limit 5 --seed 1 --rate 100 --fault-interval-ms 500-1000 --fault-hold-ms 1000-2000
--workload set --nemesis partition --no-namespaces --time-limit 2 --seed 2 --server /nonexistent/oxetcd
--workload register --nemesis none --time-limit 5 --seed 23 --server-env OXETCD_FAILPOINT_STALE_READ_ONLY_TXN=1
";
    let started = Instant::now();
    let Output { status, stdout, .. } = campaign(plan, dir.path())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the campaign");
    let stdout = String::from_utf8_lossy(&stdout);
    eprintln!("{stdout}campaign took {:?}", started.elapsed());
    let out = dir.path().join("campaign");
    let page = std::fs::read_to_string(out.join("index.html")).expect("the index");
    let keep = || format!("{}; kept in {}", page, dir.path().display());
    assert_eq!(status.code(), Some(1), "an invalid run: exit 1; {}", keep());

    let valid = row(&page, 1);
    assert_eq!(verdict(valid), "valid", "{}", keep());
    assert!(valid.contains("01-register-1/index.html"), "{valid}");
    let refused = row(&page, 2);
    assert_eq!(verdict(refused), "error");
    assert!(
        refused.contains("the partition nemesis needs network namespaces"),
        "its error: {refused}"
    );
    assert!(
        refused.contains("title=\"/nonexistent/oxetcd\""),
        "its server"
    );
    let broken = row(&page, 3);
    assert_eq!(verdict(broken), "invalid", "{}", keep());
    assert!(
        broken.contains("linearizable-register: nonlinearizable"),
        "the anomaly named: {broken}"
    );
    assert!(page.contains("id=\"tally\">1 valid, 1 invalid, 0 unknown, 1 error, 0 not run"));
    assert!(page.contains("id=\"progress\">finished"));
    assert!(!page.contains("refresh"), "a finished index stays put");

    // Both runs link their report page and its two plots.
    for run in ["01-register-1", "03-register-23"] {
        for file in ["index.html", "latency.svg", "throughput.svg"] {
            let link = format!("href=\"{run}/{file}\"");
            assert!(page.contains(&link), "{link} missing");
        }
    }
    let links = links(&page);
    assert!(links.len() >= 10, "{links:?}");
    for link in links {
        assert!(out.join(link).exists(), "{link} leads nowhere");
    }
    let report = std::fs::read_to_string(out.join("03-register-23/index.html")).unwrap();
    assert!(report.contains("INVALID"), "the run's own page agrees");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("campaign.json")).unwrap()).unwrap();
    assert_eq!(json["tally"]["invalid"], 1);
    assert!(json["runs"][0]["faults"].as_u64() >= Some(1), "no kill");
    for run in json["runs"].as_array().unwrap() {
        eprintln!("{}: {} s", run["entry"]["dir"], run["took_s"]);
    }
    assert_eq!(json["runs"][2]["state"], "done");
    assert_eq!(json["runs"][2]["validity"], "invalid");
    for n in ["[1/3]", "[2/3]", "[3/3]"] {
        assert!(stdout.contains(n), "{n} not reported");
    }
}

/// Waits for `condition`, up to a minute.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn interrupt(child: &Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(sent.expect("kill").success());
}

#[test]
fn an_interrupted_campaign_keeps_its_index() {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = "\
--workload register --nemesis none --time-limit 60 --seed 7
--workload set --nemesis none --time-limit 60 --seed 8
";
    let mut child = campaign(plan, dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the campaign");
    let first = dir.path().join("campaign/01-register-7");
    wait_for("the first run's members start", || {
        members_of(&first).len() == 3
    });
    interrupt(&child);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the campaign") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the campaign did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(members_of(&first), Vec::<String>::new(), "members left");
    let page = std::fs::read_to_string(dir.path().join("campaign/index.html")).unwrap();
    assert_eq!(verdict(row(&page, 1)), "interrupted", "{page}");
    assert_eq!(verdict(row(&page, 2)), "pending", "{page}");
    assert!(page.contains("id=\"progress\">interrupted"));
    assert!(page.contains("0 valid, 0 invalid, 0 unknown, 0 error, 2 not run"));
}
