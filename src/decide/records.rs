//! DeliveryRecords: which history entries are written as records, which records go, and how
//! a lost history comes back from them.
//!
//! An entry is recorded once it has its outcome (a record cannot change); the status links it
//! (`record`). A record stays while its entry is in the history (`historyLimit`) and goes when
//! the entry drops out of it, or with its environment entry or its Application.

use std::collections::BTreeSet;

use crate::api::DeliveryRecord;
use crate::api::application::{EnvironmentState, HistoryEntry, HistoryKind, Outcome};
use crate::decide::delivery::REJECTED_LIMIT;
use crate::desired::record;

/// Links every finished entry of `environments` not linked yet to its record, and returns the
/// records to create for them (creating one that exists already is fine: same name, same
/// entry).
pub fn link(
    namespace: &str,
    app: &str,
    environments: &mut [EnvironmentState],
) -> Vec<DeliveryRecord> {
    let mut created = Vec::new();
    for env in environments {
        for entry in &mut env.history {
            if entry.record.is_some() || entry.outcome == Outcome::InProgress {
                continue;
            }
            let made = record::record(namespace, app, &env.name, entry);
            entry.record = made.metadata.name.clone();
            created.push(made);
        }
    }
    created
}

/// Takes back the links to `names` (records that could not be written): their entries are
/// recorded on a later pass.
pub fn unlink(environments: &mut [EnvironmentState], names: &[String]) {
    for entry in environments.iter_mut().flat_map(|e| e.history.iter_mut()) {
        if entry.record.as_ref().is_some_and(|r| names.contains(r)) {
            entry.record = None;
        }
    }
}

/// The records `before` linked that `after` does not: their entries dropped out of the history
/// (or their environment out of the Application).
pub fn unlinked(before: &[EnvironmentState], after: &[EnvironmentState]) -> Vec<String> {
    let mut gone = outside(links(before), after);
    gone.sort();
    gone.dedup();
    gone
}

/// The `records` that no entry of `environments` links: after a restore, those beyond the
/// history limit or of environments the Application no longer lists.
pub fn not_linked(records: &[DeliveryRecord], environments: &[EnvironmentState]) -> Vec<String> {
    outside(
        records.iter().filter_map(|r| r.metadata.name.as_deref()),
        environments,
    )
}

/// The `names` no entry of `environments` links.
fn outside<'a>(
    names: impl Iterator<Item = &'a str>,
    environments: &[EnvironmentState],
) -> Vec<String> {
    let linked: BTreeSet<&str> = links(environments).collect();
    names
        .filter(|name| !linked.contains(name))
        .map(str::to_owned)
        .collect()
}

fn links(environments: &[EnvironmentState]) -> impl Iterator<Item = &str> {
    environments
        .iter()
        .flat_map(|e| &e.history)
        .filter_map(|h| h.record.as_deref())
}

