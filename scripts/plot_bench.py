#!/usr/bin/python3
"""plot_bench.py OUT.png BENCH.csv [BENCH.csv ...]: strong scaling of Cerberus's benchmarks.

Reads the CSV files jobs/bench.sh collects (the header of `cerberus bench NAME`, then one row
per rank count) for the benchmarks fft, lpt, loglike and memory, and draws each one's speed-up
t(1 rank) / t(ranks) of its main time against the number of ranks, beside the ideal. The main
times: fft seconds_per_pair (an r2c + c2r pair), lpt chain_fwd_adj_s (the forward model and its
adjoint), loglike fwd_grad_s (ln L and its gradients), memory triad_s (the STREAM triad over
arrays of the grid's size: the node's memory bandwidth, which bounds the speed-up of every pass
over whole fields). With an lpt file a second panel shows
forward + adjoint in units of one r2c FFT (fwd_adj_in_ffts), of the mean of an r2c and a c2r
(fwd_adj_in_mean_ffts) and, when the file has it, of one r2c in the transposed layout the chain
itself uses (fwd_adj_in_t_ffts). The table of times, speed-ups and efficiencies is printed. The speed-up
is against the smallest rank count in the file when it has no 1-rank row. Every error is one
line naming the file; the PNG is written under a temporary name and renamed. Uses
/usr/bin/python3 with Debian's python3-numpy and python3-matplotlib.
"""
import csv
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
from cerberus_plot import fail, import_plotting, save_png  # noqa: E402

MAIN_TIME = {"fft": "seconds_per_pair", "lpt": "chain_fwd_adj_s", "loglike": "fwd_grad_s",
             "memory": "triad_s"}
LABEL = {"fft": "FFT r2c + c2r", "lpt": "LPT + CIC forward + adjoint",
         "loglike": "ln L + gradients", "memory": "memory bandwidth (STREAM triad)"}


def read_csv(path):
    """(benchmark name, list of row dicts sorted by ranks) from one collected CSV file."""
    if not os.path.isfile(path):
        fail(f"benchmark file '{path}' not found")
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        fail(f"cannot read the benchmark file '{path}': {e}")
    if not rows:
        fail(f"benchmark file '{path}' has no rows under its header")
    names = {r.get("bench") for r in rows}
    if len(names) != 1 or None in names:
        fail(f"benchmark file '{path}': the rows must all name one benchmark in a 'bench' column")
    name = names.pop()
    if name not in MAIN_TIME:
        fail(f"benchmark file '{path}': unknown benchmark '{name}' "
             "(fft, lpt, loglike, memory)")
    want = ["ranks", MAIN_TIME[name]]
    if name == "lpt":
        want += ["fwd_adj_in_ffts", "fwd_adj_in_mean_ffts"]
    if name == "lpt" and "fwd_adj_in_t_ffts" in rows[0]:
        want.append("fwd_adj_in_t_ffts")
    out = []
    for line, r in enumerate(rows, start=2):
        row = {}
        for col in want:
            v = r.get(col)
            try:
                x = float(v)
            except (TypeError, ValueError):
                fail(f"benchmark file '{path}' line {line}: column {col} is '{v}', not a number")
            if not (math.isfinite(x) and x > 0):
                fail(f"benchmark file '{path}' line {line}: column {col} is {v}, not positive")
            row[col] = x
        out.append(row)
    ranks = [r["ranks"] for r in out]
    if len(set(ranks)) != len(ranks):
        fail(f"benchmark file '{path}': a rank count appears twice")
    return name, sorted(out, key=lambda r: r["ranks"])


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "-help", "--help"):
        print(f"usage: {os.path.basename(argv[0])} OUT.png BENCH.csv [BENCH.csv ...]",
              file=sys.stderr)
        sys.exit(0 if len(argv) == 2 else 2)
    dst, srcs = argv[1], argv[2:]
    data = [read_csv(s) for s in srcs]
    _, np, plt = import_plotting()

    lpt = [rows for name, rows in data if name == "lpt"]
    fig, axes = plt.subplots(1, 2 if lpt else 1, figsize=(12 if lpt else 6.5, 4.8), dpi=110,
                             squeeze=False)
    ax = axes[0][0]
    top = 1
    for i, (name, rows) in enumerate(data):
        col = MAIN_TIME[name]
        ranks = np.array([r["ranks"] for r in rows])
        t = np.array([r[col] for r in rows])
        speed = t[0] / t * ranks[0]  # against the smallest count (1 when the file has it)
        top = max(top, ranks.max())
        ax.plot(ranks, speed, "o-", color=f"C{i}", label=f"{name}: {LABEL[name]}")
        print(f"plot_bench: {name} ({col}):")
        for r, ti, si in zip(ranks, t, speed):
            print(f"plot_bench:   {int(r):5d} ranks  {ti:10.4g} s  speed-up {si:6.2f}"
                  f"  efficiency {si / r:5.2f}")
    ax.plot([1, top], [1, top], "k--", lw=1, label="ideal")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("MPI ranks")
    ax.set_ylabel("speed-up over the fewest ranks")
    ax.set_title("strong scaling")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    if lpt:
        ax2 = axes[0][1]
        rows = lpt[0]
        ranks = [r["ranks"] for r in rows]
        ax2.plot(ranks, [r["fwd_adj_in_ffts"] for r in rows], "o-", color="C0",
                 label="in r2c FFTs")
        ax2.plot(ranks, [r["fwd_adj_in_mean_ffts"] for r in rows], "s--", color="C1",
                 label="in mean(r2c, c2r) FFTs")
        top2 = max(max(r["fwd_adj_in_ffts"], r["fwd_adj_in_mean_ffts"]) for r in rows)
        if "fwd_adj_in_t_ffts" in rows[0]:
            ax2.plot(ranks, [r["fwd_adj_in_t_ffts"] for r in rows], "^:", color="C2",
                     label="in transposed-layout r2c FFTs (the chain's own)")
            top2 = max(top2, max(r["fwd_adj_in_t_ffts"] for r in rows))
        ax2.set_xscale("log", base=2)
        ax2.set_ylim(0, 1.15 * top2)
        ax2.set_xlabel("MPI ranks")
        ax2.set_ylabel("forward + adjoint, in FFTs of the grid")
        ax2.set_title("forward model cost in FFT units")
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3)
        for r in rows:
            t = r.get("fwd_adj_in_t_ffts")
            own = f", {t:.3g} in transposed-layout r2c" if t is not None else ""
            print(f"plot_bench: lpt at {int(r['ranks'])} ranks: forward + adjoint = "
                  f"{r['fwd_adj_in_ffts']:.3g} r2c FFTs ({r['fwd_adj_in_mean_ffts']:.3g} in the "
                  f"mean of r2c and c2r{own})")
    fig.tight_layout()
    save_png(fig, dst)
    print(f"plot_bench: wrote {dst}")


if __name__ == "__main__":
    main(sys.argv)
