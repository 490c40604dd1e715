//! The noise model of the observed density mesh (docs/reconstruction.md eq. X1).

use crate::{Error, Result};

/// The noise of the observed density mesh.
#[derive(Clone, Debug, PartialEq)]
pub enum NoiseModel {
    /// White noise with standard deviation `sigma` per cell (units of δ; > 0).
    White {
        /// Per-cell standard deviation.
        sigma: f64,
    },
    /// Gaussian noise with power spectrum P_N(k), tabulated at increasing `k` (h/Mpc) with `p`
    /// ((Mpc/h)³, > 0) and interpolated linearly in (ln k, ln P), constant beyond the ends.
    Power {
        /// Wavenumbers, h/Mpc, strictly increasing, > 0.
        k: Vec<f64>,
        /// Noise power at each k, (Mpc/h)³, > 0.
        p: Vec<f64>,
    },
}

impl NoiseModel {
    /// Checks the values (σ > 0 and finite; a table with ≥ 1 finite positive entry per k,
    /// increasing k).
    pub fn validate(&self) -> Result<()> {
        match self {
            NoiseModel::White { sigma } => {
                if !(sigma.is_finite() && *sigma > 0.0) {
                    return Err(Error::NoiseSigma { sigma: *sigma });
                }
            }
            NoiseModel::Power { k, p } => {
                if k.is_empty() || k.len() != p.len() {
                    return Err(pm_core::Error::Shape {
                        what: "noise power spectrum".into(),
                        found: format!("{} k and {} P values", k.len(), p.len()),
                        expected: "the same number (≥ 1) of k and P_N values".into(),
                    }
                    .into());
                }
                for (i, (&ki, &pi)) in k.iter().zip(p).enumerate() {
                    if !(ki.is_finite() && ki > 0.0) || (i > 0 && ki <= k[i - 1]) {
                        return Err(Error::NoiseTableK { index: i, k: ki });
                    }
                    if !(pi.is_finite() && pi > 0.0) {
                        return Err(Error::NoiseTableP { index: i, p: pi });
                    }
                }
            }
        }
        Ok(())
    }

    /// Noise variance of one mode at wavenumber `k` in per-cell units, σ²(k) = P_N(k)/V_cell.
    pub fn variance(&self, k: f64, cell_volume: f64) -> f64 {
        match self {
            NoiseModel::White { sigma } => sigma * sigma,
            NoiseModel::Power { k: ks, p } => {
                let n = ks.len();
                let pn = if n == 1 || k <= ks[0] {
                    p[0]
                } else if k >= ks[n - 1] {
                    p[n - 1]
                } else {
                    let j = ks.partition_point(|&x| x <= k).clamp(1, n - 1);
                    let t = (k.ln() - ks[j - 1].ln()) / (ks[j].ln() - ks[j - 1].ln());
                    (p[j - 1].ln() + t * (p[j].ln() - p[j - 1].ln())).exp()
                };
                pn / cell_volume
            }
        }
    }
}
