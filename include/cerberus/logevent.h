/* logevent: PETSc log events for the costly stages, so that -log_view shows them.
 *
 * A fixed list of events (FFT, IC, power spectrum, ...); logevent_begin / logevent_end
 * bracket a stage. Events are registered on first use, after PetscInitialize (main and the
 * test harness start PETSc first); before that, or if registration fails, the calls do
 * nothing. Callers do not include PETSc headers. To add an event: one enum value here and
 * one name in src/core/logevent.c. Not collective (PETSc's logging is per process). */
#ifndef CERBERUS_LOGEVENT_H
#define CERBERUS_LOGEVENT_H

enum logevent_id {
  LOGEVENT_FFT = 0,     /* field_r2c / field_c2r transforms */
  LOGEVENT_IC_NOISE,    /* ic_white_noise */
  LOGEVENT_IC_FILTER,   /* ic_filter_create (tabulating sqrt(P/V)) */
  LOGEVENT_IC_DELTA,    /* ic_delta_linear and its adjoint */
  LOGEVENT_POWER,       /* power_measure */
  LOGEVENT_LPT,         /* lpt_forward */
  LOGEVENT_LPT_ADJOINT, /* lpt_adjoint */
  LOGEVENT_CIC,         /* cic_assign deposit (migration apart) */
  LOGEVENT_CIC_ADJOINT, /* cic adjoint (gradient return apart) */
  LOGEVENT_MIGRATE,     /* particles: plan and exchanges */
  LOGEVENT_COUNT
};

void logevent_begin(enum logevent_id id);
void logevent_end(enum logevent_id id);

#endif
