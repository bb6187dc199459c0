#!/usr/bin/python3
"""plot_abc.py CAMPAIGN.h5 OUT.png: a corner plot of an ABC campaign's posterior.

Reads the campaign file written by `cerberus abc run`: /posterior/theta (particles x parameters)
and /posterior/weights, the attribute param_names, and, when present, /exact/axis_<p> and
/exact/log_posterior (the exact posterior on a grid, for simulators with an exact likelihood and
at most 2 parameters). Draws, for each
parameter, the weighted histogram of the particles with the exact marginal beside it (a line),
and for each pair the particles (alpha by weight) with the exact posterior's 68% and 95%
contours. The PNG is written under a temporary name and renamed. Uses /usr/bin/python3 with
Debian's python3-h5py, -numpy, -matplotlib.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
from cerberus_plot import fail, import_plotting, parse_args, read_hdf5, save_png  # noqa: E402


def levels_of(np, p, fractions):
    """Density levels enclosing the given fractions of the mass of the grid p (normalised)."""
    flat = np.sort(p.ravel())[::-1]
    cum = np.cumsum(flat) / flat.sum()
    return sorted(flat[min(np.searchsorted(cum, f), len(flat) - 1)] for f in fractions)


def text(v):
    """An HDF5 string attribute as str (h5py gives bytes for fixed-length strings)."""
    return v.decode() if isinstance(v, bytes) else str(v)


def main(argv):
    src, dst = parse_args(argv, "CAMPAIGN.h5 OUT.png")
    _, np, plt = import_plotting()

    def read(f):
        if "posterior" not in f:
            fail(f"campaign file '{src}' has no /posterior (no finished round yet)")
        d = {
            "theta": np.atleast_2d(np.array(f["posterior/theta"], dtype=float)),
            "w": np.array(f["posterior/weights"], dtype=float),
            "names": text(f.attrs["param_names"]).split(","),
            "complete": int(f.attrs.get("complete", 0)),
            "sim": text(f.attrs.get("simulator", "?")),
            "eps": float(f["posterior/theta"].attrs.get("epsilon", np.nan)),
        }
        if d["theta"].shape[0] != d["w"].shape[0] and d["theta"].shape[1] == d["w"].shape[0]:
            d["theta"] = d["theta"].T
        if "exact" in f:
            npar = d["theta"].shape[1]
            d["axes"] = [np.array(f[f"exact/axis_{k}"], dtype=float) for k in range(npar)]
            d["lp"] = np.array(f["exact/log_posterior"], dtype=float)
        return d

    d = read_hdf5(src, "campaign", read)
    theta, w = d["theta"], d["w"] / d["w"].sum()
    npar = theta.shape[1]
    exact = None
    if "lp" in d:
        p = np.exp(d["lp"] - d["lp"].max())
        exact = p / p.sum()
    fig, axes = plt.subplots(npar, npar, figsize=(3.2 * npar + 0.5, 3.2 * npar + 0.3),
                             squeeze=False)
    for i in range(npar):
        for j in range(npar):
            ax = axes[i][j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(theta[:, i], bins=30, weights=w, density=True, color="C0", alpha=0.6,
                        label="ABC particles")
                if exact is not None:
                    x = d["axes"][i]
                    marg = exact if npar == 1 else exact.sum(axis=1 - i)
                    dx = x[1] - x[0]
                    ax.plot(x, marg / (marg.sum() * dx), color="k", label="exact posterior")
                ax.set_yticks([])
                if i == 0:
                    ax.legend(fontsize=8)
            else:
                ax.scatter(theta[:, j], theta[:, i], s=4, c="C0",
                           alpha=np.clip(w / w.max(), 0.05, 1.0))
                if exact is not None and npar == 2:
                    X, Y = np.meshgrid(d["axes"][j], d["axes"][i])
                    grid = exact if (j, i) == (0, 1) else exact.T
                    grid = grid.T  # rows of the file run over axis 0
                    ax.contour(X, Y, grid, levels=levels_of(np, grid, [0.95, 0.68]),
                               colors="k", linewidths=1)
            if i == npar - 1:
                ax.set_xlabel(d["names"][j] if j < len(d["names"]) else f"p{j}")
            if j == 0 and i > 0:
                ax.set_ylabel(d["names"][i] if i < len(d["names"]) else f"p{i}")
    state = "" if d["complete"] else " (INCOMPLETE)"
    fig.suptitle(f"ABC posterior, {d['sim']}: {theta.shape[0]} particles, "
                 f"epsilon {d['eps']:.3g}{state}", fontsize=10)
    fig.tight_layout()
    save_png(fig, dst, dpi=110)
    print(dst)


if __name__ == "__main__":
    main(sys.argv)
