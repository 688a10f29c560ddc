//! End-to-end tests of `parse` and the canonical text.

use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::parser::MAX_DEPTH;
use super::properties::resolve;
use super::*;

fn ok(src: &str) -> Query {
    parse(src).unwrap_or_else(|e| panic!("{src:?} should parse: {e:?}"))
}

fn err(src: &str) -> QueryError {
    match parse(src) {
        Ok(query) => panic!("{src:?} should fail, parsed as {query}"),
        Err(e) => e,
    }
}

fn canonical(src: &str) -> String {
    ok(src).to_string()
}

fn property(name: &str) -> Property {
    resolve(name, 0..0)
        .map(|r| r.property)
        .expect("known property")
}

fn condition(name: &str, test: Test) -> Expr {
    Expr::Condition(Condition {
        property: property(name),
        test,
    })
}

fn eq(name: &str, value: &str) -> Expr {
    condition(
        name,
        Test::Compare {
            op: CompareOp::Eq,
            value: Literal::String(value.to_owned()),
        },
    )
}

// ---- structure -------------------------------------------------------------

#[test]
fn and_binds_tighter_than_or() {
    let q = ok("name = 'a' or name = 'b' and name = 'c'");
    assert_eq!(
        q.expr,
        Expr::Or(vec![
            eq("name", "a"),
            Expr::And(vec![eq("name", "b"), eq("name", "c")])
        ])
    );
}

#[test]
fn not_binds_tighter_than_and() {
    let q = ok("not name = 'a' and name = 'b'");
    assert_eq!(
        q.expr,
        Expr::And(vec![Expr::Not(Box::new(eq("name", "a"))), eq("name", "b")])
    );
}

#[test]
fn parentheses_override_precedence_and_same_operators_flatten() {
    let q = ok("(name = 'a' or name = 'b') and name = 'c'");
    assert_eq!(
        q.expr,
        Expr::And(vec![
            Expr::Or(vec![eq("name", "a"), eq("name", "b")]),
            eq("name", "c")
        ])
    );
    let q = ok("name = 'a' or (name = 'b' or (name = 'c'))");
    assert_eq!(
        q.expr,
        Expr::Or(vec![eq("name", "a"), eq("name", "b"), eq("name", "c")])
    );
    assert_eq!(ok("((name = 'a'))").expr, eq("name", "a"));
}

#[test]
fn keywords_and_property_names_ignore_case() {
    let q = ok("NAME = 'a' Or OS.TYPE = 'SERVER' AND NoT Hardware.MemoryMb Is NoT NuLL");
    assert_eq!(
        q.to_string(),
        "name = 'a' or os.type = 'server' and not hardware.memoryMB is not null"
    );
    assert_eq!(
        canonical("name NOT LIKE 'x' or ip.address NOT IN SUBNET '10.0.0.0/8'"),
        "name not like 'x' or ip.address not in subnet '10.0.0.0/8'"
    );
}

#[test]
fn angle_brackets_mean_not_equal() {
    let q = ok("name <> 'a'");
    assert_eq!(
        q.expr,
        condition(
            "name",
            Test::Compare {
                op: CompareOp::Ne,
                value: Literal::String("a".into()),
            }
        )
    );
    assert_eq!(q.to_string(), "name != 'a'");
}

