#!/usr/bin/python3
"""plot_imnn.py NET.h5 OUT.png: the training of an information maximising network.

Reads a network file written by `cerberus imnn train` and draws, left, the training history:
det F on the training and validation sets per epoch (log scale) with the exact det F where the
simulator knows it (/F_exact) and the best epoch marked; below it the loss and the regulariser.
Right, the quasi-maximum-likelihood estimates of the test simulations (/test_estimate) against
their true parameters (/test_theta), one panel row per parameter, with the Fisher error bar
sqrt(F^-1)_aa of the network (/F) and the line estimate = truth. The PNG is written under a
temporary name and renamed. Uses /usr/bin/python3 with Debian's python3-h5py, -numpy,
-matplotlib (Agg).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
from cerberus_plot import fail, import_plotting, parse_args, read_hdf5, save_png  # noqa: E402


def main(argv):
    src, dst = parse_args(argv, "NET.h5 OUT.png")
    _, np, plt = import_plotting()

    def read(f):
        if f.attrs.get("model", b"") not in (b"imnn", "imnn"):
            fail(f"'{src}' is not an IMNN network file")
        get = lambda k: f[k][()] if k in f else None  # noqa: E731
        return (get("history"), get("F"), get("F_exact"), get("test_theta"),
                get("test_estimate"), f.attrs.get("simulator", b"?"))

    hist, F, Fex, tt, te, simname = read_hdf5(src, "network", read)
    if isinstance(simname, bytes):
        simname = simname.decode()
    if hist is None or hist.ndim != 2 or hist.shape[1] < 7:
        fail(f"'{src}': no training history (/history)")
    F = np.atleast_2d(F)
    p = F.shape[0]
    sig = np.sqrt(np.diag(np.linalg.inv(F)))
    ncol = 2 if te is not None else 1
    fig, axes = plt.subplots(max(2, p), ncol, figsize=(5.5 * ncol, 3.2 * max(2, p)),
                             squeeze=False)
    ep = hist[:, 0]
    ax = axes[0, 0]
    ax.semilogy(ep, np.maximum(hist[:, 3], 1e-300), label="det F train")
    ax.semilogy(ep, np.maximum(hist[:, 4], 1e-300), label="det F validation")
    best = int(np.argmax(hist[:, 4]))
    ax.axvline(ep[best], color="0.6", ls=":", label=f"best epoch {int(ep[best])}")
    if Fex is not None:
        dex = np.linalg.det(np.atleast_2d(Fex))
        ax.axhline(dex, color="k", ls="--", label="exact det F")
        ax.set_title(f"{simname}: {hist[best, 4] / dex:.3f} of the exact det F")
    else:
        ax.set_title(simname)
    ax.set_ylabel("det F")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    ax.plot(ep, hist[:, 1], label="loss")
    ax.plot(ep, hist[:, 5], label="regulariser r L2")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=8)
    for r in range(2, axes.shape[0]):
        axes[r, 0].axis("off")
    if te is not None:
        tt, te = np.atleast_2d(tt), np.atleast_2d(te)
        for a in range(p):
            ax = axes[a, 1]
            ax.errorbar(tt[:, a], te[:, a], yerr=sig[a], fmt=".", ms=4, alpha=0.7,
                        label="quasi-ML estimate")
            lo, hi = tt[:, a].min(), tt[:, a].max()
            ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="truth")
            ax.set_xlabel(f"true parameter {a}")
            ax.set_ylabel(f"estimate {a}")
            ax.legend(fontsize=8)
        for r in range(p, axes.shape[0]):
            axes[r, 1].axis("off")
    fig.tight_layout()
    save_png(fig, dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv)
