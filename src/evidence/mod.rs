//! Readiness evidence: breaking-DDL lint, compatibility, error budget, hidden readers, privileges, metrics, runbook.
