//! One YAML document → one typed manifest: the envelope (`apiVersion`,
//! `kind`), literal secrets, and the kind's schema.

use crate::diagnostic::Diagnostic;
use crate::load::SourceFile;
use crate::manifest::{kind_schema, Kind, Manifest, Metadata, Spec, API_VERSION};
use crate::schema_check::{self, Problem};
use crate::suggest::{did_you_mean, one_of};
use crate::yaml::{Document, FieldPath, Node, NodeKind};

/// Reads one document; `None` when it has errors (they are in `out`).
pub fn read(file: &SourceFile, doc: &Document, out: &mut Vec<Diagnostic>) -> Option<Manifest> {
    let root = &doc.root;
    let diag = |d: Diagnostic| d.in_file(file.path.clone());
    if root.as_map().is_none() {
        out.push(diag(
            Diagnostic::error("invalid-type", format!("expected a manifest (a mapping with `apiVersion`, `kind`, `metadata` and `spec`), found {}", root.describe()))
                .at(root.pos, 1),
        ));
        return None;
    }
    let kind = read_kind(root, file, out)?;
    let object = root
        .get("metadata")
        .and_then(|m| m.value.get("name"))
        .and_then(|n| n.value.as_str())
        .map(|name| format!("{kind}/{name}"));
    let with_object = |d: Diagnostic| match &object {
        Some(o) => diag(d).with_object(o.clone()),
        None => diag(d),
    };

    let before = out.len();
    report_literal_secrets(root, &mut Vec::new(), &mut |d| out.push(with_object(d)));
    let mut problems: Vec<Problem> = Vec::new();
    let schema = kind_schema(kind);
    let value = schema_check::check(
        root,
        schema,
        schema,
        &FieldPath::default(),
        &|key| is_secret_key(key),
        &mut problems,
    );
    out.extend(problems.into_iter().map(|p| {
        with_object(
            Diagnostic::error(p.code, p.message)
                .at(p.pos, p.len)
                .with_path(p.path)
                .with_help_opt(p.help),
        )
    }));
    let mut value = value?;
    if out.len() > before {
        return None;
    }
    let metadata: Result<Metadata, _> = serde_json::from_value(value["metadata"].take());
    let spec = Spec::from_value(kind, value["spec"].take());
    match (metadata, spec) {
        (Ok(metadata), Ok(spec)) => Some(Manifest {
            api_version: API_VERSION,
            kind,
            metadata,
            spec: Box::new(spec),
        }),
        (Err(e), _) | (_, Err(e)) => {
            // The schema and the types are generated from the same source;
            // this is a bug, but still the user's file is named.
            out.push(with_object(
                Diagnostic::error(
                    "internal",
                    format!("the manifest passed its schema but could not be read: {e}"),
                )
                .at(root.pos, 1),
            ));
            None
        }
    }
}

fn read_kind(root: &Node, file: &SourceFile, out: &mut Vec<Diagnostic>) -> Option<Kind> {
    let kinds = || one_of(Kind::ALL.iter().map(|k| k.as_str()));
    let Some(entry) = root.get("kind") else {
        out.push(
            Diagnostic::error("missing-field", "missing required field `kind`")
                .in_file(file.path.clone())
                .at(root.pos, 1)
                .with_path("kind")
                .with_help(format!("every manifest names its kind: one of {}", kinds())),
        );
        return None;
    };
    let value = &entry.value;
    let Some(text) = value.as_str() else {
        out.push(
            Diagnostic::error(
                "invalid-type",
                format!("expected one of {}, found {}", kinds(), value.describe()),
            )
            .in_file(file.path.clone())
            .at(value.pos, 1)
            .with_path("kind"),
        );
        return None;
    };
    match text.parse::<Kind>() {
        Ok(kind) => Some(kind),
        Err(()) => {
            let help = did_you_mean(text, Kind::ALL.iter().map(|k| k.as_str()))
                .map(|k| format!("did you mean `{k}`?"))
                .unwrap_or_else(|| format!("kinds: {}", kinds()));
            out.push(
                Diagnostic::error("unknown-kind", format!("unknown kind `{text}`"))
                    .in_file(file.path.clone())
                    .at(value.pos, text.len())
                    .with_path("kind")
                    .with_help(help),
            );
            None
        }
    }
}

/// Keys that, holding a value, would put a secret into the repository.
pub fn is_secret_key(key: &str) -> bool {
    const SECRET_WORDS: [&[u8]; 9] = [
        b"password",
        b"passwd",
        b"secret",
        b"token",
        b"apikey",
        b"api_key",
        b"privatekey",
        b"private_key",
        b"credential",
    ];
    let k = key.as_bytes();
    let ends_with = |suffix: &[u8]| {
        k.len() >= suffix.len() && k[k.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    if ends_with(b"from") || ends_with(b"ref") {
        return false;
    }
    // This runs on every key of every manifest: without allocating, and
    // comparing only where a word can start (every word starts with one of
    // `a c p s t`).
    (0..k.len()).any(|i| {
        matches!(k[i].to_ascii_lowercase(), b'a' | b'c' | b'p' | b's' | b't')
            && SECRET_WORDS
                .iter()
                .any(|w| k.len() - i >= w.len() && k[i..i + w.len()].eq_ignore_ascii_case(w))
    })
}

/// A step of the path to the node being walked; the path is built only
/// for a report (this walk visits every key of every manifest).
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn field_path(steps: &[Step<'_>]) -> FieldPath {
    steps
        .iter()
        .fold(FieldPath::default(), |path, step| match step {
            Step::Key(k) => path.key(k),
            Step::Index(i) => path.index(*i),
        })
}

fn report_literal_secrets<'a>(
    node: &'a Node,
    path: &mut Vec<Step<'a>>,
    report: &mut dyn FnMut(Diagnostic),
) {
    match &node.kind {
        NodeKind::Map(entries) => {
            for e in entries {
                path.push(Step::Key(&e.key));
                if is_secret_key(&e.key)
                    && !e.value.is_null()
                    && matches!(e.value.kind, NodeKind::Scalar { .. })
                {
                    report(
                        Diagnostic::error("literal-secret", format!("`{}` holds a literal secret; secrets may only be referenced", e.key))
                            .at(e.key_pos, e.key.len())
                            .with_path(field_path(path).to_string())
                            .with_help(format!(
                                "use `{}From: {{env: NAME}}` or `{}From: {{file: PATH}}`, and remove the secret from the repository's history; its value is not shown here",
                                e.key, e.key
                            )),
                    );
                } else {
                    report_literal_secrets(&e.value, path, report);
                }
                path.pop();
            }
        }
        NodeKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Index(i));
                report_literal_secrets(item, path, report);
                path.pop();
            }
        }
        NodeKind::Scalar { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::is_secret_key;

    #[test]
    fn secret_keys_are_found_in_any_case_and_references_are_not() {
        for key in [
            "password",
            "proxyPassword",
            "PASSWD",
            "clientSecret",
            "apiToken",
            "tokenizer",
            "ApiKey",
            "api_key",
            "privateKey",
            "private_key",
            "credentials",
            "xSeCrEt",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "passwordFrom",
            "apiTokenRef",
            "SECRETFROM",
            "name",
            "commandLine",
            "spec",
            "",
            "pass",
            "toke",
            "credentia",
            "api-key",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}
