//! AFL++ target: `mifas::fuzzing::pdu_stream` (see tests/fuzz/README.md).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        mifas::fuzzing::pdu_stream(data);
    });
}
