//! A commit's Release version: the semantic version of a tag on that commit (`v1.2.0` and
//! `1.2.0` both give `1.2.0`; the highest wins when there are several), else
//! `0.0.0-<short commit>`, which sorts below every real release. A tag that is not a semantic
//! version (`latest`, `v1.2`) is ignored.

use super::naming::short_commit;

/// The semantic version a tag names, without its `v`, if it names one.
pub fn from_tag(tag: &str) -> Option<semver::Version> {
    let tag = tag.strip_prefix("refs/tags/").unwrap_or(tag);
    let bare = tag.strip_prefix('v').unwrap_or(tag);
    semver::Version::parse(bare).ok()
}

/// The version of a Release of `commit`, which carries `tags`.
pub fn for_commit(commit: &str, tags: &[String]) -> String {
    tags.iter().filter_map(|t| from_tag(t)).max().map_or_else(
        || format!("0.0.0-{}", short_commit(commit)),
        |v| v.to_string(),
    )
}

/// The version of a Release that reuses the image of one at `version` with another run
/// configuration: the same version, its build metadata replaced by `run.<hash>`, which tells
/// it apart and says why it exists. Build metadata does not change a version's precedence, so
/// it sorts with the release whose image it runs.
pub fn reconfigured(version: &str, hash: &str) -> String {
    let base = version.split_once('+').map_or(version, |(base, _)| base);
    format!("{base}+run.{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

    #[test]
    fn the_version_comes_from_a_semver_tag_or_the_commit() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases = [
            ("a v tag", tags(&["v1.2.0"]), "1.2.0"),
            ("a bare tag", tags(&["1.2.0"]), "1.2.0"),
            ("a full ref", tags(&["refs/tags/v2.0.1"]), "2.0.1"),
            ("a pre-release", tags(&["v1.3.0-rc.1"]), "1.3.0-rc.1"),
            (
                "the highest of several",
                tags(&["v1.2.0", "v1.10.0", "v1.9.9"]),
                "1.10.0",
            ),
            ("no tag", tags(&[]), "0.0.0-9fceb02"),
            (
                "a non-semver tag falls back",
                tags(&["latest", "v1.2"]),
                "0.0.0-9fceb02",
            ),
            (
                "a non-semver beside a semver",
                tags(&["stable", "v3.0.0"]),
                "3.0.0",
            ),
            (
                "a leading zero is not semver",
                tags(&["v01.2.3"]),
                "0.0.0-9fceb02",
            ),
        ];
        for (name, tags, want) in cases {
            assert_eq!(for_commit(COMMIT, &tags), want, "{name}");
        }
    }

    #[test]
    fn a_reconfigured_version_keeps_the_version_and_says_run() {
        assert_eq!(reconfigured("1.4.2", "3f9a1c2b"), "1.4.2+run.3f9a1c2b");
        assert_eq!(
            reconfigured("1.4.2+run.3f9a1c2b", "00aa11bb"),
            "1.4.2+run.00aa11bb"
        );
        assert_eq!(
            reconfigured("0.0.0-9fceb02", "00aa11bb"),
            "0.0.0-9fceb02+run.00aa11bb"
        );
        let version = reconfigured("1.0.0-rc.1+build.5", "00aa11bb");
        assert!(semver::Version::parse(&version).is_ok(), "{version}");
    }
}
