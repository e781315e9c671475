//! The documented exit codes of every command.

/// Success.
pub const OK: u8 = 0;
/// An error (bad input, database failure).
pub const ERROR: u8 = 1;
/// A gate or validation blocked the action.
pub const BLOCKED: u8 = 2;
/// The action was refused (role, irreversible phase, read-only).
pub const REFUSED: u8 = 3;
