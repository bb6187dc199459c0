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


def fail(msg):
    print(f"plot_hmf: {msg}", file=sys.stderr)
    sys.exit(1)


def main(argv):
    if len(argv) != 3 or argv[1] in ("-h", "-help", "--help"):
        print("usage: plot_hmf.py HMF.h5 OUT.png", file=sys.stderr)
        return 0 if len(argv) == 2 else 2
    src, dst = argv[1], argv[2]
    try:
        import h5py
        import numpy as np
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        fail(f"needs h5py, numpy and matplotlib ({e})")
    try:
        with h5py.File(src, "r") as f:
            t = f["hmf"][()]
            nd = int(f.attrs["n_delta_bins"])
            nm = int(f.attrs["n_mass_bins"])
            model = f.attrs.get("model", b"?")
            box = f.attrs.get("box_size", None)
            ngrid = f.attrs.get("n_grid", None)
    except (OSError, KeyError) as e:
        fail(f"cannot read the hmf table from '{src}': {e}")
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
    tmp = dst + ".tmp.png"
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, dst)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        fail(f"cannot write '{dst}': {e}")
    print(f"plot_hmf: wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
