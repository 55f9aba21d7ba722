//! The protobuf messages of Hadoop IPC and of HAServiceProtocol, written by hand from the wire
//! format (proto2): only the fields this client sends or reads. Decoding skips unknown fields, so
//! fields a newer Hadoop adds (trace info, state ids, router state) need no declaration here.
//!
//! Field numbers and types, checked against Apache Hadoop's `.proto` files (hadoop-common
//! `src/main/proto/`: `RpcHeader.proto`, `IpcConnectionContext.proto`, `ProtobufRpcEngine2.proto`,
//! `HAServiceProtocol.proto`), against the classes generated from them in Hadoop 3.4.1
//! (`javap -constants` on hadoop-client-api-3.4.1.jar: every `*_FIELD_NUMBER` and `*_VALUE`
//! used here), and by the Hadoop 3.4.1 namenodes tests/integration/test_ha_probe.py talks to.
//! Numbers matter more than names here: a wrong tag is silently skipped by the server and the
//! call then runs with a default (e.g. REQUEST_BY_USER), so the tests check the request source
//! through the namenode's own refusal of an unexpected source.

// ---- RpcHeader.proto ----

/// `RpcKindProto`: which RPC engine on the server decodes the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RpcKind {
    Builtin = 0,
    Writable = 1,
    /// `RPC_PROTOCOL_BUFFER`: ProtobufRpcEngine(2), the one HAServiceProtocol is served by.
    ProtocolBuffer = 2,
}

/// `RpcRequestHeaderProto.OperationProto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RpcOperation {
    /// `RPC_FINAL_PACKET`: the whole request is in this frame.
    FinalPacket = 0,
    ContinuationPacket = 1,
    CloseConnection = 2,
}

/// `RpcRequestHeaderProto`: opens every frame the client sends, the connection context included.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcRequestHeader {
    #[prost(enumeration = "RpcKind", optional, tag = "1")]
    pub rpc_kind: Option<i32>,
    #[prost(enumeration = "RpcOperation", optional, tag = "2")]
    pub rpc_op: Option<i32>,
    /// `sint32` (zigzag) since Hadoop 2.1: the connection context uses the negative id -3.
    #[prost(sint32, required, tag = "3")]
    pub call_id: i32,
    /// 16 bytes identifying this client; with the call id it makes the server's retry cache key.
    #[prost(bytes = "vec", required, tag = "4")]
    pub client_id: Vec<u8>,
    /// -1 for the connection context, 0 for a first attempt.
    #[prost(sint32, optional, tag = "5")]
    pub retry_count: Option<i32>,
}

/// `RpcResponseHeaderProto.RpcStatusProto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RpcStatus {
    Success = 0,
    /// The call failed; the connection stays open for further calls.
    Error = 1,
    /// The server closes the connection after this response.
    Fatal = 2,
}

/// `RpcResponseHeaderProto`: opens every frame the server sends.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcResponseHeader {
    /// `uint32` on the wire although requests carry a `sint32`: -3 comes back as 4294967293.
    #[prost(uint32, required, tag = "1")]
    pub call_id: u32,
    #[prost(enumeration = "RpcStatus", required, tag = "2")]
    pub status: i32,
    #[prost(uint32, optional, tag = "3")]
    pub server_ipc_version_num: Option<u32>,
    #[prost(string, optional, tag = "4")]
    pub exception_class_name: Option<String>,
    /// The server's message, often with a Java stack trace.
    #[prost(string, optional, tag = "5")]
    pub error_msg: Option<String>,
    /// `RpcErrorCodeProto` (1..6 non-fatal, 10..15 fatal), kept as the raw number.
    #[prost(int32, optional, tag = "6")]
    pub error_detail: Option<i32>,
}

// ---- IpcConnectionContext.proto ----

/// `UserInformationProto`: with SIMPLE authentication the server takes the effective user as given.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UserInformation {
    #[prost(string, optional, tag = "1")]
    pub effective_user: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub real_user: Option<String>,
}

/// `IpcConnectionContextProto`: sent once, right after the preamble, with call id -3.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IpcConnectionContext {
    #[prost(message, optional, tag = "2")]
    pub user_info: Option<UserInformation>,
    /// The protocol this connection speaks (the server looks up its implementation by name).
    #[prost(string, optional, tag = "3")]
    pub protocol: Option<String>,
}

// ---- ProtobufRpcEngine2.proto (same fields as ProtobufRpcEngine.proto) ----

/// `RequestHeaderProto`: which method of which protocol the request message is for.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestHeader {
    #[prost(string, required, tag = "1")]
    pub method_name: String,
    #[prost(string, required, tag = "2")]
    pub declaring_class_protocol_name: String,
    #[prost(uint64, required, tag = "3")]
    pub client_protocol_version: u64,
}

// ---- HAServiceProtocol.proto ----

/// `HAServiceStateProto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum HaServiceStateProto {
    Initializing = 0,
    Active = 1,
    Standby = 2,
    /// Added in Hadoop 3.3 (observer namenodes).
    Observer = 3,
}

/// `HARequestSource`: who asks for a state change. The namenode refuses REQUEST_BY_USER when
/// automatic failover (ZKFC) is on, and REQUEST_BY_ZKFC when it is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum HaRequestSourceProto {
    RequestByUser = 0,
    RequestByUserForced = 1,
    RequestByZkfc = 2,
}

/// `HAStateChangeRequestInfoProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HaStateChangeRequestInfo {
    #[prost(enumeration = "HaRequestSourceProto", required, tag = "1")]
    pub req_source: i32,
}

/// `TransitionToActiveRequestProto` and `TransitionToStandbyRequestProto` (the same shape).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TransitionRequest {
    #[prost(message, required, tag = "1")]
    pub req_info: HaStateChangeRequestInfo,
}

/// The empty messages: `MonitorHealthRequestProto`/`ResponseProto`,
/// `GetServiceStatusRequestProto`, `TransitionTo{Active,Standby}ResponseProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

/// `GetServiceStatusResponseProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetServiceStatusResponse {
    #[prost(enumeration = "HaServiceStateProto", required, tag = "1")]
    pub state: i32,
    /// Only meaningful in standby: whether it could become active now.
    #[prost(bool, optional, tag = "2")]
    pub ready_to_become_active: Option<bool>,
    #[prost(string, optional, tag = "3")]
    pub not_ready_reason: Option<String>,
}
