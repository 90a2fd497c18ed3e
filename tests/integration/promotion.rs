//! Promotion on a real API server: who pinned a release is read from the Application's
//! managed fields as the API server records them, and goes into the history with the pin's
//! reason; the Release's status follows. (Nothing becomes healthy here, the API server has no
//! node: `tests/e2e/promotion.rs` runs the pipeline to prod.)

use ferry::api::application::{HistoryKind, Outcome};
use ferry::api::release::ReleaseState;
use ferry::api::{Application, Environment, Release};
use kube::api::{Patch, PatchParams};

use crate::fixtures::{self, shop_1_4_2};
use crate::{RunningController, with_temp_ns};

#[tokio::test(flavor = "multi_thread")]
async fn a_pin_is_recorded_with_its_reason_and_the_user_who_wrote_it() {
    with_temp_ns("pin-writer", |ns| async move {
        let _controller = RunningController::start(&ns.client, &ns.name);
        ns.create_object::<Environment>(fixtures::environment(
            "dev",
            "{health: {progressDeadline: 20s, stabilizationWindow: 5s}}",
        ))
        .await;
        ns.create_object::<Environment>(fixtures::environment(
            "prod",
            "{upstream: dev, approval: Manual}",
        ))
        .await;
        ns.create_object::<Release>(shop_1_4_2()).await;
        // Written as a GitOps tool writes it: server-side apply under its own field manager,
        // which is the client's choice; who pinned is the authenticated user the pin names.
        let app = fixtures::pinned(
            fixtures::shop_through(&["dev", "prod"]),
            "prod",
            "shop-1.4.2",
            "CHG-9 approved by the change board",
        );
        ns.api::<Application>()
            .patch(
                "shop",
                &PatchParams::apply("gitops-bot"),
                &Patch::Apply(&app),
            )
            .await
            .expect("the Application is applied");

        let app = ns
            .wait_for::<Application>("shop", "the pin rolling out in prod", |a| {
                a.status.as_ref().is_some_and(|s| {
                    s.environments
                        .iter()
                        .any(|e| e.name == "prod" && !e.history.is_empty())
                })
            })
            .await;
        let status = app.status.unwrap_or_default();
        let prod = status
            .environments
            .iter()
            .find(|e| e.name == "prod")
            .expect("prod's state");
        let entry = &prod.history[0];
        assert_eq!(entry.release, "shop-1.4.2");
        // Not promoted from dev (nothing is healthy there): a plain pin.
        assert_eq!(entry.kind, HistoryKind::Pin);
        assert_eq!(entry.outcome, Outcome::InProgress);
        assert_eq!(entry.reason, "CHG-9 approved by the change board");
        assert_eq!(entry.actor.as_deref(), Some(fixtures::ADMIN));
        let dev = status
            .environments
            .iter()
            .find(|e| e.name == "dev")
            .expect("dev's state");
        assert_eq!(dev.history[0].actor.as_deref(), Some("ferry"));

        ns.wait_for::<Release>("shop-1.4.2", "deploying in dev and prod", |r| {
            let envs = r.status.clone().unwrap_or_default().environments;
            ["dev", "prod"].iter().all(|name| {
                envs.iter()
                    .any(|e| &e.name == name && e.state == ReleaseState::Deploying)
            })
        })
        .await;
    })
    .await;
}
