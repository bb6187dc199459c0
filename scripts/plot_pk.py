#!/usr/bin/python3
"""plot_pk.py PK.h5 OUT.png: draw a measured power spectrum against the input one.

Reads the HDF5 file written by `cerberus pk`: datasets /k [h/Mpc], /pk [(Mpc/h)^3] and /n_modes
(modes per shell), and optionally /pk_input (the input spectrum at the same k). Draws the measured
P(k) with its Gaussian error bar P sqrt(2 / n_modes) and the input as a line, log-log. The title
carries the file's attributes box_size, n_grid and seed when present (on the root group or on
/pk). The PNG is written under a temporary name and renamed, so a failure never leaves a
half-written picture. Uses /usr/bin/python3 with Debian's python3-h5py, -numpy, -matplotlib.
"""
import os
import sys

# cerberus_plot (one-line errors, HDF5 input, PNG via a temporary name) sits beside this script;
# no __pycache__ is written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
from cerberus_plot import fail, import_plotting, parse_args, read_hdf5, save_png  # noqa: E402


def main(argv):
    src, dst = parse_args(argv, "PK.h5 OUT.png")

    _, np, plt = import_plotting()

    def read(f):
        data = {}
        for name in ("k", "pk", "n_modes"):
            if name not in f:
                fail(f"P(k) file '{src}' has no dataset /{name}")
            data[name] = np.asarray(f[name][...], dtype=float).ravel()
        pk_input = np.asarray(f["pk_input"][...], dtype=float).ravel() if "pk_input" in f else None
        attrs = {}
        for key in ("box_size", "n_grid", "seed", "redshift"):
            for obj in (f, f["pk"]):
                if key in obj.attrs:
                    v = obj.attrs[key]
                    attrs[key] = v.item() if hasattr(v, "item") and np.size(v) == 1 else v
                    break
        return data, pk_input, attrs

    data, pk_input, attrs = read_hdf5(src, "P(k)", read)
    k, pk, n_modes = data["k"], data["pk"], data["n_modes"]
    n = len(k)
    if len(pk) != n or len(n_modes) != n:
        fail(f"P(k) file '{src}': /k, /pk and /n_modes differ in length "
             f"({n}, {len(pk)}, {len(n_modes)})")
    if pk_input is not None and len(pk_input) != n:
        fail(f"P(k) file '{src}': /pk_input has {len(pk_input)} values, /k has {n}")

    # Only shells with modes and positive k, P can be drawn on log axes.
    good = (n_modes > 0) & (k > 0) & (pk > 0) & np.isfinite(pk)
    if not np.any(good):
        fail(f"P(k) file '{src}': no shell with modes and positive P(k) to draw")
    err = np.zeros_like(pk)
    err[good] = pk[good] * np.sqrt(2.0 / n_modes[good])
    # Log axes: keep the lower bar end positive.
    lower = np.minimum(err, 0.999 * pk)

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    if pk_input is not None:
        ok = (k > 0) & (pk_input > 0)
        ax.plot(k[ok], pk_input[ok], "-", color="k", lw=1.5, label="input $P(k)$")
    ax.errorbar(k[good], pk[good], yerr=[lower[good], err[good]], fmt="o", ms=3.5,
                color="C0", ecolor="C0", elinewidth=1, capsize=2,
                label=r"measured, $\pm P\sqrt{2/N_\mathrm{modes}}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$k$ [$h$/Mpc]")
    ax.set_ylabel(r"$P(k)$ [(Mpc/$h$)$^3$]")
    def num(key, fmt):
        # Attributes may be numbers, 1-element arrays or strings: show what can be shown.
        v = attrs.get(key)
        if v is None:
            return None
        if isinstance(v, bytes):
            v = v.decode(errors="replace")
        try:
            return format(float(v), fmt)
        except (TypeError, ValueError):
            return str(v)

    parts = []
    for key, fmt, label in (("box_size", "g", "L = {} Mpc/h"), ("n_grid", ".0f", "N = {}$^3$"),
                            ("seed", ".0f", "seed {}"), ("redshift", "g", "z = {}")):
        text = num(key, fmt)
        if text is not None:
            parts.append(label.format(text))
    title = "Power spectrum"
    if parts:
        title += ": " + ", ".join(parts)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()

    save_png(fig, dst)
    # The key numbers: the range drawn and, with an input spectrum, the chi-square of the
    # measured shells against it (a Gaussian field's shell has variance 2 P^2 / n_modes).
    kg, pg, ng = k[good], pk[good], n_modes[good]
    line = (f"P(k): {len(kg)} shells, k = {kg.min():.4g} .. {kg.max():.4g} h/Mpc, "
            f"{int(ng.sum())} modes")
    if pk_input is not None and np.all(pk_input[good] > 0):
        pi = pk_input[good]
        chi2 = float(np.sum((pg - pi) ** 2 / (2.0 * pi**2 / ng)))
        line += f"; measured vs input: chi^2 = {chi2:.1f} for {len(kg)} shells"
    print(line)
    print(f"plot_pk: wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
