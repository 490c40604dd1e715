//! The error type of pm-adjoint: pm-core's errors passed through ([`Error::Core`]), and the
//! conditions that are pm-adjoint's own (the adjoint, the objective, the optimiser and sampler
//! settings, the inference and reconstruction inputs), each a variant with the values that caused
//! it. Arrays of the wrong length and NaN/Inf values keep pm-core's kinds
//! ([`pm_core::Error::Shape`], [`pm_core::Error::NonFinite`], inside [`Error::Core`]), so one
//! match serves every crate. The messages name the field and the fix, worded as pm-core's.

/// Errors a caller of pm-adjoint can cause, and pm-core's errors from the simulation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error of pm-core (configuration, arrays, files, the simulation itself), unchanged.
    #[error(transparent)]
    Core(#[from] pm_core::Error),
    /// A run with `run.fixed_amplitude = true`: the fixed-amplitude modes are not a
    /// differentiable function of the white noise.
    #[error(
        "invalid `run.fixed_amplitude` = true: expected false: fixed-amplitude modes are not a differentiable function of the white noise"
    )]
    FixedAmplitude,
    /// [`Recover::Checkpoint`](crate::Recover::Checkpoint) with `every = 0`.
    #[error("invalid `checkpoint every` = {every}: expected at least 1 step between checkpoints")]
    CheckpointEvery {
        /// The interval given (0).
        every: usize,
    },
    /// An [`Objective`](crate::Objective) without terms.
    #[error("invalid `objective` = no terms: expected at least one loss (Objective::final_state)")]
    EmptyObjective,
    /// A loss read at a scale factor that is not a step boundary of the run.
    #[error("invalid `loss time a` = {a}: expected a step boundary of the run: time.a_start = {a_start}, time.a_stop = {a_stop} or one of time.snapshots (add it there)")]
    LossTime {
        /// The scale factor of the loss.
        a: f64,
        /// `time.a_start` of the run.
        a_start: f64,
        /// `time.a_stop` of the run.
        a_stop: f64,
    },
    /// A setting of the optimiser ([`LbfgsOptions`](crate::optim::LbfgsOptions)) or of the
    /// sampler ([`HmcOptions`](crate::infer::HmcOptions)) out of its range.
    #[error("invalid `{field}` = {value}: expected {expected}")]
    Options {
        /// The setting(s), e.g. `LbfgsOptions.memory`.
        field: &'static str,
        /// The value(s) given.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A Hessian that is not positive definite where a covariance is wanted
    /// ([`laplace_covariance`](crate::infer::laplace_covariance): not a minimum).
    #[error("invalid `Hessian` = {hessian:?}: expected a positive-definite matrix (a minimum of the loss)")]
    NotPositiveDefinite {
        /// The (symmetrised) Hessian.
        hessian: Vec<Vec<f64>>,
    },
    /// A fit of σ₈ with a configuration normalised by A_s (`cosmology.sigma8` unset).
    #[error("invalid `cosmology.sigma8` = unset: expected a σ₈ normalisation ({why})")]
    Sigma8Unset {
        /// Which fit needs it.
        why: &'static str,
    },
    /// A noise standard deviation that is not finite and > 0.
    #[error("invalid `noise sigma` = {sigma}: expected a finite standard deviation > 0 (units of δ per cell)")]
    NoiseSigma {
        /// The value given.
        sigma: f64,
    },
    /// A wavenumber of the noise power table that is not finite, > 0 and increasing.
    #[error("invalid `noise power k[{index}]` = {k}: expected finite, > 0 and increasing (h/Mpc)")]
    NoiseTableK {
        /// Row of the table.
        index: usize,
        /// The wavenumber there.
        k: f64,
    },
    /// A noise power of the table that is not finite and > 0.
    #[error("invalid `noise power P_N[{index}]` = {p}: expected a finite power > 0 in (Mpc/h)³")]
    NoiseTableP {
        /// Row of the table.
        index: usize,
        /// The power there.
        p: f64,
    },
    /// A data mesh outside 2 to 4096 cells per side.
    #[error("invalid `data mesh` = {m}: expected 2 to 4096 cells per side")]
    DataMesh {
        /// Cells per side given.
        m: usize,
    },
    /// A smoothing scale (`data smoothing` or `annealing scale`) that is negative or not finite.
    #[error("invalid `{what}` = {r}: expected a Gaussian smoothing scale ≥ 0 in Mpc/h (0: none)")]
    SmoothingScale {
        /// Which scale.
        what: &'static str,
        /// The value given, Mpc/h.
        r: f64,
    },
    /// A negative weight of the Laplace term.
    #[error("invalid `Laplace weights` = {weight}: expected weights ≥ 0 (fractions of the prior power)")]
    LaplaceWeight {
        /// The first negative weight.
        weight: f64,
    },
    /// An annealing schedule without stages.
    #[error("invalid `schedule` = empty: expected at least one stage")]
    EmptySchedule,
    /// The joint cosmology fit found no signal-to-noise at its start: the Fisher matrix of
    /// (Ω_m, σ₈) has a zero or non-finite diagonal.
    #[error("invalid `cosmology fit` = Fisher matrix {fisher:?} at the start: expected data with signal-to-noise in some mode (lower the noise)")]
    FisherAtStart {
        /// The Fisher matrix of (Ω_m, σ₈) there.
        fisher: [[f64; 2]; 2],
    },
    /// The Fisher matrix of (Ω_m, σ₈) at the estimate of the joint fit is not positive definite
    /// (no covariance).
    #[error("invalid `cosmology fit` = Fisher matrix {fisher:?} at the estimate: expected a positive-definite Fisher matrix (data with signal-to-noise in some mode)")]
    FisherAtEstimate {
        /// The Fisher matrix of (Ω_m, σ₈) there.
        fisher: [[f64; 2]; 2],
    },
    /// The joint fit's final point is a cosmology the simulation refuses.
    #[error("invalid `cosmology fit` = {theta:?}: expected an accepted point in the valid range")]
    FitOutOfRange {
        /// (Ω_m, σ₈) of that point.
        theta: [f64; 2],
    },
}

