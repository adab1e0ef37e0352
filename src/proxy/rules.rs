//! A route's authorization rules, evaluated on the signed-in user's verified claims and the
//! sign-in's granted scope before anything is forwarded. Pure, and allocation-free: the claims
//! are read in place ([`RawClaims::scan`]), once for all rules, compared as JSON text, and what
//! each rule saw is kept in a fixed array of bit sets (one bit per value it names).

use crate::config::{ClaimTest, MAX_RULES, RouteRules, Rule, RuleSubject, RulesMatch};
use crate::session::claims::RawClaims;

/// Whether the claims and scope satisfy the route's rules (all, or any, as configured). No
/// claims, or claims that do not read as an object, satisfy no claim rule; no recorded scope
/// satisfies no scope rule.
pub fn permits(rules: &RouteRules, claims: Option<&RawClaims>, scope: Option<&str>) -> bool {
    let mut seen = [0u64; MAX_RULES];
    let readable = match claims {
        Some(claims) if !rules.claims.is_empty() => claims.scan(
            |name| rules.claims.binary_search_by(|c| c.as_str().cmp(name)).ok(),
            |claim, json, _| {
                for (rule, seen) in rules.rules.iter().zip(seen.iter_mut()) {
                    if rule.on == RuleSubject::Claim(claim) {
                        *seen |= bits(rule, |i| rule.json[i] == json);
                    }
                }
            },
        ),
        _ => true,
    };
    if !readable {
        return false;
    }
    for granted in scope.unwrap_or_default().split(' ').filter(|s| !s.is_empty()) {
        for (rule, seen) in rules.rules.iter().zip(seen.iter_mut()) {
            if rule.on == RuleSubject::Scope {
                *seen |= bits(rule, |i| rule.test.values()[i].as_str() == Some(granted));
            }
        }
    }
    let mut outcomes = rules.rules.iter().zip(seen).map(|(rule, seen)| holds(&rule.test, seen));
    match rules.matching {
        RulesMatch::All => outcomes.all(|held| held),
        RulesMatch::Any => outcomes.any(|held| held),
    }
}

/// The values of `rule` that `is` picks: bit `i` for the `i`th.
fn bits(rule: &Rule, is: impl Fn(usize) -> bool) -> u64 {
    (0..rule.test.values().len()).filter(|i| is(*i)).fold(0, |bits, i| bits | 1 << i)
}

