/* status: error codes, a traceback, and checks that always stay on.
 *
 * Every fallible function returns an int status (CB_OK = 0). CB_CALL(expr) runs a
 * fallible call and, on failure, appends "file:line (function)" to the traceback and
 * returns the same code to its caller. CB_CHECK(cond, code, fmt, ...) turns a broken
 * condition into a one-line message a user understands; it is never compiled out.
 * Only main() prints the message and exits; below main, errors travel up as codes.
 *
 * Errors on user input are raised collectively where the input is collective (every
 * rank reaches the same decision), so that every rank returns to main and the program
 * ends cleanly with a non-zero exit code. Not collective. */
#ifndef CERBERUS_STATUS_H
#define CERBERUS_STATUS_H

#include <stddef.h>

enum cb_status {
  CB_OK = 0,
  CB_ERR_INPUT = 2,    /* bad option, bad file contents, bad value from the user */
  CB_ERR_IO = 3,       /* file missing, unreadable, unwritable */
  CB_ERR_MEM = 4,      /* allocation failed */
  CB_ERR_NUMERIC = 5,  /* NaN/inf or a failed numerical method */
  CB_ERR_MPI = 6,      /* an MPI or library call failed */
  CB_ERR_INTERNAL = 7, /* a bug: an invariant of the code is broken */
  CB_HELP_SHOWN = 100  /* -help was given and printed: stop quietly, exit 0 */
};

/* Record a new error (clears the traceback), return code. Not collective. */
int status_error(int code, const char *file, int line, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Append one traceback frame. Not collective. */
void status_trace(const char *file, int line, const char *func);
/* The message of the last error ("" if none) and its traceback (one frame a line). */
const char *status_message(void);
const char *status_traceback(void);
/* Forget the last error (after a caller has handled it, e.g. a rejected HMC step). */
void status_clear(void);
/* A short name for a code ("input", "io", ...). */
const char *status_name(int code);

#define CB_CALL(expr)                                                                              \
  do {                                                                                             \
    int cb_call_status_ = (expr);                                                                  \
    if (cb_call_status_ != CB_OK) {                                                                \
      if (cb_call_status_ != CB_HELP_SHOWN) status_trace(__FILE__, __LINE__, __func__);            \
      return cb_call_status_;                                                                      \
    }                                                                                              \
  } while (0)

#define CB_CHECK(cond, code, ...)                                                                  \
  do {                                                                                             \
    if (!(cond)) return status_error((code), __FILE__, __LINE__, __func__, __VA_ARGS__);           \
  } while (0)

/* Raise an error unconditionally. */
#define CB_ERROR(code, ...) status_error((code), __FILE__, __LINE__, __func__, __VA_ARGS__)

/* Allocate n elements of *ptr's type (zeroed); CB_ERR_MEM with the variable's name on failure. */
#define CB_CALLOC(ptr, n)                                                                          \
  do {                                                                                             \
    size_t cb_n_ = (size_t)(n);                                                                    \
    (ptr) = calloc(cb_n_ ? cb_n_ : 1, sizeof *(ptr));                                              \
    CB_CHECK((ptr) != NULL, CB_ERR_MEM, "out of memory allocating %zu elements for %s", cb_n_,     \
             #ptr);                                                                                \
  } while (0)

#endif
