//! Verification: parity by partition, expression parity, checksums, exact diff, drift, invariants.
