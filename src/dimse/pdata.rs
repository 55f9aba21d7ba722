//! Sending DIMSE messages as P-DATA on any association (the one a peer opened to us, or one we
//! opened to a move destination), cut to the peer's maximum PDU size.

use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::PDataValueType;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

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

/// Bytes gathered before one write to the socket.
const WRITE_BATCH: usize = 1 << 20;

/// Send `bytes` as PDVs of one message part; `last` marks the final fragment of the part (a data
/// set streamed in several calls passes `false` until its last piece).
///
/// The P-DATA-TF PDUs (PS3.8 9.3.5) are encoded here, straight from `bytes` into one buffer
/// written with one call per megabyte, rather than through dicom-ul's `send`, which copies each
/// fragment twice and writes each PDU on its own (a 0.5 MB object to a 16 KB-PDU peer would be
/// 32 system calls). Whole PDUs only, so dicom-ul's own reads and writes stay aligned.
pub(crate) async fn send_pdvs<A, S>(
    assoc: &mut A,
    context_id: u8,
    value_type: PDataValueType,
    bytes: &[u8],
    last: bool,
) -> std::io::Result<()>
where
    A: AsyncAssociation<S> + Send,
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let max = max_fragment(assoc.peer_max_pdu_length());
    let count = bytes.len().div_ceil(max).max(1);
    let mut out: Vec<u8> =
        Vec::with_capacity(WRITE_BATCH.min(bytes.len() + count * PDV_OVERHEAD) + PDV_OVERHEAD);
    let fragments = bytes.chunks(max).chain(bytes.is_empty().then_some(&[][..]));
    for (i, fragment) in fragments.enumerate() {
        encode_pdata(
            &mut out,
            context_id,
            value_type == PDataValueType::Command,
            last && i + 1 == count,
            fragment,
        );
        if out.len() >= WRITE_BATCH {
            write(assoc.inner_stream(), &out).await?;
            out.clear();
        }
    }
    if !out.is_empty() {
        write(assoc.inner_stream(), &out).await?;
    }
    Ok(())
}

/// One P-DATA-TF PDU holding one PDV.
fn encode_pdata(out: &mut Vec<u8>, context_id: u8, command: bool, last: bool, data: &[u8]) {
    let item_length = (data.len() + 2) as u32;
    let pdu_length = item_length + 4;
    out.extend_from_slice(&[0x04, 0x00]);
    out.extend_from_slice(&pdu_length.to_be_bytes());
    out.extend_from_slice(&item_length.to_be_bytes());
    // Message control header: bit 0 command, bit 1 last fragment.
    out.push(context_id);
    out.push(u8::from(command) | (u8::from(last) << 1));
    out.extend_from_slice(data);
}

async fn write<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await
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

    #[test]
    fn pdata_encoding_is_what_dicom_ul_reads() {
        let mut out = Vec::new();
        encode_pdata(&mut out, 3, false, true, &[1, 2, 3, 4]);
        encode_pdata(&mut out, 3, true, false, &[9, 9]);
        let mut cursor = std::io::Cursor::new(&out[..]);
        let first = dicom_ul::read_pdu(&mut cursor, 16384, true)
            .unwrap()
            .unwrap();
        let second = dicom_ul::read_pdu(&mut cursor, 16384, true)
            .unwrap()
            .unwrap();
        let dicom_ul::Pdu::PData { data } = first else {
            panic!("not P-DATA")
        };
        assert_eq!(data.len(), 1);
        assert_eq!(data[0].presentation_context_id, 3);
        assert_eq!(data[0].value_type, PDataValueType::Data);
        assert!(data[0].is_last);
        assert_eq!(data[0].data, vec![1, 2, 3, 4]);
        let dicom_ul::Pdu::PData { data } = second else {
            panic!("not P-DATA")
        };
        assert_eq!(data[0].value_type, PDataValueType::Command);
        assert!(!data[0].is_last);
    }
}
