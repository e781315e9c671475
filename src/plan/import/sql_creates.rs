//! The way back of statements that only create an object the rollback can drop by name: a type,
//! a sequence, a view, a trigger, a function, an extension. `OR REPLACE` and `IF NOT EXISTS`
//! forms have none (the object may predate the migration); neither do functions whose
//! parameters carry defaults (`DROP FUNCTION` takes the parameter list without them).

use squawk_syntax::ast;

use super::sql_syntax::text_of;

/// The rollback of `stmt` and what it drops, when `stmt` only creates one object.
pub(super) fn inverse(stmt: &ast::Stmt) -> Option<(String, &'static str)> {
    use ast::Stmt as S;
    let drop = match stmt {
        S::CreateType(t) => format!("DROP TYPE {}", text_of(&t.type_name()?)),
        S::CreateSequence(s) if s.if_not_exists().is_none() => {
            format!("DROP SEQUENCE {}", text_of(&s.sequence()?))
        }
        S::CreateView(v) if v.or_replace().is_none() => {
            format!("DROP VIEW {}", text_of(&v.view()?))
        }
        S::CreateTrigger(t) if t.or_replace().is_none() => format!(
            "DROP TRIGGER {} {}",
            text_of(&t.trigger()?),
            text_of(&t.on_relation()?)
        ),
        S::CreateExtension(e) if e.if_not_exists().is_none() => {
            format!("DROP EXTENSION {}", text_of(&e.extension()?))
        }
        S::CreateFunction(f) if f.or_replace().is_none() => {
            let params = text_of(&f.param_list()?);
            let upper = params.to_uppercase();
            if upper.contains("DEFAULT") || params.contains('=') {
                return None;
            }
            format!("DROP FUNCTION {}{params}", text_of(&f.name()?))
        }
        _ => return None,
    };
    Some((
        drop,
        "a new object: created in expand, dropped by the rollback",
    ))
}
