//! Just enough DER (ITU-T X.690 §8.1) to show a server certificate's subject, issuer, validity
//! and subjectAltName in `wsloop client --trace` (RFC 5280 §4.1). Display only: rustls' webpki
//! verifies the certificate, nothing here decides anything. The bytes come from the network, so
//! every step is checked: a certificate that does not parse gives `None` or a shorter summary,
//! never a panic, and text is stripped of control characters before it reaches a terminal.

use super::observer::CertificateSummary;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0]` EXPLICIT version, `[3]` EXPLICIT extensions (RFC 5280 §4.1).
const VERSION_TAG: u8 = 0xa0;
const EXTENSIONS_TAG: u8 = 0xa3;
/// GeneralName `[2] dNSName` and `[7] iPAddress` (RFC 5280 §4.2.1.6), IMPLICIT primitive.
const DNS_NAME_TAG: u8 = 0x82;
const IP_ADDRESS_TAG: u8 = 0x87;
/// id-ce-subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// One TLV off the front of `input` (definite lengths only, as DER requires): its tag and value.
fn next<'a>(input: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        rest = rest.get(n..)?;
        bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let value = rest.get(..len)?;
    *input = rest.get(len..)?;
    Some((tag, value))
}

/// The summary of a DER certificate, or `None` if its outline does not parse.
pub(crate) fn summary(der: &[u8]) -> Option<CertificateSummary> {
    let mut input = der;
    let (SEQUENCE, mut cert) = next(&mut input)? else {
        return None;
    };
    let (SEQUENCE, mut tbs) = next(&mut cert)? else {
        return None;
    };
    let mut item = next(&mut tbs)?;
    if item.0 == VERSION_TAG {
        item = next(&mut tbs)?; // then the serial number
    }
    let _serial = item;
    let _signature = next(&mut tbs)?;
    let (_, issuer) = next(&mut tbs)?;
    let (_, mut validity) = next(&mut tbs)?;
    let (_, subject) = next(&mut tbs)?;
    let _spki = next(&mut tbs)?;
    let mut alt_names = Vec::new();
    while let Some((tag, value)) = next(&mut tbs) {
        if tag == EXTENSIONS_TAG {
            alt_names = subject_alt_names(value);
        }
    }
    let not_before = next(&mut validity).map(time).unwrap_or_default();
    let not_after = next(&mut validity).map(time).unwrap_or_default();
    Some(CertificateSummary {
        subject: name(subject),
        issuer: name(issuer),
        not_before,
        not_after,
        alt_names,
    })
}

/// A Name (RFC 5280 §4.1.2.4) as `CN=..., O=...`, in the order written.
fn name(mut rdns: &[u8]) -> String {
    let mut parts = Vec::new();
    while let Some((SET, mut set)) = next(&mut rdns) {
        while let Some((SEQUENCE, mut atv)) = next(&mut set) {
            let (Some((OID, oid)), Some((_, value))) = (next(&mut atv), next(&mut atv)) else {
                continue;
            };
            parts.push(format!("{}={}", attribute_name(oid), printable(value)));
        }
    }
    parts.join(", ")
}

/// The short names of RFC 4514 §3 for the attributes certificates use most.
fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        other => dotted(other),
    }
}

/// An OID in dotted form (X.690 §8.19).
fn dotted(oid: &[u8]) -> String {
    let mut out = String::new();
    let mut value: u64 = 0;
    let mut first = true;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 != 0 {
            continue;
        }
        if first {
            let (a, b) = if value < 80 {
                (value / 40, value % 40)
            } else {
                (2, value - 80)
            };
            let _ = write!(out, "{a}.{b}");
            first = false;
        } else {
            let _ = write!(out, ".{value}");
        }
        value = 0;
    }
    out
}

/// Text for a terminal: lossy UTF-8 with control characters (escape sequences) replaced.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// UTCTime or GeneralizedTime (RFC 5280 §4.1.2.5) as `YYYY-MM-DD HH:MM:SS UTC`.
fn time((tag, value): (u8, &[u8])) -> String {
    let digits = |s: &[u8]| -> Option<u32> {
        s.iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    let parsed = (|| {
        let (year, rest) = match tag {
            // RFC 5280 §4.1.2.5.1: YY >= 50 is 19YY, else 20YY.
            UTC_TIME => {
                let yy = digits(value.get(..2)?)?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, value.get(2..)?)
            }
            GENERALIZED_TIME => (digits(value.get(..4)?)?, value.get(4..)?),
            _ => return None,
        };
        let field = |i: usize| digits(rest.get(i..i + 2)?);
        Some(format!(
            "{year:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            field(0)?,
            field(2)?,
            field(4)?,
            field(6)?,
            field(8)?
        ))
    })();
    parsed.unwrap_or_else(|| printable(value))
}

/// The subjectAltName entries (RFC 5280 §4.2.1.6) among the extensions: `DNS:` names and
/// `IP:` addresses, the two kinds a TLS client checks (RFC 6125 §6).
fn subject_alt_names(extensions: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut outer = extensions;
    let Some((SEQUENCE, mut list)) = next(&mut outer) else {
        return out;
    };
    while let Some((SEQUENCE, mut ext)) = next(&mut list) {
        let Some((OID, oid)) = next(&mut ext) else { continue };
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        // An optional `critical BOOLEAN`, then the OCTET STRING holding GeneralNames.
        let mut value = None;
        while let Some((tag, v)) = next(&mut ext) {
            if tag == 0x04 {
                value = Some(v);
            }
        }
        let Some(mut wrapped) = value else { continue };
        let Some((SEQUENCE, mut names)) = next(&mut wrapped) else {
            continue;
        };
        while let Some((tag, v)) = next(&mut names) {
            match tag {
                DNS_NAME_TAG => out.push(format!("DNS:{}", printable(v))),
                IP_ADDRESS_TAG => match v.len() {
                    4 => {
                        let mut a = [0u8; 4];
                        a.copy_from_slice(v);
                        out.push(format!("IP:{}", Ipv4Addr::from(a)));
                    }
                    16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(v);
                        out.push(format!("IP:{}", Ipv6Addr::from(a)));
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    out
}

/// Seconds since 1970 as `YYYY-MM-DD HH:MM:SS UTC` (the proleptic Gregorian calendar).
pub(crate) fn format_unix(secs: u64) -> String {
    let [year, month, day, hour, minute, second] = crate::logging::civil_from_unix(secs.min(i64::MAX as u64) as i64);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times() {
        assert_eq!(format_unix(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_unix(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn oids_and_times() {
        assert_eq!(dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]), "1.2.840.113549");
        assert_eq!(time((UTC_TIME, b"491231235959Z")), "2049-12-31 23:59:59 UTC");
        assert_eq!(time((UTC_TIME, b"500101000000Z")), "1950-01-01 00:00:00 UTC");
        assert_eq!(time((GENERALIZED_TIME, b"20991231120000Z")), "2099-12-31 12:00:00 UTC");
        assert_eq!(time((UTC_TIME, b"x\x1b[0m")), "x?[0m");
    }

    #[test]
    fn reads_what_rcgen_wrote() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["example.test".to_string(), "::1".into(), "10.0.0.1".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "example.test");
        params.distinguished_name.push(rcgen::DnType::CountryName, "NL");
        params.not_before = rcgen::date_time_ymd(2024, 2, 29);
        params.not_after = rcgen::date_time_ymd(2051, 1, 2);
        let cert = params.self_signed(&key).unwrap();
        let s = summary(cert.der()).unwrap();
        assert_eq!(s.subject, "CN=example.test, C=NL");
        assert_eq!(s.issuer, s.subject);
        assert_eq!(s.not_before, "2024-02-29 00:00:00 UTC");
        // After 2049 RFC 5280 §4.1.2.5 asks for GeneralizedTime.
        assert_eq!(s.not_after, "2051-01-02 00:00:00 UTC");
        assert_eq!(s.alt_names, ["DNS:example.test", "IP:::1", "IP:10.0.0.1"]);
        // Every truncation is refused or summarised, never a panic.
        for cut in 0..cert.der().len() {
            let _ = summary(&cert.der()[..cut]);
        }
    }

    #[test]
    fn truncated_or_garbage_input_never_panics() {
        // A minimal certificate outline, then every prefix of it and some garbage.
        let cert = [
            0x30,
            0x1c,
            0x30,
            0x1a,
            0x02,
            0x01,
            0x01,
            0x30,
            0x00,
            0x30,
            0x00,
            0x30,
            0x1e - 0x10,
            0x17,
            0x0d,
            b'2',
            b'4',
            b'0',
            b'1',
            b'0',
            b'1',
            b'0',
            b'0',
            b'0',
            b'0',
            b'0',
            b'0',
            b'Z',
        ];
        for cut in 0..cert.len() {
            let _ = summary(&cert[..cut]);
        }
        for len_byte in [0x80, 0x85, 0xff, 0x84] {
            let _ = summary(&[0x30, len_byte, 0xff, 0xff, 0xff, 0xff]);
        }
        assert_eq!(summary(&[]), None);
    }
}
