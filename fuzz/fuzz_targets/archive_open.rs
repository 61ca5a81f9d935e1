#![no_main]
// Entry function and oracles: vault::fuzzing::fuzz_archive_open (shared with tests/fuzz_corpus.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vault::fuzzing::fuzz_archive_open(data);
});
