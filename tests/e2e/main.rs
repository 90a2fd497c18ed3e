//! Tier 3, end to end, in Rust: scenarios on the real single-node cluster (`make cluster-up`)
//! with Ferry installed in it (`e2e/install.sh` runs this binary after installing), driven
//! only as a user drives Ferry: objects applied to the API server, pushes to the git server,
//! requests through Services. They read Ferry's status through Ferry's own `api` types, so a
//! renamed field breaks them at compile time, and wait with kube's `await_condition` under a
//! deadline.
//!
//!   FERRY_E2E_KUBECONFIG=/var/lib/ferry-e2e/kubeconfig cargo test --test e2e
//!   ... cargo test --test e2e -- rollouts            # one suite
//!   ... cargo test --test e2e -- rollouts/crash slow # some scenarios
//!
//! Without `FERRY_E2E_KUBECONFIG` there is no cluster: it says so and passes (so that a bare
//! `cargo test` stays a unit run). `FERRY_E2E_VERBOSE=1` prints each scenario's lines as they
//! come; `FERRY_E2E_OUT` is where each scenario's log is written (default
//! /tmp/ferry-e2e-<time>). A scenario that fails leaves its namespace for inspection.

mod attacks;
mod builds;
mod chaos;
mod git;
mod harness;
mod images;
mod net;
mod promotion;
mod rollouts;

use std::process::ExitCode;

use harness::{Cluster, Tally, run_suite};

fn main() -> ExitCode {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let cluster = match Cluster::from_env().await {
            Ok(Some(cluster)) => cluster,
            Ok(None) => {
                println!("e2e: FERRY_E2E_KUBECONFIG is not set, no cluster: skipped (make test-e2e runs them)");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("e2e: {e}");
                return ExitCode::FAILURE;
            }
        };
        let suites = [
            builds::suite(),
            rollouts::suite(),
            promotion::suite(),
            attacks::suite(),
            chaos::suite(),
        ];
        let known: Vec<String> = suites
            .iter()
            .flat_map(|s| {
                s.parallel
                    .iter()
                    .chain(&s.alone)
                    .flat_map(move |c| [s.name.to_owned(), format!("{}/{}", s.name, c.name), c.name.to_owned()])
            })
            .collect();
        if let Some(unknown) = wanted.iter().find(|w| !known.contains(w)) {
            eprintln!("e2e: no suite or scenario '{unknown}'");
            return ExitCode::FAILURE;
        }
        let mut tally = Tally::default();
        for suite in &suites {
            run_suite(&cluster, suite, &wanted, &mut tally).await;
        }
        println!(
            "e2e: {} passed, {} failed{}",
            tally.passed.len(),
            tally.failed.len(),
            if tally.failed.is_empty() {
                String::new()
            } else {
                format!(" ({})", tally.failed.join(" "))
            }
        );
        if tally.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}