#[test]
fn quotes_escape_by_doubling() {
    assert_eq!(ok("name = 'it''s'").expr, eq("name", "it's"));
    assert_eq!(ok(r#"name = "say ""hi""""#).expr, eq("name", r#"say "hi""#));
    assert_eq!(ok(r#"name = "it's""#).expr, eq("name", "it's"));
    assert_eq!(ok("name = ''").expr, eq("name", ""));
    assert_eq!(canonical(r#"name = "it's""#), "name = 'it''s'");
}

#[test]
fn every_test_form_parses() {
    let q = ok("hardware.memoryMB >= -512.5 and os.servicePack in (1, 2) \
                and installed.product is not null and site is null \
                and ip.address not in subnet '10.0.0.0/8' and name not like 'srv%' \
                and lastHeartbeat < '2026-11-24T02:00:00Z' and os.version <= '6' \
                and properties.owner in ('bob')");
    let Expr::And(conditions) = &q.expr else {
        panic!("expected a conjunction, got {q:?}");
    };
    assert_eq!(conditions.len(), 9);
    assert_eq!(
        conditions[0],
        condition(
            "hardware.memoryMB",
            Test::Compare {
                op: CompareOp::Ge,
                value: Literal::Number(-512.5),
            }
        )
    );
    assert_eq!(
        conditions[4],
        condition(
            "ip.address",
            Test::InSubnet {
                network: Ipv4Net {
                    addr: Ipv4Addr::new(10, 0, 0, 0),
                    prefix: 8,
                },
                negated: true,
            }
        )
    );
    let Expr::Condition(Condition {
        test: Test::Like {
            pattern,
            negated: true,
        },
        ..
    }) = &conditions[5]
    else {
        panic!("expected not like, got {:?}", conditions[5]);
    };
    assert!(pattern.matches("SRV01"));
    assert_eq!(
        ok("properties.owner = 'x'").to_string(),
        "properties.owner = 'x'"
    );
}

#[test]
fn properties_carry_type_and_multiplicity() {
    let Expr::Condition(c) = ok("IP.Address is null").expr else {
        panic!("expected a condition");
    };
    assert_eq!(
        c.property,
        Property {
            name: "ip.address".into(),
            kind: PropertyKind::Address,
            multi_valued: true,
        }
    );
    let Expr::Condition(c) = ok("PROPERTIES.Owner is null").expr else {
        panic!("expected a condition");
    };
    assert_eq!(
        c.property.name, "properties.Owner",
        "free-form keys keep their spelling"
    );
    assert_eq!(c.property.kind, PropertyKind::Text);
}

#[test]
fn enumerated_values_are_canonicalized() {
    assert_eq!(
        canonical("os.type in ('DOMAINCONTROLLER', 'Workstation') and architecture != 'X64'"),
        "os.type in ('domainController', 'workstation') and architecture != 'x64'"
    );
    // Patterns are not values, so they are not restricted.
    assert_eq!(canonical("os.type like 'serv%'"), "os.type like 'serv%'");
}

#[test]
fn known_properties_lists_the_registry() {
    let known: Vec<_> = known_properties().collect();
    assert!(known.contains(&("os.version", PropertyKind::Version)));
    assert!(known.contains(&("lastHeartbeat", PropertyKind::Time)));
    assert!(known.contains(&("properties.<key>", PropertyKind::Text)));
    assert_eq!(known.len(), 15);
    for (name, _) in known.iter().filter(|(name, _)| !name.contains('<')) {
        assert!(resolve(name, 0..0).is_ok(), "{name} resolves");
    }
}

#[test]
fn queries_parse_from_str_and_errors_display_their_message() {
    let q: Query = "name = 'x'".parse().expect("valid");
    assert_eq!(q.expr, eq("name", "x"));
    let e = "os.nam = 'x'".parse::<Query>().unwrap_err();
    assert_eq!(e.to_string(), "unknown property `os.nam`");
}

#[test]
fn compare_versions_orders_numerically() {
    use std::cmp::Ordering::*;
    assert_eq!(compare_versions("5.1.2600", "5.1.999"), Greater);
    assert_eq!(compare_versions("5.2", "5.1.2600"), Greater);
    assert_eq!(compare_versions("5.1", "5.1.0"), Equal);
}

// ---- canonical text -----------------------------------------------------------

#[test]
fn display_uses_minimal_parentheses() {
    let cases = [
        (
            "name = 'a' or (name = 'b' and name = 'c')",
            "name = 'a' or name = 'b' and name = 'c'",
        ),
        (
            "(name = 'a' or name = 'b') and name = 'c'",
            "(name = 'a' or name = 'b') and name = 'c'",
        ),
        ("not (name = 'a')", "not name = 'a'"),
        (
            "not (name = 'a' and name = 'b')",
            "not (name = 'a' and name = 'b')",
        ),
        ("not (not name = 'a')", "not not name = 'a'"),
        (
            "(not name = 'a') and name = 'b'",
            "not name = 'a' and name = 'b'",
        ),
        ("  name   =   'a'  ", "name = 'a'"),
        ("hardware.memoryMB=512", "hardware.memoryMB = 512"),
        (
            "hardware.memoryMB in(1,2.50,-0.5)",
            "hardware.memoryMB in (1, 2.5, -0.5)",
        ),
    ];
    for (src, expected) in cases {
        assert_eq!(canonical(src), expected, "{src}");
        assert_eq!(
            canonical(expected),
            expected,
            "canonical text is a fixed point"
        );
    }
}

#[test]
fn display_keeps_hand_built_trees_meaningful() {
    let nested = Query {
        expr: Expr::And(vec![
            Expr::Or(vec![eq("name", "a"), eq("name", "b")]),
            Expr::Not(Box::new(Expr::And(vec![eq("name", "c"), eq("name", "d")]))),
        ]),
    };
    let text = nested.to_string();
    assert_eq!(
        text,
        "(name = 'a' or name = 'b') and not (name = 'c' and name = 'd')"
    );
    assert_eq!(ok(&text), nested);
}

// ---- errors ----------------------------------------------------------------

/// (source, offset, len, message, help)
type ErrorCase = (
    &'static str,
    usize,
    usize,
    &'static str,
    Option<&'static str>,
);

#[test]
fn syntax_errors_point_at_the_culprit() {
    let cases: &[ErrorCase] = &[
        ("", 0, 0, "empty query", Some("write a condition, e.g. `os.name like 'Microsoft Windows%'`")),
        ("   ", 3, 0, "empty query", Some("write a condition, e.g. `os.name like 'Microsoft Windows%'`")),
        (
            "name = 'abc",
            7,
            1,
            "unterminated string",
            Some("end the string with '; write '' for a ' inside it"),
        ),
        ("name = \"a\"\"", 7, 1, "unterminated string", Some("end the string with \"; write \"\" for a \" inside it")),
        ("name = 'x' ; ", 11, 1, "unexpected character `;`", None),
        ("os.name =", 9, 0, "expected a value after `=`, found end of query", None),
        ("os.name = and name = 'x'", 10, 3, "expected a value after `=`, found `and`", None),
        ("os.name = foo", 10, 3, "expected a value after `=`, found `foo`", Some("text values must be quoted: `'foo'`")),
        (
            "os.name = 'x' foo",
            14,
            3,
            "expected `and`, `or` or end of query, found `foo`",
            Some("join conditions with `and` or `or`"),
        ),
        (
            "os.name = 'x' adn name = 'y'",
            14,
            3,
            "expected `and`, `or` or end of query, found `adn`",
            Some("did you mean `and`?"),
        ),
        (
            "os.name = 'x' && name = 'y'",
            14,
            2,
            "expected `and`, `or` or end of query, found `&&`",
            Some("conditions are joined with `and`"),
        ),
        (
            "os.name lik 'x'",
            8,
            3,
            "expected a comparison operator (=, !=, <, <=, >, >=, like, in, is) after `os.name`, found `lik`",
            Some("did you mean `like`?"),
        ),
        (
            "os.name == 'x'",
            8,
            2,
            "expected a comparison operator (=, !=, <, <=, >, >=, like, in, is) after `os.name`, found `==`",
            Some("equality is a single `=`"),
        ),
        (
            "os.name",
            7,
            0,
            "expected a comparison operator (=, !=, <, <=, >, >=, like, in, is) after `os.name`, found end of query",
            None,
        ),
        ("name = 'x' and", 14, 0, "expected a condition after `and`, found end of query", None),
        ("name = 'x' or or name = 'y'", 14, 2, "expected a condition after `or`, found `or`", None),
        ("not", 3, 0, "expected a condition after `not`, found end of query", None),
        (
            "'x' = name",
            0,
            3,
            "expected a condition, found `'x'`",
            Some("a condition starts with a property name, e.g. `os.name = 'x'`"),
        ),
        ("(name = 'x'", 0, 1, "unclosed `(`", Some("add a matching `)`")),
        ("((name = 'x')", 0, 1, "unclosed `(`", Some("add a matching `)`")),
        ("name = 'x')", 10, 1, "unmatched `)`", Some("remove it, or add a matching `(` earlier")),
        ("(name = 'x' name = 'y')", 12, 4, "expected `and`, `or` or `)`, found `name`", Some("join conditions with `and` or `or`")),
        ("()", 1, 1, "expected a condition after `(`, found `)`", None),
        ("name in ()", 8, 2, "empty value list", Some("`in` needs at least one value, e.g. `('a')`")),
        ("name in ('a' 'b')", 13, 3, "expected `,` or `)` in value list, found `'b'`", None),
        ("name in ('a',)", 13, 1, "expected a value after `,`, found `)`", None),
        ("name in ('a'", 8, 1, "unclosed `(` in value list", Some("add a matching `)`")),
        (
            "name in 'a'",
            8,
            3,
            "expected `(` or `subnet` after `in`, found `'a'`",
            Some("list values in parentheses, e.g. `name in ('a', 'b')`"),
        ),
        (
            "name is 'x'",
            8,
            3,
            "expected `null` after `is`, found `'x'`",
            Some("`is` only tests for a missing value; compare values with `=` or `!=`"),
        ),
        (
            "name is not 'x'",
            12,
            3,
            "expected `null` after `is not`, found `'x'`",
            Some("`is` only tests for a missing value; compare values with `=` or `!=`"),
        ),
        (
            "name not null",
            9,
            4,
            "expected `like` or `in` after `not`, found `null`",
            Some("to test for a value, write `is not null`"),
        ),
        ("name like", 9, 0, "expected a value after `like`, found end of query", None),
    ];
    check_errors(cases);
}

#[test]
fn type_errors_point_at_the_culprit() {
    let cases: &[ErrorCase] = &[
        ("os.nam = 'x'", 0, 6, "unknown property `os.nam`", Some("did you mean `os.name`?")),
        ("name = 'x' and memoryMB > 5", 15, 8, "unknown property `memoryMB`", Some("did you mean `hardware.memoryMB`?")),
        (
            "property.owner = 'x'",
            0,
            14,
            "unknown property `property.owner`",
            Some("did you mean `properties.owner`?"),
        ),
        (
            "properties. = 'x'",
            0,
            11,
            "missing key after `properties.`",
            Some("name the inventory property, e.g. `properties.owner`"),
        ),
        (
            "properties.a.b = 'x'",
            0,
            14,
            "invalid property key `a.b`",
            Some("keys may contain only letters, digits and `_`"),
        ),
        (
            "hardware.memoryMB = '512'",
            20,
            5,
            "`hardware.memoryMB` is a number property, so its value must be a number, not a string",
            Some("remove the quotes: `512`"),
        ),
        (
            "os.servicePack in (1, 'two')",
            22,
            5,
            "`os.servicePack` is a number property, so its value must be a number, not a string",
            None,
        ),
        (
            "os.name = 5",
            10,
            1,
            "`os.name` is a text property, so its value must be a quoted string",
            Some("write `'5'`"),
        ),
        (
            "hardware.memoryMB > 1.2.3",
            20,
            5,
            "`1.2.3` is not a number",
            Some("a number has at most one decimal point, e.g. `512` or `-1.5`"),
        ),
        (
            "os.version >= '5.1.x'",
            19,
            1,
            "invalid version component `x`",
            Some("a version is numbers separated by dots, e.g. `5.1.2600`"),
        ),
        (
            "os.version >= 5.1.2600",
            14,
            8,
            "`os.version` is a version property, so its value must be a quoted string",
            Some("write `'5.1.2600'`"),
        ),
        (
            "os.name < 'x'",
            8,
            1,
            "`<` needs ordered values, but `os.name` is a text property",
            Some("text can be tested with `=`, `!=`, `like` and `in (...)`"),
        ),
        (
            "ip.address >= '10.0.0.1'",
            11,
            2,
            "`>=` needs ordered values, but `ip.address` is an address property",
            Some("addresses can be tested with `=`, `!=`, `in (...)` and `in subnet 'A.B.C.D/N'`"),
        ),
        (
            "os.version not like '5%'",
            11,
            8,
            "`like` applies only to text properties, but `os.version` is a version property",
            Some("compare it with `=`, `!=`, `<`, `<=`, `>` or `>=`"),
        ),
        ("name like 5", 10, 1, "a like pattern must be a quoted string", Some("write `'5'`")),
        (
            "name like 'ab[cd'",
            13,
            1,
            "unbalanced `[` in like pattern",
            Some("close the character class with `]`, or write `[[]` to match a literal `[`"),
        ),
        (
            "name in subnet '10.0.0.0/8'",
            5,
            9,
            "`in subnet` applies only to address properties, but `name` is a text property",
            Some("the address properties are `ip.address` and `ip.subnet`"),
        ),
        (
            "ip.address in subnet '10.0.0.0/33'",
            31,
            2,
            "invalid prefix length `33` in subnet: expected a number from 0 to 32",
            None,
        ),
        (
            "ip.address in subnet '10.0.0.1/8'",
            22,
            10,
            "subnet `10.0.0.1/8` has host bits set",
            Some("did you mean `10.0.0.0/8`?"),
        ),
        ("ip.subnet not in subnet '10.0.300.0/24'", 30, 3, "IPv4 octet `300` is out of range: expected 0 to 255", None),
        (
            "ip.address in subnet '10.0.0.0'",
            30,
            1,
            "missing prefix length in subnet",
            Some("write the network in CIDR form, e.g. `10.0.0.0/24`"),
        ),
        (
            "ip.address = '10.0.0'",
            14,
            6,
            "expected an IPv4 address, found `10.0.0`",
            Some("an IPv4 address has four numbers separated by `.`, found 3"),
        ),
        (
            "os.type = 'servr'",
            10,
            7,
            "`'servr'` is not a valid value for `os.type`",
            Some("did you mean `'server'`? valid values are workstation, server, domainController"),
        ),
        (
            "architecture in ('x86', 'amd64')",
            24,
            7,
            "`'amd64'` is not a valid value for `architecture`",
            Some("valid values are x86, x64, ia64"),
        ),
        (
            "lastHeartbeat > '2026-13-01T00:00:00Z'",
            22,
            2,
            "month `13` is out of range: expected 01 to 12",
            Some("write an RFC 3339 timestamp, e.g. `2026-11-24T02:00:00Z` or `2026-11-24T02:00:00+01:00`"),
        ),
        (
            "lastHeartbeat > '2026-11-24'",
            27,
            1,
            "invalid timestamp: expected `T` between the date and the time, found the end",
            Some("write an RFC 3339 timestamp, e.g. `2026-11-24T02:00:00Z` or `2026-11-24T02:00:00+01:00`"),
        ),
    ];
    check_errors(cases);
}

#[test]
fn literal_errors_inside_escaped_strings_cover_the_whole_literal() {
    let e = err("name like 'it''s [x'");
    assert_eq!((e.offset, e.len), (10, 10));
}

#[test]
fn unknown_property_without_a_close_match_lists_them_all() {
    let e = err("zzz = 'x'");
    let help = e.help.expect("help");
    assert!(
        help.starts_with("known properties are name, domain, os.name"),
        "{help}"
    );
    assert!(help.ends_with("properties.<key>"), "{help}");
}

fn check_errors(cases: &[ErrorCase]) {
    for &(src, offset, len, message, help) in cases {
        let e = err(src);
        assert_eq!(
            (e.offset, e.len, e.message.as_str(), e.help.as_deref()),
            (offset, len, message, help),
            "for {src:?}"
        );
    }
}

// ---- nesting limits -----------------------------------------------------------

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    let parens = format!(
        "{}name = 'x'{}",
        "(".repeat(MAX_DEPTH),
        ")".repeat(MAX_DEPTH)
    );
    assert_eq!(ok(&parens).expr, eq("name", "x"));
    let nots = format!("{}name = 'x'", "not ".repeat(MAX_DEPTH));
    assert_eq!(ok(&nots).to_string(), nots);
}

#[test]
fn nesting_beyond_the_limit_is_rejected_at_the_opener() {
    let deep = format!(
        "{}name = 'x'{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    let e = err(&deep);
    assert_eq!((e.offset, e.len), (MAX_DEPTH, 1));
    assert_eq!(
        e.message,
        "query is nested too deeply: more than 64 levels of parentheses and `not`"
    );

    let mixed = format!("{}name = 'x'", "not (".repeat(MAX_DEPTH));
    let e = err(&mixed);
    let thirty_third_not = MAX_DEPTH / 2 * "not (".len();
    assert_eq!(
        (e.offset, e.len),
        (thirty_third_not, 3),
        "the 65th opener is the 33rd `not`"
    );
}

#[test]
fn hostile_sizes_do_not_overflow_the_stack() {
    assert!(parse(&"(".repeat(1_000_000)).is_err());
    assert!(parse(&"not ".repeat(1_000_000)).is_err());
    let wide = vec!["name = 'x'"; 50_000].join(" or ");
    let Expr::Or(operands) = ok(&wide).expr else {
        panic!("expected a disjunction");
    };
    assert_eq!(operands.len(), 50_000);
}

// ---- properties ----------------------------------------------------------------

fn text_value() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 '\"%_é\\[\\]-]{0,8}"
}

fn like_source() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        "[a-zA-Z0-9 '\"é-]",
        Just("%".to_owned()),
        Just("_".to_owned()),
        Just("[a-c]".to_owned()),
        Just("[^x'y]".to_owned()),
        Just("[[]".to_owned()),
    ];
    proptest::collection::vec(atom, 0..6).prop_map(|atoms| atoms.concat())
}

fn version() -> impl Strategy<Value = String> {
    proptest::collection::vec(0u32..100_000, 1..5).prop_map(|parts| {
        parts
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(".")
    })
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<i32>().prop_map(f64::from),
        -1e6..1e6f64,
        any::<f64>().prop_filter("finite", |n| n.is_finite()),
    ]
}

fn address() -> impl Strategy<Value = String> {
    any::<u32>().prop_map(|n| Ipv4Addr::from(n).to_string())
}

fn network() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(bits, prefix)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ipv4Net {
            addr: Ipv4Addr::from(bits & mask),
            prefix,
        }
    })
}

