//! The annealing schedule of the reconstruction: stages of L-BFGS iterations at decreasing
//! residual smoothing (docs/reconstruction.md §A).

/// One stage of the annealing schedule: L-BFGS iterations at a fixed residual smoothing scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    /// Annealing scale R, Mpc/h (0: the exact posterior).
    pub smoothing: f64,
    /// L-BFGS iterations at this scale.
    pub iterations: usize,
}

/// The default annealing schedule for `iterations` in total (docs/reconstruction.md §A): the
/// residual smoothing R = (4, 2, 1, ½) × the particle spacing with [`DEFAULT_STAGE_SHARES`] of the
/// iterations (10 %, 10 %, 30 %, 30 %), then the rest (≥ 20 %) at R = 0, the exact posterior.
/// Stages that would get no iteration are left out.
pub fn default_schedule(iterations: usize, particle_spacing: f64) -> Vec<Stage> {
    let mut v: Vec<Stage> = DEFAULT_STAGE_SHARES
        .iter()
        .map(|&(f, share)| Stage {
            smoothing: f * particle_spacing,
            iterations: iterations * share / 100,
        })
        .filter(|s| s.iterations > 0)
        .collect();
    let used: usize = v.iter().map(|s| s.iterations).sum();
    v.push(Stage {
        smoothing: 0.0,
        iterations: iterations - used,
    });
    v
}

/// The annealed stages of [`default_schedule`]: (R in particle spacings, per cent of the
/// iterations). Measured on a 32³ mock (docs/reconstruction.md §A): moving iterations from the
/// R = 0 stage to R = 1 and ½ spacings raises r(k) at k = 0.5–1 h/Mpc by 0.08–0.18 and lowers the
/// final exact χ².
pub const DEFAULT_STAGE_SHARES: [(f64, usize); 4] = [(4.0, 10), (2.0, 10), (1.0, 30), (0.5, 30)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_ends_at_the_exact_posterior_and_spends_every_iteration() {
        for it in [1, 7, 10, 100, 333] {
            let s = default_schedule(it, 2.0);
            assert_eq!(s.iter().map(|x| x.iterations).sum::<usize>(), it);
            assert_eq!(s.last().unwrap().smoothing, 0.0);
            assert!(s.last().unwrap().iterations * 5 >= it, "{it}: {s:?}");
            assert!(s.iter().all(|x| x.iterations > 0), "{it}: {s:?}");
            assert!(s.windows(2).all(|w| w[0].smoothing > w[1].smoothing));
        }
        let r: Vec<(f64, usize)> = default_schedule(100, 2.0).iter().map(|s| (s.smoothing, s.iterations)).collect();
        assert_eq!(r, [(8.0, 10), (4.0, 10), (2.0, 30), (1.0, 30), (0.0, 20)]);
    }
}
