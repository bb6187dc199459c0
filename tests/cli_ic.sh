#!/bin/bash
# cli_ic: `cerberus ic` and `cerberus pk` from the command line.
#
# Good runs: ic then pk on 1 and 2 ranks give the same P(k) table; the outputs hold what the
# plot script reads; measured FFT plans (-fft_plan, -fft_wisdom) give the same fields to
# rounding on 1 to 4 ranks, and the same to the last bit when the wisdom file is reused. Then every bad input of
# issue 2 provoked once through the binary: missing and unreadable P(k) tables, a table not
# increasing in k, a k outside the table, zero and negative -box_size and -n_grid, an odd grid,
# a grid that cannot be split over the ranks, an existing output without -overwrite (left
# untouched), a nonexistent output directory, a corrupt and a wrong-shaped HDF5 input for pk, a
# missing input and dataset, a typo in an option and a malformed value, an unknown -fft_plan,
# and a -fft_wisdom that is junk, a directory, or in a nonexistent directory. Each must exit
# non-zero with exactly one line on stderr from cerberus naming the input, and leave no output
# (nor temporary file) behind.
. "$(dirname "$0")/cli_lib.sh" # EXE, Open MPI as root, cd to a temporary dir, run, bad

# ---- good runs: 32^3 in 180 Mpc/h, not the defaults
run "$EXE" ic -n_grid 32 -box_size 180 -seed 7 -redshift 0.5 -o ic1.h5
run mpiexec -n 2 "$EXE" ic -n_grid 32 -box_size 180 -seed 7 -redshift 0.5 -o ic2.h5
run "$EXE" pk ic1.h5 -dataset delta_linear -o pk1.h5
grep -v '^[#[]' out.txt > table1.txt
run mpiexec -n 2 "$EXE" pk ic2.h5 -dataset delta_linear -o pk2.h5
grep -v '^[#[]' out.txt > table2.txt
# the same numbers to 1e-9 (the shell sums are reduced in another order on 2 ranks)
if ! paste table1.txt table2.txt | awk '{ for (i = 1; i <= 6; i++) { d = $i - $(i + 6); if (d < 0) d = -d;
       m = $i < 0 ? -$i : $i; if (d > 1e-9 * m) bad = 1 } } END { exit bad || NR != 16 }'; then
  echo "FAIL: P(k) on 1 and 2 ranks differ:"; paste table1.txt table2.txt; fail=1
fi
[ -s pk1.txt ] || { echo "FAIL: no text table pk1.txt"; fail=1; }
if [ "$(wc -l < table1.txt)" -ne 16 ]; then
  echo "FAIL: expected 16 shells, got: $(cat table1.txt)"; fail=1
fi
# 6 columns (k k_lo k_hi pk n_modes pk_input); the first shell holds 18 modes
if ! awk 'NR == 1 && NF == 6 && $5 == 18 { ok = 1 } END { exit !ok }' table1.txt; then
  echo "FAIL: unexpected first row: $(head -1 table1.txt)"; fail=1
fi
# the files hold what the plot script and later commands read (when h5py is there)
if /usr/bin/python3 -c "import h5py, numpy" 2> /dev/null; then
  if ! /usr/bin/python3 - > py.txt 2>&1 <<'PYEOF'
import h5py, numpy as np
with h5py.File("ic1.h5", "r") as f:
    a = f.attrs
    assert a["n_grid"] == 32 and a["box_size"] == 180 and a["seed"] == 7, dict(a)
    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
    assert a["redshift"] == 0.5 and abs(a["Omega_m"] - 0.3111) < 1e-12, dict(a)
    assert text(a["pk_file"]) == "" and text(a["command"]) == "ic", dict(a)
    for k in ("code_version", "options", "sigma_8", "n_s", "h", "Omega_b"):
        assert k in a, k
    assert "-seed 7" in text(a["options"]), text(a["options"])
    for d in ("white_noise", "delta_linear"):
        assert f[d].shape == (32, 32, 32), f[d].shape
    s = f["white_noise"][...]
    assert abs(s.mean()) < 0.02 and abs(s.std() - 1) < 0.02, (s.mean(), s.std())
with h5py.File("pk1.h5", "r") as f:
    for d in ("k", "pk", "n_modes", "k_lo", "k_hi", "pk_input"):
        assert f[d].shape == (16,), (d, f[d].shape)
    assert f.attrs["n_grid"] == 32 and f.attrs["seed"] == 7
    assert np.all(f["k"][...] > f["k_lo"][...]) and np.all(f["k"][...] < f["k_hi"][...])
    m = np.fft.fftfreq(32, 1 / 32)
    r = np.sqrt(m[:, None, None]**2 + m[None, :, None]**2 + m[None, None, :]**2)
    assert f["n_modes"][...].sum() == np.count_nonzero((r >= 0.5) & (r < 16.5))
