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

# cerberus_plot (one-line errors, HDF5 input, PNG via a temporary name) sits beside this script;
# no __pycache__ is written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
from cerberus_plot import fail, import_plotting, parse_args, read_hdf5, save_png  # noqa: E402


def attr(f, name, default=None):
    v = f.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def main(argv):
    src, dst = parse_args(argv, "MOCK.h5 OUT.png")
    _, np, plt = import_plotting()

    def read(f):
        return (f["delta"][...], f["halos/position"][...], f["halos/mass"][...],
                float(np.sum(f["expected_count"][...])), f["truth/log_mass"][...],
                f["truth/dndlnm_mean"][...], float(attr(f, "box_size")), int(attr(f, "n_grid")),
                float(attr(f, "mass_threshold")), attr(f, "truth", "?"), attr(f, "seed", "?"))

    delta, pos, mass, expected, lnm, truth_mf, L, n, mth, truth, seed = read_hdf5(src, "mock", read)
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
    save_png(fig, dst, dpi=100)
    print(f"plot_mock: {len(mass)} halos (expected {expected:.1f}); mass function chi^2 = "
          f"{chi2:.1f} for {int(good.sum())} bins; wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
