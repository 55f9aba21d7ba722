//! AFL++ target: `mifas::fuzzing::stow_multipart` (see tests/fuzz/README.md).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        mifas::fuzzing::stow_multipart(data);
    });
}
