//! Datasets: the deterministic synthetic generator ([`synth`]), readers for the folder
//! layouts `kestrel eval` takes ([`folder`]), with `--shard I/N` splitting, and calibration
//! inputs for static INT8 ([`calib`]).

pub mod calib;
pub mod folder;
pub mod synth;

pub use folder::{ImageFolder, SegPairs, Shard};
