//! UI state and key handling. Keys become [`Action`]s (mostly worker [`Command`]s); nothing here
//! touches the database or the terminal, so every key path is unit-testable.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui_logger::{LevelFilter, TuiWidgetEvent, TuiWidgetState};

use super::next;
use super::view::{self, Focus, Overlay, ViewModel};
use crate::control::backfill::State as BackfillState;
use crate::outcome::Outcome;
use crate::plan::{Phase, Plan, Role};
use crate::rules::{CategoryKind, ItemKind};
use crate::worker::{ActionResult, AppVersion, Command, ConnState, Snapshot, WorkerEvent};

/// A confirmation box ignores keys for this long after it opens, so a key-repeat or a paste
/// burst cannot confirm it.
pub const CONFIRM_ARMING: Duration = Duration::from_millis(250);
/// Status messages disappear after this long.
const STATUS_TTL: Duration = Duration::from_secs(8);
/// Chunk-time bounds for `+`/`-`.
/// Columns `<` and `>` scroll the focused pane sideways.
const HSCROLL_STEP: u16 = 8;

const TUNE_MIN_MS: i64 = 50;
const TUNE_MAX_MS: i64 = 10_000;

/// What the event loop should do after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing beyond a redraw.
    None,
    /// Leave the TUI.
    Quit,
    /// Send a command to the worker.
    Send(Command),
}

/// The UI's state.
pub struct App {
    plan: Plan,
    database: String,
    read_only: bool,
    demo: bool,
    metrics: Option<String>,
    /// Commands sent and not answered yet (the same one is not sent twice).
    in_flight: Vec<Command>,
    conn: Option<ConnState>,
    snapshot: Option<Snapshot>,
    ui: view::UiView,
    status_at: Option<Instant>,
    overlay_at: Instant,
    level: LevelFilter,
    /// The log widget's scroll and filter state.
    pub log_state: TuiWidgetState,
}

const LEVELS: [LevelFilter; 5] = [
    LevelFilter::Error,
    LevelFilter::Warn,
    LevelFilter::Info,
    LevelFilter::Debug,
    LevelFilter::Trace,
];

impl App {
    /// A fresh UI for `plan` on `database` (already masked).
    pub fn new(plan: Plan, database: String, read_only: bool) -> App {
        let level = LevelFilter::Info;
        App {
            plan,
            database,
            read_only,
            demo: false,
            metrics: None,
            in_flight: Vec::new(),
            conn: None,
            snapshot: None,
            ui: view::UiView {
                log_level: level.to_string().to_lowercase(),
                ..view::UiView::default()
            },
            status_at: None,
            overlay_at: Instant::now(),
            level,
            log_state: TuiWidgetState::new().set_default_display_level(level),
        }
    }

    /// Says what this process can steer besides the database: the demo's app (`:app`) and
    /// its own metrics endpoint (`:scrape`).
    pub fn set_environment(&mut self, demo: bool, metrics: Option<String>) {
        self.demo = demo;
        self.metrics = metrics;
    }

    /// The view model for the current state.
    pub fn view(&self) -> ViewModel {
        let mut vm = view::build(
            &self.plan,
            &self.database,
            self.read_only,
            self.conn.as_ref(),
            self.snapshot.as_ref(),
        );
        let connected = self.conn.as_ref().is_some_and(ConnState::is_connected);
        // A viewer sees what the operators' next step is, not a key it could press.
        let viewer = if self.read_only {
            next::Viewer::ReadOnly
        } else {
            next::Viewer::Operator
        };
        vm.next = match (connected, self.ui.pending.first()) {
            (false, _) => None,
            (true, Some(running)) => Some(next::running(running, viewer)),
            (true, None) => {
                next::next_step(&self.plan, self.snapshot.as_ref(), &vm.header.roles, viewer)
            }
        };
        vm.demo = self.demo;
        vm.metrics_url = self.metrics.clone();
        if let Some(url) = &vm.metrics_url {
            // Say where the endpoint is while nobody has scraped it.
            if let Some(c) = vm
                .scorecard
                .iter_mut()
                .find(|c| c.kind == CategoryKind::Observability)
                .filter(|c| c.evidence.first().is_some_and(|e| e.0 != Outcome::Pass))
            {
                c.evidence.insert(
                    1,
                    (
                        Outcome::Inconclusive,
                        format!("endpoint {url}: :scrape (or curl) scrapes it"),
                    ),
                );
            }
        }
        vm.ui = self.ui.clone();
        vm
    }

