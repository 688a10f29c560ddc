//! Splits query text into tokens that remember where they came from.

use std::borrow::Cow;
use std::ops::Range;

use winnow::combinator::{alt, dispatch, fail, opt, peek, repeat};
use winnow::error::EmptyError;
use winnow::prelude::*;
use winnow::stream::{LocatingSlice, Location};
use winnow::token::{any, one_of, take_while};

use super::error::{char_range, QueryError};
use crate::excerpt::of as excerpt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenKind {
    /// A keyword or a (dotted) property name; which one is up to the parser.
    Word,
    /// A string in single or double quotes.
    Str,
    /// `-?digits(.digits)*`; more than one dot is kept so that an unquoted
    /// version gets a helpful error instead of a confusing split.
    Number,
    /// A run of operator characters, known operator or not (`==`, `&&`).
    Symbol,
    LParen,
    RParen,
    Comma,
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token<'s> {
    pub kind: TokenKind,
    /// The token exactly as written.
    pub text: &'s str,
    pub offset: usize,
}

impl<'s> Token<'s> {
    pub(super) fn span(&self) -> Range<usize> {
        self.offset..self.offset + self.text.len()
    }

    pub(super) fn is_keyword(&self, keyword: &str) -> bool {
        self.kind == TokenKind::Word && self.text.eq_ignore_ascii_case(keyword)
    }

    /// How to name this token in "found ..." messages.
    pub(super) fn describe(&self) -> String {
        match self.kind {
            TokenKind::Eof => "end of query".to_owned(),
            _ => format!("`{}`", excerpt(self.text)),
        }
    }

    /// The literal value of a string or number token.
    pub(super) fn as_literal(self) -> Option<LiteralToken<'s>> {
        let value = match self.kind {
            TokenKind::Str => RawValue::Str(unquote(self.text)),
            TokenKind::Number => RawValue::Number(self.text),
            _ => return None,
        };
        Some(LiteralToken { token: self, value })
    }
}

/// The body of a quoted string with doubled quotes collapsed; borrowed
/// when there were none, which keeps value offsets mappable to the source.
fn unquote(text: &str) -> Cow<'_, str> {
    let mut chars = text.chars();
    let (Some(quote), Some(_)) = (chars.next(), chars.next_back()) else {
        return Cow::Borrowed("");
    };
    let body = chars.as_str();
    let doubled: String = [quote, quote].iter().collect();
    if body.contains(&doubled) {
        Cow::Owned(body.replace(&doubled, &quote.to_string()))
    } else {
        Cow::Borrowed(body)
    }
}

/// A token in value position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LiteralToken<'s> {
    pub token: Token<'s>,
    pub value: RawValue<'s>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawValue<'s> {
    /// Unescaped string contents.
    Str(Cow<'s, str>),
    /// Number text as written, possibly with several dots.
    Number(&'s str),
}

impl LiteralToken<'_> {
    /// Maps a byte range of a string's value onto the source. Falls back to
    /// the whole token when escapes make the mapping inexact; an empty range
    /// at the end of the value points at the closing quote.
    pub(super) fn value_span(&self, range: Range<usize>) -> Range<usize> {
        let RawValue::Str(Cow::Borrowed(value)) = &self.value else {
            return self.token.span();
        };
        if range.start > range.end || range.end > value.len() {
            return self.token.span();
        }
        let start = self.token.offset + 1 + range.start;
        let end = self.token.offset + 1 + range.end;
        if start == end && range.start == value.len() {
            return start..start + 1;
        }
        start..end
    }
}

const SYMBOL_CHARS: [char; 6] = ['=', '!', '<', '>', '&', '|'];

type Input<'s> = LocatingSlice<&'s str>;
type LexResult<T> = winnow::Result<T, EmptyError>;

/// Tokenizes `src`; the last token is always [`TokenKind::Eof`].
pub(super) fn tokenize(src: &str) -> Result<Vec<Token<'_>>, QueryError> {
    let mut input = LocatingSlice::new(src);
    let mut tokens = Vec::new();
    loop {
        // Zero or more whitespace characters always succeeds.
        let _: LexResult<&str> = take_while(0.., char::is_whitespace).parse_next(&mut input);
        let offset = input.current_token_start();
        if input.is_empty() {
            tokens.push(Token {
                kind: TokenKind::Eof,
                text: "",
                offset,
            });
            return Ok(tokens);
        }
        match token.with_taken().parse_next(&mut input) {
            Ok((kind, text)) => tokens.push(Token { kind, text, offset }),
            Err(EmptyError) => return Err(lex_error(src, offset)),
        }
    }
}