fn timestamp() -> impl Strategy<Value = String> {
    let date = (0u32..=9999, 1u32..=12, 1u32..=28);
    let time = (
        0u32..24,
        0u32..60,
        0u32..=60,
        proptest::option::of(0u32..1000),
    );
    let zone = prop_oneof![
        Just("Z".to_owned()),
        (0u32..24, 0u32..60).prop_map(|(h, m)| format!("-{h:02}:{m:02}"))
    ];
    (date, time, zone).prop_map(|((y, mo, d), (h, mi, s, frac), zone)| {
        let frac = frac.map(|f| format!(".{f:03}")).unwrap_or_default();
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{zone}")
    })
}

fn op(ordered: bool) -> impl Strategy<Value = CompareOp> {
    use CompareOp::*;
    let ops = if ordered {
        vec![Eq, Ne, Lt, Le, Gt, Ge]
    } else {
        vec![Eq, Ne]
    };
    proptest::sample::select(ops)
}

/// Tests valid for a property whose values come from `value` and compare
/// with `ordered` operators.
fn tests_for(value: BoxedStrategy<Literal>, ordered: bool) -> BoxedStrategy<Test> {
    prop_oneof![
        (op(ordered), value.clone()).prop_map(|(op, value)| Test::Compare { op, value }),
        (proptest::collection::vec(value, 1..4), any::<bool>())
            .prop_map(|(values, negated)| Test::In { values, negated }),
        any::<bool>().prop_map(|negated| Test::IsNull { negated }),
    ]
    .boxed()
}

