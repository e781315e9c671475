//! The full-screen command center.
//!
//! Architecture: the [`crate::worker`] task owns every database connection and sends
//! snapshots and action results over a channel; this module owns the terminal. The event loop
//! waits on crossterm's `EventStream`, the worker channel, a slow tick and signals — it never
//! awaits the database — and redraws from [`App::view`] with [`draw`], a pure function of the
//! view model.

pub mod app;
pub(crate) mod next;
pub(crate) mod panes;
pub(crate) mod progress;
pub mod roster;
pub mod slots;
pub mod switcher;
pub(crate) mod theme;
pub mod view;

#[cfg(test)]
mod tests;

use std::task::Poll;
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::{DefaultTerminal, Frame};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::db::DbConfig;
use crate::plan::Plan;
use crate::worker::{self, WorkerEvent, WorkerOptions};
use app::{Action, App};
use panes::log::LogSource;
use switcher::Switcher;
use theme::Theme;
use view::{Focus, Overlay, ViewModel};

/// Redraw at least this often (log lines, ages, status expiry).
const TICK: Duration = Duration::from_secs(1);

/// How `cutover tui` / `cutover demo` start the command center.
#[derive(Debug, Clone)]
pub struct Options {
    /// The plans, at least one; the first is on screen at the start, `m`, `]` and `[` switch
    /// between them when there are several.
    pub plans: Vec<Plan>,
    /// The server.
    pub db: DbConfig,
    /// Block every change.
    pub read_only: bool,
    /// A first status line of the first plan (e.g. the demo's "press s to sign off").
    pub hint: Option<String>,
    /// The application `:app` rolls (the demo's), if any; steered from the first plan.
    pub app: Option<worker::AppHandle>,
    /// This process's metrics endpoint, if it serves one (`:scrape` scrapes it): `/metrics` with
    /// one plan, `/metrics/PLAN_ID` for each of several.
    pub metrics: Option<std::net::SocketAddr>,
}

/// Sends tracing events to the log pane. Safe to call more than once.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUTOVER_LOG")
        // `audit` events of this process are left out: the worker logs every audit entry of
        // every process from the database (target `trail`), once.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn,audit=warn")
        });
    let installed = tracing_subscriber::registry()
        .with(tui_logger::TuiTracingSubscriberLayer)
        .with(filter)
        .try_init()
        .is_ok();
    if installed {
        // No `init_logger`: its mover thread wakes 100 times a second. The event loop moves
        // new events into the pane's buffer before each redraw instead.
        tui_logger::set_default_level(tui_logger::LevelFilter::Trace);
    }
}

/// One open migration's worker, split so the event loop can wait on every event channel.
struct Worker {
    plan_id: String,
    commands: mpsc::UnboundedSender<worker::Command>,
    task: JoinHandle<()>,
}

/// Runs the command center until the user quits. Restores the terminal on every exit path
/// (return, error, panic, SIGTERM/SIGHUP).
pub async fn run(opts: Options) -> anyhow::Result<()> {
    init_logging();
    let mut apps = Vec::new();
    let mut workers = Vec::new();
    let mut events = Vec::new();
    let several = opts.plans.len() > 1;
    for (i, plan) in opts.plans.iter().enumerate() {
        let metrics = opts.metrics.map(|addr| {
            let path = if several {
                crate::evidence::metrics::plan_path(plan.id())
            } else {
                "/metrics".to_string()
            };
            format!("http://{addr}{path}")
        });
        let env = worker::command::Env {
            app: if i == 0 { opts.app.clone() } else { None },
            metrics,
        };
        let mut app = App::new(plan.clone(), opts.db.display(), opts.read_only);
        app.set_environment(env.app.is_some(), env.metrics.clone());
        if i == 0 {
            if let Some(hint) = &opts.hint {
                app.hint(hint);
            }
        }
        // Each migration has its own worker: its own connections, snapshots and commands.
        let handle = worker::spawn(WorkerOptions {
            db: opts.db.clone(),
            plan: plan.clone(),
            read_only: opts.read_only,
            env,
        });
        apps.push(app);
        events.push(handle.events);
        workers.push(Worker {
            plan_id: plan.id().to_string(),
            commands: handle.commands,
            task: handle.task,
        });
    }
    let switcher =
        Switcher::new(apps).ok_or_else(|| anyhow::anyhow!("no plan to open in the TUI"))?;
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            stop(workers).await;
            return Err(e.into());
        }
    };
    let result = event_loop(&mut terminal, switcher, &mut workers, events).await;
    ratatui::restore();
    stop(workers).await;
    result
}

