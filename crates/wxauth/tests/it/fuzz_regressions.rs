//! Every input a fuzz target ever crashed on (fuzz/regressions/<target>/),
//! and the seeds (fuzz/seeds/<target>/), replayed through the same entry
//! points the targets drive (`wxauth::fuzzing`), so a fixed crash stays
//! fixed without a nightly toolchain.

use std::path::Path;

/// A fuzz target's entry point.
type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("access_token", wxauth::fuzzing::verify_access_token),
    ("json_bodies", wxauth::fuzzing::parse_request_bodies),
    ("cursor", wxauth::fuzzing::decode_cursor),
    ("if_match", wxauth::fuzzing::parse_if_match),
    ("encrypted_data", wxauth::fuzzing::decrypt_encrypted_data),
    ("gateway_path", wxauth::fuzzing::gateway_path),
];

#[test]
fn every_kept_fuzz_input_passes() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut replayed = 0;
    for (target, run) in TARGETS {
        let mut seeds = 0;
        for dir in ["seeds", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.file_name().is_some_and(|n| n == ".gitkeep") {
                    continue;
                }
                let input = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| run(&input));
                assert!(outcome.is_ok(), "{target}: {} fails", path.display());
                replayed += 1;
                seeds += usize::from(dir == "seeds");
            }
        }
        assert!(seeds > 0, "{target} has no seeds under fuzz/seeds");
    }
    assert!(replayed >= TARGETS.len());
}
