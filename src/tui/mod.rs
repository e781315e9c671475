//! The full-screen command center.
