//! The work items commit messages reference: `#123` (an issue or pull request of the
//! repository's own tracker) and `PROJ-42` (a key of a tracker such as Jira: 2 to 10 capital
//! letters or digits starting with a letter, a dash, a number). Each is listed once, in the
//! order first seen, and at most [`MAX`] of them, so a commit storm cannot make a Release
//! object too large.

/// The most work items a Release lists.
pub const MAX: usize = 100;

/// The work items referenced by `messages` (oldest first), deduplicated and bounded.
pub fn referenced<'a>(messages: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for message in messages {
        for item in in_message(message) {
            if items.len() == MAX {
                return items;
            }
            if !items.contains(&item) {
                items.push(item);
            }
        }
    }
    items
}

/// The work items of one message, in order.
fn in_message(message: &str) -> Vec<String> {
    let chars: Vec<char> = message.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !is_word(chars[i - 1]);
        if boundary && chars[i] == '#' {
            let digits = run(&chars[i + 1..], |c| c.is_ascii_digit());
            if (1..=9).contains(&digits) && ends_word(&chars, i + 1 + digits) {
                found.push(chars[i..=i + digits].iter().collect());
                i += 1 + digits;
                continue;
            }
        }
        if boundary && chars[i].is_ascii_uppercase() {
            let key = run(&chars[i..], |c| {
                c.is_ascii_uppercase() || c.is_ascii_digit()
            });
            let dash = i + key;
            if (2..=10).contains(&key) && chars.get(dash) == Some(&'-') {
                let digits = run(&chars[dash + 1..], |c| c.is_ascii_digit());
                let end = dash + 1 + digits;
                let leading_zero = chars.get(dash + 1) == Some(&'0');
                if (1..=9).contains(&digits) && !leading_zero && ends_word(&chars, end) {
                    found.push(chars[i..end].iter().collect());
                    i = end;
                    continue;
                }
            }
        }
        i += 1;
    }
    found
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-' || c == '#' || c == '/'
}

fn ends_word(chars: &[char], at: usize) -> bool {
    chars.get(at).is_none_or(|c| !is_word(*c))
}

fn run(chars: &[char], accept: impl Fn(char) -> bool) -> usize {
    chars.iter().take_while(|c| accept(**c)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_items_are_found_in_commit_messages() {
        let cases: [(&str, &[&str], &[&str]); 11] = [
            ("an issue", &["Fix the cart (#12)"], &["#12"]),
            ("a tracker key", &["PROJ-7: faster checkout"], &["PROJ-7"]),
            ("both, in order", &["PROJ-7 and #12"], &["PROJ-7", "#12"]),
            (
                "deduplicated across commits",
                &["#12", "again #12, PROJ-7", "PROJ-7"],
                &["#12", "PROJ-7"],
            ),
            ("a colour is not an issue", &["make it #fff"], &[]),
            ("a URL fragment is not an issue", &["see http://x/y#3"], &[]),
            ("lower case is not a key", &["proj-7 and Proj-7"], &[]),
            ("a one-letter key is not a key", &["A-1 grade"], &[]),
            (
                "a key continued by a dash is not a key",
                &["UTF-8 and ISO-8859-1"],
                &["UTF-8"],
            ),
            ("a key needs a number", &["WIP-draft"], &[]),
            (
                "inside a word is not an item",
                &["C#1 and X#2 and ABC-1x"],
                &[],
            ),
        ];
        for (name, messages, want) in cases {
            let got = referenced(messages.iter().copied());
            assert_eq!(
                got,
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{name}"
            );
        }
    }

    #[test]
    fn the_list_is_bounded() {
        let messages: Vec<String> = (1..=500).map(|n| format!("#{n}")).collect();
        let items = referenced(messages.iter().map(String::as_str));
        assert_eq!(items.len(), MAX);
        assert_eq!(items[0], "#1");
    }
}
