//! Strict base64url (RFC 7515 §2): URL-safe alphabet, no padding, no
//! whitespace, and canonical trailing bits.

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

const STRICT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes strict base64url; any padding, `+`, `/`, whitespace or
/// non-canonical final character is an error.
pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::DecodeError;
    STRICT.decode(text).map_err(|e| {
        let what = match e {
            DecodeError::InvalidByte(offset, b'=') | DecodeError::InvalidLastSymbol(offset, b'=') => {
                format!("padding (`=`) at offset {offset} is not allowed")
            }
            DecodeError::InvalidByte(offset, byte) => {
                format!(
                    "character `{}` at offset {offset} is not in the base64url alphabet",
                    char::from(byte).escape_default()
                )
            }
            DecodeError::InvalidLength(_) => "impossible length".to_owned(),
            DecodeError::InvalidLastSymbol(offset, _) => {
                format!("non-canonical final character at offset {offset}")
            }
            DecodeError::InvalidPadding => "padding is not allowed".to_owned(),
        };
        format!("invalid base64url: {what}")
    })
}

/// Encodes bytes as base64url without padding.
pub fn encode(bytes: &[u8]) -> String {
    STRICT.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn rejects_padding_standard_alphabet_whitespace_and_loose_bits() {
        assert!(decode("YQ==").is_err());
        assert!(decode("a+b/").is_err());
        assert!(decode("YW Jj").is_err());
        assert!(decode("YWJj\n").is_err());
        // "YR" decodes to "a" only if the unused low bits are ignored.
        assert!(decode("YR").is_err());
        assert_eq!(decode("YQ").unwrap(), b"a");
        assert!(decode("Y").is_err());
    }
}
