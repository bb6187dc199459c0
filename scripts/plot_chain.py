#!/usr/bin/python3
"""plot_chain.py CHAIN.h5 OUT.png [FIELD.h5 CATALOGUE.h5]: a chain file of `cerberus infer` drawn.

Four panels: the trace of the log posterior lp of every chain (warm-up shaded grey, then the
samples), its rank plot (histogram of the ranks of each chain's draws among all draws: flat and
alike when the chains mix), the traces of the first weights, and the posterior mass function
dn/dlnM in the chain file's density bins at its three masses (median and 5-95% band of the
draws) against density. Given the field and the catalogue (a mock file holds both), the
catalogue's mass function is drawn beside it: halos in the bin's voxels with ln M within 0.35
of the mass, per unit volume and ln M, with Poisson errors. Reads HDF5 through h5py (the file
is also an xarray/ArviZ InferenceData); the PNG is written under a temporary name and renamed.
Uses /usr/bin/python3 with Debian's python3-h5py, -numpy, -matplotlib (Agg).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
from cerberus_plot import fail, import_plotting, read_hdf5, save_png  # noqa: E402

HALF_WIDTH = 0.35  # in ln M, of the catalogue's mass window


def read_chain(f):
    post, stats, warm = f["posterior"], f["sample_stats"], f["warmup"]
    return dict(lp=stats["lp"][()], lp_warm=warm["lp"][()], w=post["weights"][()],
                names=[n.decode() if isinstance(n, bytes) else str(n) for n in post["weight"][()]],
                mf=post["mass_function"][()], masses=post["mass"][()],
                edges=post["density_bin"].attrs["delta_edges"][()])


def data_mass_function(np, field, cat, edges, masses):
    def rf(f):
        return f["delta"][()], float(f.attrs["box_size"])

    def rc(f):
        return f["halos/position"][()], f["halos/mass"][()]

    delta, box = read_hdf5(field, "field", rf)
    pos, mass = read_hdf5(cat, "catalogue", rc)
    n = delta.shape[0]
    vox = np.floor(pos * n / box).astype(int) % n
    d_halo = delta[vox[:, 0], vox[:, 1], vox[:, 2]]
    vol = (box / n) ** 3
    out = np.zeros((len(edges) - 1, len(masses)))
    err = np.zeros_like(out)
    for b in range(len(edges) - 1):
        last = b == len(edges) - 2
        inb = (delta >= edges[b]) & ((delta <= edges[b + 1]) if last else (delta < edges[b + 1]))
        hb = (d_halo >= edges[b]) & ((d_halo <= edges[b + 1]) if last else (d_halo < edges[b + 1]))
        for m, mm in enumerate(masses):
            k = np.sum(hb & (np.abs(np.log(mass) - np.log(mm)) < HALF_WIDTH))
            norm = max(inb.sum(), 1) * vol * 2 * HALF_WIDTH
            out[b, m], err[b, m] = k / norm, np.sqrt(k) / norm
    return out, err


def main(argv):
    if len(argv) not in (3, 5) or argv[1] in ("-h", "-help", "--help"):
        print(f"usage: {os.path.basename(argv[0])} CHAIN.h5 OUT.png [FIELD.h5 CATALOGUE.h5]",
              file=sys.stderr)
        sys.exit(0 if len(argv) == 2 else 2)
    src, dst = argv[1], argv[2]
    _, np, plt = import_plotting()
    c = read_hdf5(src, "chain", read_chain)
    lp, lpw = c["lp"], c["lp_warm"]
    K = lp.shape[0]
    ok = ~np.isnan(lp).any(axis=0)
    lp = lp[:, ok]
    T, W = lp.shape[1], lpw.shape[1]
    if T < 2:
        fail(f"chain file '{src}' has fewer than 2 complete draws")
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    for k in range(K):
        ax[0, 0].plot(np.arange(W), lpw[k], color=f"C{k}", alpha=0.35, lw=0.8)
        ax[0, 0].plot(W + np.arange(T), lp[k], color=f"C{k}", lw=0.8, label=f"chain {k}")
    ax[0, 0].axvspan(0, W, color="0.9")
    ax[0, 0].set(xlabel="step (warm-up shaded)", ylabel="ln p", title="trace of the log posterior")
    if W + T > 0 and np.isfinite(lp).all():
        lo = np.nanpercentile(lp, 0.5)
        ax[0, 0].set_ylim(lo - 0.2 * (lp.max() - lo + 1), lp.max() + 0.2 * (lp.max() - lo + 1))
    ax[0, 0].legend(fontsize=7)
    ranks = np.argsort(np.argsort(lp.ravel())).reshape(lp.shape)
    bins = np.linspace(0, lp.size, min(20, max(T // 2, 2)) + 1)
    for k in range(K):
        ax[0, 1].hist(ranks[k], bins=bins, histtype="step", color=f"C{k}", label=f"chain {k}")
    ax[0, 1].set(xlabel="rank of ln p among all draws", ylabel="draws", title="rank plot of ln p")
    w = c["w"][:, ok]
    for j in range(min(5, w.shape[2])):
        for k in range(K):
            ax[1, 0].plot(w[k, :, j], color=f"C{j}", lw=0.6, alpha=0.8,
                          label=c["names"][j] if k == 0 else None)
    ax[1, 0].set(xlabel="draw", ylabel="weight", title="traces of the first weights")
    ax[1, 0].legend(fontsize=7)
    mf = c["mf"][:, ok].reshape(-1, *c["mf"].shape[2:])
    e = c["edges"]
    x = 0.5 * (e[:-1] + e[1:])
    for m, mm in enumerate(c["masses"]):
        q = np.nanpercentile(mf[:, :, m], [5, 50, 95], axis=0)
        ax[1, 1].fill_between(x, q[0], q[2], color=f"C{m}", alpha=0.3)
        ax[1, 1].plot(x, q[1], color=f"C{m}", label=f"model, M = {mm:.2g}")
    if len(argv) == 5:
        d, de = data_mass_function(np, argv[3], argv[4], e, c["masses"])
        for m in range(len(c["masses"])):
            ax[1, 1].errorbar(x, d[:, m], yerr=de[:, m], fmt="o", color=f"C{m}", ms=3,
                              label="catalogue" if m == 0 else None)
    ax[1, 1].set(xlabel="delta (bin centre)", ylabel="dn/dlnM [(Mpc/h)^-3]", yscale="log",
                 title="posterior mass function (5-95%)")
    ax[1, 1].legend(fontsize=7)
    fig.suptitle(f"{os.path.basename(src)}: {K} chains x {T} draws")
    fig.tight_layout()
    save_png(fig, dst)
    print(f"plot_chain: wrote {dst}")


if __name__ == "__main__":
    main(sys.argv)
