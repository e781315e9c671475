//! TODO
use super::{CheckError, Ctx, Verdict};

pub(crate) async fn run(_ctx: &mut Ctx<'_>) -> Result<Verdict, CheckError> {
    Err(CheckError::Invalid("not implemented yet".into()))
}
