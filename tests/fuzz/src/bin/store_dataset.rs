//! AFL++ target: `mifas::fuzzing::store_dataset` (see tests/fuzz/README.md).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        mifas::fuzzing::store_dataset(data);
    });
}
