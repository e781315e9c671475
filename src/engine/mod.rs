//! The phase engine: state machine, gates, sign-offs, lock-safe DDL, rollback, rehearsal.
