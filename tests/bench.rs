//! `herald bench` end to end, at toy sizes: it spawns its own server, drives it, and its
//! correctness checks pass. Nothing here asserts a speed.

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("bench")
        .args(args)
        .args(["--spawn", "--json", "--quiet"])
        .output()
        .expect("run herald bench");
    assert!(
        out.status.success(),
        "herald bench {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn checks_pass(report: &Value) {
    let checks = report["checks"].as_array().expect("checks");
    assert!(!checks.is_empty());
    for c in checks {
        assert_eq!(c["ok"], Value::Bool(true), "{c}");
    }
}

#[test]
fn failures_end_as_planned() {
    let r = bench(&[
        "failures",
        "--jobs",
        "40",
        "--call-timeout",
        "300ms",
        "--retry-delay",
        "10ms",
        "--seed",
        "7",
    ]);
    checks_pass(&r);
    assert_eq!(r["results"]["accepted"], 40);
    assert_eq!(r["results"]["mismatches"], 0);
    let planned = &r["results"]["expected"];
    let ended = &r["results"]["ended"];
    for state in ["succeeded", "failed"] {
        assert_eq!(
            planned[state].as_u64().unwrap_or(0),
            ended[state].as_u64().unwrap_or(0),
            "{state}: planned {planned} ended {ended}"
        );
    }
    let replies = &r["results"]["replies"];
    let calls: u64 = ["ok", "error_500", "too_late", "dropped"]
        .iter()
        .map(|k| replies[k].as_u64().unwrap())
        .sum();
    assert_eq!(calls, r["results"]["calls"].as_u64().unwrap());
}

#[test]
fn delivery_and_precision_report_every_job() {
    let r = bench(&["delivery", "--jobs", "50", "--clients", "4"]);
    checks_pass(&r);
    assert_eq!(r["results"]["delivered"], 50);
    assert_eq!(r["results"]["accept_to_arrival_ms"]["count"], 50);

    let r = bench(&[
        "precision",
        "--jobs",
        "50",
        "--window",
        "500ms",
        "--lead",
        "3s",
        "--clients",
        "4",
    ]);
    checks_pass(&r);
    assert_eq!(r["results"]["delivered"], 50);
    assert_eq!(r["results"]["early"], 0);
    assert_eq!(r["results"]["lateness_ms"]["count"], 50);
}

#[test]
fn refuses_targets_off_this_machine() {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "bench",
            "ingest",
            "--url",
            "http://192.0.2.1:7700",
            "--quiet",
        ])
        .output()
        .expect("run herald bench");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn backlog_restarts_on_the_same_data() {
    let r = bench(&[
        "backlog",
        "--backlog",
        "300",
        "--jobs",
        "40",
        "--window",
        "400ms",
        "--lead",
        "3s",
        "--clients",
        "4",
    ]);
    checks_pass(&r);
    assert_eq!(r["results"]["backlog_accepted"], 300);
    assert_eq!(r["results"]["delivered"], 40);
    assert!(r["results"]["restart_ready_s"].as_f64().unwrap() > 0.0);
    assert!(
        r["results"]["memory_after_fill"]["rss_mb"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let names: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"backlog readable after restart"),
        "{names:?}"
    );
}
