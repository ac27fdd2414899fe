//! Unit tests of access control: globs, rules, passwords, the failed-login
//! limits and tokens.

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::tokens::{now, Claims, ISSUER};
use super::*;
use crate::config::{AuthConfig, Rule};

fn auth(rules: Vec<Rule>) -> Auth {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let hash = bcrypt::hash("secret", 4).unwrap();
    std::fs::write(&file, format!("alice:{hash}\nbob:{hash}\n")).unwrap();
    let mut config = AuthConfig {
        htpasswd: Some(file),
        rules,
        ..Default::default()
    };
    config.groups.insert("devs".into(), vec!["bob".into()]);
    Auth::new(&config, b"key".to_vec()).unwrap()
}

fn rule(
    repos: &[&str],
    users: &[&str],
    groups: &[&str],
    anonymous: bool,
    actions: &[&str],
) -> Rule {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
    Rule {
        repositories: s(repos),
        users: s(users),
        groups: s(groups),
        anonymous,
        actions: s(actions),
    }
}

#[test]
fn globs() {
    assert!(glob_match("team/*", "team/app"));
    assert!(!glob_match("team/*", "team/app/sub"));
    assert!(glob_match("team/**", "team/app/sub"));
    assert!(glob_match("**", "a/b/c"));
    assert!(glob_match("*-public", "x-public"));
    assert!(!glob_match("team/*", "other/app"));
}

#[test]
fn rules_for_users_groups_and_anonymous() {
    let a = auth(vec![
        rule(&["team/**"], &["alice"], &[], false, &["pull", "push"]),
        rule(&["team/**"], &[], &["devs"], false, &["pull"]),
        rule(&["public/*"], &[], &[], true, &["pull"]),
    ]);
    let alice = Caller::User("alice".into());
    let bob = Caller::User("bob".into());
    assert!(a.permitted(&alice, "team/x").has(Action::Push));
    assert!(!a.permitted(&alice, "team/x").has(Action::Delete));
    assert!(a.permitted(&bob, "team/x").has(Action::Pull));
    assert!(!a.permitted(&bob, "team/x").has(Action::Push));
    assert!(a
        .permitted(&Caller::Anonymous, "public/x")
        .has(Action::Pull));
    assert!(!a.permitted(&Caller::Anonymous, "team/x").has(Action::Pull));
}

#[test]
fn htpasswd_alone_grants_every_user_everything() {
    let a = auth(vec![]);
    assert_eq!(
        a.permitted(&Caller::User("bob".into()), "any/repo"),
        Actions::ALL
    );
    assert_eq!(
        a.permitted(&Caller::Anonymous, "any/repo"),
        Actions::default()
    );
}

#[test]
fn passwords() {
    let a = auth(vec![]);
    assert!(a.check_password("alice", "secret"));
    assert!(a.check_password("alice", "secret"), "cached");
    assert!(!a.check_password("alice", "wrong"));
    assert!(!a.check_password("mallory", "secret"));
}

#[test]
fn failed_logins_are_limited_per_user_and_per_address_but_successes_are_cached() {
    let a = auth(vec![]);
    let attacker: IpAddr = "192.0.2.1".parse().unwrap();
    let elsewhere: IpAddr = "192.0.2.2".parse().unwrap();
    assert_eq!(a.login("alice", "secret", Some(attacker)), Ok(true));
    for _ in 0..10 {
        assert_eq!(a.login("alice", "guess", Some(attacker)), Ok(false));
    }
    assert!(a.login("alice", "guess", Some(attacker)).is_err());
    assert!(
        a.login("alice", "guess", Some(elsewhere)).is_err(),
        "per user"
    );
    assert!(
        a.login("bob", "secret", Some(attacker)).is_err(),
        "per address"
    );
    assert_eq!(a.login("bob", "secret", Some(elsewhere)), Ok(true));
    assert_eq!(
        a.login("alice", "secret", Some(attacker)),
        Ok(true),
        "a cached success still passes"
    );
}

#[test]
fn tokens_round_trip_and_reject_tampering() {
    let a = auth(vec![rule(&["team/*"], &["alice"], &[], false, &["pull"])]);
    let alice = Caller::User("alice".into());
    let (token, ttl) = a.issue_token(&alice, &["repository:team/x:pull,push".into()]);
    assert!(ttl >= 60);
    let claims = a.verify_token(&token).unwrap();
    assert_eq!(claims.access[0].actions, ["pull"], "push is not granted");
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&serde_json::json!({"iss":"strata","sub":"alice","aud":"strata","exp":u64::MAX,"nbf":0,"iat":0,"jti":"x",
            "access":[{"type":"repository","name":"team/x","actions":["pull","push"]}]}))
        .unwrap(),
    );
    parts[1] = &forged;
    assert!(a.verify_token(&parts.join(".")).is_err());
    let other = Auth::new(&AuthConfig::default(), b"other key".to_vec()).unwrap();
    assert!(other.verify_token(&token).is_err());
    let expired = a.sign(&Claims {
        iss: ISSUER.into(),
        sub: "alice".into(),
        aud: "strata".into(),
        exp: now() - 1,
        nbf: 0,
        iat: 0,
        jti: "x".into(),
        access: vec![],
    });
    assert_eq!(
        a.verify_token(&expired).unwrap_err(),
        Refusal::Unauthenticated {
            reason: "token expired"
        }
    );
}
