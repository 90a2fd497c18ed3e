//! Names of the objects a build produces. Deterministic: the same Application and commit
//! always give the same BuildJob, the same Application and version the same Release, so a
//! duplicate is refused by the API server (409) instead of created twice.

/// The short form of a commit id, as git prints it.
pub fn short_commit(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

/// The BuildJob for `commit` of `application`: `<application>-<short commit>`.
pub fn buildjob_name(application: &str, commit: &str) -> String {
    format!("{application}-{}", short_commit(commit))
}

/// The Release of `application` at `version`: `<application>-<version>`, with the characters
/// an object name cannot hold (`+` of build metadata, capitals of a pre-release) made legal.
pub fn release_name(application: &str, version: &str) -> String {
    let version: String = version
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    format!("{application}-{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_legal() {
        let commit = "9fceb02d0ae598e95dc970b74767f19372d61af8";
        assert_eq!(buildjob_name("shop", commit), "shop-9fceb02");
        assert_eq!(buildjob_name("shop", "abc"), "shop-abc");
        let cases = [
            ("plain", "1.4.2", "shop-1.4.2"),
            ("pre-release", "1.4.2-rc.1", "shop-1.4.2-rc.1"),
            ("capitals", "1.0.0-RC1", "shop-1.0.0-rc1"),
            ("build metadata", "1.0.0+build.5", "shop-1.0.0-build.5"),
            ("untagged", "0.0.0-9fceb02", "shop-0.0.0-9fceb02"),
        ];
        for (name, version, want) in cases {
            assert_eq!(release_name("shop", version), want, "{name}");
        }
    }
}
