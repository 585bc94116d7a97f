//! Buffers whose first element starts on a 64-byte cache line: packed weights that the kernels
//! load a whole line at a time (AMX tile rows of 64 bytes, `vdpbf16ps` and channel-lane weight
//! vectors), and the plan's activation slots (`exec::plan::Slot`).
//!
//! A `Vec` starts wherever the allocator puts it: glibc gives 16-byte alignment, and a large
//! block (mapped) starts 16 bytes into a page. Packed INT8 weights 16 or 48 bytes into a line
//! made every 64-byte row an AMX tile load reads straddle two lines: 64–512-channel 3×3 convs
//! (one conv alone, 2 threads, family 6 model 207) took 1.10–1.25× the time they take with
//! their weights on a line (BENCHMARKS.md, "twenty-fourth session").

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::{Pod, Zeroable};

/// One cache line of bytes.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

// SAFETY: `Line` is `repr(C)` over 64 bytes with alignment 64, so it has no padding, and
// every bit pattern (all zeros included) is a valid `[u8; 64]`.
unsafe impl Zeroable for Line {}
// SAFETY: as above; it is `Copy` and `'static`.
unsafe impl Pod for Line {}

/// `len` values of `T`, zero-initialised, starting on a 64-byte boundary (the tail of the last
/// line is zero and never exposed). Derefs to `[T]`. `T`'s size must divide 64 (the integer and
/// float words the packers store): checked when the code is compiled.
#[derive(Clone)]
pub struct Aligned<T: Pod> {
    lines: Vec<Line>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> Aligned<T> {
    /// Whole `T`s fill a line, so the lines cast to `[T]` (a compile-time error otherwise).
    const FITS: () = assert!(std::mem::size_of::<T>() > 0 && 64 % std::mem::size_of::<T>() == 0, "Aligned<T>: the size of T must divide 64");

    /// `len` zero values (`T` is plain data, so all-zero bytes are a value). Like `vec!`, it
    /// aborts where the allocation fails; the callers size it from shapes already checked.
    pub fn zeroed(len: usize) -> Self {
        let () = Self::FITS;
        let bytes = len.saturating_mul(std::mem::size_of::<T>());
        Aligned { lines: vec![Line([0; 64]); bytes.div_ceil(64)], len, _t: PhantomData }
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Self {
        let mut a = Self::zeroed(values.len());
        a.copy_from_slice(values);
        a
    }
}

impl<T: Pod> Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // A line holds a whole number of `T`s ([`Self::FITS`]), whose alignment is at most
        // their size; `zeroed`, the only constructor, made lines for `len` of them.
        &bytemuck::cast_slice::<Line, T>(&self.lines)[..self.len]
    }
}

impl<T: Pod> DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut bytemuck::cast_slice_mut::<Line, T>(&mut self.lines)[..self.len]
    }
}

impl<T: Pod> Default for Aligned<T> {
    /// No values.
    fn default() -> Self {
        Self::zeroed(0)
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aligned({} values)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length starts on a line, reads back what was written, and a clone is aligned too.
    #[test]
    fn starts_on_a_line_at_every_length() {
        for len in [0usize, 1, 3, 15, 16, 17, 63, 64, 65, 1000, 1 << 20] {
            let mut a = Aligned::<i8>::zeroed(len);
            assert_eq!(a.len(), len);
            assert_eq!(a.as_ptr() as usize % 64, 0, "len {len}");
            assert!(a.iter().all(|&v| v == 0));
            for (i, v) in a.iter_mut().enumerate() {
                *v = (i % 251) as i8;
            }
            let b = a.clone();
            assert_eq!(b.as_ptr() as usize % 64, 0);
            assert_eq!(&b[..], &a[..]);
            let w = Aligned::<u32>::from_slice(&(0..len as u32).collect::<Vec<_>>());
            assert_eq!(w.as_ptr() as usize % 64, 0);
            assert!(w.iter().enumerate().all(|(i, &v)| v == i as u32));
        }
    }
}
