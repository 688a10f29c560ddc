//! Type rules: which tests and values each kind of property accepts.

use std::ops::Range;

use super::ast::{CompareOp, Literal, PropertyKind};
use super::error::{LiteralError, QueryError};
use super::lexer::{LiteralToken, RawValue};
use super::like::LikePattern;
use super::net::{parse_cidr, parse_ipv4, Ipv4Net};
use super::properties::{known_properties, Resolved};
use super::time::check_timestamp;
use super::version::check_version;
use crate::excerpt::of as excerpt;
use crate::suggest::did_you_mean as closest;

/// Rejects ordering operators on properties whose values have no order.
pub(super) fn compare_op(
    resolved: &Resolved,
    op: CompareOp,
    op_span: Range<usize>,
) -> Result<(), QueryError> {
    if !op.is_ordering() {
        return Ok(());
    }
    let property = &resolved.property;
    let help = match property.kind {
        PropertyKind::Text => "text can be tested with `=`, `!=`, `like` and `in (...)`",
        PropertyKind::Address => {
            "addresses can be tested with `=`, `!=`, `in (...)` and `in subnet 'A.B.C.D/N'`"
        }
        PropertyKind::Version | PropertyKind::Number | PropertyKind::Time => return Ok(()),
    };
    Err(QueryError::new(
        op_span,
        format!(
            "`{}` needs ordered values, but `{}` is {}",
            op.symbol(),
            property.name,
            described(property.kind)
        ),
    )
    .with_help(help))
}

/// Checks a value compared with (or listed for) the property.
pub(super) fn value(
    resolved: &Resolved,
    literal: &LiteralToken<'_>,
) -> Result<Literal, QueryError> {
    let property = &resolved.property;
    match (&literal.value, property.kind) {
        (RawValue::Number(text), PropertyKind::Number) => number(literal, text),
        (RawValue::Number(text), kind) => Err(QueryError::new(
            literal.token.span(),
            format!(
                "`{}` is {}, so its value must be a quoted string",
                property.name,
                described(kind)
            ),
        )
        .with_help(format!("write `'{}'`", excerpt(text)))),
        (RawValue::Str(_), PropertyKind::Number) => Err(string_for_number(resolved, literal)),
        (RawValue::Str(text), PropertyKind::Text) => text_value(resolved, literal, text),
        (RawValue::Str(text), PropertyKind::Version) => validated(literal, text, check_version),
        (RawValue::Str(text), PropertyKind::Address) => {
            validated(literal, text, |t| parse_ipv4(t).map(drop))
        }
        (RawValue::Str(text), PropertyKind::Time) => validated(literal, text, check_timestamp),
    }
}

/// Checks a `like` test: the property must be text and the pattern valid.
pub(super) fn like(
    resolved: &Resolved,
    keyword_span: Range<usize>,
    literal: &LiteralToken<'_>,
) -> Result<LikePattern, QueryError> {
    let property = &resolved.property;
    if property.kind != PropertyKind::Text {
        let help = match property.kind {
            PropertyKind::Address => "test address ranges with `in subnet 'A.B.C.D/N'`",
            _ => "compare it with `=`, `!=`, `<`, `<=`, `>` or `>=`",
        };
        return Err(QueryError::new(
            keyword_span,
            format!(
                "`like` applies only to text properties, but `{}` is {}",
                property.name,
                described(property.kind)
            ),
        )
        .with_help(help));
    }
    match &literal.value {
        RawValue::Str(text) => LikePattern::compile(text).map_err(|e| at_literal(literal, e)),
        RawValue::Number(text) => Err(QueryError::new(
            literal.token.span(),
            "a like pattern must be a quoted string",
        )
        .with_help(format!("write `'{}'`", excerpt(text)))),
    }
}

/// Checks an `in subnet` test: the property must be an address and the
/// network a valid CIDR.
pub(super) fn subnet(
    resolved: &Resolved,
    keyword_span: Range<usize>,
    literal: &LiteralToken<'_>,
) -> Result<Ipv4Net, QueryError> {
    let property = &resolved.property;
    if property.kind != PropertyKind::Address {
        let addresses: Vec<String> = known_properties()
            .filter(|(_, kind)| *kind == PropertyKind::Address)
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        return Err(QueryError::new(
            keyword_span,
            format!(
                "`in subnet` applies only to address properties, but `{}` is {}",
                property.name,
                described(property.kind)
            ),
        )
        .with_help(format!(
            "the address properties are {}",
            addresses.join(" and ")
        )));
    }
    match &literal.value {
        RawValue::Str(text) => parse_cidr(text).map_err(|e| at_literal(literal, e)),
        RawValue::Number(_) => Err(QueryError::new(
            literal.token.span(),
            "a subnet must be a quoted string",
        )
        .with_help("write it in CIDR form, e.g. `'10.0.0.0/8'`")),
    }
}

/// "a text property", "an address property"...
fn described(kind: PropertyKind) -> String {
    let article = if kind == PropertyKind::Address {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind} property")
}

fn number(literal: &LiteralToken<'_>, text: &str) -> Result<Literal, QueryError> {
    let span = literal.token.span();
    if !is_decimal(text) {
        return Err(
            QueryError::new(span, format!("`{}` is not a number", excerpt(text)))
                .with_help("a number has at most one decimal point, e.g. `512` or `-1.5`"),
        );
    }
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(Literal::Number(n)),
        _ => Err(QueryError::new(
            span,
            format!("number `{}` is out of range", excerpt(text)),
        )),
    }
}

/// `-?digits(.digits)?`, the only number syntax the language has.
fn is_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    unsigned
        .splitn(2, '.')
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

fn string_for_number(resolved: &Resolved, literal: &LiteralToken<'_>) -> QueryError {
    let property = &resolved.property;
    let error = QueryError::new(
        literal.token.span(),
        format!(
            "`{}` is a number property, so its value must be a number, not a string",
            property.name
        ),
    );
    match &literal.value {
        RawValue::Str(text) if is_decimal(text) => {
            error.with_help(format!("remove the quotes: `{}`", excerpt(text)))
        }
        _ => error,
    }
}

fn text_value(
    resolved: &Resolved,
    literal: &LiteralToken<'_>,
    text: &str,
) -> Result<Literal, QueryError> {
    let allowed = resolved.allowed_values;
    if allowed.is_empty() {
        return Ok(Literal::String(text.to_owned()));
    }
    // Matching ignores case like WQL; the canonical spelling is stored.
    if let Some(value) = allowed
        .iter()
        .find(|value| value.eq_ignore_ascii_case(text))
    {
        return Ok(Literal::String((*value).to_owned()));
    }
    let listed = allowed.join(", ");
    let help = match closest(text, allowed.iter().copied()) {
        Some(suggestion) => format!("did you mean `'{suggestion}'`? valid values are {listed}"),
        None => format!("valid values are {listed}"),
    };
    Err(QueryError::new(
        literal.token.span(),
        format!(
            "`{}` is not a valid value for `{}`",
            excerpt(literal.token.text),
            resolved.property.name
        ),
    )
    .with_help(help))
}

fn validated(
    literal: &LiteralToken<'_>,
    text: &str,
    check: fn(&str) -> Result<(), LiteralError>,
) -> Result<Literal, QueryError> {
    check(text).map_err(|e| at_literal(literal, e))?;
    Ok(Literal::String(text.to_owned()))
}

fn at_literal(literal: &LiteralToken<'_>, error: LiteralError) -> QueryError {
    QueryError::new(literal.value_span(error.range), error.message).with_optional_help(error.help)
}
