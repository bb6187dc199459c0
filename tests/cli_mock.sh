#!/bin/bash
# cli_mock: `cerberus mock` and `cerberus catalogue import` from the command line.
# Good runs first (the same halo count on 1 and 2 ranks; text catalogues by column number,
# by header name and as CSV), then every bad input provoked once: each must exit non-zero with
# one line on stderr naming the input, and leave no output file (not even a temporary one).
. "$(dirname "$0")/cli_lib.sh" # EXE, Open MPI as root, cd to a temporary dir, run, bad
# every bad run here must print one line and nothing else (no mpiexec banner), and the
# plot_mock.py errors start with 'plot_mock:', so every non-empty stderr line counts
BAD_LINE='.'

# ---------------------------------------------------------------- catalogue import
cat > good.txt <<'EOF'
# x y z M: positions in Mpc/h, masses in M_sun/h
12.5 200.25 3.75 3.1e12
249.999 0 117.3 8.4e13

0.0 61.7 233.1 1.2e12
EOF
cat > trees.txt <<'EOF'
#scale(0) id(1) mvir(2) rvir(3) x(4) y(5) z(6)
#a comment line after the header
1.0 17 4.4e12 0.21 10.5 20.25 30.125
1.0 18 9.9e13 0.55 110.5 0.25 249.5
EOF
printf 'x,y,z,mass\n1.5,2.5,3.5,5e12\n100,150,200,2.2e13\n' > good.csv
run "$EXE" catalogue import -i good.txt -o good.h5
grep -q "2 halos with M >= 2e+12 M_sun/h (1 below it left out)" out.txt ||
  { echo "FAIL: import of good.txt: $(cat out.txt)"; fail=1; }
run mpiexec -n 2 "$EXE" catalogue import -i trees.txt -columns x,y,z,mvir -o trees.h5
grep -q "2 halos" out.txt || { echo "FAIL: import of trees.txt: $(cat out.txt)"; fail=1; }
run "$EXE" catalogue import -i trees.txt -columns 5,6,7,3 -o trees_n.h5 -mass_threshold 5e12
grep -q "1 halos with M >= 5e+12 M_sun/h (1 below" out.txt ||
  { echo "FAIL: import by numbers: $(cat out.txt)"; fail=1; }
run "$EXE" catalogue import -i good.csv -columns x,y,z,mass -o csv.h5 -box_size 210 -n_grid 32
printf '1 2 3 4e12\n5 6 250 4e12\n' > outside.txt
run "$EXE" catalogue import -i outside.txt -wrap -o wrapped.h5
[ -f good.h5 ] && [ -f trees.h5 ] && [ -f wrapped.h5 ] && [ -f trees_n.h5 ] && [ -f csv.h5 ] ||
  { echo "FAIL: an import left no output"; fail=1; }

printf '1 2 3 4e12\n5 6\n' > short.txt
printf '1 2 3 4e12\n5 6 seven 4e12\n' > word.txt
printf '1 2 3 4e12\n5 -0.5 7 4e12\n' > negpos.txt
printf '1 2 3 4e12\n5 6 7 -3e12\n' > negmass.txt
printf '1 2 3 4e12\n5 6 7 0\n' > zeromass.txt
printf '1 2 3 4e12\n5 6 7 nan\n' > nanmass.txt
printf '1 2 3 4e12\n5 6 7 inf\n' > infmass.txt
printf '1 2 inf 4e12\n' > infpos.txt
printf '1 2 3 4e11\n5 6 7 1e12\n' > light.txt
printf '# nothing\n\n' > empty.txt
printf '1 2 3 4e12\n' > noheader.txt
O=imp.h5
bad "no catalogue given" $O "$EXE" catalogue import -o $O
bad "'missing.txt': cannot open" $O "$EXE" catalogue import -i missing.txt -o $O
bad "'short.txt' line 2: 2 column(s), need at least 4" $O "$EXE" catalogue import -i short.txt -o $O
bad "'word.txt' line 2: z (column 3) 'seven' is not a number" $O "$EXE" catalogue import -i word.txt -o $O
bad "'outside.txt' line 2: z = 250 is outside the box" $O "$EXE" catalogue import -i outside.txt -o $O
bad "'negpos.txt' line 2: y = -0.5 is outside the box" $O "$EXE" catalogue import -i negpos.txt -o $O
bad "'negmass.txt' line 2: mass -3000000000000 is not positive" $O "$EXE" catalogue import -i negmass.txt -o $O
bad "'zeromass.txt' line 2: mass 0 is not positive" $O "$EXE" catalogue import -i zeromass.txt -o $O
bad "'nanmass.txt' line 2: mass (column 4) 'nan' is not finite" $O "$EXE" catalogue import -i nanmass.txt -o $O
bad "'infmass.txt' line 2: mass (column 4) 'inf' is not finite" $O "$EXE" catalogue import -i infmass.txt -o $O
bad "'infpos.txt' line 1: z (column 3) 'inf' is not finite" $O "$EXE" catalogue import -i infpos.txt -o $O
bad "'light.txt': no halo with mass >= 2e+12" $O "$EXE" catalogue import -i light.txt -o $O
bad "'empty.txt': no halo with mass >= 2e+12 (-mass_threshold) (the file holds no halo at all)" $O \
  "$EXE" catalogue import -i empty.txt -o $O