/// Gives each environment whose history is empty the entries its records keep, newest first,
/// at most `limit`, each linked to its record; and, if it rejects nothing, the releases that
/// failed there (a failed rollback aside, as a verdict rejects them). For an Application whose
/// status is gone: one restored from a backup, or re-applied from exported objects. What ran
/// is not restored: the Deployments say it, and a rollout starts anew.
pub fn restore(environments: &mut [EnvironmentState], records: &[DeliveryRecord], limit: usize) {
    for env in environments.iter_mut().filter(|e| e.history.is_empty()) {
        let mut kept: Vec<HistoryEntry> = records
            .iter()
            .filter(|r| r.spec.environment == env.name)
            .map(|r| HistoryEntry {
                record: r.metadata.name.clone(),
                ..r.spec.entry.clone()
            })
            .collect();
        kept.sort_by_key(|h| std::cmp::Reverse(h.time.0));
        if env.rejected.is_empty() {
            for failed in kept
                .iter()
                .filter(|h| h.outcome == Outcome::Failed && h.kind != HistoryKind::Rollback)
            {
                if !env.rejected.contains(&failed.release) {
                    env.rejected.push(failed.release.clone());
                }
            }
            env.rejected.truncate(REJECTED_LIMIT);
        }
        kept.truncate(limit);
        env.history = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Time;

    fn entry(second: i64, release: &str, outcome: Outcome) -> HistoryEntry {
        HistoryEntry {
            release: release.into(),
            from: None,
            time: Time(jiff::Timestamp::from_second(second).unwrap()),
            kind: HistoryKind::Rollout,
            outcome,
            reason: "newest".into(),
            actor: None,
            pin_reason: None,
            record: None,
        }
    }

    fn env(name: &str, history: Vec<HistoryEntry>) -> EnvironmentState {
        EnvironmentState {
            name: name.into(),
            history,
            ..EnvironmentState::default()
        }
    }

    #[test]
    fn finished_entries_are_recorded_once_and_a_rollout_under_way_waits() {
        let mut envs = vec![env(
            "dev",
            vec![
                entry(300, "web-3", Outcome::InProgress),
                entry(200, "web-2", Outcome::Failed),
                entry(100, "web-1", Outcome::Succeeded),
            ],
        )];
        let made = link("shop", "web", &mut envs);
        let released: Vec<&str> = made.iter().map(|r| r.spec.entry.release.as_str()).collect();
        assert_eq!(released, ["web-2", "web-1"]);
        assert_eq!(envs[0].history[0].record, None);
        assert_eq!(envs[0].history[1].record, made[0].metadata.name);
        assert!(
            link("shop", "web", &mut envs).is_empty(),
            "linked entries are not recorded again"
        );
        let failed = envs[0].history[1].record.clone().unwrap();
        unlink(&mut envs, std::slice::from_ref(&failed));
        assert_eq!(
            envs[0].history[1].record, None,
            "a record not written is unlinked"
        );
        assert!(envs[0].history[2].record.is_some());
        assert_eq!(
            link("shop", "web", &mut envs).len(),
            1,
            "and written on a later pass"
        );

        envs[0].history[0].outcome = Outcome::Succeeded;
        let made = link("shop", "web", &mut envs);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].spec.entry.release, "web-3");
    }

    #[test]
    fn a_record_goes_when_its_entry_leaves_the_history() {
        let mut before = vec![
            env(
                "dev",
                vec![
                    entry(200, "web-2", Outcome::Succeeded),
                    entry(100, "web-1", Outcome::Succeeded),
                ],
            ),
            env("prod", vec![entry(150, "web-1", Outcome::Succeeded)]),
        ];
        link("shop", "web", &mut before);
        let mut after = before.clone();
        after[0].history.truncate(1);
        after.truncate(1);
        let gone = unlinked(&before, &after);
        let mut expected = vec![
            before[0].history[1].record.clone().unwrap(),
            before[1].history[0].record.clone().unwrap(),
        ];
        expected.sort();
        assert_eq!(gone, expected);
        assert!(unlinked(&after, &after).is_empty());
    }

    #[test]
    fn an_empty_history_comes_back_from_its_records_newest_first_within_the_limit() {
        let mut recorded = vec![
            env(
                "dev",
                vec![
                    entry(100, "web-1", Outcome::Succeeded),
                    entry(300, "web-3", Outcome::Succeeded),
                    entry(200, "web-2", Outcome::Failed),
                ],
            ),
            env("prod", vec![entry(400, "web-2", Outcome::Succeeded)]),
        ];
        let records = link("shop", "web", &mut recorded);

        let mut restored = vec![
            env("dev", vec![]),
            env("prod", vec![entry(500, "web-3", Outcome::InProgress)]),
        ];
        restore(&mut restored, &records, 2);
        let dev: Vec<(&str, Option<&str>)> = restored[0]
            .history
            .iter()
            .map(|h| (h.release.as_str(), h.record.as_deref()))
            .collect();
        assert_eq!(
            dev,
            [
                ("web-3", recorded[0].history[1].record.as_deref()),
                ("web-2", recorded[0].history[2].record.as_deref()),
            ]
        );
        assert_eq!(
            restored[1].history.len(),
            1,
            "a history that is there is left as it is"
        );
        assert_eq!(
            restored[0].rejected,
            ["web-2"],
            "what failed there stays rejected"
        );
        assert!(restored[1].rejected.is_empty());
        let mut beyond = vec![
            recorded[0].history[0].record.clone().unwrap(),
            recorded[1].history[0].record.clone().unwrap(),
        ];
        beyond.sort();
        let mut left = not_linked(&records, &restored);
        left.sort();
        assert_eq!(left, beyond, "the one beyond the limit, and prod's");
    }
}
