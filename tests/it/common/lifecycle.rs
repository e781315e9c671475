//! The lifecycle harness: one plan driven through the engine against a fresh database —
//! apply each phase, roll it back, apply it again, … then contract — with a hook at every
//! stage. It checks on its own that every rollback restores the catalog it found and that a
//! re-apply rebuilds what the first apply built; hooks assert what the operation under test
//! must have done (see [`super::catalog::Catalog`]).
//!
//! ```ignore
//! Lifecycle::new(PlanToml::new("add-col").phase(Phase::Expand, "ALTER …", "ALTER …"))
//!     .schema("CREATE TABLE public.t (id int PRIMARY KEY)")
//!     .after(Stage::Applied(Phase::Expand), async |db| {
//!         db.catalog().assert_column("public.t", "c", "bigint", true).await
//!     })
//!     .after(Stage::RolledBack(Phase::Expand), async |db| {
//!         db.catalog().assert_no_column("public.t", "c").await
//!     })
//!     .run_with_rollbacks()
//!     .await;
//! ```
//!
//! With [`Lifecycle::workloads`], an old-version application writes through the old shape from
//! before expand until contract and a new-version one through the new shape while the read
//! switch is applied, each on its own connection, concurrently with the engine; at every stage
//! the harness checks that neither failed, that the test's exact parity query finds nothing from
//! the backfill on, and that every row either wrote is there; before contract the plan's
//! generated checks must all pass (see [`super::workload`]).
//!
//! [`Lifecycle::start`] gives a [`LifecycleRun`] to drive step by step instead. Gates are not
//! under test here: each apply goes through a lead's override. At the end the audit chain must
//! be intact.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cutover::backfill;
use cutover::checks;
use cutover::control::audit::{self, Actor};
use cutover::db::DbConfig;
use cutover::engine::{self, EngineError, PhaseState, RunOptions};
use cutover::plan::{Phase, Plan};
use cutover::Outcome;
use tokio::sync::RwLock;
use tokio_postgres::Client;

use super::catalog::Catalog;
use super::plans::PlanToml;
use super::workload::{assert_rows_kept, Runner, Workloads};
use super::TestDb;

/// A point in the lifecycle where hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Right after the phase was applied (for the backfill phase: and the backfill ran to done).
    Applied(Phase),
    /// Right after the phase was rolled back.
    RolledBack(Phase),
}

/// What a hook sees: the database, a plain connection to it, and the plan.
pub struct LifecycleDb {
    /// The test's database.
    pub db: TestDb,
    /// A connection of its own (not the engine's).
    pub client: Client,
    /// The plan being driven.
    pub plan: Plan,
}

impl LifecycleDb {
    /// Catalog reads and assertions through [`LifecycleDb::client`].
    pub fn catalog(&self) -> Catalog<'_> {
        Catalog(&self.client)
    }

    /// Runs `sql` (any number of statements); panics with the SQL on failure.
    pub async fn exec(&self, sql: &str) {
        self.db.exec(sql).await;
    }

    /// The first column of the one row `sql` returns.
    pub async fn scalar<T: for<'r> tokio_postgres::types::FromSql<'r>>(&self, sql: &str) -> T {
        self.client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", super::describe(&e)))
            .get(0)
    }
}

type HookFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// A hook, type-erased.
trait Hook {
    fn call<'a>(&'a self, db: &'a LifecycleDb) -> HookFuture<'a>;
}

impl<F: AsyncFn(&LifecycleDb)> Hook for F {
    fn call<'a>(&'a self, db: &'a LifecycleDb) -> HookFuture<'a> {
        Box::pin(self(db))
    }
}

/// A plan, the schema it runs against, and the hooks to run at each [`Stage`].
pub struct Lifecycle {
    plan: Plan,
    server: Option<String>,
    setup: Vec<String>,
    hooks: Vec<(Stage, Box<dyn Hook>)>,
    workloads: Option<Workloads>,
}

