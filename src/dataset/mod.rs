//! Datasets: the deterministic synthetic generator ([`synth`]) and readers for the folder
//! layouts `kestrel eval` takes ([`folder`]), with `--shard I/N` splitting.

pub mod folder;
pub mod synth;

pub use folder::{ImageFolder, SegPairs, Shard};
