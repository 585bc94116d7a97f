//! cargo-afl target `image` (see fuzz/targets.rs).
#[path = "../../targets.rs"]
mod targets;

fn main() {
    afl::fuzz!(|data: &[u8]| targets::image(data));
}
