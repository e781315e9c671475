//! `move_column`: a column moves to another table that references the first through a join
//! key (`to_table.join = table.key`), as Reshape's cross-table changes do.
//!
//! Until contract both copies live. An `AFTER` trigger on the source copies writes of the old
//! version to the target rows that reference it; a `BEFORE` trigger on the target fills the
//! column from the source for rows the old version inserts, and sends writes of the new version
//! back to the source. Each trigger acts only on statements of the application
//! (`pg_trigger_depth() = 1`) and only on rows whose value differs: no loops. The target's rows
//! are backfilled with one pass; contract drops the triggers and the source column. With version
//! schemas the old version sees the column in the source's view, the new one in the target's.

use super::columns::target;
use super::idents::{ident, limit, Table};
use super::sync::Group;
use super::{need, Expansion, OperationSpec, Stage};
use crate::plan::Phase;

/// Expands `move_column`.
#[expect(
    clippy::too_many_lines,
    reason = "the forward and reverse triggers of a move read best side by side"
)]
pub(crate) fn move_column(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some((src, key)) = target(x, i, op) else {
        return;
    };
    let (Some(col), Some(to), Some(join), Some(ty)) = (
        need(x, i, op, "column", &op.column),
        need(x, i, op, "to_table", &op.to_table),
        need(x, i, op, "join", &op.join),
        need(x, i, op, "type", &op.kind),
    ) else {
        return;
    };
    x.type_name(i, "type", ty);
    let Some(src_key) = key.first().filter(|_| key.len() == 1) else {
        x.problem(i, "key", "`move_column` joins on a one-column key");
        return;
    };
    let dst = Table::parse(to);
    let new = op.name.as_deref().unwrap_or(col);
    x.touch(i, "column", &src.plain(), col);
    x.touch(i, "to_table", &dst.plain(), new);
    x.shapes.dropped(&src, i, col);
    x.shapes.added(&dst, i, new);
    let (c, n, j, k) = (ident(col), ident(new), ident(join), ident(src_key));
    x.part(
        i,
        Phase::Expand,
        Stage::Schema,
        format!("ALTER TABLE {} ADD COLUMN {n} {ty};", dst.sql()),
        format!("ALTER TABLE {} DROP COLUMN IF EXISTS {n};", dst.sql()),
    );
    let lookup = |join_value: &str| {
        format!(
            "(SELECT s.{c} FROM {} AS s WHERE s.{k} = {join_value})",
            src.sql()
        )
    };
    let src_fn = src.sibling(&limit(format!("{}_cutover_move_out", src.name)));
    let dst_fn = dst.sibling(&limit(format!("{}_cutover_move_in", dst.name)));
    let src_tg = ident(&limit(format!("{}_cutover_move_out", src.name)));
    let dst_tg = ident(&limit(format!("{}_cutover_move_in", dst.name)));
    let apply = format!(
        "CREATE FUNCTION {src_fn}() RETURNS trigger
LANGUAGE plpgsql AS $cutover$
BEGIN
    -- The old version wrote {col}: copy it to the rows of {to} that reference this one.
    IF pg_trigger_depth() = 1 THEN
        UPDATE {dt} SET {n} = NEW.{c} WHERE {j} = NEW.{k} AND {n} IS DISTINCT FROM NEW.{c};
    END IF;
    RETURN NULL;
END
$cutover$;
CREATE TRIGGER {src_tg}
    AFTER INSERT OR UPDATE OF {c} ON {st}
    FOR EACH ROW EXECUTE FUNCTION {src_fn}();
CREATE FUNCTION {dst_fn}() RETURNS trigger
LANGUAGE plpgsql AS $cutover$
BEGIN
    IF pg_trigger_depth() > 1 THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.{n} IS DISTINCT FROM OLD.{n} AND NEW.{j} IS NOT DISTINCT FROM OLD.{j}
       OR TG_OP = 'INSERT' AND NEW.{n} IS NOT NULL THEN
        -- The new version wrote {new}: send it back to the source.
        UPDATE {st} SET {c} = NEW.{n} WHERE {k} = NEW.{j} AND {c} IS DISTINCT FROM NEW.{n};
    ELSE
        NEW.{n} := {fill};
    END IF;
    RETURN NEW;
END
$cutover$;
CREATE TRIGGER {dst_tg}
    BEFORE INSERT OR UPDATE OF {n}, {j} ON {dt}
    FOR EACH ROW EXECUTE FUNCTION {dst_fn}();",
        st = src.sql(),
        dt = dst.sql(),
        fill = lookup(&format!("NEW.{j}")),
    );
    let drop = format!(
        "DROP TRIGGER IF EXISTS {dst_tg} ON {dt};
DROP FUNCTION IF EXISTS {dst_fn}();
DROP TRIGGER IF EXISTS {src_tg} ON {st};
DROP FUNCTION IF EXISTS {src_fn}();",
        st = src.sql(),
        dt = dst.sql(),
    );
    x.part(i, Phase::DualWrite, Stage::Sync, apply, drop.clone());
    x.part(i, Phase::Contract, Stage::Unsync, drop, String::new());
    x.part(
        i,
        Phase::Contract,
        Stage::Schema,
        format!("ALTER TABLE {} DROP COLUMN {c};", src.sql()),
        String::new(),
    );
    let dst_key = op.to_key.clone().unwrap_or_else(|| vec!["id".to_string()]);
    let expr = lookup(&format!("{}.{j}", ident(&dst.name)));
    x.syncs.add(
        &dst,
        &dst_key,
        Group::Copy {
            col: new.to_string(),
            expr,
            op: i,
        },
    );
    x.hidden.push(format!("{}.{col}", src.plain()));
}