impl Lifecycle {
    /// A lifecycle of the plan `toml` builds.
    pub fn new(toml: PlanToml) -> Lifecycle {
        Lifecycle::of(toml.plan())
    }

    /// A lifecycle of `plan`.
    pub fn of(plan: Plan) -> Lifecycle {
        Lifecycle {
            plan,
            server: None,
            setup: Vec::new(),
            hooks: Vec::new(),
            workloads: None,
        }
    }

    /// Runs on the server `url` (a cluster with special settings) instead of the shared one.
    pub fn on_server(mut self, url: &str) -> Self {
        self.server = Some(url.to_owned());
        self
    }

    /// SQL run on the fresh database before anything else (several calls run in order).
    pub fn schema(mut self, sql: &str) -> Self {
        self.setup.push(sql.to_owned());
        self
    }

    /// Runs `hook` each time the lifecycle reaches `stage` (in the order hooks were added).
    pub fn after(mut self, stage: Stage, hook: impl AsyncFn(&LifecycleDb) + 'static) -> Self {
        self.hooks.push((stage, Box::new(hook)));
        self
    }

    /// Runs the workloads of both versions during the lifecycle (see the module docs).
    pub fn workloads(mut self, workloads: Workloads) -> Self {
        self.workloads = Some(workloads);
        self
    }

    /// Creates the database and runs the schema SQL, then starts the old version's workload;
    /// the returned run is driven step by step.
    pub async fn start(self) -> LifecycleRun {
        let test = match self.server {
            Some(url) => TestDb::on(url).await,
            None => TestDb::new().await,
        };
        for sql in &self.setup {
            test.exec(sql).await;
        }
        let engine = test.control_client().await;
        let actor = Actor::current(&engine)
            .await
            .unwrap_or_else(|e| panic!("reading the current login: {e}"));
        let client = test.client().await;
        let gate = Arc::new(RwLock::new(()));
        let old = match &self.workloads {
            Some(w) => Some(Runner::start(
                "old",
                w.old,
                test.client().await,
                gate.clone(),
            )),
            None => None,
        };
        LifecycleRun {
            db: LifecycleDb {
                db: test,
                client,
                plan: self.plan,
            },
            engine,
            actor,
            hooks: self.hooks,
            workloads: self.workloads,
            gate,
            old,
            new: None,
            written: Vec::new(),
            backfilled: false,
            contracted: false,
        }
    }

    /// Applies every phase in order, through contract. Returns the database for more checks.
    pub async fn run(self) -> LifecycleDb {
        let mut run = self.start().await;
        for phase in Phase::ALL {
            run.reach(phase).await;
        }
        run.finish().await
    }

    /// For each reversible phase in order: apply; roll back (the catalog must be as before the
    /// apply); apply again (the catalog must be as after the first apply). With workloads, the
    /// read switch applied, every phase is then rolled back at once (after the new version
    /// wrote: the catalog must be the one found, its rows kept in the old shape) and applied
    /// again. Then contract, which must refuse a rollback. Returns the database for more checks.
    pub async fn run_with_rollbacks(self) -> LifecycleDb {
        let mut run = self.start().await;
        let pristine = run.fingerprint().await;
        for phase in Phase::ALL {
            if phase == Phase::Contract {
                break;
            }
            let before = run.fingerprint().await;
            run.reach(phase).await;
            let applied = run.fingerprint().await;
            run.rollback(phase).await;
            let after = run.fingerprint().await;
            let mut found: Vec<&str> = after.lines().collect();
            found.sort_unstable();
            assert_eq!(
                found,
                validation_kept(&before, &applied, &after),
                "rolling back {phase} did not restore the catalog"
            );
            run.stage(Stage::RolledBack(phase)).await;
            run.reach(phase).await;
            assert_eq!(
                run.fingerprint().await,
                applied,
                "re-applying {phase} built something else than the first apply"
            );
        }
        if run.workloads.is_some() {
            run.roll_back_all_and_reapply(&pristine).await;
        }
        run.reach(Phase::Contract).await;
        let refused = engine::rollback(
            &mut run.engine,
            &run.db.plan,
            &run.actor,
            None,
            &RunOptions::default(),
        )
        .await;
        assert!(
            matches!(refused, Err(EngineError::Refused(_))),
            "contract is irreversible, yet: {refused:?}"
        );
        run.finish().await
    }

