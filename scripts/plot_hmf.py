#!/usr/bin/python3
"""plot_hmf.py HMF.h5 OUT.png: the model's halo mass function in bins of density beside the data.

Reads the table written by `cerberus hmf` (/hmf, one row per (density bin, mass bin):
delta_lo delta_hi n_voxels M_lo M_hi n_model n_data dndlnm_model dndlnm_data dndlnm_err) and
draws, for each density bin, dn/dlnM of the model (line, expected counts per bin divided by the
bin's volume and d ln M) and of the catalogue (points with Poisson error bars), log-log, colour
by density. Below, the ratio data / model with its error. The PNG is written under a temporary
name and renamed. Uses /usr/bin/python3 with Debian's python3-h5py, -numpy, -matplotlib (Agg).
"""
import os
import sys

# cerberus_plot (one-line errors, HDF5 input, PNG via a temporary name) sits beside this script;
# no __pycache__ is written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
from cerberus_plot import fail, import_plotting, parse_args, read_hdf5, save_png  # noqa: E402


def main(argv):
    src, dst = parse_args(argv, "HMF.h5 OUT.png")
    _, np, plt = import_plotting()

    def read(f):
        return (f["hmf"][()], int(f.attrs["n_delta_bins"]), int(f.attrs["n_mass_bins"]),
                f.attrs.get("model", b"?"), f.attrs.get("box_size", None),
                f.attrs.get("n_grid", None))

    t, nd, nm, model, box, ngrid = read_hdf5(src, "hmf table", read)
    if isinstance(model, bytes):
        model = model.decode()
    if t.shape != (nd * nm, 10):
        fail(f"'{src}': /hmf has shape {t.shape}, expected ({nd * nm}, 10)")
    t = t.reshape(nd, nm, 10)
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(7, 7.5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1.2]})
    cmap = plt.get_cmap("viridis")
    for b in range(nd):
        r = t[b]
        if r[0, 2] == 0:
            continue
        c = cmap(b / max(nd - 1, 1))
        m = np.sqrt(r[:, 3] * r[:, 4])
        lab = f"{r[0, 0]:.2f} < delta < {r[0, 1]:.2f} ({int(r[0, 2])} voxels)"
        ok = r[:, 7] > 0
        ax.plot(m[ok], r[ok, 7], "-", color=c, label=lab)
        d = r[:, 6] > 0
        ax.errorbar(m[d], r[d, 8], yerr=r[d, 9], fmt="o", ms=4, color=c, capsize=2)
        q = d & ok
        axr.errorbar(m[q] * (1 + 0.02 * (b - nd / 2)), r[q, 8] / r[q, 7], yerr=r[q, 9] / r[q, 7],
                     fmt="o", ms=3, color=c, capsize=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel(r"$dn/d\ln M$  [$(h/\mathrm{Mpc})^3$]")
    title = f"halo mass function by density: {model} model (lines) vs catalogue (points)"
    if box is not None and ngrid is not None:
        title += f"\nL = {float(box):g} Mpc/h, {int(ngrid)}$^3$ voxels"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    axr.axhline(1.0, color="k", lw=0.8)
    axr.set_xscale("log")
    axr.set_xlabel(r"$M$  [$M_\odot/h$]")
    axr.set_ylabel("data / model")
    axr.set_ylim(0.5, 1.5)
    fig.tight_layout()
    save_png(fig, dst, dpi=110)
    print(f"plot_hmf: wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
