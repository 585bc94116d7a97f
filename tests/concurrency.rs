//! One `Session` shared by many threads: calls proceed concurrently (each takes its own
//! buffers and workers from the session's pools) and every output is bit-identical to a run
//! by a single caller, for f32 and for INT8 static and dynamic graphs, at mixed batch sizes.

use kestrel::models::init::synthetic_images;
use kestrel::models::*;
use kestrel::quant::{quantize, Mode, QuantizeOptions};
use kestrel::{Graph, Options, Session, Tensor};

const CALLERS: usize = 8;
const RUNS: usize = 50;
const BATCHES: [usize; 3] = [1, 3, 2];

fn variants(cfg: &ModelConfig) -> Vec<(&'static str, Graph)> {
    let g = cfg.build(&mut SeededWeights { seed: 8 }).unwrap();
    let s = g.input_shape(1).unwrap();
    let calib: Vec<Tensor> = (0..2).map(|i| synthetic_images(2, s[1], s[2], s[3], 60 + i)).collect();
    let q = |mode| quantize(&g, &QuantizeOptions { mode, ..Default::default() }, &calib, &mut |_, _| {}).unwrap();
    vec![("int8-static", q(Mode::Static)), ("int8-dynamic", q(Mode::Dynamic)), ("f32", g)]
}

/// A 32² ResNet-18 and UNet, narrow.
fn small_models() -> [ModelConfig; 2] {
    [
        ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, base_width: 8, image_size: 32, ..Default::default() }),
        ModelConfig::UNet(UNetConfig { base_width: 4, depth: 2, image_size: 32, ..Default::default() }),
    ]
}

fn bits(outs: &[Tensor]) -> Vec<Vec<u32>> {
    outs.iter().map(|t| t.data().iter().map(|v| v.to_bits()).collect()).collect()
}

#[test]
fn one_session_many_threads_bit_identical() {
    for cfg in &small_models() {
        for (name, g) in variants(cfg) {
            let session = Session::new(g, &Options { threads: 2, optimize: true, ..Default::default() }).unwrap();
            let inputs: Vec<Tensor> = BATCHES.iter().enumerate().map(|(i, &b)| Tensor::randn(session.graph().input_shape(b).unwrap(), 1.0, 90 + i as u64)).collect();
            // The single-caller answers, from the same session before any concurrency.
            let want: Vec<Vec<Vec<u32>>> = inputs.iter().map(|x| bits(&session.run(std::slice::from_ref(x)).unwrap())).collect();
            let mismatches: usize = std::thread::scope(|s| {
                let handles: Vec<_> = (0..CALLERS)
                    .map(|t| {
                        let (session, inputs, want) = (&session, &inputs, &want);
                        s.spawn(move || {
                            (0..RUNS)
                                .filter(|r| {
                                    let i = (t + r) % inputs.len();
                                    bits(&session.run(std::slice::from_ref(&inputs[i])).unwrap()) != want[i]
                                })
                                .count()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            println!("{cfg:?} {name}: {} concurrent runs, {mismatches} differ", CALLERS * RUNS);
            assert_eq!(mismatches, 0, "{name}: concurrent runs differ from the single-caller run");
        }
    }
}

/// A session's calls share its buffer sets whatever their batch (a set grows to the plan it
/// runs, never shrinks): batches of 4, 1, 3, 2 and 4 again in turn on one session give the
/// bits each batch gives on a session of its own, whose buffers are new.
#[test]
fn batches_of_every_size_share_buffers_with_the_bits_of_new_ones() {
    for cfg in &small_models() {
        for (name, g) in variants(cfg) {
            let opts = Options { threads: 2, optimize: true, ..Default::default() };
            let shared = Session::new(g.clone(), &opts).unwrap();
            for (i, b) in [4, 1, 3, 2, 4].into_iter().enumerate() {
                let x = Tensor::randn(shared.graph().input_shape(b).unwrap(), 1.0, 300 + i as u64);
                let fresh = Session::new(g.clone(), &opts).unwrap();
                let want = bits(&fresh.run(std::slice::from_ref(&x)).unwrap());
                assert_eq!(bits(&shared.run(std::slice::from_ref(&x)).unwrap()), want, "{cfg:?} {name}: batch {b}, call {i}");
            }
        }
    }
}

/// Concurrent single-thread callers and a run_all / run_node tool on the same session: the
/// per-layer paths share nothing with calls in flight.
#[test]
fn tools_and_calls_share_a_session() {
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, base_width: 8, image_size: 32, ..Default::default() });
    let (_, g) = variants(&cfg).remove(0);
    let session = Session::new(g, &Options { threads: 1, optimize: true, ..Default::default() }).unwrap();
    let x = Tensor::randn(session.graph().input_shape(2).unwrap(), 1.0, 5);
    let want = session.run(std::slice::from_ref(&x)).unwrap();
    let all = session.run_all(std::slice::from_ref(&x)).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    assert_eq!(session.run(std::slice::from_ref(&x)).unwrap(), want);
                }
            });
        }
        s.spawn(|| {
            let again = session.run_all(std::slice::from_ref(&x)).unwrap();
            assert_eq!(again, all);
            let g = session.graph();
            let n = g.nodes.len() - 1;
            assert_eq!(session.run_node(n, &all).unwrap(), all[g.nodes[n].output].clone().unwrap());
        });
    });
    // run_all returns the graph's outputs too, dequantized where the plan kept codes.
    assert_eq!(all[session.graph().outputs[0]].as_ref().unwrap(), &want[0]);
}

