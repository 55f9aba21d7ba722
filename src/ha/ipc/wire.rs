//! Hadoop IPC framing (protocol version 9), without I/O policy: the connection preamble, request
//! frames, and the split of a response frame into its header and body.
//!
//! A connection starts with the 7-byte preamble `"hrpc" 9 <service class> <auth protocol>`, then
//! one frame carrying the connection context (call id -3). Every frame after that, both ways, is
//! a 4-byte big-endian length followed by varint-length-delimited protobuf messages: the RPC
//! header, then (requests) the engine's `RequestHeaderProto` and the request, or (responses on
//! success) the response message.

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::messages::{
    IpcConnectionContext, RequestHeader, RpcKind, RpcOperation, RpcRequestHeader,
    RpcResponseHeader, UserInformation,
};

/// `hrpc`, IPC version 9 (Hadoop 2.x and 3.x), service class 0 (the default call queue), auth
/// protocol 0 (NONE: SIMPLE authentication, no SASL exchange).
pub const PREAMBLE: [u8; 7] = [b'h', b'r', b'p', b'c', 9, 0, 0];

/// The call id of the connection context frame (`Server.CONNECTION_CONTEXT_CALL_ID`).
pub const CONNECTION_CONTEXT_CALL_ID: i32 = -3;

/// The largest response frame this client accepts. HAServiceProtocol responses are a few bytes
/// and error responses carry a Java stack trace of a few KiB: anything near this bound is not a
/// namenode speaking this protocol, and the length comes from the peer, so it is checked before
/// allocating.
pub const MAX_RESPONSE_FRAME: usize = 1 << 20;

/// A frame the peer sent that does not follow the protocol.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("response frame of {0} bytes exceeds the {MAX_RESPONSE_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("undecodable {what}: {source}")]
    Decode {
        what: &'static str,
        source: prost::DecodeError,
    },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn header(call_id: i32, client_id: &[u8; 16], retry_count: i32) -> RpcRequestHeader {
    RpcRequestHeader {
        rpc_kind: Some(RpcKind::ProtocolBuffer as i32),
        rpc_op: Some(RpcOperation::FinalPacket as i32),
        call_id,
        client_id: client_id.to_vec(),
        retry_count: Some(retry_count),
    }
}

