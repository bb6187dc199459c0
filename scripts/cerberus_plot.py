"""cerberus_plot: what the plot scripts (plot_pk.py, plot_mock.py, plot_hmf.py) share.

The arguments SRC OUT.png, or a usage line (parse_args). Every error is one line on stderr, "<script>: <message>", and exit status 1 (fail); the plotting
modules are imported with a message naming the Debian packages when one is missing
(import_plotting); an HDF5 input is opened with a one-line error for a missing file, a file that
is not HDF5 and a file without the expected contents (read_hdf5); the PNG is written under a
temporary name NAME.tmp.<pid>.png and renamed, so a failure never leaves a half-written picture
(save_png). The scripts import this module from their own directory (they insert it into
sys.path, as they may be run from any directory). Uses /usr/bin/python3 with Debian's
python3-h5py, -numpy, -matplotlib.
"""
import os
import sys

# The script's name without .py ("plot_pk"), the prefix of every error line.
PROG = os.path.splitext(os.path.basename(sys.argv[0]))[0] or "cerberus_plot"


def fail(msg):
    """Print "PROG: msg" on stderr and exit with status 1."""
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_args(argv, usage):
    """Return (SRC, OUT.png) from argv = [script, SRC, OUT.png]. Otherwise print
    "usage: <script> <usage>" on stderr and exit: 0 for one argument (-h, --help), 2 else."""
    if len(argv) != 3 or argv[1] in ("-h", "-help", "--help"):
        print(f"usage: {os.path.basename(argv[0])} {usage}", file=sys.stderr)
        sys.exit(0 if len(argv) == 2 else 2)
    return argv[1], argv[2]


def import_plotting():
    """Return (h5py, numpy, matplotlib.pyplot) with the Agg backend, or fail naming the packages."""
    try:
        import h5py
        import numpy as np
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        fail(f"{e}: install Debian packages python3-h5py python3-numpy python3-matplotlib "
             "(./scripts/setup.sh) and run with /usr/bin/python3")
    return h5py, np, plt


def read_hdf5(src, what, read):
    """Open the HDF5 file src read-only and return read(f); fail with one line otherwise.

    what names the contents in the messages ("P(k)", "mock", "hmf table"): "<what> file 'src' not
    found", "<what> file 'src' is not a readable HDF5 file (...)", and, when read raises OSError,
    KeyError (a missing dataset or attribute), TypeError or ValueError, "cannot read the <what>
    from 'src': ...". read may call fail itself for a more precise message."""
    import h5py

    if not os.path.isfile(src):
        fail(f"{what} file '{src}' not found")
    try:
        f = h5py.File(src, "r")
    except OSError as e:
        fail(f"{what} file '{src}' is not a readable HDF5 file ({e})")
    try:
        with f:
            return read(f)
    except (OSError, KeyError, TypeError, ValueError) as e:
        fail(f"cannot read the {what} from '{src}': {e}")


def save_png(fig, dst, **savefig_args):
    """Write fig to dst as PNG via a temporary name and a rename, then close it; fail (removing
    the temporary file) if the directory is missing or the write fails."""
    import matplotlib.pyplot as plt

    out_dir = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(out_dir):
        fail(f"output directory '{out_dir}' does not exist")
    tmp = f"{dst}.tmp.{os.getpid()}.png"
    try:
        fig.savefig(tmp, format="png", **savefig_args)
        os.replace(tmp, dst)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        fail(f"cannot write '{dst}' ({e})")
    plt.close(fig)
