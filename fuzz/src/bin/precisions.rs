//! cargo-afl target `precisions` (see fuzz/targets.rs).
#[path = "../../targets.rs"]
mod targets;

fn main() {
    afl::fuzz!(|data: &[u8]| targets::precisions(data));
}
