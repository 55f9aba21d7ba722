//! Sending DIMSE messages as P-DATA on any association (the one a peer opened to us, or one we
//! opened to a move destination), cut to the peer's maximum PDU size.

use dicom_ul::Pdu;
use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use tokio::io::{AsyncRead, AsyncWrite};

/// PDU header (6) + PDV item header (6).
const PDV_OVERHEAD: usize = 12;

/// What we send in one PDU to a peer that announced no limit (maximum length 0).
const UNLIMITED_FRAGMENT: usize = 1 << 20;

/// Largest fragment for the peer; fragments stay even-length (PS3.8 E.2).
pub(crate) fn max_fragment(peer_max_pdu: u32) -> usize {
    if peer_max_pdu == 0 {
        return UNLIMITED_FRAGMENT;
    }
    ((peer_max_pdu as usize).saturating_sub(PDV_OVERHEAD) & !1).max(2)
}

/// Send `bytes` as PDVs of one message part; `last` marks the final fragment of the part (a data
/// set streamed in several calls passes `false` until its last piece).
pub(crate) async fn send_pdvs<A, S>(
    assoc: &mut A,
    context_id: u8,
    value_type: PDataValueType,
    bytes: &[u8],
    last: bool,
) -> Result<(), dicom_ul::association::Error>
where
    A: AsyncAssociation<S> + Send,
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let max = max_fragment(assoc.peer_max_pdu_length());
    let count = bytes.len().div_ceil(max).max(1);
    for (i, chunk) in bytes.chunks(max).enumerate() {
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context_id,
                value_type: value_type.clone(),
                is_last: last && i + 1 == count,
                data: chunk.to_vec(),
            }],
        };
        AsyncAssociation::send(assoc, &pdu).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_even_and_fit() {
        assert_eq!(max_fragment(16384), 16372);
        assert_eq!(max_fragment(1025), 1012);
        assert_eq!(max_fragment(0), 1 << 20);
        assert_eq!(max_fragment(5), 2);
    }
}