    /// Applies every reversible phase, then rolls them all back in one call (last first): the
    /// catalog must be the one found before expand. Returns the database for more checks.
    pub async fn run_and_roll_back_all(self) -> LifecycleDb {
        let mut run = self.start().await;
        let pristine = run.fingerprint().await;
        let mut reversible: Vec<Phase> = Phase::ALL
            .into_iter()
            .filter(|p| *p != Phase::Contract)
            .collect();
        for phase in &reversible {
            run.reach(*phase).await;
        }
        run.stop_new().await;
        let r = engine::rollback(
            &mut run.engine,
            &run.db.plan,
            &run.actor,
            Some(Phase::Expand),
            &RunOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("rolling back every phase: {e}"));
        run.backfilled = false;
        reversible.reverse();
        let order: Vec<Phase> = r.rolled_back.iter().map(|p| p.phase).collect();
        assert_eq!(order, reversible, "phases roll back last first");
        for phase in reversible {
            run.assert_state(phase, PhaseState::RolledBack).await;
        }
        assert_eq!(
            run.fingerprint().await,
            pristine,
            "the catalog is not the one found before expand"
        );
        for phase in order {
            run.stage(Stage::RolledBack(phase)).await;
        }
        run.finish().await
    }
}

/// `before` as a rollback may leave it: a constraint `NOT VALID` before the apply, validated by
/// it (`applied`) and still validated after the rollback (`after`) counts as restored, since
/// `VALIDATE CONSTRAINT` has no inverse and a validated constraint enforces nothing more on new
/// rows. Every other line must match exactly. Lines come back sorted bytewise.
fn validation_kept<'a>(before: &'a str, applied: &str, after: &str) -> Vec<&'a str> {
    let has = |fingerprint: &str, line: &str| fingerprint.lines().any(|l| l == line);
    let mut lines: Vec<&str> = before
        .lines()
        .map(|line| match line.strip_suffix(" NOT VALID") {
            Some(valid)
                if line.starts_with("constraint ") && has(applied, valid) && has(after, valid) =>
            {
                valid
            }
            _ => line,
        })
        .collect();
    lines.sort_unstable();
    lines
}

/// A lifecycle under way, driven step by step: the engine's connection and the operator it
/// acts as, for tests that need steps the drivers do not take.
pub struct LifecycleRun {
    /// What hooks see.
    pub db: LifecycleDb,
    /// The engine's connection (control schema bootstrapped).
    pub engine: Client,
    /// The operator: the login the tests connect as, a lead of the plan.
    pub actor: Actor,
    hooks: Vec<(Stage, Box<dyn Hook>)>,
    workloads: Option<Workloads>,
    /// Held for writing while the harness checks and hooks run: the workloads wait.
    gate: Arc<RwLock<()>>,
    old: Option<Runner>,
    new: Option<Runner>,
    /// Ids written by workloads already stopped.
    written: Vec<i64>,
    /// The backfill phase is applied and contract is not (parity must hold).
    backfilled: bool,
    /// Contract is applied (rows are in the new shape).
    contracted: bool,
}

impl LifecycleRun {
    /// A fingerprint of the `public` schema's catalog.
    pub async fn fingerprint(&self) -> String {
        self.db.catalog().fingerprint().await
    }