/// The next event of any worker, with the worker's index (`None`: that worker stopped). Polls
/// from `*start` on and moves it past the worker that answered, so none starves the others.
async fn next_event(
    events: &mut [mpsc::UnboundedReceiver<WorkerEvent>],
    start: &mut usize,
) -> (usize, Option<WorkerEvent>) {
    std::future::poll_fn(|cx| {
        let n = events.len();
        for k in 0..n {
            let i = (*start + k) % n;
            if let Poll::Ready(ev) = events[i].poll_recv(cx) {
                *start = (i + 1) % n;
                return Poll::Ready((i, ev));
            }
        }
        Poll::Pending
    })
    .await
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    mut switcher: Switcher,
    workers: &mut [Worker],
    mut events: Vec<mpsc::UnboundedReceiver<WorkerEvent>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let theme = Theme::from_env();
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut start = 0;
    tracing::info!(target: "tui", "command center started");
    let outcome = loop {
        tui_logger::move_events();
        let vm = switcher.view();
        terminal.draw(|f| {
            draw(
                f,
                &vm,
                &theme,
                LogSource::Live(&switcher.current().log_state),
            )
        })?;
        tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(Event::Key(key))) => {
                    let routed = switcher.on_key(key, Instant::now());
                    match routed.action {
                        Action::Quit => break Ok(()),
                        Action::Send(cmd) => {
                            let w = &workers[routed.index];
                            tracing::info!(target: "tui", plan = %w.plan_id, "requested: {cmd}");
                            if w.commands.send(cmd).is_err() {
                                break Err(anyhow::anyhow!(
                                    "the worker of {} stopped unexpectedly",
                                    w.plan_id
                                ));
                            }
                        }
                        Action::None => {}
                    }
                }
                Some(Ok(Event::Resize(..))) => terminal.autoresize()?,
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(anyhow::anyhow!("reading the terminal failed: {e}")),
                None => break Ok(()),
            },
            (i, ev) = next_event(&mut events, &mut start) => match ev {
                Some(ev) => {
                    if let Some(app) = switcher.get_mut(i) {
                        app.on_worker(ev);
                    }
                    // Drain whatever else is queued so a burst costs one redraw.
                    for (rx, app) in events.iter_mut().zip(switcher.apps_mut()) {
                        while let Ok(ev) = rx.try_recv() {
                            app.on_worker(ev);
                        }
                    }
                }
                None => break Err(stopped(&mut workers[i]).await),
            },
            _ = tick.tick() => switcher.expire(Instant::now()),
            _ = term.recv() => break Ok(()),
            _ = hup.recv() => break Ok(()),
            _ = int.recv() => {
                switcher.on_key(
                    crossterm::event::KeyEvent::new(
                        crossterm::event::KeyCode::Char('c'),
                        crossterm::event::KeyModifiers::CONTROL,
                    ),
                    Instant::now(),
                );
            }
        }
    };
    tracing::info!(target: "tui", "command center stopped");
    outcome
}

/// Why a worker's event channel closed.
async fn stopped(w: &mut Worker) -> anyhow::Error {
    match (&mut w.task).await {
        Err(e) if e.is_panic() => anyhow::anyhow!("the worker of {} panicked: {e}", w.plan_id),
        _ => anyhow::anyhow!("the worker of {} stopped unexpectedly", w.plan_id),
    }
}

/// Closes every command channel, which tells each worker to stop (an in-process backfill stops
/// at its checkpoint), and gives them all together a bounded time.
async fn stop(workers: Vec<Worker>) {
    let mut tasks = Vec::new();
    for w in workers {
        drop(w.commands);
        // A finished task has nothing left to wait for (and may have been awaited already).
        if !w.task.is_finished() {
            tasks.push(w.task);
        }
    }
    let waiting = futures::future::join_all(tasks.iter_mut());
    if tokio::time::timeout(Duration::from_secs(12), waiting)
        .await
        .is_err()
    {
        for t in &tasks {
            t.abort();
        }
    }
}

/// Which layout the screen size allows.
fn roomy(area: Rect) -> bool {
    area.height >= 34 && area.width >= 100
}

/// The backfill pane keeps at least this many columns beside the readiness pane.
const BACKFILL_MIN_WIDTH: u16 = 40;

/// The readiness pane keeps at least this many columns beside the backfill pane.
const READINESS_MIN_WIDTH: u16 = 40;

