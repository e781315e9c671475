//! Invariant: SQL returning one number, compared to an exact value (default 0: a count of
//! violations) or to bounds.

use serde_json::json;

use super::{CheckError, Ctx, Verdict};
use crate::plan::CheckKind;
use crate::read_only::ReadOnly;
use crate::sql::OWN_TAG;
use crate::Outcome;

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<Verdict, CheckError> {
    let CheckKind::Invariant {
        sql,
        expect,
        max,
        min,
    } = &ctx.spec.kind
    else {
        return Err(CheckError::Invalid("not an invariant check".into()));
    };
    ctx.pacer.check()?;
    let value = scalar(&ctx.ro.named(format!("check `{}` sql", ctx.spec.name)), sql).await?;
    let Some(value) = value else {
        return Ok(Verdict {
            outcome: Outcome::Inconclusive,
            summary: "the query returned no value (no row or NULL)".into(),
            rows_scanned: 0,
            details: json!({ "value": null }),
        });
    };
    let (ok, wanted) = judge(value, *expect, *min, *max);
    Ok(Verdict {
        outcome: if ok { Outcome::Pass } else { Outcome::Fail },
        summary: format!("value {} (expected {wanted})", fmt_num(value)),
        rows_scanned: 0,
        details: json!({ "value": value, "expected": wanted }),
    })
}

/// Whether `value` satisfies the expectation, and the expectation in words.
pub(crate) fn judge(
    value: f64,
    expect: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
) -> (bool, String) {
    if min.is_none() && max.is_none() {
        let e = expect.unwrap_or(0.0);
        return (
            (value - e).abs() <= f64::EPSILON * e.abs().max(1.0),
            format!("= {}", fmt_num(e)),
        );
    }
    let mut ok = true;
    let mut words = Vec::new();
    if let Some(e) = expect {
        ok &= (value - e).abs() <= f64::EPSILON * e.abs().max(1.0);
        words.push(format!("= {}", fmt_num(e)));
    }
    if let Some(lo) = min {
        ok &= value >= lo;
        words.push(format!(">= {}", fmt_num(lo)));
    }
    if let Some(hi) = max {
        ok &= value <= hi;
        words.push(format!("<= {}", fmt_num(hi)));
    }
    (ok, words.join(" and "))
}

/// Runs `sql` (one row, one column) and reads its value as a float.
pub(crate) async fn scalar(ro: &ReadOnly<'_>, sql: &str) -> Result<Option<f64>, CheckError> {
    let body = sql.trim().trim_end_matches(';').trim_end();
    let wrapped =
        format!("{OWN_TAG}SELECT (SELECT * FROM ({body}) AS invariant_query)::float8 AS value");
    let row = ro.query_one(&wrapped, &[]).await?;
    Ok(row.get::<_, Option<f64>>("value"))
}

pub(crate) fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::judge;

    #[test]
    fn expectations() {
        assert!(judge(0.0, None, None, None).0);
        assert!(!judge(3.0, None, None, None).0);
        assert!(judge(5.0, Some(5.0), None, None).0);
        assert!(judge(5.0, None, Some(1.0), Some(10.0)).0);
        assert!(!judge(11.0, None, None, Some(10.0)).0);
        assert!(!judge(0.5, None, Some(1.0), None).0);
    }
}
