//! A route's authorization rules, evaluated on the signed-in user's verified claims before
//! anything is forwarded. Pure: the configuration says what must hold, the claims what is.

use crate::config::{ClaimTest, RouteRules, RulesMatch};
use crate::session::Claims;
use serde_json::Value;

/// Whether the claims satisfy the route's rules (all, or any, as configured).
pub fn permits(rules: &RouteRules, claims: &Claims) -> bool {
    let holds = |rule: &crate::config::ClaimRule| claims.get(&rule.claim).is_some_and(|claim| test(&rule.test, claim));
    match rules.matching {
        RulesMatch::All => rules.rules.iter().all(holds),
        RulesMatch::Any => rules.rules.iter().any(holds),
    }
}

fn test(test: &ClaimTest, claim: &Value) -> bool {
    let values: &[Value] = match claim {
        Value::Array(values) => values,
        single => std::slice::from_ref(single),
    };
    match test {
        ClaimTest::Equals(expected) => claim == expected || values.contains(expected),
        ClaimTest::ContainsAny(wanted) => wanted.iter().any(|w| values.contains(w)),
        ClaimTest::ContainsAll(wanted) => wanted.iter().all(|w| values.contains(w)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClaimRule;
    use serde_json::json;

    fn claims() -> Claims {
        json!({"groups": ["staff", "admins"], "email_verified": true, "dept": "sales", "level": 3})
            .as_object()
            .unwrap()
            .clone()
    }

    fn rules(matching: RulesMatch, rules: &[(&str, ClaimTest)]) -> RouteRules {
        let rules = rules.iter().map(|(claim, test)| ClaimRule { claim: claim.to_string(), test: test.clone() });
        RouteRules { rules: rules.collect(), matching }
    }

    #[test]
    fn each_test_on_string_array_boolean_and_number_claims() {
        let c = claims();
        let one = |claim: &str, test: ClaimTest| permits(&rules(RulesMatch::All, &[(claim, test)]), &c);
        assert!(one("groups", ClaimTest::ContainsAny(vec![json!("admins"), json!("ops")])));
        assert!(!one("groups", ClaimTest::ContainsAny(vec![json!("ops")])));
        assert!(one("groups", ClaimTest::ContainsAll(vec![json!("staff"), json!("admins")])));
        assert!(!one("groups", ClaimTest::ContainsAll(vec![json!("staff"), json!("ops")])));
        assert!(one("groups", ClaimTest::Equals(json!("admins"))), "an array claim holding it");
        assert!(one("email_verified", ClaimTest::Equals(json!(true))));
        assert!(!one("email_verified", ClaimTest::Equals(json!("true"))), "types are not coerced");
        assert!(one("dept", ClaimTest::ContainsAny(vec![json!("sales"), json!("ops")])));
        assert!(one("level", ClaimTest::Equals(json!(3))));
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
        assert!(!permits(&rules(RulesMatch::All, &pair), &c));
        assert!(permits(&rules(RulesMatch::Any, &pair), &c));
        assert!(permits(&rules(RulesMatch::All, &[]), &c), "no rule, no refusal");
    }
}