    /// Lets each running workload write a few times in the new state, then — the workloads
    /// held — checks what they wrote and runs the hooks of `stage`.
    async fn stage(&mut self, stage: Stage) {
        for runner in [&self.old, &self.new].into_iter().flatten() {
            runner.settle(runner.iterations(), 3).await;
        }
        self.fail_fast(&format!("{stage:?}")).await;
        let _quiet = self.gate.write().await;
        self.verify_writes(&format!("at {stage:?}")).await;
        for (at, hook) in &self.hooks {
            if *at == stage {
                hook.call(&self.db).await;
            }
        }
    }

    /// From the read switch, with the new version's rows written: rolls every phase back in one
    /// call (the catalog must be `pristine`; the hooks of the expand rollback run), then applies
    /// them all again.
    async fn roll_back_all_and_reapply(&mut self, pristine: &str) {
        self.stop_new().await;
        engine::rollback(
            &mut self.engine,
            &self.db.plan,
            &self.actor,
            Some(Phase::Expand),
            &RunOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("rolling back every phase after the new version wrote: {e}"));
        self.backfilled = false;
        assert_eq!(
            self.fingerprint().await,
            pristine,
            "rolling back every phase did not restore the catalog found before expand"
        );
        self.stage(Stage::RolledBack(Phase::Expand)).await;
        for phase in Phase::ALL.into_iter().filter(|p| *p != Phase::Contract) {
            self.reach(phase).await;
        }
    }

    /// Stops (and so reports) a workload whose loop ended on an error.
    async fn fail_fast(&mut self, at: &str) {
        if self.old.as_ref().is_some_and(Runner::is_finished) {
            self.stop_old(at).await;
        }
        if self.new.as_ref().is_some_and(Runner::is_finished) {
            self.stop_new().await;
        }
    }

    /// Parity (once the backfill is applied) and every written row kept.
    async fn verify_writes(&self, at: &str) {
        let Some(w) = &self.workloads else {
            return;
        };
        if self.backfilled {
            let off: i64 = self.db.scalar(w.parity).await;
            assert_eq!(off, 0, "parity {at}: {}", w.parity);
        }
        let mut ids = self.written.clone();
        for runner in [&self.old, &self.new].into_iter().flatten() {
            ids.extend(runner.ids());
        }
        let table = if self.contracted {
            w.new_table
        } else {
            w.old_table
        };
        assert_rows_kept(&self.db.client, table, &ids, at).await;
    }

    async fn stop_old(&mut self, at: &str) {
        if let Some(runner) = self.old.take() {
            let (ids, iterations) = runner.stop(at).await;
            assert!(iterations > 0, "the old workload never ran");
            self.written.extend(ids);
        }
    }

    /// Stops the new version's workload (before its shape may go: a read-switch rollback).
    async fn stop_new(&mut self) {
        if let Some(runner) = self.new.take() {
            let (ids, _) = runner.stop("the read switch was left").await;
            self.written.extend(ids);
        }
    }

    /// With workloads, before contract: both stop, and the plan's generated checks must pass.
    async fn before_contract(&mut self) {
        if self.workloads.is_none() {
            return;
        }
        self.stop_new().await;
        self.stop_old("contract").await;
        self.verify_writes("before contract").await;
        let records = checks::run(&self.engine, &self.db.plan, None, &checks::Cancel::new())
            .await
            .unwrap_or_else(|e| panic!("running the generated checks: {e}"));
        for r in &records {
            assert_eq!(r.outcome, Outcome::Pass, "check {}: {}", r.name, r.summary);
        }
    }

    /// Applies `phase`, runs the backfill to done after the backfill phase, starts the new
    /// version's workload after the read switch, then checks the writes and runs the hooks.
    async fn reach(&mut self, phase: Phase) {
        if phase == Phase::Contract {
            self.before_contract().await;
        }
        self.apply(phase).await;
        if phase == Phase::Backfill && self.db.plan.spec.backfill.is_some() {
            self.run_backfill().await;
        }
        match phase {
            Phase::Backfill => self.backfilled = true,
            Phase::ReadSwitch => {
                if let Some(w) = &self.workloads {
                    let client = self.db.db.client().await;
                    self.new = Some(Runner::start("new", w.new, client, self.gate.clone()));
                }
            }
            Phase::Contract => {
                self.contracted = true;
                self.backfilled = false;
            }
            _ => {}
        }
        self.stage(Stage::Applied(phase)).await;
    }