/// From this width on, the backfill pane gets half the row (room for the latency chart).
const WIDE: u16 = 160;

/// Splits a row between the readiness pane and the backfill pane. The backfill pane grows with
/// the screen (two fifths of it, half from [`WIDE`] on, at least [`BACKFILL_MIN_WIDTH`]);
/// readiness takes what its evidence needs of the rest, and any width it does not need goes to
/// the backfill pane.
fn readiness_split(vm: &ViewModel, row: Rect) -> [Rect; 2] {
    let share = if row.width >= WIDE {
        row.width / 2
    } else {
        row.width * 2 / 5
    };
    let backfill = share
        .max(BACKFILL_MIN_WIDTH)
        .min(row.width.saturating_sub(READINESS_MIN_WIDTH));
    let width = panes::scorecard::wanted_width(vm)
        .max(READINESS_MIN_WIDTH)
        .min(row.width.saturating_sub(backfill));
    Layout::horizontal([Constraint::Length(width), Constraint::Min(0)]).areas(row)
}

/// Draws the whole screen from the view model.
pub fn draw(frame: &mut Frame, vm: &ViewModel, theme: &Theme, log: LogSource) {
    let area = frame.area();
    let footer_h = if area.height >= 24 { 2 } else { 1 };
    let timeline_h = if area.height >= 30 { 6 } else { 5 };
    let [header, timeline, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(timeline_h),
        Constraint::Min(0),
        Constraint::Length(footer_h),
    ])
    .areas(area);
    panes::header::render(frame, header, vm, theme);
    panes::timeline::render(frame, timeline, vm, theme);
    let zoomed = vm.ui.zoom && vm.ui.focus != Focus::Timeline;
    if zoomed {
        match vm.ui.focus {
            Focus::Scorecard | Focus::Timeline => panes::scorecard::render(frame, body, vm, theme),
            Focus::Backfill => panes::backfill::render(frame, body, vm, theme),
            Focus::Parity => panes::parity::render(frame, body, vm, theme),
            Focus::Roster => panes::roster::render(frame, body, vm, theme),
            Focus::Log => panes::log::render(frame, body, vm, theme, log),
        }
    } else if roomy(area) {
        let [top, mid, bottom] = Layout::vertical([
            Constraint::Percentage(42),
            Constraint::Percentage(26),
            Constraint::Percentage(32),
        ])
        .areas(body);
        let [score, backfill] = readiness_split(vm, top);
        let [parity, roster] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(mid);
        panes::scorecard::render(frame, score, vm, theme);
        panes::backfill::render(frame, backfill, vm, theme);
        panes::parity::render(frame, parity, vm, theme);
        panes::roster::render(frame, roster, vm, theme);
        panes::log::render(frame, bottom, vm, theme, log);
    } else {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
        let [score, backfill] = readiness_split(vm, top);
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(bottom);
        panes::scorecard::render(frame, score, vm, theme);
        panes::backfill::render(frame, backfill, vm, theme);
        // Small screens share the bottom-left slot: the roster when focused, else parity
        // (`z` zooms any pane to the whole body).
        if vm.ui.focus == Focus::Roster {
            panes::roster::render(frame, left, vm, theme);
        } else {
            panes::parity::render(frame, left, vm, theme);
        }
        panes::log::render(frame, right, vm, theme, log);
    }
    panes::footer::render(frame, footer, vm, theme);
    if let Some(text) = &vm.ui.command_line {
        let line = Rect {
            height: 1,
            ..footer
        };
        panes::command_line::render(frame, line, ':', text, theme);
    } else if let Some(text) = &vm.ui.search_input {
        let line = Rect {
            height: 1,
            ..footer
        };
        panes::command_line::render(frame, line, '/', text, theme);
    }
    match &vm.ui.overlay {
        None => {}
        Some(Overlay::Help) => panes::help::render(frame, area, vm.header.read_only, theme),
        Some(Overlay::ConfirmRollback(r)) => panes::confirm::rollback(frame, area, r, theme),
        Some(Overlay::ConfirmAdvance { phase }) => {
            panes::confirm::advance(frame, area, *phase, theme)
        }
        Some(Overlay::Blockers { phase, lines }) => {
            panes::confirm::blockers(frame, area, *phase, lines, theme)
        }
        Some(Overlay::ConfirmQuit) => panes::confirm::quit(frame, area, theme),
    }
    if let Some(picker) = vm.switcher.as_ref().and_then(|s| s.picker.as_ref()) {
        panes::migrations::render(frame, area, picker, theme);
    }
}
