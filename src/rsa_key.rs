//! A source's RSA public key, as an operator pins it (`source.server_public_key`) for
//! `caching_sha2_password` without TLS: the password is then encrypted under this key and never
//! under one the server hands out, which an impostor could have made.
//!
//! The key is checked once, when the task is written, with a strict parser of its own: the
//! encryption (`mysql_common::crypto`) panics on malformed input, so nothing reaches it that
//! this module has not read to the end. Pure code: no I/O, no panics.

use base64::Engine as _;

/// The shortest key accepted (MySQL generates 2048-bit keys).
pub const MIN_BITS: u64 = 2048;
/// Longer text than any RSA public key in PEM (16384 bits is about 2.9 KB).
pub const MAX_PEM_LEN: usize = 8192;

const SPKI: (&str, &str) = ("-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----");
const PKCS1: (&str, &str) = ("-----BEGIN RSA PUBLIC KEY-----", "-----END RSA PUBLIC KEY-----");
/// DER of the rsaEncryption algorithm identifier's OID, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];

/// The form a pinned key is stored in: trimmed, LF line ends, one final newline.
pub fn normalize(pem: &str) -> String {
    format!("{}\n", pem.trim().replace("\r\n", "\n"))
}

/// The size in bits of the modulus of a PEM RSA public key (`BEGIN PUBLIC KEY`, as MySQL shows
/// it, or `BEGIN RSA PUBLIC KEY`), or why the text is not one.
pub fn public_key_bits(pem: &str) -> Result<u64, String> {
    if pem.len() > MAX_PEM_LEN {
        return Err(format!("is longer than {MAX_PEM_LEN} bytes"));
    }
    let text = pem.trim();
    let (body, spki) = if let Some(b) = armored(text, SPKI) {
        (b, true)
    } else if let Some(b) = armored(text, PKCS1) {
        (b, false)
    } else {
        return Err("must be one PEM block: -----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----".into());
    };
    // The same characters mysql_common skips inside the armor.
    let b64: Vec<u8> = body.bytes().filter(|b| !b" \n\t\r\x0b\x0c".contains(b)).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .map_err(|_| "is not valid base64 inside its PEM armor".to_string())?;
    let rsa_key = if spki { rsa_key_of_spki(&der)? } else { whole(&der, 0x30)? };
    modulus_bits(rsa_key)
}

fn armored<'a>(text: &'a str, (begin, end): (&str, &str)) -> Option<&'a str> {
    text.strip_prefix(begin)?.strip_suffix(end).filter(|body| !body.contains('-'))
}

/// One DER element: `(tag, contents, rest)`. Only the definite forms a key uses: a one-byte tag
/// and a length of at most 4 bytes, all inside `buf`.
fn element(buf: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let bad = || "is not a DER-encoded RSA public key".to_string();
    let (&tag, rest) = buf.split_first().ok_or_else(bad)?;
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, rest) = match first {
        0..=0x7F => (usize::from(first), rest),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7F);
            let bytes = rest.get(..n).ok_or_else(bad)?;
            (bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)), &rest[n..])
        }
        _ => return Err(bad()),
    };
    let contents = rest.get(..len).ok_or_else(bad)?;
    Ok((tag, contents, &rest[len..]))
}

/// The contents of an element with `tag` that fills `buf` exactly.
fn whole(buf: &[u8], tag: u8) -> Result<&[u8], String> {
    match element(buf)? {
        (t, contents, []) if t == tag => Ok(contents),
        _ => Err("is not a DER-encoded RSA public key".into()),
    }
}

/// SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID rsaEncryption, ... }, BIT STRING { 0, key } }.
fn rsa_key_of_spki(der: &[u8]) -> Result<&[u8], String> {
    let spki = whole(der, 0x30)?;
    let (tag, algorithm, rest) = element(spki)?;
    let (oid_tag, oid, _) = element(algorithm)?;
    if tag != 0x30 || oid_tag != 0x06 || oid != RSA_ENCRYPTION {
        return Err("is not an RSA key".into());
    }
    let bits = whole(rest, 0x03)?;
    match bits.split_first() {
        Some((0, key)) => whole(key, 0x30),
        _ => Err("is not a DER-encoded RSA public key".into()),
    }
}

