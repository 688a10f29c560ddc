//! Field-level differences between two canonical objects.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Side;

/// One field that differs: its path (`spec.programs["Scan"].maxRunTime`)
/// and both values (none where the field is absent on that side).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

pub fn field_changes(before: &Side, after: &Side) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk(
        "metadata",
        Some(&before.metadata),
        Some(&after.metadata),
        &mut out,
    );
    walk("spec", Some(&before.spec), Some(&after.spec), &mut out);
    out
}

fn walk(path: &str, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            for (key, bv) in b {
                walk(&format!("{path}.{key}"), Some(bv), a.get(key), out);
            }
            for (key, av) in a {
                if !b.contains_key(key) {
                    walk(&format!("{path}.{key}"), None, Some(av), out);
                }
            }
        }
        (Some(Value::Array(b)), Some(Value::Array(a))) if named(b) && named(a) => {
            // Lists of named things (programs) match by name, not position.
            let name = |v: &Value| v["name"].as_str().unwrap_or_default().to_string();
            for bv in b {
                let n = name(bv);
                walk(
                    &format!("{path}[{n:?}]"),
                    Some(bv),
                    a.iter().find(|av| name(av) == n),
                    out,
                );
            }
            for av in a {
                let n = name(av);
                if !b.iter().any(|bv| name(bv) == n) {
                    walk(&format!("{path}[{n:?}]"), None, Some(av), out);
                }
            }
        }
        (Some(Value::Array(b)), Some(Value::Array(a))) if b.len() == a.len() => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                walk(&format!("{path}[{i}]"), Some(bv), Some(av), out);
            }
        }
        (b, a) if b != a => out.push(FieldChange {
            path: path.to_string(),
            before: b.cloned(),
            after: a.cloned(),
        }),
        _ => {}
    }
}

fn named(items: &[Value]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|v| v.get("name").and_then(Value::as_str).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn side(spec: Value) -> Side {
        Side {
            metadata: json!({"labels": {}, "annotations": {}}),
            spec,
            hash: String::new(),
        }
    }

    #[test]
    fn reports_only_what_differs() {
        let before = side(
            json!({"priority": "medium", "programs": [{"name": "Scan", "maxRunTime": "1h"}, {"name": "Sync", "maxRunTime": "30m"}]}),
        );
        let after = side(
            json!({"priority": "high", "programs": [{"name": "Sync", "maxRunTime": "30m"}, {"name": "Scan", "maxRunTime": "2h"}, {"name": "Kick"}]}),
        );
        let paths: Vec<_> = field_changes(&before, &after)
            .into_iter()
            .map(|c| (c.path, c.before, c.after))
            .collect();
        assert_eq!(
            paths,
            vec![
                (
                    "spec.priority".into(),
                    Some(json!("medium")),
                    Some(json!("high"))
                ),
                (
                    "spec.programs[\"Scan\"].maxRunTime".into(),
                    Some(json!("1h")),
                    Some(json!("2h"))
                ),
                (
                    "spec.programs[\"Kick\"]".into(),
                    None,
                    Some(json!({"name": "Kick"}))
                ),
            ]
        );
    }

    #[test]
    fn lists_of_other_lengths_change_whole() {
        let changes = field_changes(
            &side(json!({"dps": ["a"]})),
            &side(json!({"dps": ["a", "b"]})),
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "spec.dps");
    }
}