fn token(input: &mut Input<'_>) -> LexResult<TokenKind> {
    dispatch! {peek(any);
        '(' => '('.value(TokenKind::LParen),
        ')' => ')'.value(TokenKind::RParen),
        ',' => ','.value(TokenKind::Comma),
        '\'' => quoted('\'').value(TokenKind::Str),
        '"' => quoted('"').value(TokenKind::Str),
        '0'..='9' | '-' => number.value(TokenKind::Number),
        c if is_word_start(c) => word.value(TokenKind::Word),
        c if SYMBOL_CHARS.contains(&c) => take_while(1.., SYMBOL_CHARS).value(TokenKind::Symbol),
        _ => fail,
    }
    .parse_next(input)
}

/// A string in `quote`s, where a doubled quote stands for one.
fn quoted<'s>(quote: char) -> impl Parser<Input<'s>, (), EmptyError> {
    let escaped_or_plain = alt(((quote, quote).void(), one_of(move |c| c != quote).void()));
    (quote, repeat(0.., escaped_or_plain).map(|()| ()), quote).void()
}

fn number(input: &mut Input<'_>) -> LexResult<()> {
    let digits = || take_while(1.., |c: char| c.is_ascii_digit());
    (
        opt('-'),
        digits(),
        repeat(0.., ('.', digits())).map(|()| ()),
    )
        .void()
        .parse_next(input)
}

fn word(input: &mut Input<'_>) -> LexResult<()> {
    (
        one_of(is_word_start),
        take_while(0.., |c: char| {
            c.is_ascii_alphanumeric() || c == '_' || c == '.'
        }),
    )
        .void()
        .parse_next(input)
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// Explains why no token starts at `offset`.
fn lex_error(src: &str, offset: usize) -> QueryError {
    let span = char_range(src, offset);
    match src.get(span.clone()).unwrap_or_default() {
        quote @ ("'" | "\"") => QueryError::new(span, "unterminated string").with_help(format!(
            "end the string with {quote}; write {quote}{quote} for a {quote} inside it"
        )),
        "-" => QueryError::new(span, "unexpected character `-`")
            .with_help("a negative number is written with no space after `-`, e.g. `-5`"),
        other => QueryError::new(span, format!("unexpected character `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(TokenKind, &str, usize)> {
        tokenize(src)
            .expect("lexes")
            .into_iter()
            .map(|t| (t.kind, t.text, t.offset))
            .collect()
    }

    #[test]
    fn lexes_every_kind_with_offsets() {
        use TokenKind::*;
        assert_eq!(
            kinds("os.name<>'it''s' ( -1.5,\"a\"\"b\" ) >= 5.1.2600 =="),
            vec![
                (Word, "os.name", 0),
                (Symbol, "<>", 7),
                (Str, "'it''s'", 9),
                (LParen, "(", 17),
                (Number, "-1.5", 19),
                (Comma, ",", 23),
                (Str, "\"a\"\"b\"", 24),
                (RParen, ")", 31),
                (Symbol, ">=", 33),
                (Number, "5.1.2600", 36),
                (Symbol, "==", 45),
                (Eof, "", 47),
            ]
        );
    }

    #[test]
    fn strings_unescape_doubled_quotes() {
        let values: Vec<_> = tokenize("'it''s' \"a\"\"b\" 'x\"y' ''")
            .unwrap()
            .into_iter()
            .filter_map(Token::as_literal)
            .map(|literal| literal.value)
            .collect();
        assert_eq!(
            values,
            vec![
                RawValue::Str("it's".into()),
                RawValue::Str("a\"b".into()),
                RawValue::Str("x\"y".into()),
                RawValue::Str("".into()),
            ]
        );
    }

    #[test]
    fn unterminated_string_points_at_the_opening_quote() {
        let err = tokenize("name = 'abc").unwrap_err();
        assert_eq!((err.offset, err.len), (7, 1));
        assert_eq!(err.message, "unterminated string");
        // A doubled quote is an escape, not a terminator.
        let err = tokenize("name = \"ab\"\"").unwrap_err();
        assert_eq!((err.offset, err.len), (7, 1));
    }

    #[test]
    fn unexpected_characters_cover_the_whole_char() {
        let err = tokenize("name = ☃").unwrap_err();
        assert_eq!((err.offset, err.len), (7, 3));
        assert_eq!(err.message, "unexpected character `☃`");
        let err = tokenize("a - 1").unwrap_err();
        assert_eq!((err.offset, err.len), (2, 1));
    }

    #[test]
    fn value_span_maps_inside_plain_strings_only() {
        let tokens = tokenize("x 'abc' 'a''b'").unwrap();
        let plain = tokens[1].as_literal().unwrap();
        assert_eq!(plain.value_span(1..2), 4..5);
        assert_eq!(
            plain.value_span(3..3),
            6..7,
            "end points at the closing quote"
        );
        let escaped = tokens[2].as_literal().unwrap();
        assert_eq!(
            escaped.value_span(0..1),
            8..14,
            "escapes fall back to the whole token"
        );
    }
}