fn like_test() -> impl Strategy<Value = Test> {
    (like_source(), any::<bool>()).prop_map(|(source, negated)| Test::Like {
        pattern: LikePattern::compile(&source).expect("generated patterns are valid"),
        negated,
    })
}

fn strings(strategy: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Literal> {
    strategy.prop_map(Literal::String).boxed()
}

fn any_condition() -> impl Strategy<Value = Condition> {
    let free_text = proptest::sample::select(vec![
        "name",
        "domain",
        "os.name",
        "site",
        "installed.product",
        "properties.owner",
        "properties.Cost_Centre2",
    ]);
    let text = (
        free_text,
        prop_oneof![tests_for(strings(text_value()), false), like_test().boxed()],
    );
    let enumerated = prop_oneof![
        (
            Just("os.type"),
            tests_for(
                strings(
                    proptest::sample::select(vec!["workstation", "server", "domainController"])
                        .prop_map(str::to_owned)
                ),
                false
            )
        ),
        (
            Just("architecture"),
            tests_for(
                strings(
                    proptest::sample::select(vec!["x86", "x64", "ia64"]).prop_map(str::to_owned)
                ),
                false
            )
        ),
    ];
    let versioned = (Just("os.version"), tests_for(strings(version()), true));
    let numeric = (
        proptest::sample::select(vec![
            "os.servicePack",
            "hardware.memoryMB",
            "hardware.diskFreeMB",
        ]),
        tests_for(number().prop_map(Literal::Number).boxed(), true),
    );
    let addressed = (
        proptest::sample::select(vec!["ip.address", "ip.subnet"]),
        prop_oneof![
            tests_for(strings(address()), false),
            (network(), any::<bool>())
                .prop_map(|(network, negated)| Test::InSubnet { network, negated })
                .boxed(),
        ],
    );
    let timed = (Just("lastHeartbeat"), tests_for(strings(timestamp()), true));
    prop_oneof![text, enumerated, versioned, numeric, addressed, timed,].prop_map(|(name, test)| {
        Condition {
            property: property(name),
            test,
        }
    })
}

fn any_expr() -> impl Strategy<Value = Expr> {
    any_condition()
        .prop_map(Expr::Condition)
        .prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::or),
                proptest::collection::vec(inner, 2..4).prop_map(Expr::and),
            ]
        })
}

