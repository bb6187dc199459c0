#!/usr/bin/python3
"""plot_mock.py MOCK.h5 OUT.png: a picture of a mock universe and its halos.

Reads the HDF5 file written by `cerberus mock` (MODEL.md section 6): /delta, /halos/position
[Mpc/h], /halos/mass [M_sun/h], /expected_count, /truth/log_mass and /truth/dndlnm_mean (the box
average of the truth's dn/dlnM), and the attributes box_size, n_grid, mass_threshold, truth, seed.
Left: log10(1 + delta) averaged over a slab of 4 voxel planes through the middle of the box,
with the halos in that slab drawn over it (marker size grows with the mass). Right: the
catalogue's mass function dn/dlnM in bins (points, Poisson error bars) against the truth's box
average (line), with the ratio below. Prints one summary line (halos, expected, chi^2 of the
bins with at least 5 expected). The PNG is written under a temporary name and renamed. Uses
/usr/bin/python3 with Debian's python3-h5py, -numpy, -matplotlib.
"""
import os
import sys


def fail(msg):
    print(f"plot_mock: {msg}", file=sys.stderr)
    sys.exit(1)


def attr(f, name, default=None):
    v = f.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def main(argv):
    if len(argv) != 3 or argv[1] in ("-h", "-help", "--help"):
        print("usage: plot_mock.py MOCK.h5 OUT.png", file=sys.stderr)
        return 0 if len(argv) == 2 else 2
    src, dst = argv[1], argv[2]
    try:
        import h5py
        import numpy as np
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        fail(f"{e}: install Debian packages python3-h5py python3-numpy python3-matplotlib "
             "(./scripts/setup.sh) and run with /usr/bin/python3")
    if not os.path.isfile(src):
        fail(f"mock file '{src}' not found")
    try:
        with h5py.File(src, "r") as f:
            delta = f["delta"][...]
            pos = f["halos/position"][...]
            mass = f["halos/mass"][...]
            expected = float(np.sum(f["expected_count"][...]))
            lnm = f["truth/log_mass"][...]
            truth_mf = f["truth/dndlnm_mean"][...]
            L = float(attr(f, "box_size"))
            n = int(attr(f, "n_grid"))
            mth = float(attr(f, "mass_threshold"))
            truth = attr(f, "truth", "?")
            seed = attr(f, "seed", "?")
    except (OSError, KeyError, TypeError) as e:
        fail(f"cannot read the mock from '{src}': {e}")
    if delta.shape != (n, n, n) or pos.ndim != 2 or pos.shape[1] != 3 or len(mass) != len(pos):
        fail(f"'{src}': shapes /delta {delta.shape}, /halos/position {pos.shape}, "
             f"/halos/mass {mass.shape} do not fit n_grid = {n}")

    fig, (ax, axm) = plt.subplots(1, 2, figsize=(12, 5.6))
    # a slab of 4 planes of the first axis through the middle
    i0, width = n // 2 - 2, 4
    slab = np.log10(np.maximum(1.0 + delta[i0:i0 + width].mean(axis=0), 1e-2))
    im = ax.imshow(slab.T, origin="lower", extent=[0, L, 0, L], cmap="magma", vmin=-1, vmax=1)
    fig.colorbar(im, ax=ax, label=r"$\log_{10}(1+\delta)$, slab mean", shrink=0.85)
    x_lo, x_hi = i0 * L / n, (i0 + width) * L / n
    sel = (pos[:, 0] >= x_lo) & (pos[:, 0] < x_hi)
    s = 4.0 * (np.log10(mass[sel] / mth) + 0.3) ** 2
    ax.scatter(pos[sel, 1], pos[sel, 2], s=s, facecolors="none", edgecolors="cyan", lw=0.6)
    ax.set_xlabel("y  [Mpc/h]")
    ax.set_ylabel("z  [Mpc/h]")
    ax.set_title(f"{x_lo:.1f} < x < {x_hi:.1f} Mpc/h: {int(sel.sum())} halos", fontsize=10)

    # mass function in bins of ln M
    top = max(float(mass.max()) * 1.01, mth * 10) if len(mass) else mth * 10
    edges = np.linspace(np.log(mth), np.log(top), 16)
    counts, _ = np.histogram(np.log(mass), bins=edges)
    dln = np.diff(edges)
    vol = L ** 3
    # the truth's expected count per bin: its box average integrated over the bin (trapezoid)
    model = np.empty(len(counts))
    for b in range(len(counts)):
        u = np.linspace(edges[b], edges[b + 1], 41)
        model[b] = vol * np.trapz(np.interp(u, lnm, truth_mf), u)
    mc = np.exp(0.5 * (edges[1:] + edges[:-1]))
    ok = counts > 0
    axm.errorbar(mc[ok], counts[ok] / (vol * dln[ok]), yerr=np.sqrt(counts[ok]) / (vol * dln[ok]),
                 fmt="o", ms=4, capsize=2, label=f"catalogue ({len(mass)} halos)")
    keep = lnm <= np.log(top)
    axm.plot(np.exp(lnm[keep]), truth_mf[keep], "-", label=f"truth {truth} (box average)")
    axm.set_xscale("log")
    axm.set_yscale("log")
    axm.set_xlabel(r"$M$  [$M_\odot/h$]")
    axm.set_ylabel(r"$dn/d\ln M$  [$(h/\mathrm{Mpc})^3$]")
    axm.legend(fontsize=9)
    axm.set_title(f"L = {L:g} Mpc/h, {n}$^3$, seed {seed}, $M_{{th}}$ = {mth:.3g}", fontsize=10)
    fig.tight_layout()
    good = model >= 5
    chi2 = float(np.sum((counts[good] - model[good]) ** 2 / model[good]))
    tmp = dst + ".tmp.png"
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, dst)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        fail(f"cannot write '{dst}': {e}")
    print(f"plot_mock: {len(mass)} halos (expected {expected:.1f}); mass function chi^2 = "
          f"{chi2:.1f} for {int(good.sum())} bins; wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
