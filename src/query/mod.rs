//! The collection query language: a small WQL-like language that defines
//! which machines belong to a collection, by testing their inventory.
//!
//! ```text
//! os.name like 'Microsoft Windows%' and os.version >= '5.1.2600'
//!     and not (os.type = 'domainController' or ip.address in subnet '10.9.0.0/16')
//! ```
//!
//! [`parse`] reads and type-checks a query; the [`Display`](std::fmt::Display)
//! of the resulting [`Query`] is its canonical text (lower-case keywords,
//! single spaces, single-quoted strings, minimal parentheses), which parses
//! back to the same query.
//!
//! # Grammar
//!
//! Keywords are case-insensitive. Precedence, tightest first: `not`, `and`,
//! `or`. Whitespace between tokens is ignored.
//!
//! ```ebnf
//! query      = or_expr ;
//! or_expr    = and_expr , { "or" , and_expr } ;
//! and_expr   = unary , { "and" , unary } ;
//! unary      = "not" , unary
//!            | "(" , or_expr , ")"
//!            | condition ;
//! condition  = property , test ;
//! test       = compare_op , literal
//!            | [ "not" ] , "like" , string
//!            | [ "not" ] , "in" , "(" , literal , { "," , literal } , ")"
//!            | [ "not" ] , "in" , "subnet" , string      (* 'A.B.C.D/N' *)
//!            | "is" , [ "not" ] , "null" ;
//! compare_op = "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=" ;   (* <> is != *)
//! literal    = string | number ;
//! string     = "'" , { any char but "'" | "''" } , "'"
//!            | '"' , { any char but '"' | '""' } , '"' ;
//! number     = [ "-" ] , digits , [ "." , digits ] ;
//! property   = name , { "." , name } ;
//! name       = ( letter | "_" ) , { letter | digit | "_" } ;
//! digits     = digit , { digit } ;
//! letter     = "a" .. "z" | "A" .. "Z" ;
//! digit      = "0" .. "9" ;
//! ```
//!
//! At most 64 levels of parentheses and `not` may enclose a condition.
//!
//! # Properties and types
//!
//! Property names are case-insensitive and must be known; see
//! [`known_properties`]. `properties.<key>` names any free-form inventory
//! property (the key is letters, digits and `_`). Each property has a type
//! that decides which tests apply:
//!
//! | type    | tests                                     | values                               |
//! |---------|-------------------------------------------|--------------------------------------|
//! | text    | `=` `!=` `like` `in` `is null`            | strings                              |
//! | version | `=` `!=` `<` `<=` `>` `>=` `in` `is null` | strings like `'5.1.2600'`            |
//! | number  | `=` `!=` `<` `<=` `>` `>=` `in` `is null` | numbers like `512` or `-1.5`         |
//! | address | `=` `!=` `in` `in subnet` `is null`       | strings like `'10.1.2.3'`            |
//! | time    | `=` `!=` `<` `<=` `>` `>=` `in` `is null` | RFC 3339 strings like `'2026-11-24T02:00:00Z'` |
//!
//! With `=`, `!=` and `in`, `os.type` accepts only `workstation`, `server`
//! and `domainController`, and `architecture` only `x86`, `x64` and `ia64`
//! (in any case; the canonical text uses these spellings). Versions compare
//! numerically per component (see [`compare_versions`]). `installed.product`,
//! `ip.address` and `ip.subnet` may hold several values per machine.
//!
//! `like` patterns follow WQL: `%` matches any run of characters, `_` one
//! character, `[abc]` / `[a-z]` one character from a set or range and
//! `[^abc]` one character outside it; `[%]` matches a literal `%`. Matching
//! ignores case.

mod ast;
mod check;
mod error;
mod lexer;
mod like;
mod net;
mod parser;
mod properties;
mod time;
mod version;

#[cfg(test)]
mod tests;

pub use ast::{CompareOp, Condition, Expr, Literal, Property, PropertyKind, Query, Test};
pub use error::QueryError;
pub use like::LikePattern;
pub use net::Ipv4Net;
pub use properties::known_properties;
pub use version::compare_versions;

/// Parses and type-checks a collection query.
///
/// ```
/// let query = patchops::query::parse("OS.Name LIKE 'Microsoft Windows%' AND os.version >= '5.1.2600'").unwrap();
/// assert_eq!(query.to_string(), "os.name like 'Microsoft Windows%' and os.version >= '5.1.2600'");
///
/// let err = patchops::query::parse("os.nme = 'x'").unwrap_err();
/// assert_eq!((err.offset, err.message.as_str()), (0, "unknown property `os.nme`"));
/// assert_eq!(err.help.as_deref(), Some("did you mean `os.name`?"));
/// ```
pub fn parse(src: &str) -> Result<Query, QueryError> {
    parser::parse(src)
}

impl std::str::FromStr for Query {
    type Err = QueryError;

    fn from_str(src: &str) -> Result<Self, Self::Err> {
        parse(src)
    }
}
