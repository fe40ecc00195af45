//! Object name rules (Kubernetes' apimachinery validation) and generateName.

use rand::Rng;

use crate::error::Cause;
use crate::registry::NameRule;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const RFC1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The causes against `name` under `rule`; empty when it is valid.
pub fn check(rule: NameRule, name: &str) -> Vec<Cause> {
    let invalid = |message: String| Cause {
        reason: "FieldValueInvalid",
        field: "metadata.name".to_string(),
        message: format!("Invalid value: {name:?}: {message}"),
    };
    let mut causes = Vec::new();
    let (max, ok, msg) = match rule {
        NameRule::Subdomain => (253, name.split('.').all(is_label), SUBDOMAIN_MSG),
        NameRule::Label => (63, is_label(name), LABEL_MSG),
        NameRule::Rfc1035Label => (
            63,
            is_label(name) && name.as_bytes()[0].is_ascii_lowercase(),
            RFC1035_MSG,
        ),
    };
    if name.len() > max {
        causes.push(invalid(format!("must be no more than {max} characters")));
    }
    if !ok {
        causes.push(invalid(msg.to_string()));
    }
    causes
}

/// kube-apiserver's generated suffix: 5 characters from an alphabet without
/// vowels or look-alikes.
pub fn generate(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    // Names stay within 63 characters, as kube-apiserver truncates the base.
    let base: String = prefix.chars().take(58).collect();
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_allow_dots_labels_do_not() {
        assert!(check(NameRule::Subdomain, "web.example-1").is_empty());
        assert!(check(NameRule::Label, "web-1").is_empty());
        assert_eq!(check(NameRule::Label, "web.1").len(), 1);
        for bad in ["Web", "-web", "web-", "web_1", "", "a..b"] {
            assert!(!check(NameRule::Subdomain, bad).is_empty(), "{bad}");
        }
        let c = &check(NameRule::Subdomain, "Bad_Name")[0];
        assert_eq!(c.field, "metadata.name");
        assert!(c
            .message
            .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));
    }

    #[test]
    fn services_need_a_leading_letter_and_lengths_are_bounded() {
        assert!(check(NameRule::Rfc1035Label, "web").is_empty());
        assert!(!check(NameRule::Rfc1035Label, "1web").is_empty());
        assert!(!check(NameRule::Label, &"a".repeat(64)).is_empty());
        assert!(check(NameRule::Subdomain, &"a".repeat(253)).is_empty());
        assert!(!check(NameRule::Subdomain, &"a".repeat(254)).is_empty());
    }

    #[test]
    fn generated_names_add_five_valid_characters() {
        let n = generate("web-");
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
        assert!(check(NameRule::Label, &n).is_empty());
        assert_ne!(generate("x-"), generate("x-"));
    }
}
