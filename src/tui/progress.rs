//! The backfill's share done as every part of the screen words it (gauge, footer, picker), from
//! the computation `cutover backfill status` and the metrics use ([`crate::backfill::Share`]);
//! its pace from its typed state ([`crate::backfill::Pace`]); and durations as the panes word
//! them.

pub use crate::backfill::{thousands, Pace, Share};

/// `42s`, `3m05s`, `2h07m`.
pub fn human_secs(secs: i64) -> String {
    let secs = secs.max(0);
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}