    /// Drops a status message once it is old. Returns true when something changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        match self.status_at {
            Some(t) if now.duration_since(t) >= STATUS_TTL => {
                self.ui.status = None;
                self.status_at = None;
                true
            }
            _ => false,
        }
    }

    /// Shows a hint in the status line (it expires like any status).
    pub fn hint(&mut self, text: &str) {
        self.status(text, false);
    }

    fn status(&mut self, text: impl Into<String>, error: bool) {
        self.ui.status = Some((text.into(), error));
        self.status_at = Some(Instant::now());
    }

    fn open(&mut self, overlay: Overlay, now: Instant) {
        self.ui.overlay = Some(overlay);
        self.overlay_at = now;
    }

    /// Applies a worker event.
    pub fn on_worker(&mut self, ev: WorkerEvent) {
        match ev {
            WorkerEvent::Conn(c) => {
                if let ConnState::Retrying { error, .. } = &c {
                    if self.conn.as_ref().is_some_and(ConnState::is_connected) {
                        self.status(format!("lost the database: {error}"), true);
                    }
                }
                self.conn = Some(c);
            }
            WorkerEvent::Snapshot(s) => self.snapshot = Some(*s),
            WorkerEvent::Action { command, result } => self.on_result(&command, result),
        }
    }

    fn on_result(&mut self, command: &Command, result: ActionResult) {
        if let Some(i) = self.in_flight.iter().position(|c| c == command) {
            self.in_flight.remove(i);
        }
        let label = command.to_string();
        if let Some(i) = self.ui.pending.iter().position(|p| *p == label) {
            self.ui.pending.remove(i);
        }
        match result {
            Ok(msg) => self.status(msg, false),
            Err(msg) => self.status(format!("{label}: {msg}"), true),
        }
    }

    /// Checks that a change may be sent now; otherwise says why in the status line.
    fn send(&mut self, cmd: Command) -> Action {
        if self.read_only {
            self.status(format!("{cmd} refused: {}", cmd.read_only_refusal()), true);
            return Action::None;
        }
        match &self.conn {
            Some(ConnState::Connected) => {}
            Some(ConnState::Retrying { error, .. }) => {
                self.status(
                    format!("{cmd} refused: the database is unreachable ({error}); reconnecting"),
                    true,
                );
                return Action::None;
            }
            _ => {
                self.status(
                    format!("{cmd} refused: not connected to the database yet"),
                    true,
                );
                return Action::None;
            }
        }
        if self.in_flight.contains(&cmd) {
            self.status(format!("{cmd} is already running"), false);
            return Action::None;
        }
        self.ui.pending.push(cmd.to_string());
        self.in_flight.push(cmd.clone());
        Action::Send(cmd)
    }

    /// True when no overlay, command line or search is open: the keys that switch between
    /// migrations may act without cutting into what this one is doing.
    pub fn idle(&self) -> bool {
        self.ui.overlay.is_none()
            && self.ui.command_line.is_none()
            && self.ui.search_input.is_none()
    }

    /// The plan's id.
    pub fn plan_id(&self) -> &str {
        self.plan.id()
    }

    /// Handles one key at time `now`.
    pub fn on_key(&mut self, key: KeyEvent, now: Instant) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            if self.ui.overlay == Some(Overlay::ConfirmQuit) {
                self.ui.overlay = None;
            } else {
                self.open(Overlay::ConfirmQuit, now);
            }
            return Action::None;
        }
        if let Some(overlay) = self.ui.overlay.clone() {
            return self.on_overlay_key(overlay, key, now);
        }
        if let Some(text) = self.ui.command_line.clone() {
            return self.on_command_key(text, key, now);
        }
        if let Some(text) = self.ui.search_input.clone() {
            self.on_search_key(text, key);
            return Action::None;
        }
        self.on_normal_key(key, now)
    }

    fn on_overlay_key(&mut self, overlay: Overlay, key: KeyEvent, now: Instant) -> Action {
        let armed = now.duration_since(self.overlay_at) >= CONFIRM_ARMING;
        let big_y = key.code == KeyCode::Char('Y');
        match overlay {
            Overlay::ConfirmRollback(r) => {
                if !armed {
                    return Action::None;
                }
                self.ui.overlay = None;
                if big_y {
                    return self.send(Command::Rollback { confirmed: r.plan });
                }
                self.status("rollback cancelled: nothing was done", false);
                Action::None
            }
            Overlay::ConfirmAdvance { phase } => {
                if !armed {
                    return Action::None;
                }
                self.ui.overlay = None;
                if big_y {
                    return self.send(Command::Advance);
                }
                self.status(format!("{phase} not applied: cancelled"), false);
                Action::None
            }
            Overlay::ConfirmQuit => {
                self.ui.overlay = None;
                if matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                    return Action::Quit;
                }
                Action::None
            }
            Overlay::Help | Overlay::Blockers { .. } => {
                self.ui.overlay = None;
                Action::None
            }
        }
    }

    fn on_search_key(&mut self, mut text: String, key: KeyEvent) {
        match key.code {
            KeyCode::Esc => {
                self.ui.search_input = None;
                self.ui.search.clear();
            }
            KeyCode::Enter => {
                self.ui.search_input = None;
                self.ui.search = text;
            }
            KeyCode::Backspace => {
                text.pop();
                self.ui.search = text.clone();
                self.ui.search_input = Some(text);
            }
            KeyCode::Char(c) => {
                text.push(c);
                self.ui.search = text.clone();
                self.ui.search_input = Some(text);
            }
            _ => {}
        }
    }

    fn on_command_key(&mut self, mut text: String, key: KeyEvent, now: Instant) -> Action {
        match key.code {
            KeyCode::Esc => {
                self.ui.command_line = None;
                Action::None
            }
            KeyCode::Enter => {
                self.ui.command_line = None;
                self.run_command_line(text.trim(), now)
            }
            KeyCode::Backspace => {
                if text.pop().is_none() {
                    self.ui.command_line = None;
                } else {
                    self.ui.command_line = Some(text);
                }
                Action::None
            }
            KeyCode::Char(c) => {
                text.push(c);
                self.ui.command_line = Some(text);
                Action::None
            }
            _ => Action::None,
        }
    }

    /// Runs a `:` command (without the colon).
    pub fn run_command_line(&mut self, line: &str, now: Instant) -> Action {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match word {
            "" => Action::None,
            "q" | "quit" | "q!" => Action::Quit,
            "help" | "h" => {
                self.open(Overlay::Help, now);
                Action::None
            }
            "signoff" | "sign" => self.signoff(rest),
            "rollback" => self.ask_rollback(now),
            "advance" => self.advance(now),
            "pause" => self.send(Command::Pause),
            "resume" => self.send(Command::Resume),
            "checks" | "check" => self.send(Command::RunChecks),
            "rehearse" => self.send(Command::Rehearse),
            "scrape" => self.send(Command::Scrape),
            "attest" => self.attest(rest),
            "app" => self.roll_app(rest),
            "zoom" | "z" => {
                self.ui.zoom = !self.ui.zoom;
                Action::None
            }
            "tune" => match rest.trim_end_matches("ms").parse::<u32>() {
                Ok(ms) if ms > 0 => self.send(Command::Tune {
                    target_chunk_ms: ms,
                }),
                _ => {
                    self.status(
                        ":tune needs a chunk time in milliseconds, e.g. :tune 250",
                        true,
                    );
                    Action::None
                }
            },
            "note" => {
                if rest.is_empty() {
                    self.status(
                        ":note needs text, e.g. :note paused for the 02:00 batch job",
                        true,
                    );
                    return Action::None;
                }
                self.send(Command::Note {
                    text: rest.to_string(),
                })
            }
            "flag" => {
                let mut parts = rest.split_whitespace();
                let name = parts.next();
                let value = parts.next().map(str::to_ascii_lowercase);
                match (name, value.as_deref()) {
                    (Some(name), Some("on" | "true" | "1")) => self.send(Command::Flag {
                        name: name.to_string(),
                        enabled: true,
                    }),
                    (Some(name), Some("off" | "false" | "0")) => self.send(Command::Flag {
                        name: name.to_string(),
                        enabled: false,
                    }),
                    _ => {
                        self.status(":flag needs a name and on|off, e.g. :flag accounts.read_balance_cents off", true);
                        Action::None
                    }
                }
            }
            "level" => match LEVELS
                .iter()
                .find(|l| l.to_string().eq_ignore_ascii_case(rest))
            {
                Some(l) => {
                    self.set_level(*l);
                    Action::None
                }
                None => {
                    self.status(":level takes error, warn, info, debug or trace", true);
                    Action::None
                }
            },
            other => {
                self.status(format!("unknown command :{other} (try :help)"), true);
                Action::None
            }
        }
    }

    fn attest(&mut self, rest: &str) -> Action {
        let usage = ":attest needs a category and where to look, e.g. :attest observability https://grafana.example.com/d/ledger";
        let mut parts = rest.split_whitespace();
        let (Some(category), Some(url), None) = (parts.next(), parts.next(), parts.next()) else {
            self.status(usage, true);
            return Action::None;
        };
        match CategoryKind::from_key(&category.to_ascii_lowercase()) {
            Some(c) if c.attestable() => self.send(Command::Attest {
                category: c,
                url: url.to_string(),
            }),
            Some(c) => {
                self.status(
                    format!(
                        "{} is judged from automated evidence only; :attest takes observability",
                        c.title()
                    ),
                    true,
                );
                Action::None
            }
            None => {
                self.status(format!("unknown category `{category}`: {usage}"), true);
                Action::None
            }
        }
    }

    fn roll_app(&mut self, rest: &str) -> Action {
        if !self.demo {
            self.status(
                ":app rolls the demo's application; this command center steers none",
                true,
            );
            return Action::None;
        }
        let version = match rest.parse::<AppVersion>() {
            Ok(v) => v,
            Err(e) => {
                self.status(format!("{e}: :app v1 or :app v2"), true);
                return Action::None;
            }
        };
        if let Some(snap) = &self.snapshot {
            if let Some(why) = version.refusal(|p| snap.phase_state(p)) {
                self.status(format!(":app {version} refused: {why}"), true);
                return Action::None;
            }
        }
        self.send(Command::App { version })
    }

    fn set_level(&mut self, level: LevelFilter) {
        self.level = level;
        self.ui.log_level = level.to_string().to_lowercase();
        self.log_state = TuiWidgetState::new().set_default_display_level(level);
    }

    fn on_normal_key(&mut self, key: KeyEvent, now: Instant) -> Action {
        match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('?') => {
                self.open(Overlay::Help, now);
                Action::None
            }
            KeyCode::Char(':') => {
                self.ui.command_line = Some(String::new());
                Action::None
            }
            KeyCode::Char('/') => {
                self.ui.search_input = Some(String::new());
                self.ui.search.clear();
                self.ui.focus = Focus::Log;
                Action::None
            }
            KeyCode::Esc => {
                self.ui.search.clear();
                self.ui.status = None;
                self.log_state.transition(TuiWidgetEvent::EscapeKey);
                Action::None
            }
            KeyCode::Tab | KeyCode::Right => {
                self.ui.focus = self.ui.focus.step(true);
                (self.ui.scroll, self.ui.hscroll) = (0, 0);
                Action::None
            }
            KeyCode::BackTab | KeyCode::Left => {
                self.ui.focus = self.ui.focus.step(false);
                (self.ui.scroll, self.ui.hscroll) = (0, 0);
                Action::None
            }
            KeyCode::Char('>') => {
                self.ui.hscroll = self.ui.hscroll.saturating_add(HSCROLL_STEP).min(400);
                Action::None
            }
            KeyCode::Char('<') => {
                self.ui.hscroll = self.ui.hscroll.saturating_sub(HSCROLL_STEP);
                Action::None
            }
            KeyCode::Up | KeyCode::PageUp => {
                if self.ui.focus == Focus::Log {
                    self.log_state.transition(TuiWidgetEvent::PrevPageKey);
                } else {
                    let step = if key.code == KeyCode::Up { 1 } else { 10 };
                    self.ui.scroll = self.ui.scroll.saturating_sub(step);
                }
                Action::None
            }
            KeyCode::Down | KeyCode::PageDown => {
                if self.ui.focus == Focus::Log {
                    self.log_state.transition(TuiWidgetEvent::NextPageKey);
                } else {
                    let step = if key.code == KeyCode::Down { 1 } else { 10 };
                    self.ui.scroll = self.ui.scroll.saturating_add(step).min(200);
                }
                Action::None
            }
            KeyCode::Char('l') => {
                let i = LEVELS.iter().position(|l| *l == self.level).unwrap_or(2);
                self.set_level(LEVELS[(i + 1) % LEVELS.len()]);
                Action::None
            }
            KeyCode::Char('s') => self.signoff(""),
            KeyCode::Char(' ') => self.toggle_pause(),
            KeyCode::Char('+') | KeyCode::Char('=') => self.retune(true),
            KeyCode::Char('-') | KeyCode::Char('_') => self.retune(false),
            KeyCode::Char('c') => self.send(Command::RunChecks),
            KeyCode::Char('a') => self.advance(now),
            KeyCode::Char('R') => self.ask_rollback(now),
            KeyCode::Char('z') => {
                self.ui.zoom = !self.ui.zoom;
                (self.ui.scroll, self.ui.hscroll) = (0, 0);
                Action::None
            }
            _ => Action::None,
        }
    }

    fn signoff(&mut self, comment: &str) -> Action {
        let Some(snap) = &self.snapshot else {
            self.status("sign-off refused: no snapshot from the database yet", true);
            return Action::None;
        };
        let Some(gate) = snap.gate() else {
            self.status("nothing to sign: every phase is applied", true);
            return Action::None;
        };
        let Some(actor) = &snap.actor else {
            self.status(
                "sign-off refused: who I am is unknown until connected",
                true,
            );
            return Action::None;
        };
        let mine = self.plan.roles_of(&actor.login);
        let open: Vec<Role> = gate
            .items
            .iter()
            .filter(|i| i.kind == ItemKind::Signoff && i.outcome != Outcome::Pass)
            .map(|i| Role(i.name.clone()))
            .filter(|r| mine.contains(r))
            .collect();
        if open.is_empty() {
            let needed: Vec<String> = self
                .plan
                .gate(gate.phase)
                .signoffs
                .iter()
                .map(|r| r.as_str().to_string())
                .collect();
            let msg = if needed.is_empty() {
                format!("the {} gate needs no sign-off", gate.phase)
            } else if mine.iter().any(|r| needed.iter().any(|n| n == r.as_str())) {
                format!(
                    "you already signed the {} gate for all your roles",
                    gate.phase
                )
            } else {
                format!(
                    "{} holds none of the roles the {} gate needs ({})",
                    actor.login,
                    gate.phase,
                    needed.join(", ")
                )
            };
            self.status(msg, true);
            return Action::None;
        }
        let phase = gate.phase;
        self.send(Command::Signoff {
            gate: phase,
            roles: open,
            comment: comment.to_string(),
        })
    }

    fn toggle_pause(&mut self) -> Action {
        let state = self
            .snapshot
            .as_ref()
            .and_then(|s| s.backfill.as_ref())
            .map(|b| b.state);
        match state {
            Some(
                BackfillState::Running
                | BackfillState::Throttled
                | BackfillState::Pacing
                | BackfillState::Idle,
            ) => self.send(Command::Pause),
            Some(BackfillState::Paused | BackfillState::Stopped) => self.send(Command::Resume),
            Some(other) => {
                self.status(
                    format!("the backfill is {other}: nothing to pause or resume"),
                    true,
                );
                Action::None
            }
            None => {
                self.status("the backfill has not started: nothing to pause", true);
                Action::None
            }
        }
    }

    fn retune(&mut self, up: bool) -> Action {
        let current = self
            .snapshot
            .as_ref()
            .and_then(|s| s.backfill.as_ref())
            .map(|b| b.target_chunk_ms);
        let Some(ms) = current else {
            self.status("the backfill has not started: nothing to tune", true);
            return Action::None;
        };
        let next = if up {
            (ms as f64 * 1.25).round() as i64
        } else {
            (ms as f64 / 1.25).round() as i64
        }
        .clamp(TUNE_MIN_MS, TUNE_MAX_MS);
        if next == ms {
            self.status(format!("chunk target already at its limit ({ms} ms)"), true);
            return Action::None;
        }
        self.send(Command::Tune {
            target_chunk_ms: next as u32,
        })
    }

    fn advance(&mut self, now: Instant) -> Action {
        let Some(gate) = self.snapshot.as_ref().and_then(|s| s.gate().cloned()) else {
            self.status(
                "nothing to advance: every phase is applied (or no snapshot yet)",
                true,
            );
            return Action::None;
        };
        if gate.outcome != Outcome::Pass {
            self.open(
                Overlay::Blockers {
                    phase: gate.phase,
                    lines: gate.blockers.clone(),
                },
                now,
            );
            return Action::None;
        }
        if self.read_only {
            return self.send(Command::Advance);
        }
        if !self.plan.phase(gate.phase).reversible() {
            self.open(Overlay::ConfirmAdvance { phase: gate.phase }, now);
            return Action::None;
        }
        self.send(Command::Advance)
    }

    fn ask_rollback(&mut self, now: Instant) -> Action {
        if self.read_only {
            self.status("read-only mode: rollback refused", true);
            return Action::None;
        }
        let vm = self.view();
        match (vm.timeline.rollback, vm.timeline.current) {
            (Some(r), _) => {
                self.open(Overlay::ConfirmRollback(r), now);
            }
            (None, Some(p)) => {
                self.status(format!("{p} is irreversible: there is no rollback"), true)
            }
            (None, None) => self.status("nothing to roll back: no phase is applied", true),
        }
        Action::None
    }

    /// The phase the gate guards, if any (for tests and the demo).
    pub fn next_phase(&self) -> Option<Phase> {
        self.snapshot.as_ref().and_then(|s| s.next_phase())
    }
}
