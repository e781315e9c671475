//! The full-screen command center.
//!
//! Architecture: the [`worker`](crate::worker) task owns every database connection and sends
//! snapshots and action results over a channel; this module owns the terminal. The event loop
//! waits on crossterm's `EventStream`, the worker channel, a slow tick and signals — it never
//! awaits the database — and redraws from [`App::view`] with [`draw`], a pure function of the
//! view model.

pub mod app;
pub mod next;
pub mod panes;
pub mod theme;
pub mod view;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::{DefaultTerminal, Frame};

use crate::db::DbConfig;
use crate::plan::Plan;
use crate::worker::{self, WorkerOptions};
use app::{Action, App};
use panes::log::LogSource;
use theme::Theme;
use view::{Focus, Overlay, ViewModel};

/// Redraw at least this often (log lines, ages, status expiry).
const TICK: Duration = Duration::from_secs(1);

/// How `cutover tui` / `cutover demo` start the command center.
#[derive(Debug, Clone)]
pub struct Options {
    /// The plan.
    pub plan: Plan,
    /// The server.
    pub db: DbConfig,
    /// Block every change.
    pub read_only: bool,
    /// A first status line (e.g. the demo's "press s to sign off").
    pub hint: Option<String>,
    /// The application `:app` rolls (the demo's), if any.
    pub app: Option<worker::AppHandle>,
    /// This process's metrics endpoint, if it serves one (`:scrape` scrapes it).
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

/// Runs the command center until the user quits. Restores the terminal on every exit path
/// (return, error, panic, SIGTERM/SIGHUP).
pub async fn run(opts: Options) -> anyhow::Result<()> {
    init_logging();
    let handle = worker::spawn(WorkerOptions {
        db: opts.db.clone(),
        plan: opts.plan.clone(),
        read_only: opts.read_only,
        env: worker::command::Env {
            app: opts.app.clone(),
            metrics: opts.metrics,
        },
    });
    let mut app = App::new(opts.plan.clone(), opts.db.display(), opts.read_only);
    app.set_environment(opts.app.is_some(), opts.metrics);
    if let Some(hint) = &opts.hint {
        app.hint(hint);
    }
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, app, handle).await;
    ratatui::restore();
    result
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    mut app: App,
    mut handle: worker::WorkerHandle,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let theme = Theme::from_env();
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    tracing::info!(target: "tui", "command center started");
    let outcome = loop {
        tui_logger::move_events();
        terminal.draw(|f| draw(f, &app.view(), &theme, LogSource::Live(&app.log_state)))?;
        tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(Event::Key(key))) => {
                    match app.on_key(key, Instant::now()) {
                        Action::Quit => break Ok(()),
                        Action::Send(cmd) => {
                            tracing::info!(target: "tui", "requested: {cmd}");
                            if handle.commands.send(cmd).is_err() {
                                break Err(anyhow::anyhow!("the worker stopped unexpectedly"));
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
            ev = handle.events.recv() => match ev {
                Some(ev) => {
                    app.on_worker(ev);
                    // Drain whatever else is queued so a burst costs one redraw.
                    while let Ok(ev) = handle.events.try_recv() {
                        app.on_worker(ev);
                    }
                }
                None => {
                    break Err(match (&mut handle.task).await {
                        Err(e) if e.is_panic() => anyhow::anyhow!("the worker panicked: {e}"),
                        _ => anyhow::anyhow!("the worker stopped unexpectedly"),
                    });
                }
            },
            _ = tick.tick() => { app.expire(Instant::now()); }
            _ = term.recv() => break Ok(()),
            _ = hup.recv() => break Ok(()),
            _ = int.recv() => {
                app.on_key(
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
    // Closing the command channel tells the worker to stop (an in-process backfill stops at
    // its checkpoint); give it a bounded time.
    drop(handle.commands);
    if !handle.task.is_finished()
        && tokio::time::timeout(Duration::from_secs(12), &mut handle.task)
            .await
            .is_err()
    {
        handle.task.abort();
    }
    outcome
}

/// Which layout the screen size allows.
fn roomy(area: Rect) -> bool {
    area.height >= 34 && area.width >= 100
}

/// The backfill pane keeps at least this many columns beside the readiness pane.
const BACKFILL_MIN_WIDTH: u16 = 44;

/// Splits a row between the readiness pane and the backfill pane: half each, or as much as the
/// readiness evidence needs when the screen is wide enough to give it.
fn readiness_split(vm: &ViewModel, row: Rect) -> [Rect; 2] {
    let half = row.width / 2;
    let wanted = panes::scorecard::wanted_width(vm);
    let width = wanted
        .min(row.width.saturating_sub(BACKFILL_MIN_WIDTH))
        .max(half);
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
}
