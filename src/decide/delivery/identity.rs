//! Releases are bound by identity. Ferry finds Releases by name, and a name can be taken again:
//! a Release deleted and made anew (with another image, another run configuration) would be
//! taken for the one that was judged healthy, verified and approved. So each environment
//! records, for the Releases it runs, ran before or rolls out, the UID and content digest they
//! had when it first rolled them out (`EnvironmentState::bound`). A Release whose UID or digest
//! differs now is *changed*: it is never rolled out anywhere, the workloads running it are left
//! as they are (what runs keeps running), and each environment that bound it says so in a
//! `ReleaseChanged` condition and, once, a Warning Event. The environment moves on when another
//! release is rolled out there (promoted, or pinned by a person).

use std::collections::BTreeSet;

use crate::api::Time;
use crate::api::application::{BoundRelease, EnvironmentState, HistoryKind};
use crate::api::conditions::{self, Desired, RELEASE_CHANGED_CONDITION, TRUE};
use crate::api::reasons::RELEASE_CHANGED;
use crate::decide::events::Announcement;

use super::Told;
use super::pipeline::ReleaseFacts;

/// How the Release of `bound`'s name differs now from when it was bound, if it does. A
/// Release that is gone is not changed (nothing of that name can be rolled out).
fn difference(bound: &BoundRelease, releases: &[ReleaseFacts]) -> Option<String> {
    let now = releases.iter().find(|r| r.name == bound.name)?;
    let short = |d: &str| d.chars().take(19).collect::<String>();
    if now.uid.as_deref() != Some(bound.uid.as_str()) {
        return Some(format!(
            "Release {} is not the one rolled out here: its UID was {}, it is {} now (deleted and made again)",
            bound.name,
            bound.uid,
            now.uid.as_deref().unwrap_or("unknown")
        ));
    }
    if now.digest.as_deref() != Some(bound.digest.as_str()) {
        return Some(format!(
            "Release {} is not the one rolled out here: its content digest was {}…, it is {}… now",
            bound.name,
            short(&bound.digest),
            short(now.digest.as_deref().unwrap_or("none"))
        ));
    }
    None
}

/// The Releases some environment bound that differ now: never rolled out, anywhere.
pub fn changed(stored: &[EnvironmentState], releases: &[ReleaseFacts]) -> BTreeSet<String> {
    stored
        .iter()
        .flat_map(|state| &state.bound)
        .filter(|bound| difference(bound, releases).is_some())
        .map(|bound| bound.name.clone())
        .collect()
}

/// The Releases `state` names (what runs, ran before, rolls out or rolls back to), bound: as
/// bound before where they were, else as they are now. A Release that changed keeps its old
/// binding, so it stays changed until the environment no longer names it.
pub fn bind(
    before: &[BoundRelease],
    state: &EnvironmentState,
    releases: &[ReleaseFacts],
) -> Vec<BoundRelease> {
    let rollout = state.rollout.as_ref();
    let named: BTreeSet<&str> = [
        state.current.as_deref(),
        state.previous.as_deref(),
        rollout.map(|r| r.release.as_str()),
        rollout.and_then(|r| r.from.as_deref()),
    ]
    .into_iter()
    .flatten()
    .collect();
    named
        .into_iter()
        .filter_map(|name| {
            if let Some(kept) = before.iter().find(|b| b.name == name) {
                return Some(kept.clone());
            }
            let now = releases.iter().find(|r| r.name == name)?;
            Some(BoundRelease {
                name: name.to_owned(),
                uid: now.uid.clone()?,
                digest: now.digest.clone()?,
            })
        })
        .collect()
}

/// Adds to `state` the `ReleaseChanged` condition while a Release it bound (in `stored`)
/// differs, or while its pin names a Release another environment bound that differs
/// (`pinned`), and returns the Warning Event to tell when that is new or says something new.
pub fn note(
    state: &mut EnvironmentState,
    stored: &EnvironmentState,
    (releases, pinned): (&[ReleaseFacts], Option<&str>),
    now: &Time,
) -> Option<Told> {
    state
        .conditions
        .retain(|c| c.type_ != RELEASE_CHANGED_CONDITION);
    let bound = stored
        .bound
        .iter()
        .find_map(|b| Some((b.name.clone(), difference(b, releases)?)));
    let (name, difference) = bound.or_else(|| {
        let name = pinned?;
        Some((
            name.to_owned(),
            format!(
                "Release {name}, pinned here, is not the one another environment rolled out: its UID or content digest changed since"
            ),
        ))
    })?;
    let message = format!(
        "{difference}; it is not rolled out, what runs here stays as it is, and this environment moves on when another release is rolled out here (promoted, or pinned)"
    );
    let before = stored
        .conditions
        .iter()
        .find(|c| c.type_ == RELEASE_CHANGED_CONDITION);
    let new = before.is_none_or(|c| c.status != TRUE || c.message != message);
    state.conditions.extend(conditions::merge(
        &stored.conditions,
        &[Desired::new(
            RELEASE_CHANGED_CONDITION,
            true,
            RELEASE_CHANGED.name,
            message.clone(),
        )],
        None,
        now,
    ));
    new.then(|| Told {
        announcement: Announcement {
            severity: RELEASE_CHANGED.severity,
            reason: RELEASE_CHANGED.name.to_owned(),
            note: message,
        },
        release: name,
        kind: HistoryKind::Rollout,
    })
}
