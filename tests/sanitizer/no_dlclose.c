/* no_dlclose: a dlclose() that keeps the library mapped, preloaded (LD_PRELOAD) by
 * scripts/test.sh in the sanitizer build's test runs only; never linked into Cerberus.
 *
 * Open MPI and PMIx load their plugins (MCA components) with dlopen and unload them with
 * dlclose in MPI_Finalize. LeakSanitizer checks for leaks after that, at exit, so the plugins'
 * allocations become "leaks" of "<unknown module>": thousands of them (3300 blocks per rank
 * with Debian 12's Open MPI 4.1.4), which LSan can neither attribute to a library nor match
 * cheaply (each unknown frame makes it re-read /proc/self/maps: about 10 s per process).
 * With the plugins left mapped, their globals are scanned as roots, so what they still point to
 * is not a leak, and their frames are named: about 20 blocks per rank remain, all allocated
 * inside MPI_Init and matched by tests/sanitizer/lsan.supp. Not collective. */
int dlclose(void *handle);

int dlclose(void *handle) {
  (void)handle;
  return 0;
}