    /// Overrides `phase`'s gate and applies it (nothing else: no backfill run, no hook).
    pub async fn apply(&mut self, phase: Phase) {
        let plan = &self.db.plan;
        engine::override_gate(
            &mut self.engine,
            plan,
            &self.actor,
            phase,
            "lifecycle test: gates are not under test",
        )
        .await
        .unwrap_or_else(|e| panic!("override of {phase}: {e}"));
        let r = engine::apply_phase(
            &mut self.engine,
            plan,
            &self.actor,
            phase,
            &RunOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {phase}: {e}"));
        assert!(r.changed, "{phase}: {}", r.message);
        self.assert_state(phase, PhaseState::Applied).await;
    }

    /// Runs the plan's backfill until it is done; one stopped by a rollback of its phase is
    /// resumed first, as an operator would.
    pub async fn run_backfill(&mut self) {
        let state: Option<String> = self
            .engine
            .query_opt(
                "SELECT state FROM cutover.backfill WHERE plan_id = $1",
                &[&self.db.plan.id()],
            )
            .await
            .unwrap_or_else(|e| panic!("reading the backfill state: {e}"))
            .map(|r| r.get(0));
        if state.as_deref() == Some("stopped") {
            backfill::resume(&mut self.engine, &self.db.plan, &self.actor)
                .await
                .unwrap_or_else(|e| panic!("resuming the backfill: {e}"));
        }
        let cfg = DbConfig::from_url(&self.db.db.url).unwrap_or_else(|e| panic!("{e}"));
        let (_keep_running, shutdown) = tokio::sync::watch::channel(false);
        let summary = backfill::run(
            cfg,
            self.db.plan.clone(),
            backfill::RunOptions::default(),
            shutdown,
        )
        .await
        .unwrap_or_else(|e| panic!("running the backfill: {e}"));
        assert_eq!(summary.outcome, backfill::RunOutcome::Done, "{summary:?}");
    }

    /// Rolls back the current phase, which must be `phase` (no hook). The new version's
    /// workload stops before the read switch is rolled back.
    pub async fn rollback(&mut self, phase: Phase) {
        if phase == Phase::ReadSwitch {
            self.stop_new().await;
        }
        let r = engine::rollback(
            &mut self.engine,
            &self.db.plan,
            &self.actor,
            None,
            &RunOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("rolling back {phase}: {e}"));
        let order: Vec<Phase> = r.rolled_back.iter().map(|p| p.phase).collect();
        assert_eq!(order, vec![phase], "{}", r.message);
        self.assert_state(phase, PhaseState::RolledBack).await;
        if phase == Phase::Backfill {
            self.backfilled = false;
        }
    }

    /// Panics unless `phase` is in state `want`.
    pub async fn assert_state(&self, phase: Phase, want: PhaseState) {
        let st = cutover::control::phases::load(&self.engine, self.db.plan.id())
            .await
            .unwrap_or_else(|e| panic!("loading the phases: {e}"));
        assert_eq!(st.phase(phase).state, want, "{phase}");
    }

    /// Stops the workloads (their rows must be kept), checks the audit chain is intact and
    /// hands the database over.
    pub async fn finish(mut self) -> LifecycleDb {
        self.stop_new().await;
        self.stop_old("the end").await;
        self.verify_writes("at the end").await;
        let verdict = audit::verify(&self.engine)
            .await
            .unwrap_or_else(|e| panic!("verifying the audit chain: {e}"));
        assert!(
            matches!(verdict, audit::Verification::Intact { .. }),
            "{verdict:?}"
        );
        self.db
    }
}
