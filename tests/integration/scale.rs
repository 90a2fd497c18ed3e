//! Issue 22's probe, small: 100 Applications through dev, staging and a Manual prod, each with a
//! Release, whose git host does not resolve. It prints how long the controller takes to decide
//! them all, then checks that, once settled, nothing is rewritten while nothing changes (the
//! probe at 1,000 Applications rewrote 749 Applications and 686 Releases in 60 idle seconds),
//! naming what was. Not part of `make test` (about two minutes): run it with
//! `e2e/apiserver.sh run -- cargo test --test integration -- --ignored scale --nocapture`.

use std::time::Duration;

use super::fixtures::{self, dev, environment_after, prod_manual};
use super::{RunningController, with_temp_ns};
use ferry::api::Application;

const APPLICATIONS: usize = 100;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a probe of issue 22, about two minutes; run with --ignored"]
async fn an_idle_controller_with_unreachable_sources_rewrites_nothing() {
    with_temp_ns("idle-scale", |ns| async move {
        ns.create_object(dev()).await;
        ns.create_object(environment_after("staging", "dev")).await;
        let mut prod = prod_manual();
        prod.spec.upstream = Some("staging".into());
        ns.create_object(prod).await;
        let controller = RunningController::start(&ns.client, &ns.name);
        for i in 0..APPLICATIONS {
            let name = format!("app-{i}");
            let mut app = fixtures::shop_through(&["dev", "staging", "prod"]);
            app.metadata.name = Some(name.clone());
            app.spec.source.repository.url = format!("http://git.invalid/{name}.git");
            ns.create_object(app).await;
            let mut release = fixtures::shop_1_4_2();
            release.metadata.name = Some(format!("{name}-1.4.2"));
            release.spec.application = name;
            ns.create_object(release).await;
        }
        // Settle: every Application has a status and every Release one too.
        let apps = ns.api::<Application>();
        let started = std::time::Instant::now();
        loop {
            let listed = apps.list(&Default::default()).await.expect("listing");
            let decided = listed.items.iter().filter(|a| a.status.is_some()).count();
            if decided == APPLICATIONS {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "{decided} of {APPLICATIONS} decided"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        println!(
            "measured: every Application decided after the last was created = {:.1} s",
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(20)).await;
        let before = apps.list(&Default::default()).await.expect("listing").items;
        let (app_count, releases) = (
            controller.status_writes("Application"),
            controller.status_writes("Release"),
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        let after = apps.list(&Default::default()).await.expect("listing").items;
        for (b, a) in before.iter().zip(&after) {
            if b.metadata.resource_version != a.metadata.resource_version {
                eprintln!(
                    "rewritten: {:?}\n  before {}\n  after  {}",
                    a.metadata.name,
                    serde_json::to_string(&b.status).unwrap_or_default(),
                    serde_json::to_string(&a.status).unwrap_or_default()
                );
            }
        }
        let app_writes = controller.status_writes("Application") - app_count;
        let release_writes = controller.status_writes("Release") - releases;
        println!(
            "measured: idle status writes in 30 s, {APPLICATIONS} Applications = {app_writes}"
        );
        println!(
            "measured: idle status writes in 30 s, {APPLICATIONS} Releases = {release_writes}"
        );
        assert_eq!((app_writes, release_writes), (0, 0), "rewritten while idle");
        controller.stop().await;
    })
    .await;
}
