//! Consent states and the transitions between them (after ISO/IEC TS 27560).

/// Which state may follow which. Withdrawn and expired are final: a new request starts over.
pub fn may_follow(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("requested", "given")
            | ("requested", "refused")
            | ("refused", "given")
            | ("given", "withdrawn")
            | ("given", "expired")
    )
}

pub const STATES: &[&str] = &["requested", "given", "refused", "withdrawn", "expired"];

#[cfg(test)]
mod tests {
    use super::may_follow;

    #[test]
    fn given_consent_can_be_withdrawn_but_not_silently_reused() {
        assert!(may_follow("requested", "given"));
        assert!(may_follow("given", "withdrawn"));
        assert!(
            !may_follow("withdrawn", "given"),
            "a withdrawn consent needs a new request"
        );
        assert!(!may_follow("expired", "given"));
        assert!(!may_follow("given", "requested"));
    }
}
