//! RFC 5424 syslog messages carrying audit XML, as IHE ITI TF-2a 3.20 (Record Audit Event)
//! asks, and their framing on each transport: RFC 6587 octet counting on TCP and TLS
//! (RFC 5425 uses the same), one datagram per message on UDP (RFC 5426).

use std::time::SystemTime;

use super::time::rfc3339_utc;

/// Facility 10 (security/authorization, "authpriv") and severity 5 (notice): PRI 85, the
/// value IHE ATNA collectors expect for audit records.
pub const PRI: u8 = 10 * 8 + 5;
/// MSGID of an audit record in the RFC 3881 / DICOM schema (IHE ITI TF-2a 3.20.7.1).
pub const MSGID: &str = "IHE+RFC-3881";
/// RFC 5424 6.4: a UTF-8 MSG starts with the byte order mark.
const BOM: char = '\u{FEFF}';

/// The fixed fields of our syslog header.
#[derive(Debug, Clone)]
pub struct Header {
    pub hostname: String,
    pub app_name: String,
    pub proc_id: String,
}

impl Header {
    /// `<85>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM XML` (no structured data).
    pub fn format(&self, time: SystemTime, xml: &str) -> String {
        let field = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        format!(
            "<{PRI}>1 {} {} {} {} {MSGID} - {BOM}{xml}",
            rfc3339_utc(time),
            field(&self.hostname),
            field(&self.app_name),
            field(&self.proc_id),
        )
    }
}

/// RFC 6587 3.4.1: `MSG-LEN SP SYSLOG-MSG`, the length in octets.
pub fn octet_counted(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
    out
}

/// At most `max` bytes of `message`, cut at a character boundary (RFC 5426 3.2: a sender
/// may truncate; a cut character would make the rest of the datagram invalid UTF-8).
pub fn truncate_utf8(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// The system's host name (RFC 5424 HOSTNAME), `-` when it cannot be read.
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| (33..=126).contains(&b)))
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn header() -> Header {
        Header {
            hostname: "pacs1".into(),
            app_name: "MIFAS".into(),
            proc_id: "42".into(),
        }
    }

    #[test]
    fn rfc5424_header_fields_in_order() {
        let t = UNIX_EPOCH + Duration::from_millis(1_798_761_599_250);
        let m = header().format(t, "<AuditMessage/>");
        assert_eq!(
            m,
            "<85>1 2026-12-31T23:59:59.250Z pacs1 MIFAS 42 IHE+RFC-3881 - \u{FEFF}<AuditMessage/>"
        );
        let empty = Header {
            hostname: String::new(),
            ..header()
        };
        assert!(empty.format(t, "x").contains("Z - MIFAS 42 "));
    }

    #[test]
    fn octet_counting_counts_bytes_not_characters() {
        let framed = octet_counted("<85>1 é");
        // "é" is two bytes in UTF-8.
        assert_eq!(framed, "8 <85>1 é".as_bytes());
        let text = String::from_utf8(octet_counted(&header().format(UNIX_EPOCH, "<A/>"))).unwrap();
        let (len, rest) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
    }

    #[test]
    fn truncation_keeps_utf8_whole() {
        assert_eq!(truncate_utf8("abc", 10), "abc");
        assert_eq!(truncate_utf8("abé", 3), "ab");
        assert_eq!(truncate_utf8("abé", 4), "abé");
        assert_eq!(truncate_utf8("郭政達", 7), "郭政");
    }
}
