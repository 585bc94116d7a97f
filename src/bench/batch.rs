//! Batch-size sweeps: which batches to run under a memory limit, and which batch is best.
//!
//! The memory limit is judged from the planner's own estimate ([`crate::Session::memory_estimate`]:
//! activation slots, kernel scratch and weights at that input shape) before a batch runs, so a
//! sweep stops short of the limit instead of finding it by running out of memory.

use serde::Serialize;

/// Candidate batches for `--batch auto`: powers of two up to `max`.
pub fn auto_batches(max: usize) -> Vec<usize> {
    std::iter::successors(Some(1usize), |b| b.checked_mul(2)).take_while(|&b| b <= max.max(1)).collect()
}

/// The prefix of `batches` (ascending) whose estimated bytes fit `limit`, and the first batch
/// refused (with its estimate) if any. `estimate(b)` errors propagate.
pub fn within_memory<E>(
    batches: &[usize],
    limit: Option<u64>,
    mut estimate: impl FnMut(usize) -> Result<u64, E>,
) -> Result<(Vec<(usize, u64)>, Option<(usize, u64)>), E> {
    let mut ok = Vec::new();
    for &b in batches {
        let bytes = estimate(b)?;
        if limit.is_some_and(|l| bytes > l) {
            return Ok((ok, Some((b, bytes))));
        }
        ok.push((b, bytes));
    }
    Ok((ok, None))
}

/// One measured batch size.
#[derive(Clone, Debug, Serialize)]
pub struct BatchPoint {
    pub batch: usize,
    /// Images per second over the forward stage.
    pub throughput: f64,
    /// p99 of the per-batch forward latency, ms.
    pub p99_ms: f64,
}

/// The choice of batch size.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BatchChoice {
    /// Highest throughput (smallest batch on ties).
    pub best_throughput: Option<usize>,
    /// Highest throughput among batches whose p99 fits the budget (when one was given).
    pub best_within_p99: Option<usize>,
}

/// Picks the best batches of `points`.
pub fn choose(points: &[BatchPoint], p99_budget_ms: Option<f64>) -> BatchChoice {
    let best = |pred: &dyn Fn(&BatchPoint) -> bool| {
        points
            .iter()
            .filter(|p| pred(p) && p.throughput.is_finite())
            .fold(None::<&BatchPoint>, |acc, p| match acc {
                Some(a) if a.throughput > p.throughput || (a.throughput == p.throughput && a.batch <= p.batch) => Some(a),
                _ => Some(p),
            })
            .map(|p| p.batch)
    };
    BatchChoice {
        best_throughput: best(&|_| true),
        best_within_p99: p99_budget_ms.and_then(|budget| best(&|p: &BatchPoint| p.p99_ms <= budget)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(batch: usize, throughput: f64, p99_ms: f64) -> BatchPoint {
        BatchPoint { batch, throughput, p99_ms }
    }

    #[test]
    fn chooses_best_throughput_and_best_within_budget() {
        // Throughput saturates at 8; p99 grows with the batch.
        let pts = [pt(1, 50.0, 21.0), pt(2, 90.0, 23.0), pt(4, 140.0, 30.0), pt(8, 160.0, 52.0), pt(16, 155.0, 110.0)];
        assert_eq!(choose(&pts, None), BatchChoice { best_throughput: Some(8), best_within_p99: None });
        assert_eq!(choose(&pts, Some(40.0)).best_within_p99, Some(4));
        assert_eq!(choose(&pts, Some(52.0)).best_within_p99, Some(8));
        assert_eq!(choose(&pts, Some(10.0)).best_within_p99, None);
        // Ties go to the smaller batch.
        assert_eq!(choose(&[pt(4, 100.0, 1.0), pt(2, 100.0, 1.0)], None).best_throughput, Some(2));
        assert_eq!(choose(&[], Some(1.0)), BatchChoice::default());
    }

    #[test]
    fn memory_limit_stops_before_the_first_batch_over_it() {
        let est = |b: usize| Ok::<u64, ()>(100 + 30 * b as u64);
        let (ok, refused) = within_memory(&auto_batches(64), Some(400), est).unwrap();
        assert_eq!(ok.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2, 4, 8]);
        assert_eq!(refused, Some((16, 580)));
        let (ok, refused) = within_memory(&[1, 2], None, est).unwrap();
        assert_eq!((ok.len(), refused), (2, None));
        assert_eq!(auto_batches(20), vec![1, 2, 4, 8, 16]);
    }
}
