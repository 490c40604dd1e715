//! The outputs of `cosmograd reconstruct`: the white noise and the linear and final fields,
//! `loss.txt`, `cosmology.txt` (`--fit-cosmology`), the mock's truth, data and `r_k.txt`, the
//! figures, and the summary.

use super::solve::Solved;
use super::{Options, FIT_FILE, MOCK_FILES, RECON_FILES};
use crate::output::{create_output_dir, write_record, write_text};
use crate::plot::recon::{plot_loss, plot_rk, plot_slices};
use pm_adjoint::recon::{linear_wiener, NoiseModel};
use pm_adjoint::Result;
use pm_core::config::Config;
use pm_core::fft::Fft3;
use pm_core::io::write_npy_real;
use pm_core::mesh::MeshGeom;
use pm_core::noise::linear_field;
use pm_core::power::{cross_spectrum, Deconvolve};
use pm_core::sim::Simulation;
use pm_core::Real;

/// Writes every output of a reconstruction on an m³ data mesh into `--out`, and the summary
/// unless `--quiet`.
pub(super) fn write<T: Real>(
    config: &Config,
    resolved: &str,
    opts: &Options,
    noise: &NoiseModel,
    m: usize,
    solved: Solved<T>,
) -> Result<()> {
    let mut s = solved;
    let (sim, post, r, rows) = (&mut s.sim, &s.post, &s.r, &s.rows);
    let (w_true, obs, signal) = (&s.w_true, &s.obs, &s.signal);
    let (theta_config, t_forward, t_recon) = (s.theta_config, s.t_forward, s.t_recon);
    let (n, l) = (config.box_.particles, config.box_.size);
    let mock = w_true.is_some();
    let out = &opts.output.out;
    create_output_dir(out)?;
    write_npy_real(&out.join("white_noise.npy"), &[n, n, n], &r.white_noise)?;
    let lattice = MeshGeom::new(n, l);
    let fft_n = Fft3::<T>::new(n);
    let lin = sim.linear_power().clone();
    let p_lin = move |k: f64| lin.p(k);
    let lin_rec = linear_field(&mut r.white_noise.clone(), &lattice, &fft_n, &p_lin);
    write_npy_real(&out.join("linear_density.npy"), &[n, n, n], &lin_rec)?;
    let mut state = sim.initial_conditions(r.white_noise.clone())?;
    sim.run(&mut state, |_| Ok(()))?;
    let final_rec = post.smooth(&post.density(&state));
    write_npy_real(&out.join("final_density.npy"), &[m, m, m], &final_rec)?;
    let mut text = format!(
        "# cosmograd reconstruct: per L-BFGS iteration (0 = the stage's starting point)\n# largest reversal error of the backward passes at the accepted iterates: {:e} (warned above {:e})\n",
        r.reversal_error,
        pm_adjoint::REVERSAL_WARN
    );
    text.push_str("# stage smoothing_R[Mpc/h] iteration neg_log_posterior_at_R chi2_half_at_R0 prior_half_w2");
    text.push_str(if opts.fit_cosmology {
        " omega_m sigma8 (the loss includes the Laplace term, docs/reconstruction.md eq. J1)\n"
    } else {
        "\n"
    });
    for row in rows {
        text.push_str(&format!(
            "{} {:.4} {} {:.10e} {:.10e} {:.10e}",
            row.stage, row.smoothing, row.iteration, row.loss, row.chi2_half, row.prior
        ));
        text.push_str(&row.theta.map_or("\n".to_string(), |t| format!(" {:.8} {:.8}\n", t[0], t[1])));
    }
    write_text(&out.join("loss.txt"), &text)?;
    let points: Vec<(usize, f64, f64)> = rows.iter().map(|row| (row.iteration, row.loss, row.chi2_half)).collect();
    plot_loss(&out.join("loss.png"), &points)?;
    let mut fit_summary = String::new();
    if let Some(fit) = &r.cosmology {
        let sig = fit.sigma();
        let rho = fit.covariance[0][1] / (sig[0] * sig[1]);
        let mut t = String::from("# cosmograd reconstruct --fit-cosmology: joint maximum of the posterior of (w, Ω_m, σ₈) with the\n# linear-theory Laplace term; sigma from the inverse Fisher matrix at the estimate (docs/reconstruction.md §J)\n");
        t.push_str(if mock {
            "# parameter start estimate sigma truth pull=(estimate-truth)/sigma\n"
        } else {
            "# parameter start estimate sigma\n"
        });
        for (i, name) in ["omega_m", "sigma8"].iter().enumerate() {
            t.push_str(&format!("{name} {:.6} {:.6} {:.6}", fit.start[i], fit.theta[i], sig[i]));
            let line = if mock {
                let pull = (fit.theta[i] - theta_config[i]) / sig[i];
                fit_summary.push_str(&format!(
                    "  {name} = {:.4} ± {:.4} (truth {:.4}, pull {pull:+.2}; start {:.4})\n",
                    fit.theta[i], sig[i], theta_config[i], fit.start[i]
                ));
                format!(" {:.6} {pull:.4}\n", theta_config[i])
            } else {
                fit_summary.push_str(&format!(
                    "  {name} = {:.4} ± {:.4} (start {:.4})\n",
                    fit.theta[i], sig[i], fit.start[i]
                ));
                "\n".to_string()
            };
            t.push_str(&line);
        }
        t.push_str(&format!("# correlation coefficient of (omega_m, sigma8): {rho:.4}\n"));
        fit_summary.push_str(&format!("  correlation(Ω_m, σ₈) = {rho:.3} (cosmology.txt)\n"));
        write_text(&out.join(FIT_FILE), &t)?;
    }

    let mut summary = String::new();
    let (lin_top, fin_top, top_label) = match (w_true, signal) {
        (Some(wt), Some(sig)) => {
            write_npy_real(&out.join("true_white_noise.npy"), &[n, n, n], wt)?;
            write_npy_real(&out.join("observed.npy"), &[m, m, m], &obs)?;
            // The truth's cosmology (a cosmology fit leaves `sim` at its estimate).
            let sim_truth = Simulation::<T>::new(config)?;
            let lin_truth = sim_truth.linear_power().clone();
            let p_truth = move |k: f64| lin_truth.p(k);
            let lin_true = linear_field(&mut wt.clone(), &lattice, &fft_n, &p_truth);
            let cs = cross_spectrum(&lin_rec, &lin_true, &lattice, &fft_n, Deconvolve::None);
            // The linear-theory Wiener reconstruction of this mock's data, with its own noise
            // realisation (docs/reconstruction.md eq. W1), against the same truth.
            let noise_x: Vec<T> = obs.iter().zip(sig).map(|(o, s)| *o - *s).collect();
            let lin_w = linear_wiener(&sim_truth, &post, &lin_true, &noise_x);
            let cw = cross_spectrum(&lin_w, &lin_true, &lattice, &fft_n, Deconvolve::None);
            let t: Vec<f64> = cs.p_aa.iter().zip(&cs.p_bb).map(|(a, b)| (a / b).sqrt()).collect();
            let tw: Vec<f64> = cw.p_aa.iter().zip(&cw.p_bb).map(|(a, b)| (a / b).sqrt()).collect();
            let mut rk = String::from("# cosmograd reconstruct (mock): reconstructed vs true linear density on the particle grid\n# k[h/Mpc] r(k) T(k)=sqrt(P_rec/P_true) N_modes r_wiener T_wiener (the linear-theory Wiener filter of this mock's data, docs/reconstruction.md eq. W1)\n");
            for i in 0..cs.k.len() {
                rk.push_str(&format!(
                    "{:.8e} {:.8e} {:.8e} {} {:.8e} {:.8e}\n",
                    cs.k[i], cs.r[i], t[i], cs.n_modes[i], cw.r[i], tw[i]
                ));
            }
            write_text(&out.join("r_k.txt"), &rk)?;
            plot_rk(&out.join("r_k.png"), &cs.k, &cs.r, &t, (&cw.r, &tw))?;
            let at = |k0: f64| {
                let i = cs.k.partition_point(|&x| x < k0).min(cs.k.len() - 1);
                (cs.k[i], cs.r[i], t[i])
            };
            let (k1, r1, t1) = at(0.5);
            let (k2, r2, t2) = at(1.0);
            summary = format!("  r(k = {k1:.3}) = {r1:.3}, T = {t1:.3}; r(k = {k2:.3}) = {r2:.3}, T = {t2:.3} (r_k.txt)\n");
            (lin_true, sig.clone(), "true")
        }
        _ => (Vec::new(), obs.clone(), "observed"),
    };
    plot_slices(
        &out.join("slices.png"),
        n,
        m,
        l,
        if mock { Some(lin_top.as_slice()) } else { None },
        &lin_rec,
        &fin_top,
        &final_rec,
        top_label,
    )?;
    // The record last: a directory without it is an interrupted run.
    write_record(out, resolved)?;
    opts.reversal.warn(r.reversal_error);
    if !opts.output.quiet {
        let evals = r.evaluations.max(1);
        let iters: usize = r.stages.iter().map(|s| s.iterations).sum();
        crate::say!(
            "cosmograd reconstruct: {n}³ particles, {}³ force mesh, {m}³ data mesh, {l} Mpc/h, {} steps ({}, {} threads, peak memory ≈ {}), noise {:?}",
            config.box_.mesh,
            sim.boundaries().len() - 1,
            T::NAME,
            rayon::current_num_threads(),
            crate::memory::human(crate::memory::estimate(config, super::job(opts, m))),
            noise
        );
        crate::say!(
            "  {iters} L-BFGS iterations ({} stages), {evals} loss+gradient evaluations in {t_recon:.1} s: {:.2} s per evaluation (forward run alone {:.2} s), reversal error ≤ {:.2e}",
            r.stages.len(),
            r.seconds / evals as f64,
            t_forward,
            r.reversal_error
        );
        let stops: Vec<String> = r.stages.iter().map(|s| format!("{:?}", s.stop)).collect();
        crate::say!("  stages ended by: {}", stops.join(", "));
        let last = rows.last().expect("at least one row");
        crate::cli::say(format_args!(
            "  final -ln posterior {:.6e} (chi2/2 {:.6e}, |w|²/2 {:.6e})\n{summary}",
            last.loss, last.chi2_half, last.prior
        ));
        crate::cli::say(format_args!("{fit_summary}"));
        crate::say!(
            "  wrote {} files to {}",
            files_written(mock) + usize::from(opts.fit_cosmology),
            out.display()
        );
    }
    Ok(())
}

fn files_written(mock: bool) -> usize {
    RECON_FILES.len() + if mock { MOCK_FILES.len() } else { 0 }
}
