//! `alerts.rules`: the configuration's changes to the default rules, and rules added by name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rules::{default_rule, default_rules, summary, Rule, RuleKind, Severity};

/// The longest `for_ms` and `window_ms`: a week.
pub const SPAN_MS_MAX: u64 = 7 * 24 * 3_600_000;
/// The shortest `window_ms` of a rate rule.
pub const WINDOW_MS_MIN: u64 = 1_000;
/// The longest rule name, label name and label value.
pub const NAME_LEN_MAX: usize = 128;
pub const VALUE_LEN_MAX: usize = 1_024;
/// Labels every alert gets from the evaluator: a rule cannot set them.
const RESERVED_LABELS: [&str; 3] = ["alertname", "queue", "severity"];

/// One entry of `alerts.rules`: names a default rule to change or disable, or adds a rule of
/// `kind` under a new name. Unset fields keep the default's (or the kind's default's) value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSetting {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RuleKind>,
    /// `false` removes the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Replace the rule's labels and annotations when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// What is wrong with `alerts.rules`: one line per problem, each naming the entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct RulesError(pub Vec<String>);

/// The rules in force: the defaults, changed, removed and added to by `settings` in order.
/// Every problem is reported, not only the first.
pub fn resolve_rules(settings: &[RuleSetting]) -> Result<Vec<Rule>, RulesError> {
    let mut rules = default_rules();
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for (index, setting) in settings.iter().enumerate() {
        let at = format!("alerts.rules[{index}] (name = {:?})", setting.name);
        if seen.contains(&setting.name) {
            problems.push(format!("{at}: the rule is named twice; merge the two entries"));
            continue;
        }
        seen.push(setting.name.clone());
        let before = problems.len();
        check_setting(setting, &at, &mut problems);
        if problems.len() > before {
            continue;
        }
        let position = rules.iter().position(|rule| rule.name == setting.name);
        let mut rule = match (position, setting.kind) {
            (Some(position), Some(kind)) if rules[position].kind != kind => {
                let default_kind = rules[position].kind;
                problems.push(format!(
                    "{at}: kind = {kind:?} but the default rule of that name is {default_kind:?}; pick another name to add a rule"
                ));
                continue;
            }
            (Some(position), _) => rules.remove(position),
            (None, Some(kind)) => Rule { name: setting.name.clone(), ..default_rule(kind) },
            (None, None) => {
                let names: Vec<String> = default_rules().into_iter().map(|r| r.name).collect();
                problems.push(format!(
                    "{at}: no default rule has this name ({}); set kind to add a rule",
                    names.join(", ")
                ));
                continue;
            }
        };
        if setting.enabled == Some(false) {
            continue;
        }
        apply(setting, &mut rule);
        if rule.kind.uses_window() && rule.window_ms < WINDOW_MS_MIN {
            problems.push(format!(
                "{at}: window_ms = {} is out of range: a {:?} rule needs {WINDOW_MS_MIN}..={SPAN_MS_MAX}",
                rule.window_ms, rule.kind
            ));
        }
        rules.push(rule);
    }
    match problems.is_empty() {
        true => Ok(rules),
        false => Err(RulesError(problems)),
    }
}

fn apply(setting: &RuleSetting, rule: &mut Rule) {
    rule.threshold = setting.threshold.unwrap_or(rule.threshold);
    rule.for_ms = setting.for_ms.unwrap_or(rule.for_ms);
    rule.window_ms = setting.window_ms.unwrap_or(rule.window_ms);
    rule.severity = setting.severity.unwrap_or(rule.severity);
    if let Some(labels) = &setting.labels {
        rule.labels = labels.clone();
    }
    match &setting.annotations {
        Some(annotations) => rule.annotations = annotations.clone(),
        None => {
            rule.annotations.insert("summary".to_string(), summary(rule));
        }
    }
}

