//! The worker: owns the database connections, runs actions, and publishes snapshots to the UI.