/// `Result` with pm-adjoint's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message reads word for word as the `pm_core::Error::Invalid` that pm-adjoint raised
    /// before it had its own error type (the CLI prints it; scripts and tests match on it).
    #[test]
    fn messages_are_those_of_the_pm_core_errors_they_replace() {
        let inv = |f: &str, v: &dyn ToString, e: &str| pm_core::Error::invalid(f, v.to_string(), e).to_string();
        let f = [[1.5, -0.25], [0.0, 3.0]];
        let cases: Vec<(Error, String)> = vec![
            (
                Error::FixedAmplitude,
                inv(
                    "run.fixed_amplitude",
                    &true,
                    "false: fixed-amplitude modes are not a differentiable function of the white noise",
                ),
            ),
            (
                Error::CheckpointEvery { every: 0 },
                inv("checkpoint every", &0, "at least 1 step between checkpoints"),
            ),
            (
                Error::EmptyObjective,
                inv("objective", &"no terms", "at least one loss (Objective::final_state)"),
            ),
            (
                Error::LossTime {
                    a: 0.3,
                    a_start: 0.02,
                    a_stop: 1.0,
                },
                inv(
                    "loss time a",
                    &0.3,
                    "a step boundary of the run: time.a_start = 0.02, time.a_stop = 1 or one of time.snapshots (add it there)",
                ),
            ),
            (
                Error::Options {
                    field: "LbfgsOptions.c1, c2",
                    value: "0.5, 0.1".into(),
                    expected: "0 < c1 < c2 < 1 (e.g. 1e-4 and 0.9)".into(),
                },
                inv("LbfgsOptions.c1, c2", &"0.5, 0.1", "0 < c1 < c2 < 1 (e.g. 1e-4 and 0.9)"),
            ),
            (
                Error::NotPositiveDefinite {
                    hessian: vec![vec![1.0, 2.0], vec![2.0, -1.0]],
                },
                inv(
                    "Hessian",
                    &format!("{:?}", [vec![1.0, 2.0], vec![2.0, -1.0]].as_slice()),
                    "a positive-definite matrix (a minimum of the loss)",
                ),
            ),
            (
                Error::Sigma8Unset {
                    why: "the fit varies σ₈"
                },
                inv("cosmology.sigma8", &"unset", "a σ₈ normalisation (the fit varies σ₈)"),
            ),
            (
                Error::NoiseSigma { sigma: -1.0 },
                inv("noise sigma", &-1.0, "a finite standard deviation > 0 (units of δ per cell)"),
            ),
            (
                Error::NoiseTableK { index: 1, k: 0.1 },
                inv("noise power k[1]", &0.1, "finite, > 0 and increasing (h/Mpc)"),
            ),
            (
                Error::NoiseTableP { index: 2, p: f64::NAN },
                inv("noise power P_N[2]", &f64::NAN, "a finite power > 0 in (Mpc/h)³"),
            ),
            (Error::DataMesh { m: 5000 }, inv("data mesh", &5000, "2 to 4096 cells per side")),
            (
                Error::SmoothingScale {
                    what: "annealing scale",
                    r: f64::INFINITY,
                },
                inv(
                    "annealing scale",
                    &f64::INFINITY,
                    "a Gaussian smoothing scale ≥ 0 in Mpc/h (0: none)",
                ),
            ),
            (
                Error::LaplaceWeight { weight: -0.5 },
                inv("Laplace weights", &-0.5, "weights ≥ 0 (fractions of the prior power)"),
            ),
            (Error::EmptySchedule, inv("schedule", &"empty", "at least one stage")),
            (
                Error::FisherAtStart { fisher: f },
                inv(
                    "cosmology fit",
                    &format!("Fisher matrix {f:?} at the start"),
                    "data with signal-to-noise in some mode (lower the noise)",
                ),
            ),
            (
                Error::FisherAtEstimate { fisher: f },
                inv(
                    "cosmology fit",
                    &format!("Fisher matrix {f:?} at the estimate"),
                    "a positive-definite Fisher matrix (data with signal-to-noise in some mode)",
                ),
            ),
            (
                Error::FitOutOfRange { theta: [0.3, -0.1] },
                inv(
                    "cosmology fit",
                    &format!("{:?}", [0.3, -0.1]),
                    "an accepted point in the valid range",
                ),
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want, "{e:?}");
        }
        let core = pm_core::Error::invalid("box.mesh", 3, "at least 4");
        assert_eq!(
            Error::from(pm_core::Error::invalid("box.mesh", 3, "at least 4")).to_string(),
            core.to_string()
        );
    }
}