/// Fragments that assemble into near-valid queries, to reach deep into the
/// parser's error paths.
fn token_soup() -> impl Strategy<Value = String> {
    let fragment = proptest::sample::select(vec![
        "name",
        "os.version",
        "ip.address",
        "hardware.memoryMB",
        "lastHeartbeat",
        "os.type",
        "properties.x",
        "and",
        "or",
        "not",
        "like",
        "in",
        "is",
        "null",
        "subnet",
        "(",
        ")",
        ",",
        "=",
        "<>",
        "<",
        ">=",
        "==",
        "'x'",
        "'5.1'",
        "'10.0.0.0/8'",
        "'[a'",
        "'server'",
        "'2026-11-24T02:00:00Z'",
        "5",
        "-1.5",
        "1.2.3",
        "'",
        "\"",
        "é",
        ";",
        "-",
        "",
    ]);
    proptest::collection::vec(fragment, 0..16).prop_map(|parts| parts.join(" "))
}

fn assert_error_span_is_sane(src: &str, e: &QueryError) -> Result<(), TestCaseError> {
    let end = e.offset + e.len;
    prop_assert!(
        end <= src.len(),
        "span {}..{end} out of {:?}",
        e.offset,
        src
    );
    prop_assert!(src.is_char_boundary(e.offset) && src.is_char_boundary(end));
    prop_assert!(
        e.len > 0 || e.offset == src.len(),
        "empty span {} inside {src:?}",
        e.offset
    );
    prop_assert!(!e.message.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonical_text_round_trips(expr in any_expr()) {
        let query = Query { expr };
        let text = query.to_string();
        let reparsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e:?}")))?;
        prop_assert_eq!(&reparsed, &query, "{}", text);
        prop_assert_eq!(reparsed.to_string(), text);
    }

    #[test]
    fn arbitrary_text_never_panics(src in any::<String>()) {
        if let Err(e) = parse(&src) {
            assert_error_span_is_sane(&src, &e)?;
        }
    }

    #[test]
    fn token_soup_never_panics(src in token_soup()) {
        match parse(&src) {
            Ok(query) => prop_assert_eq!(parse(&query.to_string()), Ok(query)),
            Err(e) => assert_error_span_is_sane(&src, &e)?,
        }
    }

    #[test]
    fn generated_like_patterns_match_their_literal_text(text in "[a-zA-Z0-9 é]{0,12}") {
        let pattern = LikePattern::compile(&text).expect("plain text is a valid pattern");
        prop_assert!(pattern.matches(&text));
        prop_assert!(pattern.matches(&text.to_uppercase()));
    }

    #[test]
    fn subnets_contain_exactly_their_prefix(net in network(), bits in any::<u32>()) {
        let addr = Ipv4Addr::from(bits);
        let shift = 32 - u32::from(net.prefix);
        let same_prefix = u32::from(addr).checked_shr(shift).unwrap_or(0)
            == u32::from(net.addr).checked_shr(shift).unwrap_or(0);
        prop_assert_eq!(net.contains(addr), same_prefix);
        prop_assert!(net.contains(net.addr));
    }
}
