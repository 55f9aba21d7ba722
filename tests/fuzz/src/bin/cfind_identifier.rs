//! AFL++ target: `mifas::fuzzing::cfind_identifier` (see tests/fuzz/README.md).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        mifas::fuzzing::cfind_identifier(data);
    });
}
