//! Tests of the convolutions: slice kernels against a naive 7-loop convolution, dot-product
//! (adjoint) tests, finite differences through candle, fused vs candle-ops fallback, thread-count
//! independence and typed shape errors.

use super::*;
use crate::testing::rand_vec;
use candle_core::{Device, Var};

/// Visits the terms of the 7-loop convolution in a fixed order (per output voxel: channel, then
/// kernel offsets), skipping the zero padding: `f(xi, wi, yi)`, flat indices of x, w and y.
fn for_each_term(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize)) {
    let k = g.k;
    let [d, h, wd] = g.din;
    let [dz, dy, dx] = g.dout;
    for n in 0..g.n {
        for o in 0..g.cout {
            for z in 0..dz {
                for yy in 0..dy {
                    for xx in 0..dx {
                        let yi = (((n * g.cout + o) * dz + z) * dy + yy) * dx + xx;
                        for c in 0..g.cin {
                            for kz in 0..k {
                                for ky in 0..k {
                                    for kx in 0..k {
                                        let iz = (z * g.stride + kz) as isize - g.pad as isize;
                                        let iy = (yy * g.stride + ky) as isize - g.pad as isize;
                                        let ix = (xx * g.stride + kx) as isize - g.pad as isize;
                                        if iz < 0 || iy < 0 || ix < 0 || iz >= d as isize || iy >= h as isize || ix >= wd as isize {
                                            continue;
                                        }
                                        let xi = (((n * g.cin + c) * d + iz as usize) * h + iy as usize) * wd + ix as usize;
                                        let wi = (((o * g.cin + c) * k + kz) * k + ky) * k + kx;
                                        f(xi, wi, yi);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Slow, obviously-correct 7-loop convolution (f64).
fn naive(g: &ConvGeom, x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; g.n * g.cout * g.pout()];
    for_each_term(g, |xi, wi, yi| y[yi] += w[wi] * x[xi]);
    y
}

/// Naive input VJP and weight gradient by the same 7 loops, scattering.
fn naive_vjp(g: &ConvGeom, x: &[f64], w: &[f64], yb: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut xb = vec![0.0; x.len()];
    let mut wb = vec![0.0; w.len()];
    for_each_term(g, |xi, wi, yi| {
        xb[xi] += w[wi] * yb[yi];
        wb[wi] += x[xi] * yb[yi];
    });
    (xb, wb)
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Cases: (N, C_in, C_out, k, stride, pad, D, H, W), including 1³ kernels, stride 2, odd sizes.
const CASES: &[(usize, usize, usize, usize, usize, usize, usize, usize, usize)] = &[
    (2, 3, 4, 3, 1, 1, 6, 5, 7),
    (1, 2, 3, 3, 2, 1, 7, 6, 8),
    (2, 3, 2, 2, 2, 0, 8, 6, 4),
    (1, 4, 5, 1, 1, 0, 5, 4, 3),
    (1, 2, 2, 3, 1, 0, 5, 5, 6),
    (1, 3, 3, 3, 2, 0, 9, 7, 5),
];

fn case_geom(c: &(usize, usize, usize, usize, usize, usize, usize, usize, usize)) -> ConvGeom {
    let &(n, ci, co, k, s, p, d, h, w) = c;
    ConvGeom::new(&[n, ci, d, h, w], &[co, ci, k, k, k], s, p).unwrap()
}

#[test]
fn slices_match_naive_f64_and_f32() {
    for (i, c) in CASES.iter().enumerate() {
        let g = case_geom(c);
        let x = rand_vec(g.n * g.cin * g.pin(), 10 + i as u64);
        let w = rand_vec(g.cout * g.kdim(), 20 + i as u64);
        let yb = rand_vec(g.n * g.cout * g.pout(), 30 + i as u64);
        let y0 = naive(&g, &x, &w);
        let (xb0, wb0) = naive_vjp(&g, &x, &w, &yb);
        let y = conv3d_fwd_slice(&g, &x, &w);
        let xb = conv3d_vjp_input_slice(&g, &yb, &w);
        let wb = conv3d_vjp_weight_slice(&g, &x, &yb);
        assert!(max_rel(&y, &y0) <= 1e-12, "case {c:?}: forward f64 {}", max_rel(&y, &y0));
        assert!(max_rel(&xb, &xb0) <= 1e-12, "case {c:?}: input vjp f64 {}", max_rel(&xb, &xb0));
        assert!(max_rel(&wb, &wb0) <= 1e-12, "case {c:?}: weight grad f64 {}", max_rel(&wb, &wb0));
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let b = |v: Vec<f32>| v.into_iter().map(|a| a as f64).collect::<Vec<f64>>();
        let (x32, w32, yb32) = (f(&x), f(&w), f(&yb));
        let y = b(conv3d_fwd_slice(&g, &x32, &w32));
        let xb = b(conv3d_vjp_input_slice(&g, &yb32, &w32));
        let wb = b(conv3d_vjp_weight_slice(&g, &x32, &yb32));
        assert!(max_rel(&y, &y0) <= 1e-5, "case {c:?}: forward f32 {}", max_rel(&y, &y0));
        assert!(max_rel(&xb, &xb0) <= 1e-5, "case {c:?}: input vjp f32 {}", max_rel(&xb, &xb0));
        assert!(max_rel(&wb, &wb0) <= 1e-5, "case {c:?}: weight grad f32 {}", max_rel(&wb, &wb0));
    }
}

#[test]
fn dot_product_tests() {
    // ⟨conv(x), ȳ⟩ = ⟨x, Jₓᵀȳ⟩ and = ⟨w, J_wᵀȳ⟩ (conv is bilinear).
    for (i, c) in CASES.iter().enumerate() {
        let g = case_geom(c);
        let x = rand_vec(g.n * g.cin * g.pin(), 40 + i as u64);
        let w = rand_vec(g.cout * g.kdim(), 50 + i as u64);
        let yb = rand_vec(g.n * g.cout * g.pout(), 60 + i as u64);
        let y = conv3d_fwd_slice(&g, &x, &w);
        let lhs: f64 = y.iter().zip(&yb).map(|(a, b)| a * b).sum();
        let xb = conv3d_vjp_input_slice(&g, &yb, &w);
        let wb = conv3d_vjp_weight_slice(&g, &x, &yb);
        let r1: f64 = x.iter().zip(&xb).map(|(a, b)| a * b).sum();
        let r2: f64 = w.iter().zip(&wb).map(|(a, b)| a * b).sum();
        assert!((lhs - r1).abs() <= 1e-12 * lhs.abs().max(1.0), "case {c:?}: {lhs} vs {r1}");
        assert!((lhs - r2).abs() <= 1e-12 * lhs.abs().max(1.0), "case {c:?}: {lhs} vs {r2}");
    }
}

fn t64(v: Vec<f64>, dims: &[usize]) -> Tensor {
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn vec64(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

#[test]
fn candle_op_gradients_match_finite_differences() {
    // L = ⟨conv(x, w) + b, r⟩² / 2 (non-linear in x, w), central differences in f64.
    let (n, ci, co, k, s, p) = (1, 2, 3, 3, 2, 1);
    let dims = [n, ci, 5, 6, 4];
    let x = Var::from_tensor(&t64(rand_vec(dims.iter().product(), 1), &dims)).unwrap();
    let w = Var::from_tensor(&t64(rand_vec(co * ci * k * k * k, 2), &[co, ci, k, k, k])).unwrap();
    let g = ConvGeom::new(&dims, w.dims(), s, p).unwrap();
    let r = t64(rand_vec(n * co * g.pout(), 3), &[n, co, g.dout[0], g.dout[1], g.dout[2]]);
    let loss = |x: &Tensor, w: &Tensor| -> Tensor {
        let y = conv3d(x, w, s, p).unwrap();
        let l = (y * &r).unwrap().sum_all().unwrap();
        (l.sqr().unwrap() * 0.5).unwrap()
    };
    let l = loss(x.as_tensor(), w.as_tensor());
    let grads = l.backward().unwrap();
    for (var, seed) in [(&x, 7u64), (&w, 8)] {
        let gvec = vec64(grads.get(var).unwrap());
        let dir = rand_vec(gvec.len(), seed);
        let analytic: f64 = gvec.iter().zip(&dir).map(|(a, b)| a * b).sum();
        let h = 1e-5;
        let dirt = t64(dir.clone(), var.dims());
        let eval = |sign: f64| {
            let shifted = (var.as_tensor() + (&dirt * (sign * h)).unwrap()).unwrap();
            let l = if std::ptr::eq(var, &x) {
                loss(&shifted, w.as_tensor())
            } else {
                loss(x.as_tensor(), &shifted)
            };
            l.to_scalar::<f64>().unwrap()
        };
        let fd = (eval(1.0) - eval(-1.0)) / (2.0 * h);
        assert!(
            (fd - analytic).abs() <= 1e-7 * analytic.abs().max(1.0),
            "fd {fd} vs analytic {analytic}"
        );
    }
}

#[test]
fn fused_equals_candle_fallback_forward_and_backward() {
    for (i, c) in CASES.iter().enumerate() {
        let g = case_geom(c);
        let x = Var::from_tensor(&t64(
            rand_vec(g.n * g.cin * g.pin(), 70 + i as u64),
            &[g.n, g.cin, g.din[0], g.din[1], g.din[2]],
        ))
        .unwrap();
        let w = Var::from_tensor(&t64(rand_vec(g.cout * g.kdim(), 80 + i as u64), &[g.cout, g.cin, g.k, g.k, g.k])).unwrap();
        let r = t64(
            rand_vec(g.n * g.cout * g.pout(), 90 + i as u64),
            &[g.n, g.cout, g.dout[0], g.dout[1], g.dout[2]],
        );
        let mut outs = vec![];
        for fused in [true, false] {
            let y = if fused {
                conv3d(&x, &w, g.stride, g.pad)
            } else {
                conv3d_candle(&x, &w, g.stride, g.pad)
            }
            .unwrap();
            let gr = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            outs.push((vec64(&y), vec64(gr.get(&x).unwrap()), vec64(gr.get(&w).unwrap())));
        }
        assert!(max_rel(&outs[0].0, &outs[1].0) <= 1e-12, "case {c:?} forward");
        assert!(max_rel(&outs[0].1, &outs[1].1) <= 1e-12, "case {c:?} input grad");
        assert!(max_rel(&outs[0].2, &outs[1].2) <= 1e-12, "case {c:?} weight grad");
    }
}

#[test]
fn transposed_conv_is_the_adjoint_and_fallback_agrees() {
    for (i, c) in CASES.iter().enumerate() {
        let g = case_geom(c);
        // Output size of the transposed conv = the conv's input size, via out_pad.
        let base = (g.dout[0] - 1) * g.stride + g.k - 2 * g.pad;
        if (0..3).any(|a| (g.dout[a] - 1) * g.stride + g.k - 2 * g.pad + (g.din[0] - base) != g.din[a]) {
            continue; // the three axes would need different out_pad
        }
        let out_pad = g.din[0] - base;
        let u = Var::from_tensor(&t64(
            rand_vec(g.n * g.cout * g.pout(), 100 + i as u64),
            &[g.n, g.cout, g.dout[0], g.dout[1], g.dout[2]],
        ))
        .unwrap();
        let w = Var::from_tensor(&t64(rand_vec(g.cout * g.kdim(), 110 + i as u64), &[g.cout, g.cin, g.k, g.k, g.k])).unwrap();
        let r = t64(
            rand_vec(g.n * g.cin * g.pin(), 120 + i as u64),
            &[g.n, g.cin, g.din[0], g.din[1], g.din[2]],
        );
        let z = conv_transpose3d(&u, &w, g.stride, g.pad, out_pad).unwrap();
        let zc = conv_transpose3d_candle(&u, &w, g.stride, g.pad, out_pad).unwrap();
        assert!(
            max_rel(&vec64(&z), &vec64(&zc)) <= 1e-12,
            "case {c:?}: fused vs candle transposed conv"
        );
        // ⟨convT(u), r⟩ = ⟨u, conv(r)⟩.
        let lhs = sum_f64(&(&z * &r).unwrap()).unwrap();
        let rhs = sum_f64(&(conv3d(&r, &w, g.stride, g.pad).unwrap() * u.as_tensor()).unwrap()).unwrap();
        assert!((lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0), "case {c:?}: {lhs} vs {rhs}");
        // Backward of the fused transposed conv vs the candle-ops one.
        let g1 = (&z * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&zc * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&u, &w] {
            assert!(
                max_rel(&vec64(g1.get(v).unwrap()), &vec64(g2.get(v).unwrap())) <= 1e-12,
                "case {c:?}: transposed conv gradient"
            );
        }
    }
}

#[test]
fn fused_is_bit_identical_across_thread_counts() {
    let g = ConvGeom::new(&[2, 8, 12, 12, 12], &[8, 8, 3, 3, 3], 1, 1).unwrap();
    let x: Vec<f32> = rand_vec(g.n * g.cin * g.pin(), 5).into_iter().map(|v| v as f32).collect();
    let w: Vec<f32> = rand_vec(g.cout * g.kdim(), 6).into_iter().map(|v| v as f32).collect();
    let yb: Vec<f32> = rand_vec(g.n * g.cout * g.pout(), 7).into_iter().map(|v| v as f32).collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            (
                conv3d_fwd_slice(&g, &x, &w),
                conv3d_vjp_input_slice(&g, &yb, &w),
                conv3d_vjp_weight_slice(&g, &x, &yb),
            )
        })
    };
    let (a, b) = (run(1), run(3));
    assert!(a.0 == b.0 && a.1 == b.1 && a.2 == b.2, "results depend on the thread count");
}

#[test]
fn bad_shapes_are_typed_errors() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 2, 4, 4, 4), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((3, 5, 3, 3, 3), DType::F32, &dev).unwrap();
    assert!(matches!(conv3d(&x, &w, 1, 1), Err(Error::Shape { what: "conv3d weight", .. })));
    let w = Tensor::zeros((3, 2, 3, 3, 3), DType::F64, &dev).unwrap();
    assert!(matches!(conv3d(&x, &w, 1, 1), Err(Error::Shape { what: "conv3d weight", .. })));
    let w = Tensor::zeros((3, 2, 5, 5, 5), DType::F32, &dev).unwrap();
    assert!(matches!(conv3d(&x, &w, 1, 0), Err(Error::Shape { what: "conv3d input", .. })));
    assert!(matches!(
        conv3d(&x.flatten_all().unwrap(), &w, 1, 0),
        Err(Error::Shape { what: "conv3d input", .. })
    ));
    let w = Tensor::zeros((3, 2, 2, 2, 2), DType::F32, &dev).unwrap();
    assert!(matches!(conv3d(&x, &w, 0, 0), Err(Error::Config { field: "stride", .. })));
}
