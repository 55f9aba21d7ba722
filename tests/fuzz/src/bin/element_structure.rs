//! AFL++ target: `mifas::fuzzing::element_structure` (see tests/fuzz/README.md).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        mifas::fuzzing::element_structure(data);
    });
}