fn check_setting(setting: &RuleSetting, at: &str, problems: &mut Vec<String>) {
    if !is_name(&setting.name) {
        problems.push(format!(
            "{at}: a rule name is 1..={NAME_LEN_MAX} characters of a-z, A-Z, 0-9 and _, not starting with a digit"
        ));
    }
    for (key, value) in [("for_ms", setting.for_ms), ("window_ms", setting.window_ms)] {
        if let Some(value) = value.filter(|v| *v > SPAN_MS_MAX) {
            problems.push(format!(
                "{at}: {key} = {value} is out of range: must be in 0..={SPAN_MS_MAX}"
            ));
        }
    }
    for (name, value) in setting.labels.iter().flatten() {
        if !is_name(name) {
            problems.push(format!("{at}: label {name:?} is not a label name (a-z, A-Z, 0-9 and _, not starting with a digit)"));
        } else if RESERVED_LABELS.contains(&name.as_str()) {
            problems.push(format!("{at}: label {name:?} is set by chute itself"));
        }
        if value.len() > VALUE_LEN_MAX {
            problems.push(format!("{at}: label {name:?} is over {VALUE_LEN_MAX} bytes"));
        }
    }
    for (name, value) in setting.annotations.iter().flatten() {
        if !is_name(name) || value.len() > VALUE_LEN_MAX {
            problems.push(format!("{at}: annotation {name:?} needs a label-like name and at most {VALUE_LEN_MAX} bytes"));
        }
    }
}

/// A Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`), of bounded length.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && name.len() <= NAME_LEN_MAX && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(name: &str) -> RuleSetting {
        RuleSetting { name: name.to_string(), ..RuleSetting::default() }
    }

    fn rule<'a>(rules: &'a [Rule], name: &str) -> &'a Rule {
        rules.iter().find(|r| r.name == name).expect("the rule is there")
    }

    #[test]
    fn no_settings_is_the_defaults() {
        assert_eq!(resolve_rules(&[]).unwrap(), default_rules());
    }

    /// A setting changes only what it sets; `enabled = false` removes the rule.
    #[test]
    fn settings_override_and_disable_defaults() {
        let depth = RuleSetting {
            threshold: Some(5),
            for_ms: Some(0),
            labels: Some(BTreeMap::from([("team".into(), "ops".into())])),
            ..setting("queue_depth_high")
        };
        let off = RuleSetting { enabled: Some(false), ..setting("storage_sync_slow") };
        let rules = resolve_rules(&[depth, off]).unwrap();
        let changed = rule(&rules, "queue_depth_high");
        assert_eq!((changed.threshold, changed.for_ms), (5, 0));
        assert_eq!(changed.severity, Severity::Warning, "kept");
        assert_eq!(changed.labels["team"], "ops");
        assert_eq!(changed.annotations["summary"], "more than 5 messages ready", "follows");
        assert!(rules.iter().all(|r| r.name != "storage_sync_slow"));
        assert_eq!(rules.len(), default_rules().len() - 1);
    }

    /// A new name with a kind adds a rule from the kind's defaults.
    #[test]
    fn a_new_name_with_a_kind_adds_a_rule() {
        let deep = RuleSetting {
            kind: Some(RuleKind::QueueDepth),
            threshold: Some(1_000_000),
            severity: Some(Severity::Critical),
            ..setting("queue_depth_critical")
        };
        let rules = resolve_rules(&[deep]).unwrap();
        let added = rule(&rules, "queue_depth_critical");
        assert_eq!((added.kind, added.threshold), (RuleKind::QueueDepth, 1_000_000));
        assert_eq!(added.for_ms, rule(&rules, "queue_depth_high").for_ms);
    }

    /// Every problem is reported, each naming its entry.
    #[test]
    fn bad_settings_are_refused_with_specific_errors() {
        let cases = [
            (setting("no_such_rule"), "no default rule has this name"),
            (
                RuleSetting { kind: Some(RuleKind::DiskAlarm), ..setting("queue_depth_high") },
                "pick another name",
            ),
            (setting("9lives"), "a rule name is"),
            (
                RuleSetting { for_ms: Some(SPAN_MS_MAX + 1), ..setting("storage_failed") },
                "for_ms = 604800001 is out of range",
            ),
            (
                RuleSetting { window_ms: Some(10), ..setting("dead_letters_growing") },
                "window_ms = 10 is out of range",
            ),
            (
                RuleSetting {
                    labels: Some(BTreeMap::from([("severity".into(), "x".into())])),
                    ..setting("storage_failed")
                },
                "is set by chute itself",
            ),
            (
                RuleSetting {
                    labels: Some(BTreeMap::from([("bad-name".into(), "x".into())])),
                    ..setting("storage_failed")
                },
                "is not a label name",
            ),
        ];
        for (bad, expected) in cases {
            let error = resolve_rules(std::slice::from_ref(&bad)).unwrap_err();
            assert_eq!(error.0.len(), 1, "{error}");
            assert!(error.0[0].contains(expected), "{bad:?}: {error}");
            assert!(error.0[0].starts_with("alerts.rules[0]"), "{error}");
        }
        let twice = resolve_rules(&[setting("storage_failed"), setting("storage_failed")]);
        assert!(twice.unwrap_err().0[0].contains("named twice"));
    }
}
