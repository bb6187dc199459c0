#!/usr/bin/python3
"""imnn_exact_fraction.py NET.h5 [...]: the exact information of a trained grf network.

For a network file of `cerberus imnn train` on the grf simulator (MODEL.md section 9) whose
summaries are linear in |d(k)|^2 (no hidden layer, and a front end of band powers P_b or one
convolution layer of lmax 0 kernels with the square activation followed by the global mean),
the mean derivatives and the covariance of its summaries at the fiducial follow exactly from
the Gaussian field: a feature f = sum_k u(k) |d(k)|^2 over the full grid has
d<f>/dtheta_a = sum_k u E|d(k)|^2 d_a ln P and Cov(f, g) = 2 sum_k u v (E|d(k)|^2)^2, k and -k
both counted (self-conjugate modes included). So this prints the exact det F of the network
over det F_exact, without the noise of the validation estimate (~ 2 / sqrt(n_val)), and the
largest fraction any linear head on those features could reach (the features' ceiling).
ln P band powers (bandpower_scale log) are linearised about their mean (delta method: their
ceiling then reads as P's). The convolution kernel of output channel c is
K_c(k) = sum_r w_c(group of |r|) exp(i k.r) (conv.h: lmax 0 groups in increasing |r|), and
mean_x (K_c * x + b_c)^2 = const + sum_k |K_c(k)|^2 |d(k)|^2 / (sigma^2 N^6): its mean over the
field is fixed because the grf has d(0) = 0. Uses /usr/bin/python3 with Debian's h5py, numpy.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
from cerberus_plot import fail, read_hdf5  # noqa: E402


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "-help", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    import numpy as np

    for path in argv[1:]:
        def read(f):
            if text(f.attrs.get("model", b"")) != "imnn" or text(f.attrs.get("simulator", "")) != "grf":
                fail(f"'{path}' is not an IMNN network of the grf simulator")
            a = {k: f.attrs[k] for k in f.attrs if k != "options"}
            d = {k: f[k][()] for k in ("weights", "shift", "scale", "theta_fid", "F") if k in f}
            if "F_exact" not in f:
                fail(f"'{path}': no /F_exact")
            d["F_exact"] = f["F_exact"][()]
            return a, d

        a, d = read_hdf5(path, "network", read)
        if int(a["n_hidden"]) != 0 or int(a["n_params"]) != 2:
            fail(f"'{path}': only linear heads (-hidden none) of the 2 grf parameters")
        n, L = int(a["n_input"]), float(a["box_size"])
        A, B = d["theta_fid"]
        m = np.fft.fftfreq(n, 1.0 / n)
        mx, my, mz = np.meshgrid(m, m, m, indexing="ij")
        r = np.sqrt(mx**2 + my**2 + mz**2).ravel()
        keep = r > 0
        k = 2 * np.pi / L * r[keep]
        P = A * k**-B  # E|d(k)|^2 up to a constant factor, which cancels
        dlnP = [np.full_like(k, 1 / A), -np.log(k)]
        front = text(a["front"])
        if front == "bandpower":
            nf = d["shift"].shape[0]
            sh = np.rint(r[keep]).astype(int)
            U = np.array([(sh == s) / max(np.sum(sh == s), 1) for s in range(1, nf + 1)])
            scale = d["scale"]
            log_scale = text(a.get("bandpower_scale", "log")) == "log"
        elif front == "conv":
            if int(a["conv_n_layers"]) != 1 or int(a["conv0_lmax"]) != 0 or \
                    text(a["conv0_activation"]) != "square":
                fail(f"'{path}': only one lmax 0 convolution layer with the square activation")
            K, C = int(a["conv0_kernel"]), int(a["conv0_channels"])
            g = K // 2
            offs = [(i, j, l) for i in range(-g, g + 1) for j in range(-g, g + 1)
                    for l in range(-g, g + 1)]
            r2 = sorted({i * i + j * j + l * l for i, j, l in offs})
            th = 2 * np.pi / n
            basis = []
            for q in r2:
                s = np.zeros(n**3)
                for i, j, l in offs:
                    if i * i + j * j + l * l == q:
                        s += np.cos(th * (i * mx + j * my + l * mz)).ravel()
                basis.append(s[keep])
            ng = len(r2)
            wk = d["weights"][: C * ng].reshape(C, ng)
            U = (wk @ np.array(basis)) ** 2
            nf, scale, log_scale = C, d["scale"][1:], False
        else:
            fail(f"'{path}': front end '{front}' is not linear in |d(k)|^2")
        mean = U @ P
        D = np.array([U @ (P * dl) for dl in dlnP])  # d<f>/dtheta_a
        Cf = 2 * (U * P**2) @ U.T
        if log_scale:  # ln f about its mean
            D, Cf = D / mean, Cf / np.outer(mean, mean)
        W = d["weights"][-2 * (nf + 1):-2].reshape(2, nf) / scale
        Dt, Ct = D @ W.T, W @ Cf @ W.T
        Fnet = Dt @ np.linalg.solve(Ct, Dt.T)
        Fbest = D @ np.linalg.solve(Cf, D.T)
        dex = np.linalg.det(d["F_exact"])
        print(f"{path}: {front}{' (ln P, linearised)' if log_scale else ''}: exact fraction "
              f"{np.linalg.det(Fnet) / dex:.4f}, features' ceiling {np.linalg.det(Fbest) / dex:.4f}, "
              f"validation estimate {np.linalg.det(np.atleast_2d(d['F'])) / dex:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
