//! Catalog reads and assertions for schema-change tests: tables, columns (type, nullability),
//! indexes (validity), constraints (validation), triggers, functions, and a fingerprint of the
//! whole `public` schema to prove a rollback restored it.
//!
//! Names are `schema.name` (or bare, for `public`); each assertion panics naming the object.

use tokio_postgres::Client;

/// A column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// `format_type` of the column, e.g. `bigint`, `numeric(14,2)`.
    pub type_name: String,
    /// Whether the column is `NOT NULL`.
    pub not_null: bool,
}

/// A constraint as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// `pg_get_constraintdef`, e.g. `CHECK ((n > 0)) NOT VALID`.
    pub definition: String,
    /// Whether it is validated (`NOT VALID` constraints are not).
    pub validated: bool,
}

/// Catalog reads through one connection.
#[derive(Clone, Copy)]
pub struct Catalog<'c>(pub &'c Client);

impl Catalog<'_> {
    async fn exists(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> bool {
        self.0
            .query_one(&format!("SELECT EXISTS ({sql})"), params)
            .await
            .unwrap_or_else(|e| panic!("catalog read failed: {e}\n{sql}"))
            .get(0)
    }

    /// Whether the table (or any relation) `table` exists.
    pub async fn table_exists(&self, table: &str) -> bool {
        self.exists(
            "SELECT to_regclass($1) WHERE to_regclass($1) IS NOT NULL",
            &[&table],
        )
        .await
    }

    /// The column `table.column`, if it exists.
    pub async fn column(&self, table: &str, column: &str) -> Option<Column> {
        self.0
            .query_opt(
                "SELECT format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a
                  WHERE a.attrelid = to_regclass($1) AND a.attname = $2
                    AND a.attnum > 0 AND NOT a.attisdropped",
                &[&table, &column],
            )
            .await
            .unwrap_or_else(|e| panic!("reading column {table}.{column}: {e}"))
            .map(|r| Column {
                type_name: r.get(0),
                not_null: r.get(1),
            })
    }

    /// Whether the index `index` exists and is valid (`None`: it does not exist).
    pub async fn index_valid(&self, index: &str) -> Option<bool> {
        self.0
            .query_opt(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
                &[&index],
            )
            .await
            .unwrap_or_else(|e| panic!("reading index {index}: {e}"))
            .map(|r| r.get(0))
    }

    /// The constraint `name` on `table`, if it exists.
    pub async fn constraint(&self, table: &str, name: &str) -> Option<Constraint> {
        self.0
            .query_opt(
                "SELECT pg_get_constraintdef(oid), convalidated FROM pg_constraint
                  WHERE conrelid = to_regclass($1) AND conname = $2",
                &[&table, &name],
            )
            .await
            .unwrap_or_else(|e| panic!("reading constraint {name} on {table}: {e}"))
            .map(|r| Constraint {
                definition: r.get(0),
                validated: r.get(1),
            })
    }

    /// Whether the trigger `name` exists on `table`.
    pub async fn trigger_exists(&self, table: &str, name: &str) -> bool {
        self.exists(
            "SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2",
            &[&table, &name],
        )
        .await
    }

    /// Whether a function named `name` (`schema.name`, any arguments) exists.
    pub async fn function_exists(&self, name: &str) -> bool {
        let (schema, bare) = name.split_once('.').unwrap_or(("public", name));
        self.exists(
            "SELECT 1 FROM pg_proc WHERE pronamespace = to_regnamespace($1) AND proname = $2",
            &[&schema, &bare],
        )
        .await
    }

    /// Panics unless the table exists.
    pub async fn assert_table(&self, table: &str) {
        assert!(self.table_exists(table).await, "table {table} is missing");
    }

    /// Panics if the table exists.
    pub async fn assert_no_table(&self, table: &str) {
        assert!(
            !self.table_exists(table).await,
            "table {table} still exists"
        );
    }

    /// Panics unless `table.column` exists with the type `type_name` and the nullability
    /// `nullable`.
    pub async fn assert_column(&self, table: &str, column: &str, type_name: &str, nullable: bool) {
        let found = self.column(table, column).await;
        assert_eq!(
            found,
            Some(Column {
                type_name: type_name.to_owned(),
                not_null: !nullable,
            }),
            "column {table}.{column}"
        );
    }

    /// Panics if `table.column` exists.
    pub async fn assert_no_column(&self, table: &str, column: &str) {
        let found = self.column(table, column).await;
        assert_eq!(found, None, "column {table}.{column} still exists");
    }

    /// Panics unless the index exists and is valid.
    pub async fn assert_valid_index(&self, index: &str) {
        let valid = self.index_valid(index).await;
        assert_eq!(valid, Some(true), "index {index} (None: missing)");
    }

    /// Panics if the index exists (valid or not).
    pub async fn assert_no_index(&self, index: &str) {
        let valid = self.index_valid(index).await;
        assert_eq!(valid, None, "index {index} still exists");
    }

    /// Panics unless the constraint exists and its validation state is `validated`.
    pub async fn assert_constraint(&self, table: &str, name: &str, validated: bool) {
        let found = self.constraint(table, name).await;
        assert_eq!(
            found.as_ref().map(|c| c.validated),
            Some(validated),
            "constraint {name} on {table}: {found:?}"
        );
    }

    /// Panics if the constraint exists.
    pub async fn assert_no_constraint(&self, table: &str, name: &str) {
        let found = self.constraint(table, name).await;
        assert_eq!(found, None, "constraint {name} on {table} still exists");
    }

    /// Panics unless the trigger exists on `table` (`present`) or does not (`!present`).
    pub async fn assert_trigger(&self, table: &str, name: &str, present: bool) {
        assert_eq!(
            self.trigger_exists(table, name).await,
            present,
            "trigger {name} on {table} should {}exist",
            if present { "" } else { "not " }
        );
    }

    /// Panics unless the function exists (`present`) or does not (`!present`).
    pub async fn assert_function(&self, name: &str, present: bool) {
        assert_eq!(
            self.function_exists(name).await,
            present,
            "function {name} should {}exist",
            if present { "" } else { "not " }
        );
    }

    /// A fingerprint of schema `public`: columns (type, nullability, default, comment),
    /// relations (with replica identity and persistence), triggers, functions (by source), enum
    /// and domain types, constraints and indexes (with validity), one sorted line each.
    pub async fn fingerprint(&self) -> String {
        self.0
            .query_one(
                "SELECT coalesce(string_agg(x, E'\\n' ORDER BY x), '') FROM (
                   SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                          || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                          || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
                          || coalesce(' comment ' || col_description(c.oid, a.attnum), '') AS x
                     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                    WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
                   UNION ALL
                   SELECT 'rel ' || relname || ' ' || relkind::text || ' identity ' || relreplident::text
                          || ' persistence ' || relpersistence::text
                     FROM pg_class WHERE relnamespace = 'public'::regnamespace
                   UNION ALL
                   SELECT 'identity index ' || indexrelid::regclass::text FROM pg_index
                    WHERE indisreplident AND indrelid::regclass::text NOT LIKE 'cutover.%'
                   UNION ALL
                   SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass::text FROM pg_trigger
                    WHERE NOT tgisinternal AND tgrelid::regclass::text NOT LIKE 'cutover.%'
                   UNION ALL
                   SELECT 'function ' || proname || ' ' || md5(prosrc) FROM pg_proc WHERE pronamespace = 'public'::regnamespace
                   UNION ALL
                   SELECT 'type ' || typname || ' ' || typtype::text FROM pg_type
                    WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'd')
                   UNION ALL
                   SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
                    WHERE connamespace = 'public'::regnamespace
                   UNION ALL
                   SELECT 'index ' || pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
                     FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'public'::regnamespace
                 ) t",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("catalog fingerprint: {e}"))
            .get(0)
    }
}

/// Every row of every table in `schemas`, hashed per table, then every sequence's position:
/// what a command that should write nothing must leave as it found it.
pub async fn data_fingerprint(client: &Client, schemas: &[&str]) -> Vec<(String, String)> {
    let schemas: Vec<String> = schemas.iter().map(|s| s.to_string()).collect();
    let tables: Vec<String> = client
        .query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
              WHERE schemaname = ANY($1) ORDER BY 1",
            &[&schemas],
        )
        .await
        .unwrap_or_else(|e| panic!("listing tables: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let sql = format!(
            "SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x"
        );
        let hash: String = client
            .query_one(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("hashing {t}: {e}"))
            .get(0);
        out.push((t, hash));
    }
    for r in client
        .query(
            "SELECT format('%I.%I', schemaname, sequencename), coalesce(last_value, 0)::text
               FROM pg_sequences WHERE schemaname = ANY($1) ORDER BY 1",
            &[&schemas],
        )
        .await
        .unwrap_or_else(|e| panic!("listing sequences: {e}"))
    {
        out.push((r.get(0), r.get(1)));
    }
    out
}
