/* log: messages with rank and elapsed wall time, fit for a SLURM log file.
 *
 * "[   1.234 s] message" on rank 0 (log_info), "[   1.234 s r3] message" from any rank
 * (log_rank). Progress is written as whole lines, never carriage-return bars.
 * log_init is called once by main with the world communicator's rank; the clock starts
 * there. -quiet silences log_info. Not collective. */
#ifndef CERBERUS_LOG_H
#define CERBERUS_LOG_H

#include <stdbool.h>

void log_init(int rank, bool quiet);
double log_elapsed(void);
/* Rank 0 only (others are silent). */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Every rank that calls it, tagged with its rank. */
void log_rank(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Rank 0 only, to stderr, even when quiet. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