/// Length prefix + the concatenated delimited messages.
fn frame(parts: &[Vec<u8>]) -> Vec<u8> {
    let len: usize = parts.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(len + 4);
    // our own frames are a few hundred bytes: the u32 cannot overflow
    out.extend_from_slice(&(len as u32).to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// The preamble and the connection context frame, sent once per connection. The server answers
/// nothing to it; a refusal (unknown protocol, bad user) arrives as a FATAL response to the
/// first call.
pub fn connection_start(client_id: &[u8; 16], user: &str, protocol: &str) -> Vec<u8> {
    let context = IpcConnectionContext {
        user_info: Some(UserInformation {
            effective_user: Some(user.to_string()),
            real_user: None,
        }),
        protocol: Some(protocol.to_string()),
    };
    let mut out = PREAMBLE.to_vec();
    out.extend(frame(&[
        header(CONNECTION_CONTEXT_CALL_ID, client_id, -1).encode_length_delimited_to_vec(),
        context.encode_length_delimited_to_vec(),
    ]));
    out
}

/// One request frame: RPC header, engine header naming the method, the request message.
pub fn request(
    call_id: i32,
    client_id: &[u8; 16],
    protocol: &str,
    method: &str,
    message: &impl Message,
) -> Vec<u8> {
    let engine = RequestHeader {
        method_name: method.to_string(),
        declaring_class_protocol_name: protocol.to_string(),
        // every HAServiceProtocol version so far is 1 (HAServiceProtocol.versionID)
        client_protocol_version: 1,
    };
    frame(&[
        header(call_id, client_id, 0).encode_length_delimited_to_vec(),
        engine.encode_length_delimited_to_vec(),
        message.encode_length_delimited_to_vec(),
    ])
}

/// Reads one whole response frame (its length checked first).
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_RESPONSE_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    reader.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Splits a response frame into its header and the bytes after it (the delimited response
/// message on success, usually nothing on error).
pub fn split_response(frame: &[u8]) -> Result<(RpcResponseHeader, &[u8]), FrameError> {
    let mut rest = frame;
    let header = RpcResponseHeader::decode_length_delimited(&mut rest).map_err(|source| {
        FrameError::Decode {
            what: "RpcResponseHeaderProto",
            source,
        }
    })?;
    Ok((header, rest))
}

/// Decodes the delimited response message that follows a SUCCESS header.
pub fn response_body<M: Message + Default>(
    mut body: &[u8],
    what: &'static str,
) -> Result<M, FrameError> {
    M::decode_length_delimited(&mut body).map_err(|source| FrameError::Decode { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::ipc::messages::{
        Empty, GetServiceStatusResponse, HaRequestSourceProto, HaStateChangeRequestInfo, RpcStatus,
        TransitionRequest,
    };

    /// Reads one varint-delimited message off the front of `buf`.
    fn take<M: Message + Default>(buf: &mut &[u8]) -> M {
        M::decode_length_delimited(buf).unwrap()
    }

    #[test]
    fn connection_start_is_preamble_then_context_frame_with_call_id_minus_3() {
        let id = [7u8; 16];
        let bytes = connection_start(&id, "hdfs", "org.apache.hadoop.ha.HAServiceProtocol");
        assert_eq!(&bytes[..7], b"hrpc\x09\x00\x00");
        let len = u32::from_be_bytes(bytes[7..11].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 11);
        let mut rest = &bytes[11..];
        let h: RpcRequestHeader = take(&mut rest);
        assert_eq!(h.call_id, -3);
        assert_eq!(h.retry_count, Some(-1));
        assert_eq!(h.rpc_kind, Some(2));
        assert_eq!(h.client_id, id);
        let c: IpcConnectionContext = take(&mut rest);
        assert_eq!(
            c.protocol.as_deref(),
            Some("org.apache.hadoop.ha.HAServiceProtocol")
        );
        assert_eq!(c.user_info.unwrap().effective_user.as_deref(), Some("hdfs"));
        assert!(rest.is_empty());
    }

    #[test]
    fn call_id_is_zigzag_encoded_as_the_sint32_hadoop_declares() {
        let h = header(-3, &[0; 16], -1).encode_to_vec();
        // tag 3 varint (0x18) then zigzag(-3) = 5; a plain int32 would be ten bytes of 0xff...
        let at = h.iter().position(|&b| b == 0x18).unwrap();
        assert_eq!(h[at + 1], 5);
    }

    #[test]
    fn request_frame_carries_method_protocol_version_and_message() {
        let msg = TransitionRequest {
            req_info: HaStateChangeRequestInfo {
                req_source: HaRequestSourceProto::RequestByZkfc as i32,
            },
        };
        let bytes = request(5, &[1; 16], "P", "transitionToStandby", &msg);
        let mut rest = &bytes[4..];
        let h: RpcRequestHeader = take(&mut rest);
        assert_eq!((h.call_id, h.retry_count, h.rpc_op), (5, Some(0), Some(0)));
        let e: RequestHeader = take(&mut rest);
        assert_eq!(e.method_name, "transitionToStandby");
        assert_eq!(e.declaring_class_protocol_name, "P");
        assert_eq!(e.client_protocol_version, 1);
        // the request: field 1 (message) holding field 1 (enum) = 2
        assert_eq!(rest, &[4, 0x0a, 2, 0x08, 2]);
    }

    #[test]
    fn response_split_and_body_decode() {
        let head = RpcResponseHeader {
            call_id: 9,
            status: RpcStatus::Success as i32,
            server_ipc_version_num: Some(9),
            exception_class_name: None,
            error_msg: None,
            error_detail: None,
        };
        let body = GetServiceStatusResponse {
            state: 2,
            ready_to_become_active: Some(true),
            not_ready_reason: None,
        };
        let mut f = head.encode_length_delimited_to_vec();
        f.extend(body.encode_length_delimited_to_vec());
        let (h, rest) = split_response(&f).unwrap();
        assert_eq!(h.call_id, 9);
        let b: GetServiceStatusResponse = response_body(rest, "status").unwrap();
        assert_eq!(b, body);
        // an empty response message is a single zero length byte
        assert_eq!(Empty {}.encode_length_delimited_to_vec(), vec![0]);
    }

    #[tokio::test]
    async fn oversized_or_truncated_frames_are_errors_not_allocations() {
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut huge).await,
            Err(FrameError::TooLarge(_))
        ));
        let mut short: &[u8] = &[0, 0, 0, 9, 1, 2];
        assert!(matches!(
            read_frame(&mut short).await,
            Err(FrameError::Io(_))
        ));
        assert!(split_response(&[0x05, 0x08]).is_err());
    }
}
