//! Recursive descent over the tokens, type checking each condition as soon
//! as it is read so that errors come in source order.

use super::ast::{CompareOp, Condition, Expr, Literal, Query, Test};
use super::check;
use super::error::QueryError;
use super::lexer::{tokenize, LiteralToken, Token, TokenKind};
use super::properties::{resolve, Resolved};
use crate::excerpt::of as excerpt;
use crate::suggest::did_you_mean as closest;

/// How many parentheses and `not`s may enclose a condition. Bounds the
/// parser's recursion so hostile input cannot overflow the stack.
pub(super) const MAX_DEPTH: usize = 64;

const KEYWORDS: [&str; 8] = ["and", "or", "not", "like", "in", "is", "null", "subnet"];
const TEST_KEYWORDS: [&str; 4] = ["like", "in", "is", "not"];

pub(super) fn parse(src: &str) -> Result<Query, QueryError> {
    let tokens = tokenize(src)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    if parser.peek().kind == TokenKind::Eof {
        return Err(QueryError::new(src.len()..src.len(), "empty query")
            .with_help("write a condition, e.g. `os.name like 'Microsoft Windows%'`"));
    }
    let expr = parser.or_expr()?;
    parser.end_of_query()?;
    Ok(Query { expr })
}

struct Parser<'s> {
    /// Always ends with an `Eof` token, which is never consumed.
    tokens: Vec<Token<'s>>,
    pos: usize,
    depth: usize,
}