/// Every way a call finds its workers gives the same bits: the calling thread as worker 0 of
/// its own pool (first call), a pool the session keeps (a thread whose own pool has another
/// size, or a thread of another rayon pool: here the global pool's workers, inside a
/// `par_iter`), with the other workers spinning or (`KESTREL_SPIN=0`, read per process, not
/// set here) sleeping.
#[test]
fn every_route_to_the_workers_gives_the_same_bits() {
    use rayon::prelude::*;
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, base_width: 8, image_size: 32, ..Default::default() });
    let g = cfg.build(&mut SeededWeights { seed: 4 }).unwrap();
    let one = Session::new(g.clone(), &Options { threads: 1, optimize: true, ..Default::default() }).unwrap();
    let two = Session::new(g, &Options { threads: 2, optimize: true, ..Default::default() }).unwrap();
    let x = Tensor::randn(two.graph().input_shape(3).unwrap(), 1.0, 6);
    std::thread::scope(|s| {
        s.spawn(|| {
            // This thread's own pool gets 1 worker; the 2-thread session then hands its
            // calls to a pool of its own.
            let a = bits(&one.run(std::slice::from_ref(&x)).unwrap());
            let b = bits(&two.run(std::slice::from_ref(&x)).unwrap());
            assert_eq!(a, b, "1 and 2 threads differ");
            let inside: Vec<Vec<Vec<u32>>> = (0..8).into_par_iter().map(|i| bits(&if i % 2 == 0 { &one } else { &two }.run(std::slice::from_ref(&x)).unwrap())).collect();
            assert!(inside.iter().all(|r| *r == a), "calls from rayon workers differ");
        });
    });
}

