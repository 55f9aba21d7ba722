//! AFL++ target: `mifas::fuzzing::config_text` (see tests/fuzz/README.md).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        mifas::fuzzing::config_text(data);
    });
}