/// Whether a test holds, given which of its values were seen.
fn holds(test: &ClaimTest, seen: u64) -> bool {
    match test {
        ClaimTest::Equals(_) | ClaimTest::ContainsAny(_) => seen != 0,
        ClaimTest::ContainsAll(values) => seen == u64::MAX >> (64 - values.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn claims() -> RawClaims {
        RawClaims::of(&json!({"groups": ["staff", "admins"], "email_verified": true, "dept": "sales", "level": 3}))
    }

    /// Rules as the configuration builds them: claim names sorted, each once.
    fn rules(matching: RulesMatch, rules: &[(&str, ClaimTest)]) -> RouteRules {
        let mut claims: Vec<String> = rules.iter().filter(|(c, _)| *c != "scope").map(|(c, _)| c.to_string()).collect();
        claims.sort();
        claims.dedup();
        let rules = rules.iter().map(|(claim, test)| {
            let on = match claims.binary_search_by(|c| c.as_str().cmp(claim)) {
                Ok(i) => RuleSubject::Claim(i),
                Err(_) => RuleSubject::Scope,
            };
            Rule::new(on, test.clone())
        });
        RouteRules { rules: rules.collect(), matching, claims }
    }

    #[test]
    fn each_test_on_string_array_boolean_and_number_claims() {
        let c = claims();
        let one = |claim: &str, test: ClaimTest| permits(&rules(RulesMatch::All, &[(claim, test)]), Some(&c), None);
        assert!(one("groups", ClaimTest::ContainsAny(vec![json!("admins"), json!("ops")])));
        assert!(!one("groups", ClaimTest::ContainsAny(vec![json!("ops")])));
        assert!(one("groups", ClaimTest::ContainsAll(vec![json!("staff"), json!("admins")])));
        assert!(!one("groups", ClaimTest::ContainsAll(vec![json!("staff"), json!("ops")])));
        assert!(one("groups", ClaimTest::Equals(json!("admins"))), "an array claim holding it");
        assert!(one("email_verified", ClaimTest::Equals(json!(true))));
        assert!(!one("email_verified", ClaimTest::Equals(json!("true"))), "types are not coerced");
        assert!(one("dept", ClaimTest::ContainsAny(vec![json!("sales"), json!("ops")])));
        assert!(one("dept", ClaimTest::ContainsAll(vec![json!("sales")])), "a single value: the only one");
        assert!(!one("dept", ClaimTest::ContainsAll(vec![json!("sales"), json!("ops")])));
        assert!(one("level", ClaimTest::Equals(json!(3))));
        assert!(!one("level", ClaimTest::Equals(json!(3.0))), "3.0 is not the integer 3");
        assert!(!one("missing", ClaimTest::ContainsAny(vec![json!("x")])), "a missing claim holds nothing");
        assert!(!one("Groups", ClaimTest::ContainsAny(vec![json!("admins")])), "names are exact");
    }

    #[test]
    fn all_or_any() {
        let c = claims();
        let pair = [
            ("groups", ClaimTest::ContainsAny(vec![json!("admins")])),
            ("dept", ClaimTest::Equals(json!("engineering"))),
        ];
        assert!(!permits(&rules(RulesMatch::All, &pair), Some(&c), None));
        assert!(permits(&rules(RulesMatch::Any, &pair), Some(&c), None));
        assert!(permits(&rules(RulesMatch::All, &[]), Some(&c), None), "no rule, no refusal");
        let same_claim_twice = [
            ("groups", ClaimTest::ContainsAny(vec![json!("admins")])),
            ("groups", ClaimTest::ContainsAll(vec![json!("staff"), json!("ops")])),
        ];
        assert!(!permits(&rules(RulesMatch::All, &same_claim_twice), Some(&c), None));
        assert!(permits(&rules(RulesMatch::Any, &same_claim_twice), Some(&c), None));
    }

    #[test]
    fn scope_rules_read_the_granted_scope_tokens() {
        let c = claims();
        let scope = |wanted: &[&str]| {
            let wanted = wanted.iter().map(|s| json!(s)).collect();
            rules(RulesMatch::All, &[("scope", ClaimTest::ContainsAll(wanted))])
        };
        let granted = Some("openid  api:read profile");
        assert!(permits(&scope(&["api:read"]), Some(&c), granted));
        assert!(permits(&scope(&["api:read", "openid"]), Some(&c), granted));
        assert!(!permits(&scope(&["api:write"]), Some(&c), granted));
        assert!(!permits(&scope(&["api"]), Some(&c), granted), "whole scope tokens only");
        assert!(!permits(&scope(&["api:read", "api:write"]), Some(&c), granted));
        assert!(!permits(&scope(&["api:read"]), Some(&c), None), "no recorded grant admits nothing");
        // Scope and claim rules together.
        let both = [
            ("groups", ClaimTest::Equals(json!("admins"))),
            ("scope", ClaimTest::ContainsAll(vec![json!("api:read")])),
        ];
        assert!(permits(&rules(RulesMatch::All, &both), Some(&c), granted));
        assert!(!permits(&rules(RulesMatch::All, &both), Some(&c), Some("openid")));
        assert!(permits(&rules(RulesMatch::Any, &both), Some(&c), Some("openid")));
    }

    #[test]
    fn unreadable_or_absent_claims_admit_nothing() {
        let groups = rules(RulesMatch::Any, &[("groups", ClaimTest::Equals(json!("admins")))]);
        assert!(!permits(&groups, None, Some("openid")));
        assert!(!permits(&groups, Some(&RawClaims::of(&json!(["admins"]))), None));
        assert!(!permits(&groups, Some(&RawClaims::of(&json!({"groups": {"admins": true}}))), None));
        assert!(!permits(&groups, Some(&RawClaims::of(&json!({"groups": [["admins"]]}))), None), "no nested arrays");
    }

    /// The check runs on every call of a ruled route: it allocates nothing, whatever the claims.
    #[test]
    fn a_check_allocates_nothing() {
        let claims = RawClaims::of(&json!({
            "groups": ["staff", "admins", "CORP\\x \"quoted\"", {"deep": [1, 2]}, ["nested"]],
            "email_verified": true, "name": "Älice \u{1}", "level": 3.5, "big": u64::MAX, "neg": -1
        }));
        let every = rules(
            RulesMatch::All,
            &[
                ("groups", ClaimTest::ContainsAll(vec![json!("staff"), json!("CORP\\x \"quoted\"")])),
                ("name", ClaimTest::Equals(json!("Älice \u{1}"))),
                ("email_verified", ClaimTest::Equals(json!(true))),
                ("level", ClaimTest::ContainsAny(vec![json!(3.5), json!(-1)])),
                ("scope", ClaimTest::ContainsAll(vec![json!("api:read")])),
            ],
        );
        let mut admitted = false;
        let counted =
            allocation_counter::measure(|| admitted = permits(&every, Some(&claims), Some("openid api:read")));
        assert!(admitted);
        assert_eq!(counted.count_total, 0, "{counted:?}");
    }

    #[test]
    fn sixty_four_values_in_one_test() {
        let wanted: Vec<Value> = (0..64).map(|i| json!(format!("g{i}"))).collect();
        let mut all = json!({"groups": wanted.clone()});
        let every = rules(RulesMatch::All, &[("groups", ClaimTest::ContainsAll(wanted))]);
        assert!(permits(&every, Some(&RawClaims::of(&all)), None));
        all["groups"].as_array_mut().unwrap().pop();
        assert!(!permits(&every, Some(&RawClaims::of(&all)), None));
    }
}
