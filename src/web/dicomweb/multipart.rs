//! `multipart/related` (RFC 2387) bodies, read as a stream (STOW-RS requests) and written as a
//! stream (WADO-RS responses). (skeleton: filled by issue 12)