bad "'noheader.txt' line 1: data before a header line naming the columns x,y,z,M" $O \
  "$EXE" catalogue import -i noheader.txt -columns x,y,z,M -o $O
bad "'trees.txt' line 3: data before a header line naming the columns X,Y,Z,mvir" $O \
  "$EXE" catalogue import -i trees.txt -columns X,Y,Z,mvir -o $O
bad "'empty.txt': no header line names the columns x,y,z,mvir" $O \
  "$EXE" catalogue import -i empty.txt -columns x,y,z,mvir -o $O
bad "-columns '1,2,3' must name 4 columns" $O "$EXE" catalogue import -i good.txt -columns 1,2,3 -o $O
bad "-columns '1,2,z,4': give 4 column numbers or 4 header names" $O \
  "$EXE" catalogue import -i good.txt -columns 1,2,z,4 -o $O
bad "-columns '1,2,0,4': column number 0 is not in 1.." $O \
  "$EXE" catalogue import -i good.txt -columns 1,2,0,4 -o $O
bad "-columns 'x,y,x,M': column 'x' is named twice" $O \
  "$EXE" catalogue import -i good.txt -columns x,y,x,M -o $O
bad "-box_size must be positive and finite (got -250)" $O "$EXE" catalogue import -i good.txt -box_size -250 -o $O
bad "-n_grid must be even and at least 2 (got 33)" $O "$EXE" catalogue import -i good.txt -n_grid 33 -o $O
bad "-mass_threshold must be positive (got 0)" $O "$EXE" catalogue import -i good.txt -mass_threshold 0 -o $O
bad "unknown option -box_sise" $O "$EXE" catalogue import -i good.txt -box_sise 100 -o $O
bad "unknown subcommand 'catalogue export'" $O "$EXE" catalogue export -i good.txt -o $O
bad "'cerberus catalogue' needs a subcommand: import" $O "$EXE" catalogue -i good.txt -o $O
bad "its directory does not exist" nodir "$EXE" catalogue import -i good.txt -o nodir/x.h5
cp good.h5 keep.h5
bad "output 'good.h5' exists (use -overwrite to replace it)" good.h5.tmp "$EXE" catalogue import -i good.txt -o good.h5
cmp -s good.h5 keep.h5 || { echo "FAIL: a refused import changed good.h5"; fail=1; }

# ---------------------------------------------------------------- mock
G=(-n_grid 16 -box_size 123.4)
run "$EXE" mock "${G[@]}" -seed 7 -o m1.h5
n1=$(grep -o '[0-9][0-9]* halos (expected' out.txt | cut -d' ' -f1)
run mpiexec -n 2 "$EXE" mock "${G[@]}" -seed 7 -o m2.h5
n2=$(grep -o '[0-9][0-9]* halos (expected' out.txt | cut -d' ' -f1)
[ -n "$n1" ] && [ "$n1" = "$n2" ] || { echo "FAIL: mock on 1 and 2 ranks: '$n1' vs '$n2'"; fail=1; }
[ -f m1.h5 ] && [ -f m2.h5 ] || { echo "FAIL: mock left no output"; fail=1; }
echo "mock 16^3 on 1 and 2 ranks: $n1, $n2"
run "$EXE" mock "${G[@]}" -seed 7 -lpt_order 2 -smoothing_radius 0 -mass_threshold 5e12 -o m3.h5
PY=/usr/bin/python3
if $PY -c "import h5py, numpy" 2>/dev/null; then
  # the files of 1 and 2 ranks: the same halos in the same order, the same fields; the layout
  # and attributes; no halo where the expected count is zero
  if ! $PY - <<'PYEOF'
