//! IPv4 addresses and networks as written in queries.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;

use super::error::LiteralError;
use crate::excerpt::of as excerpt;

/// An IPv4 network in CIDR form. Networks built by the parser have no host
/// bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = self.mask();
        u32::from(addr) & mask == u32::from(self.addr) & mask
    }

    fn mask(&self) -> u32 {
        // Saturating so that a hand-built prefix above 32 acts as /32 instead of panicking.
        let host_bits = 32u32.saturating_sub(u32::from(self.prefix));
        u32::MAX.checked_shl(host_bits).unwrap_or(0)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The same rules outside queries (distribution point boundaries): the
/// error is the message, with its help appended.
impl std::str::FromStr for Ipv4Net {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_cidr(text).map_err(|e| match e.help {
            Some(help) => format!("{}; {help}", e.message),
            None => e.message,
        })
    }
}

/// Parses `A.B.C.D/N`, rejecting networks whose host bits are set because
/// they usually mean a typo in the prefix or the address.
pub(super) fn parse_cidr(text: &str) -> Result<Ipv4Net, LiteralError> {
    let Some((addr_text, prefix_text)) = text.split_once('/') else {
        return Err(
            LiteralError::new(text.len()..text.len(), "missing prefix length in subnet").with_help(
                format!(
                    "write the network in CIDR form, e.g. `{}/24`",
                    excerpt(text)
                ),
            ),
        );
    };
    let addr = parse_ipv4(addr_text)?;
    let prefix_range = addr_text.len() + 1..text.len();
    let prefix = parse_prefix(prefix_text).ok_or_else(|| {
        LiteralError::new(
            prefix_range,
            format!(
                "invalid prefix length `{}` in subnet: expected a number from 0 to 32",
                excerpt(prefix_text)
            ),
        )
    })?;
    let net = Ipv4Net { addr, prefix };
    let network = Ipv4Addr::from(u32::from(addr) & net.mask());
    if network != addr {
        return Err(
            LiteralError::new(0..text.len(), format!("subnet `{text}` has host bits set"))
                .with_help(format!("did you mean `{network}/{prefix}`?")),
        );
    }
    Ok(net)
}

fn parse_prefix(text: &str) -> Option<u8> {
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|prefix| *prefix <= 32)
}

/// Parses a dotted quad, pointing errors at the offending octet.
pub(super) fn parse_ipv4(text: &str) -> Result<Ipv4Addr, LiteralError> {
    let mut octets = [0u8; 4];
    let mut found = 0;
    let mut start = 0;
    for part in text.split('.') {
        let range = start..start + part.len();
        start = range.end + 1;
        let Some(slot) = octets.get_mut(found) else {
            return Err(LiteralError::new(
                range.start.saturating_sub(1)..text.len(),
                "too many octets in IPv4 address",
            )
            .with_help("an IPv4 address has exactly four numbers, e.g. `10.1.2.3`"));
        };
        *slot = parse_octet(text, range)?;
        found += 1;
    }
    if found < octets.len() {
        return Err(LiteralError::new(
            0..text.len(),
            format!("expected an IPv4 address, found `{}`", excerpt(text)),
        )
        .with_help(format!(
            "an IPv4 address has four numbers separated by `.`, found {found}"
        )));
    }
    Ok(Ipv4Addr::from(octets))
}

fn parse_octet(text: &str, range: Range<usize>) -> Result<u8, LiteralError> {
    let part = &text[range.clone()];
    if part.is_empty() {
        // Point at the `.` (or the end) found where the number should be.
        let at = range.start;
        return Err(LiteralError::new(
            at..(at + 1).min(text.len()),
            "missing number in IPv4 address",
        ));
    }
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LiteralError::new(
            range,
            format!(
                "invalid IPv4 octet `{}`: expected a number from 0 to 255",
                excerpt(part)
            ),
        ));
    }
    if part.len() > 1 && part.starts_with('0') {
        return Err(LiteralError::new(
            range,
            format!("IPv4 octet `{}` has a leading zero", excerpt(part)),
        )
        .with_help("leading zeros are ambiguous (some tools read them as octal); drop them"));
    }
    part.parse().map_err(|_| {
        LiteralError::new(
            range,
            format!(
                "IPv4 octet `{}` is out of range: expected 0 to 255",
                excerpt(part)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        parse_cidr(text).expect("valid CIDR")
    }

    #[test]
    fn contains_addresses_in_the_network() {
        let n = net("10.1.0.0/16");
        assert!(n.contains(Ipv4Addr::new(10, 1, 0, 0)));
        assert!(n.contains(Ipv4Addr::new(10, 1, 255, 255)));
        assert!(!n.contains(Ipv4Addr::new(10, 2, 0, 0)));
        assert!(net("0.0.0.0/0").contains(Ipv4Addr::new(192, 0, 2, 1)));
        let host = net("192.0.2.7/32");
        assert!(host.contains(Ipv4Addr::new(192, 0, 2, 7)));
        assert!(!host.contains(Ipv4Addr::new(192, 0, 2, 8)));
    }

    #[test]
    fn hand_built_prefixes_above_32_do_not_panic() {
        let n = Ipv4Net {
            addr: Ipv4Addr::new(1, 2, 3, 4),
            prefix: 200,
        };
        assert!(n.contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert!(!n.contains(Ipv4Addr::new(1, 2, 3, 5)));
    }

    #[test]
    fn displays_as_cidr() {
        assert_eq!(net("172.16.0.0/12").to_string(), "172.16.0.0/12");
    }

    #[test]
    fn host_bits_error_suggests_the_network() {
        let err = parse_cidr("10.1.2.3/16").unwrap_err();
        assert_eq!(err.range, 0..11);
        assert_eq!(err.message, "subnet `10.1.2.3/16` has host bits set");
        assert_eq!(err.help.as_deref(), Some("did you mean `10.1.0.0/16`?"));
    }

    #[test]
    fn cidr_errors_point_at_the_bad_part() {
        let cases = [
            ("10.0.0.0/33", 9..11),
            ("10.0.0.0/", 9..9),
            ("10.0.0.0/x", 9..10),
            ("10.0.0.0", 8..8),
            ("10.0.256.0/24", 5..8),
            ("10.0..0/24", 5..6),
            ("10.0.0/24", 0..6),
            ("10.0.0.0.0/24", 8..10),
            ("10.a.0.0/8", 3..4),
            ("10.01.0.0/16", 3..5),
        ];
        for (text, range) in cases {
            assert_eq!(parse_cidr(text).unwrap_err().range, range, "{text}");
        }
    }

    #[test]
    fn addresses_parse_strictly() {
        assert_eq!(parse_ipv4("192.168.0.1"), Ok(Ipv4Addr::new(192, 168, 0, 1)));
        assert!(parse_ipv4("192.168.0").is_err());
        assert!(parse_ipv4("192.168.0.1.").is_err());
        assert!(parse_ipv4("").is_err());
        assert!(parse_ipv4("1.2.3.99999999999999999999").is_err());
    }
}
