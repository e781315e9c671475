//! The backfill: keyset chunks, per-chunk checkpoints, adaptive size, health throttle, workers.