import h5py, numpy as np, sys
a, b = h5py.File("m1.h5", "r"), h5py.File("m2.h5", "r")
ok = True
def check(cond, what):
    global ok
    if not cond:
        print("FAIL:", what); ok = False
for k in ("white_noise", "delta_linear", "delta", "expected_count", "environment"):
    check(a[k].shape == (16, 16, 16) and np.allclose(a[k][...], b[k][...], rtol=1e-10, atol=1e-12),
          k + " differs between 1 and 2 ranks")
pa, pb = a["halos/position"][...], b["halos/position"][...]
check(pa.shape == pb.shape and pa.shape[1] == 3, "halo positions shape")
check(pa.shape == pb.shape and np.allclose(pa, pb, rtol=1e-12, atol=0), "halos differ between 1 and 2 ranks")
check(np.allclose(a["halos/mass"][...], b["halos/mass"][...], rtol=1e-10), "masses differ")
for name in ("box_size", "n_grid", "seed", "mass_threshold", "truth", "smoothing_radius", "lpt_order",
             "code_version", "options"):
    check(name in a.attrs, "attribute " + name + " missing")
check(abs(a.attrs["box_size"] - 123.4) < 1e-12 and a.attrs["n_grid"] == 16, "grid attributes")
check(a.attrs["mass_threshold"] == 2e12 and a.attrs["seed"] == 7, "mass_threshold / seed")
v = np.floor(pa * 16 / 123.4).astype(int)
ex = a["expected_count"][...]
check(np.all(ex[v[:, 0], v[:, 1], v[:, 2]] > 0), "a halo in a voxel with zero expected count")
check(np.all(a["halos/mass"][...] >= 2e12), "a halo below the threshold")
d = a["delta"][...]
check(np.all(ex[d <= -1.0] == 0), "an empty voxel with a non-zero expected count")
n, mu = len(pa), ex.sum()
check(abs(n - mu) < 4 * np.sqrt(mu), "count %d vs expected %.1f" % (n, mu))
print("mock files: %d halos (expected %.1f), identical on 1 and 2 ranks" % (n, mu))
sys.exit(0 if ok else 1)
PYEOF
  then fail=1; fi
  run $PY "${CERBERUS_SRC:-.}/scripts/plot_mock.py" m1.h5 m1.png
  [ -s m1.png ] || { echo "FAIL: plot_mock.py drew nothing"; fail=1; }
  bad "plot_mock: mock file 'nosuch.h5' not found" nosuch.png $PY "${CERBERUS_SRC:-.}/scripts/plot_mock.py" nosuch.h5 nosuch.png
  bad "plot_mock: cannot read the mock from 'good.h5'" g.png $PY "${CERBERUS_SRC:-.}/scripts/plot_mock.py" good.h5 g.png
fi