/// RSAPublicKey's contents: INTEGER modulus, INTEGER exponent; the modulus's size in bits.
fn modulus_bits(key: &[u8]) -> Result<u64, String> {
    let (t1, modulus, rest) = element(key)?;
    let exponent = whole(rest, 0x02)?;
    if t1 != 0x02 || modulus.first().is_none_or(|&b| b & 0x80 != 0) || exponent.is_empty() {
        return Err("is not a DER-encoded RSA public key".into());
    }
    let significant = &modulus[modulus.iter().take_while(|&&b| b == 0).count()..];
    let Some(&top) = significant.first() else {
        return Err("has a zero modulus".into());
    };
    Ok((significant.len() as u64 - 1) * 8 + u64::from(8 - top.leading_zeros()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 | openssl pkey -pubout`.
    const KEY_2048: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA9sev8ktrkCdNlpNAmsGt
STYXl6NF/YKydhH6PJBkqQTBZj1jcQrlOhS35bkz8MNb9xcDidGnjYNRRbOu9g74
Prp4nU3xZyaGQ3T/zVbSu8UaIoUbor503ddHjQZCQgPqDPcwwkVg7czqs2s3D4W4
wHhEiXXwkHON788ONN+0UOb5k9MpPev+EXQGvsXoWP/ABPsCBTpGwE2zb0zpyn6v
Amxjbu6hO17wofZ7g0wIjwHBgGY9R+I4jYTqZJTbomV1ftn11YFna1292R41aMOn
XoQXe7msmMlXw+ncgqiCHYFggzXRaiU9FbrHwmqcmP/WWugxRPPYIsnRgUr0Cf5U
vwIDAQAB
-----END PUBLIC KEY-----
";

    #[test]
    fn a_pinned_key_is_read_to_the_end_or_refused() {
        assert_eq!(public_key_bits(KEY_2048), Ok(2048));
        assert_eq!(public_key_bits(&format!("\r\n  {}  ", KEY_2048.replace('\n', "\r\n"))), Ok(2048));
        // The key mysql_common then encrypts with, without a panic.
        let sealed = mysql_common::crypto::encrypt(b"pw\0", KEY_2048.as_bytes());
        assert_eq!(sealed.len(), 256);

        let body: String = KEY_2048.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(&body).unwrap();
        let pem = |der: &[u8]| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            format!("{}\n{b64}\n{}\n", SPKI.0, SPKI.1)
        };
        let mut not_rsa = der.clone();
        not_rsa[16] ^= 1; // the last byte of the algorithm's OID
        let mut long_len = der.clone();
        long_len[2] = 0x02; // the outer SEQUENCE claims more than there is
        let refused: &[(&str, String)] = &[
            ("empty", String::new()),
            ("no armor", body.clone()),
            ("a certificate", KEY_2048.replace("PUBLIC KEY", "CERTIFICATE")),
            ("text after the block", format!("{KEY_2048}extra")),
            ("two blocks", format!("{KEY_2048}{KEY_2048}")),
            ("bad base64", format!("{}\n@@@@\n{}\n", SPKI.0, SPKI.1)),
            ("truncated DER", pem(&der[..der.len() - 9])),
            ("trailing DER", pem(&[der.as_slice(), &[0]].concat())),
            ("another algorithm", pem(&not_rsa)),
            ("a length past the end", pem(&long_len)),
            ("PKCS#1 armor around SPKI", KEY_2048.replace("PUBLIC KEY", "RSA PUBLIC KEY")),
            ("huge", "A".repeat(MAX_PEM_LEN + 1)),
        ];
        for (what, text) in refused {
            assert!(public_key_bits(text).is_err(), "{what} accepted");
        }
    }

    #[test]
    fn pkcs1_keys_and_small_keys_are_measured() {
        // RSAPublicKey { n = 0x00C5 (8 bits set in 2 bytes: 0xC5 -> 8 bits), e = 3 }.
        let der = [0x30, 0x07, 0x02, 0x02, 0x00, 0xC5, 0x02, 0x01, 0x03];
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        assert_eq!(public_key_bits(&format!("{}\n{b64}\n{}", PKCS1.0, PKCS1.1)), Ok(8));
        assert_eq!(normalize(" a\r\nb \n"), "a\nb\n");
    }
}