impl<'s> Parser<'s> {
    fn peek(&self) -> Token<'s> {
        match self.tokens.get(self.pos) {
            Some(token) => *token,
            None => self.eof(),
        }
    }

    fn eof(&self) -> Token<'s> {
        let offset = self.tokens.last().map_or(0, |token| token.offset);
        Token {
            kind: TokenKind::Eof,
            text: "",
            offset,
        }
    }

    fn advance(&mut self) -> Token<'s> {
        let token = self.peek();
        if token.kind != TokenKind::Eof {
            self.pos += 1;
        }
        token
    }

    fn previous(&self) -> Option<Token<'s>> {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .copied()
    }

    /// Consumes the next token if it is `keyword`.
    fn eat_keyword(&mut self, keyword: &str) -> Option<Token<'s>> {
        self.peek().is_keyword(keyword).then(|| self.advance())
    }

    fn or_expr(&mut self) -> Result<Expr, QueryError> {
        let mut operands = vec![self.and_expr()?];
        while self.eat_keyword("or").is_some() {
            operands.push(self.and_expr()?);
        }
        Ok(Expr::or(operands))
    }

    fn and_expr(&mut self) -> Result<Expr, QueryError> {
        let mut operands = vec![self.unary()?];
        while self.eat_keyword("and").is_some() {
            operands.push(self.unary()?);
        }
        Ok(Expr::and(operands))
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if let Some(not) = self.eat_keyword("not") {
            let inner = self.nested(not, Self::unary)?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.peek().kind == TokenKind::LParen {
            let open = self.advance();
            return self.nested(open, |parser| {
                let inner = parser.or_expr()?;
                parser.close_paren(open)?;
                Ok(inner)
            });
        }
        self.condition().map(Expr::Condition)
    }

    /// Runs `parse` one nesting level deeper; `opener` is the `(` or `not`
    /// that opened the level.
    fn nested<T>(
        &mut self,
        opener: Token<'s>,
        parse: impl FnOnce(&mut Self) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        if self.depth >= MAX_DEPTH {
            return Err(QueryError::new(
                opener.span(),
                format!("query is nested too deeply: more than {MAX_DEPTH} levels of parentheses and `not`"),
            )
            .with_help("simplify the query or split it into several collections"));
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    fn close_paren(&mut self, open: Token<'s>) -> Result<(), QueryError> {
        let token = self.peek();
        match token.kind {
            TokenKind::RParen => {
                self.advance();
                Ok(())
            }
            TokenKind::Eof => {
                Err(QueryError::new(open.span(), "unclosed `(`").with_help("add a matching `)`"))
            }
            _ => Err(QueryError::new(
                token.span(),
                format!("expected `and`, `or` or `)`, found {}", token.describe()),
            )
            .with_optional_help(connective_help(token))),
        }
    }

    fn end_of_query(&mut self) -> Result<(), QueryError> {
        let token = self.peek();
        match token.kind {
            TokenKind::Eof => Ok(()),
            TokenKind::RParen => Err(QueryError::new(token.span(), "unmatched `)`")
                .with_help("remove it, or add a matching `(` earlier")),
            _ => Err(QueryError::new(
                token.span(),
                format!(
                    "expected `and`, `or` or end of query, found {}",
                    token.describe()
                ),
            )
            .with_optional_help(connective_help(token))),
        }
    }

    fn condition(&mut self) -> Result<Condition, QueryError> {
        let token = self.peek();
        if token.kind != TokenKind::Word || is_reserved(token) {
            return Err(self.expected_condition(token));
        }
        let resolved = resolve(token.text, token.span())?;
        self.advance();
        let test = self.test(&resolved, token)?;
        Ok(Condition {
            property: resolved.property,
            test,
        })
    }

    fn expected_condition(&self, found: Token<'s>) -> QueryError {
        let message = match self.previous() {
            Some(previous) => format!(
                "expected a condition after {}, found {}",
                previous.describe(),
                found.describe()
            ),
            None => format!("expected a condition, found {}", found.describe()),
        };
        let error = QueryError::new(found.span(), message);
        match found.kind {
            TokenKind::Str | TokenKind::Number => {
                error.with_help("a condition starts with a property name, e.g. `os.name = 'x'`")
            }
            _ => error,
        }
    }

    /// Everything after the property name in a condition.
    fn test(&mut self, resolved: &Resolved, property: Token<'s>) -> Result<Test, QueryError> {
        let token = self.peek();
        if token.kind == TokenKind::Symbol {
            if let Some(op) = CompareOp::from_symbol(token.text) {
                self.advance();
                check::compare_op(resolved, op, token.span())?;
                let value = self.literal(token)?;
                let value = check::value(resolved, &value)?;
                return Ok(Test::Compare { op, value });
            }
        }
        if token.is_keyword("is") {
            self.advance();
            return self.is_null();
        }
        let start = token.offset;
        let not = self.eat_keyword("not");
        let negated = not.is_some();
        if let Some(like) = self.eat_keyword("like") {
            let pattern = self.literal(like)?;
            let pattern = check::like(resolved, start..like.span().end, &pattern)?;
            return Ok(Test::Like { pattern, negated });
        }
        if let Some(in_) = self.eat_keyword("in") {
            return self.in_test(resolved, start, in_, negated);
        }
        Err(match not {
            Some(not) => self.expected_after_not(not),
            None => unknown_operator(property, token),
        })
    }

    fn is_null(&mut self) -> Result<Test, QueryError> {
        let negated = self.eat_keyword("not").is_some();
        if self.eat_keyword("null").is_some() {
            return Ok(Test::IsNull { negated });
        }
        let token = self.peek();
        let after = if negated { "`is not`" } else { "`is`" };
        Err(QueryError::new(
            token.span(),
            format!("expected `null` after {after}, found {}", token.describe()),
        )
        .with_help("`is` only tests for a missing value; compare values with `=` or `!=`"))
    }

    fn expected_after_not(&self, not: Token<'s>) -> QueryError {
        let token = self.peek();
        let error = QueryError::new(
            token.span(),
            format!(
                "expected `like` or `in` after {}, found {}",
                not.describe(),
                token.describe()
            ),
        );
        if token.is_keyword("null") {
            error.with_help("to test for a value, write `is not null`")
        } else {
            error.with_help("to negate a whole condition, put `not` before the property")
        }
    }

    /// `in (...)` or `in subnet '...'`; `start` is where the test began,
    /// including any `not`.
    fn in_test(
        &mut self,
        resolved: &Resolved,
        start: usize,
        in_: Token<'s>,
        negated: bool,
    ) -> Result<Test, QueryError> {
        if let Some(subnet) = self.eat_keyword("subnet") {
            let literal = self.literal(subnet)?;
            let network = check::subnet(resolved, start..subnet.span().end, &literal)?;
            return Ok(Test::InSubnet { network, negated });
        }
        let open = self.peek();
        if open.kind != TokenKind::LParen {
            return Err(QueryError::new(
                open.span(),
                format!(
                    "expected `(` or `subnet` after `in`, found {}",
                    open.describe()
                ),
            )
            .with_help(format!(
                "list values in parentheses, e.g. `{} in ('a', 'b')`",
                resolved.property.name
            )));
        }
        self.advance();
        let values = self.value_list(resolved, in_, open)?;
        Ok(Test::In { values, negated })
    }

    fn value_list(
        &mut self,
        resolved: &Resolved,
        in_: Token<'s>,
        open: Token<'s>,
    ) -> Result<Vec<Literal>, QueryError> {
        let close = self.peek();
        if close.kind == TokenKind::RParen {
            return Err(
                QueryError::new(open.offset..close.span().end, "empty value list").with_help(
                    format!("{} needs at least one value, e.g. `('a')`", in_.describe()),
                ),
            );
        }
        let mut values = Vec::new();
        let mut previous = open;
        loop {
            let literal = self.literal(previous)?;
            values.push(check::value(resolved, &literal)?);
            let separator = self.advance();
            match separator.kind {
                TokenKind::Comma => previous = separator,
                TokenKind::RParen => return Ok(values),
                TokenKind::Eof => {
                    return Err(QueryError::new(open.span(), "unclosed `(` in value list")
                        .with_help("add a matching `)`"));
                }
                _ => {
                    return Err(QueryError::new(
                        separator.span(),
                        format!(
                            "expected `,` or `)` in value list, found {}",
                            separator.describe()
                        ),
                    ));
                }
            }
        }
    }

    /// A string or number, which must follow `after`.
    fn literal(&mut self, after: Token<'s>) -> Result<LiteralToken<'s>, QueryError> {
        let token = self.peek();
        match token.as_literal() {
            Some(literal) => {
                self.advance();
                Ok(literal)
            }
            None => {
                let error = QueryError::new(
                    token.span(),
                    format!(
                        "expected a value after {}, found {}",
                        after.describe(),
                        token.describe()
                    ),
                );
                Err(if token.kind == TokenKind::Word && !is_reserved(token) {
                    error.with_help(format!(
                        "text values must be quoted: `'{}'`",
                        excerpt(token.text)
                    ))
                } else {
                    error
                })
            }
        }
    }
}

fn is_reserved(token: Token<'_>) -> bool {
    KEYWORDS.iter().any(|keyword| token.is_keyword(keyword))
}

fn unknown_operator(property: Token<'_>, found: Token<'_>) -> QueryError {
    let help = match found.kind {
        TokenKind::Symbol => symbol_help(found.text).map(str::to_owned),
        TokenKind::Word => {
            closest(found.text, TEST_KEYWORDS).map(|k| format!("did you mean `{k}`?"))
        }
        _ => None,
    };
    QueryError::new(
        found.span(),
        format!(
            "expected a comparison operator (=, !=, <, <=, >, >=, like, in, is) after {}, found {}",
            property.describe(),
            found.describe()
        ),
    )
    .with_optional_help(help)
}

/// Help for operators borrowed from other languages.
fn symbol_help(symbol: &str) -> Option<&'static str> {
    Some(match symbol {
        "==" => "equality is a single `=`",
        "=<" => "did you mean `<=`?",
        "=>" => "did you mean `>=`?",
        "!" => "did you mean `!=`?",
        "&&" | "&" => "conditions are joined with `and`",
        "||" | "|" => "conditions are joined with `or`",
        _ => return None,
    })
}

/// Help for a token found where `and`, `or` or the end was expected.
fn connective_help(found: Token<'_>) -> Option<String> {
    match found.kind {
        TokenKind::Word => Some(match closest(found.text, ["and", "or"]) {
            Some(keyword) => format!("did you mean `{keyword}`?"),
            None => "join conditions with `and` or `or`".to_owned(),
        }),
        TokenKind::Symbol => symbol_help(found.text).map(str::to_owned),
        _ => None,
    }
}