O=mock.h5
printf '0.01 100\n0.1 1000\n' > pk_short.txt
bad "-truth: 'peaks' is not one of st-pbs,npe" $O "$EXE" mock "${G[@]}" -truth peaks -o $O
bad "-truth npe needs -weights FILE" $O "$EXE" mock "${G[@]}" -truth npe -o $O
bad "-weights 'w.h5' is only used with -truth npe" $O "$EXE" mock "${G[@]}" -weights w.h5 -o $O
bad "nosuch.h5" $O "$EXE" mock "${G[@]}" -truth npe -weights nosuch.h5 -o $O
bad "'good.txt'" $O "$EXE" mock "${G[@]}" -truth npe -weights good.txt -o $O
bad "-mass_threshold must be positive and below 1e+16 M_sun/h (got -1)" $O "$EXE" mock "${G[@]}" -mass_threshold -1 -o $O
bad "-mass_threshold must be positive and below 1e+16 M_sun/h (got 2e+16)" $O "$EXE" mock "${G[@]}" -mass_threshold 2e16 -o $O
bad "-lpt_order must be 1 or 2 (got 3)" $O "$EXE" mock "${G[@]}" -lpt_order 3 -o $O
bad "-smoothing_radius must be zero or positive (got -2)" $O "$EXE" mock "${G[@]}" -smoothing_radius -2 -o $O
bad "-n_grid must be even (got 15)" $O "$EXE" mock -n_grid 15 -o $O
bad "-box_size must be positive and finite (got 0)" $O "$EXE" mock -n_grid 16 -box_size 0 -o $O
bad "-seed must be non-negative (got -4)" $O "$EXE" mock "${G[@]}" -seed -4 -o $O
bad "option -n_grid: 'abc' is not an integer" $O "$EXE" mock -n_grid abc -o $O
bad "nopk.txt" $O "$EXE" mock "${G[@]}" -pk_file nopk.txt -o $O
bad "pk_short.txt" $O "$EXE" mock "${G[@]}" -pk_file pk_short.txt -o $O
bad "unknown option -mass_treshold" $O "$EXE" mock "${G[@]}" -mass_treshold 3e12 -o $O
bad "unexpected argument 'extra'" $O "$EXE" mock extra "${G[@]}" -o $O
bad "its directory does not exist" nodir "$EXE" mock "${G[@]}" -o nodir/m.h5
cp m1.h5 keep.h5
bad "output 'm1.h5' exists (use -overwrite to replace it)" m1.h5.tmp "$EXE" mock "${G[@]}" -o m1.h5
cmp -s m1.h5 keep.h5 || { echo "FAIL: a refused mock changed m1.h5"; fail=1; }

# the npe truth, when the weights command exists
if "$EXE" help | grep -q '^  weights '; then
  run "$EXE" weights init -random -seed 5 -scale 0.2 -o w.h5
  GN=(-n_grid 24 -box_size 181.5)
  run "$EXE" mock "${GN[@]}" -truth npe -weights w.h5 -o mn1.h5
  k1=$(grep -o '[0-9][0-9]* halos (expected' out.txt | cut -d' ' -f1)
  run mpiexec -n 2 "$EXE" mock "${GN[@]}" -truth npe -weights w.h5 -o mn2.h5
  k2=$(grep -o '[0-9][0-9]* halos (expected' out.txt | cut -d' ' -f1)
  [ -n "$k1" ] && [ "$k1" = "$k2" ] || { echo "FAIL: npe mock on 1 and 2 ranks: '$k1' vs '$k2'"; fail=1; }
  echo "npe mock 24^3 on 1 and 2 ranks: $k1, $k2"
  # a well-specified truth: the likelihood reads the mock, and the engine's exact expected
  # counts in bins of density and mass (cerberus hmf) match the drawn ones (Pearson chi^2 over
  # the bins with >= 5 expected, within 5 sigma of its dof; the total within 4 Poisson sigma)
  run "$EXE" loglike -field mn1.h5 -catalogue mn1.h5 -weights w.h5 -o ll.h5
  if "$EXE" help | grep -q '^  hmf '; then
    run "$EXE" hmf -field mn1.h5 -weights w.h5 -catalogue mn1.h5 -o hmf.h5 -n_delta_bins 3 \
      -n_mass_bins 5 -mass_max 1e16
    if ! awk '!/^#/ && NF == 10 { tm += $6; td += $7; if ($6 >= 5) { c += ($7 - $6)^2 / $6; k++ } }
        END { printf "hmf: %d bins, chi2 %.2f; total %d drawn, %.1f expected\n", k, c, td, tm;
              exit !(k >= 5 && c < k + 5 * sqrt(2 * k) && (td - tm)^2 < 16 * tm) }' out.txt; then
      echo "FAIL: npe mock against the engine's expected counts: $(cat out.txt)"; fail=1
    fi
  fi
fi

[ $fail -eq 0 ] && echo "PASS" || echo "FAIL"
exit $fail