/// A batch whose activations exceed `BATCH_BYTES` runs in slices of samples: its outputs are
/// those of each sample run alone, bit for bit (f32 and static INT8), and the memory estimate
/// is one slice's. Dynamic INT8 takes its ranges from the whole batch, so it is never sliced.
#[test]
fn large_batches_run_in_slices_with_the_same_bits() {
    use kestrel::exec::session::{batch_separable, BATCH_BYTES};
    // The plan of workers that share a cache (apart, each worker runs half of it alone:
    // tests/placement.rs).
    kestrel::cpu::placement::force(Some(false));
    let cfg = ModelConfig::UNet(UNetConfig { base_width: 8, depth: 2, image_size: 128, ..Default::default() });
    for (name, g) in variants(&cfg) {
        let session = Session::new(g.clone(), &Options { threads: 2, optimize: true, ..Default::default() }).unwrap();
        let one = session.memory_estimate(&g.input_shape(1).unwrap()).unwrap();
        let n = 2 * BATCH_BYTES / one + 3;
        let x = Tensor::randn(g.input_shape(n).unwrap(), 1.0, 12);
        let whole = session.run(std::slice::from_ref(&x)).unwrap().remove(0);
        assert_eq!(whole.shape()[0], n);
        let per = x.numel() / n;
        let out_per = whole.numel() / n;
        for i in [0, n / 2, n - 1] {
            let mut s = x.shape().to_vec();
            s[0] = 1;
            let xi = Tensor::new(s, x.data()[i * per..(i + 1) * per].to_vec()).unwrap();
            let yi = session.run(&[xi]).unwrap().remove(0);
            let got: Vec<u32> = whole.data()[i * out_per..(i + 1) * out_per].iter().map(|v| v.to_bits()).collect();
            let want: Vec<u32> = yi.data().iter().map(|v| v.to_bits()).collect();
            if name != "int8-dynamic" {
                assert_eq!(got, want, "{name}: sample {i} of a sliced batch of {n} differs from the sample alone");
            }
        }
        let sliced = batch_separable(session.graph());
        assert_eq!(sliced, name != "int8-dynamic", "{name}");
        let estimate = session.memory_estimate(&g.input_shape(n).unwrap()).unwrap();
        assert_eq!(estimate < n * one / 2, sliced, "{name}: estimate {estimate} for {n} samples of {one}");
    }
}

/// A batch that runs in slices runs whole from the block after which its maps are small and
/// its weights large (ResNet's last two stages): the tail reads each layer's weights once for
/// the batch. Every sample's output is still the bits it has alone, and the memory estimate
/// counts the tail's buffers.
#[test]
fn sliced_batches_run_their_tail_whole_with_the_same_bits() {
    kestrel::cpu::placement::force(Some(false));
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, base_width: 32, image_size: 256, ..Default::default() });
    let g = cfg.build(&mut SeededWeights { seed: 9 }).unwrap();
    let session = Session::new(g.clone(), &Options { threads: 2, optimize: true, ..Default::default() }).unwrap();
    let n = 8;
    let shape = g.input_shape(n).unwrap();
    let split = session.batch_split(std::slice::from_ref(&shape)).unwrap();
    let k = split.expect("a batch of 8 256² images runs in slices, then whole from layer3");
    let name = &session.graph().nodes[k].name;
    assert!(name.starts_with("layer3.0"), "split before node {k} ({name})");
    // One image alone runs whole: no split.
    assert_eq!(session.batch_split(&[g.input_shape(1).unwrap()]).unwrap(), None);
    let x = Tensor::randn(shape.clone(), 1.0, 13);
    let whole = session.run(std::slice::from_ref(&x)).unwrap().remove(0);
    let (per, out_per) = (x.numel() / n, whole.numel() / n);
    for i in [0, 3, n - 1] {
        let mut s = shape.clone();
        s[0] = 1;
        let xi = Tensor::new(s, x.data()[i * per..(i + 1) * per].to_vec()).unwrap();
        let yi = session.run(&[xi]).unwrap().remove(0);
        let got: Vec<u32> = whole.data()[i * out_per..(i + 1) * out_per].iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, yi.data().iter().map(|v| v.to_bits()).collect::<Vec<u32>>(), "sample {i} of a split batch of {n} differs from the sample alone");
    }
    // The same call again (buffers reused) and profiled: the same bits.
    let mut secs = Vec::new();
    assert_eq!(bits(&session.run_profiled(std::slice::from_ref(&x), &mut secs).unwrap()), bits(&[whole]));
    assert!(secs[k..].iter().any(|&t| t > 0.0) && secs[..k].iter().any(|&t| t > 0.0));
    let one = session.memory_estimate(&g.input_shape(1).unwrap()).unwrap();
    let estimate = session.memory_estimate(&shape).unwrap();
    assert!(estimate > one && estimate < n * one, "estimate {estimate} for {n} samples of {one}");
}