PYEOF
  then
    echo "FAIL: output contents: $(cat py.txt)"; fail=1
  fi
else
  echo "skipped the check of the HDF5 contents: /usr/bin/python3 has no h5py"
fi
run "$EXE" pk ic1.h5 -dataset white_noise -o pkw.h5 -deconvolve_cic -dk 0.05 -k_max 0.5
run "$EXE" pk ic1.h5 -n_bins 5
[ -f ic1_pk.h5 ] && [ -f ic1_pk.txt ] || { echo "FAIL: default pk output names"; fail=1; }
run "$EXE" bench fft -n_grid 16 -repeat 3
if ! grep -q '^bench,n_grid,ranks' out.txt || ! grep -q '^fft,16,1,3,' out.txt; then
  echo "FAIL: bench fft CSV: $(cat out.txt)"; fail=1
fi

# ---- P(k) tables
printf '# k P\n0.01 2000\n0.1 900\n0.08 950\n1 10\n10 0.1\n' > decreasing.txt
printf '0.05 1000\n0.1 500\n0.3 60\n' > short.txt
mkdir adir
bad "nope.txt" o.h5 "$EXE" ic -n_grid 16 -pk_file nope.txt -o o.h5
bad "adir" o.h5 "$EXE" ic -n_grid 16 -pk_file adir -o o.h5
bad "decreasing.txt' line 4" o.h5 "$EXE" ic -n_grid 16 -pk_file decreasing.txt -o o.h5
bad "short.txt" o.h5 "$EXE" ic -n_grid 16 -pk_file short.txt -o o.h5

# ---- grid
bad "-box_size" o.h5 "$EXE" ic -n_grid 16 -box_size -3 -o o.h5
bad "-box_size" o.h5 "$EXE" ic -n_grid 16 -box_size 0 -o o.h5
bad "-n_grid" o.h5 "$EXE" ic -n_grid 0 -o o.h5
bad "-n_grid" o.h5 "$EXE" ic -n_grid -8 -o o.h5
bad "-n_grid" o.h5 "$EXE" ic -n_grid 15 -o o.h5
bad "cannot be split over 3 ranks" o.h5 mpiexec -n 3 "$EXE" ic -n_grid 4 -o o.h5
bad "-seed" o.h5 "$EXE" ic -n_grid 16 -seed -2 -o o.h5
bad "-Omega_m" o.h5 "$EXE" ic -n_grid 16 -Omega_m 1.5 -o o.h5

# ---- options
bad "n_gird" o.h5 "$EXE" ic -n_gird 16 -o o.h5
bad "-n_grid" o.h5 "$EXE" ic -n_grid abc -o o.h5
bad "-box_size" o.h5 "$EXE" ic -box_size 1e3x -o o.h5
bad "-dk or -n_bins" o.h5 "$EXE" pk ic1.h5 -dk 0.02 -n_bins 4 -o o.h5

# ---- outputs
sum_before=$(cksum < ic1.h5)
bad "ic1.h5" "" "$EXE" ic -n_grid 16 -o ic1.h5
[ "$(cksum < ic1.h5)" = "$sum_before" ] || { echo "FAIL: refused output ic1.h5 was changed"; fail=1; }
sum_before=$(cksum < pk1.h5)
bad "pk1.h5" "" "$EXE" pk ic1.h5 -o pk1.h5
[ "$(cksum < pk1.h5)" = "$sum_before" ] || { echo "FAIL: refused output pk1.h5 was changed"; fail=1; }
run "$EXE" ic -n_grid 16 -o ic1.h5 -overwrite
[ "$(cksum < ic1.h5)" != "$sum_before" ] || { echo "FAIL: -overwrite did not replace ic1.h5"; fail=1; }
bad "no/such/dir/o.h5" no/such/dir/o.h5 "$EXE" ic -n_grid 16 -o no/such/dir/o.h5
bad "no/such/dir/p.h5" no/such/dir/p.h5 "$EXE" pk ic2.h5 -o no/such/dir/p.h5
if [ "$(id -u)" -ne 0 ]; then
  mkdir ro && chmod 500 ro
  bad "ro/o.h5" ro/o.h5 "$EXE" ic -n_grid 16 -o ro/o.h5
else
  echo "skipped the unwritable-directory case: running as root (every directory is writable)"
fi

