//! Shards on a real API server: of two controllers splitting the namespaces, only the one a
//! namespace hashes to holds and reconciles its objects.

use ferry::api::{Application, Environment};
use ferry::decide::shard::Shard;

use crate::fixtures::{dev, shop_through};
use crate::{RunningController, eventually, with_temp_ns};

#[tokio::test(flavor = "multi_thread")]
async fn of_two_shards_only_the_one_a_namespace_belongs_to_serves_it() {
    with_temp_ns("shards", |ns| async move {
        let serving = Shard::of(&ns.name, 2);
        let shard = |index| Shard { index, count: 2 };
        let on = RunningController::start_sharded(&ns.client, &ns.name, shard(serving));
        let off = RunningController::start_sharded(&ns.client, &ns.name, shard(1 - serving));
        ns.create_object::<Environment>(dev()).await;
        ns.create_object::<Application>(shop_through(&["dev"]))
            .await;
        ns.wait_for::<Application>("shop", "a status", |a| a.status.is_some())
            .await;
        eventually("the serving shard holding the Application", || async {
            match on.cached("Application") {
                1 => Ok(()),
                n => Err(format!("{n} held")),
            }
        })
        .await;
        // The other shard saw the same watch events and kept none of them.
        for cache in ["Application", "Environment"] {
            assert_eq!(off.cached(cache), 0, "{cache} held by the other shard");
        }
        assert_eq!(off.reconciles("Application"), 0);
        assert_eq!(off.reconciles("Environment"), 0);
        assert!(on.reconciles("Application") > 0);
        on.stop().await;
        off.stop().await;
    })
    .await;
}