/// A one-thread session called from a thread whose own pool has two workers (a two-thread
/// session ran there first) runs on that thread, starting no pool of its own
/// (`Session::handed_over_pools`), with the bits of a one-thread session on a thread of its
/// own; the two-thread session's bits do not change either. UNet at 96² (its elementwise ops
/// and pools over the size at which their loops split) and a ResNet-18, f32 and INT8.
#[test]
fn one_thread_sessions_run_alone_on_a_caller_with_a_larger_pool() {
    let configs = [
        ModelConfig::UNet(UNetConfig { base_width: 8, depth: 2, image_size: 96, ..Default::default() }),
        ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, base_width: 16, image_size: 64, ..Default::default() }),
    ];
    for cfg in &configs {
        for (name, g) in variants(cfg) {
            let x = Tensor::randn(g.input_shape(2).unwrap(), 1.0, 41);
            let session = |threads| Session::new(g.clone(), &Options { threads, optimize: true, ..Default::default() }).unwrap();
            let (one, two) = (session(1), session(2));
            let (want_one, want_two) = std::thread::scope(|s| {
                let a = s.spawn(|| bits(&session(1).run(std::slice::from_ref(&x)).unwrap()));
                let b = s.spawn(|| bits(&session(2).run(std::slice::from_ref(&x)).unwrap()));
                (a.join().unwrap(), b.join().unwrap())
            });
            std::thread::scope(|s| {
                s.spawn(|| {
                    for call in 0..2 {
                        assert_eq!(bits(&two.run(std::slice::from_ref(&x)).unwrap()), want_two, "{cfg:?} {name}: two threads, call {call}");
                        assert_eq!(bits(&one.run(std::slice::from_ref(&x)).unwrap()), want_one, "{cfg:?} {name}: one thread, call {call}");
                    }
                });
            });
            assert_eq!((one.handed_over_pools(), two.handed_over_pools()), (0, 0), "{cfg:?} {name}");
            // The other way round the two-thread session is the one handed over.
            std::thread::scope(|s| {
                s.spawn(|| {
                    assert_eq!(bits(&one.run(std::slice::from_ref(&x)).unwrap()), want_one, "{cfg:?} {name}: one thread first");
                    assert_eq!(bits(&two.run(std::slice::from_ref(&x)).unwrap()), want_two, "{cfg:?} {name}: two threads second");
                });
            });
            assert_eq!((one.handed_over_pools(), two.handed_over_pools()), (0, 1), "{cfg:?} {name}");
        }
    }
}

/// One- and two-thread sessions called from an application's rayon `par_iter` (a worker of
/// another pool, many calls in flight): each call gives the bits of a call from a thread of
/// its own, and none nests inside another. rayon's `install` from such a worker waits by
/// running the pool's other jobs, so 4000 calls of a two-thread session, each taking a pool
/// of its own, nested until the stack overflowed and the process aborted; a one-thread
/// session now runs on the worker itself, a two-thread one through a helper thread that
/// blocks.
#[test]
fn sessions_called_from_rayon_workers_do_not_nest() {
    use rayon::prelude::*;
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, base_width: 4, image_size: 32, ..Default::default() });
    for (name, g) in variants(&cfg) {
        let inputs: Vec<Tensor> = (0..8).map(|i| Tensor::randn(g.input_shape(1).unwrap(), 1.0, 700 + i)).collect();
        for threads in [1, 2] {
            let session = Session::new(g.clone(), &Options { threads, optimize: true, ..Default::default() }).unwrap();
            let want: Vec<Vec<Vec<u32>>> = std::thread::scope(|s| s.spawn(|| inputs.iter().map(|x| bits(&session.run(std::slice::from_ref(x)).unwrap())).collect()).join().unwrap());
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
            let wrong = pool.install(|| (0..4000usize).into_par_iter().filter(|&i| bits(&session.run(std::slice::from_ref(&inputs[i % 8])).unwrap()) != want[i % 8]).count());
            assert_eq!(wrong, 0, "{name}, {threads} threads: calls from rayon workers with other bits");
            // Two calls at a time at most: two handed-over pools for two threads, none for one.
            assert!(session.handed_over_pools() <= 2 * (threads - 1), "{name}, {threads} threads: {} pools", session.handed_over_pools());
        }
    }
}