# ---- pk inputs
head -c 3000 /dev/urandom > corrupt.h5
bad "corrupt.h5" p.h5 "$EXE" pk corrupt.h5 -o p.h5
bad "missing.h5" p.h5 "$EXE" pk missing.h5 -o p.h5
bad "no dataset 'nothing'" p.h5 "$EXE" pk ic2.h5 -dataset nothing -o p.h5
bad "pk1.h5': dataset 'k' is not a 3-D" p.h5 "$EXE" pk pk1.h5 -dataset k -o p.h5
bad "no input file" p.h5 "$EXE" pk -o p.h5
if /usr/bin/python3 -c "import h5py, numpy" 2> /dev/null; then
  /usr/bin/python3 -c "
import h5py, numpy as np
with h5py.File('shape.h5', 'w') as f:
    f['delta'] = np.full((8, 8, 6), 0.25)
    f.attrs['n_grid'] = 8; f.attrs['box_size'] = 100.0
"
  bad "shape.h5': dataset 'delta' has shape 8x8x6" p.h5 "$EXE" pk shape.h5 -dataset delta -o p.h5
else
  echo "skipped the 8x8x6 dataset case: /usr/bin/python3 has no h5py"
fi

# ---- FFT planner: measured plans give the same fields to rounding; the wisdom file is written,
# grows with the plans of another rank count, and makes a rerun the same to the last bit
run "$EXE" ic -n_grid 32 -box_size 180 -seed 7 -redshift 0.5 -fft_plan measure -fft_wisdom w.wis -o icm1.h5
[ -s w.wis ] || { echo "FAIL: -fft_wisdom w.wis was not written"; fail=1; }
wis1=$(wc -c < w.wis)
# (patient planning is FFTW's own search, long under the sanitizers: there the 2-rank plans are
# measured, which grows the wisdom all the same)
plan2=patient
[ -n "${ASAN_OPTIONS:-}" ] && plan2=measure
run mpiexec -n 2 "$EXE" ic -n_grid 32 -box_size 180 -seed 7 -redshift 0.5 -fft_plan $plan2 -fft_wisdom w.wis -o icm2.h5
[ "$(wc -c < w.wis)" -gt "$wis1" ] || { echo "FAIL: w.wis did not take the 2-rank plans"; fail=1; }
run "$EXE" ic -n_grid 32 -box_size 180 -seed 7 -redshift 0.5 -fft_plan measure -fft_wisdom w.wis -o icm3.h5
for np in 3 4; do
  run mpiexec -n $np "$EXE" ic -n_grid 32 -box_size 180 -seed 7 -redshift 0.5 -fft_plan measure \
    -fft_wisdom w.wis -o icm_np$np.h5
done
grep -q -- "-fft_plan measure" <(strings icm1.h5) || { echo "FAIL: icm1.h5 does not record -fft_plan"; fail=1; }
if /usr/bin/python3 -c "import h5py, numpy" 2> /dev/null; then
  if ! /usr/bin/python3 - > py.txt 2>&1 <<'PYEOF'
import h5py, numpy as np
d = {}
for name in ("ic1.h5", "ic2.h5", "icm1.h5", "icm2.h5", "icm3.h5", "icm_np3.h5", "icm_np4.h5"):
    with h5py.File(name, "r") as f:
        d[name] = f["delta_linear"][...]
ref = d["ic2.h5"]
for name in ("icm1.h5", "icm2.h5", "icm_np3.h5", "icm_np4.h5"):
    err = np.abs(d[name] - ref).max() / np.abs(ref).max()
    assert err < 1e-13, (name, err)
assert np.array_equal(d["icm1.h5"], d["icm3.h5"]), "the rerun with the same wisdom differs"
PYEOF
  then
    echo "FAIL: measured plans: $(cat py.txt)"; fail=1
  fi
else
  echo "skipped the comparison of measured and estimated fields: /usr/bin/python3 has no h5py"
fi
head -c 500 /dev/urandom > junk.wis
sum_before=$(cksum < junk.wis)
bad "-fft_plan" o.h5 "$EXE" ic -n_grid 16 -fft_plan fast -o o.h5
bad "junk.wis: not an FFTW wisdom file" o.h5 "$EXE" ic -n_grid 16 -fft_wisdom junk.wis -o o.h5
[ "$(cksum < junk.wis)" = "$sum_before" ] || { echo "FAIL: the refused junk.wis was changed"; fail=1; }
bad "no/such/dir/w.wis" o.h5 mpiexec -n 2 "$EXE" ic -n_grid 16 -fft_wisdom no/such/dir/w.wis -o o.h5
bad "adir: " p.h5 "$EXE" pk ic1.h5 -fft_wisdom adir -o p.h5

if ls ./*.tmp.* > /dev/null 2>&1; then echo "FAIL: temporary files left: $(ls ./*.tmp.*)"; fail=1; fi
exit $fail
