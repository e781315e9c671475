//! Several migrations in one command center: one [`App`] per plan, one of them on screen.
//! `]` / `[` switch to the next / previous, `m` opens the migrations picker (↑ ↓ Enter, 1–9,
//! Esc). Those keys only act while the migration on screen is idle (no overlay, command line or
//! search), so a switch never cuts into a confirmation; every other key goes to the active app.
//! Nothing here touches the database or the terminal.

use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{Action, App};
use super::view::{GateVerdict, MigrationRow, PickerView, SwitcherView, ViewModel};
use crate::control::backfill::State as BackfillState;
use crate::control::phases::PhaseState;
use crate::worker::ConnState;

/// The open migrations and which one is on screen.
pub struct Switcher {
    apps: Vec<App>,
    active: usize,
    /// The picker's highlighted row, while it is open.
    picker: Option<usize>,
}

/// A key's effect: `action` for the app at `index`.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// Which app (and worker) the action is for.
    pub index: usize,
    /// What to do.
    pub action: Action,
}

impl Switcher {
    /// Opens `apps` (at least one), the first on screen; `None` when there is none.
    pub fn new(apps: Vec<App>) -> Option<Switcher> {
        (!apps.is_empty()).then_some(Switcher {
            apps,
            active: 0,
            picker: None,
        })
    }

    /// The migration on screen, 0-based.
    pub fn active(&self) -> usize {
        self.active
    }

    /// The app on screen.
    pub fn current(&self) -> &App {
        &self.apps[self.active]
    }

    /// The app at `index`, if any (worker events go to their own app).
    pub fn get_mut(&mut self, index: usize) -> Option<&mut App> {
        self.apps.get_mut(index)
    }

    /// Every app.
    pub fn apps_mut(&mut self) -> impl Iterator<Item = &mut App> {
        self.apps.iter_mut()
    }

    /// Drops old status messages of every app.
    pub fn expire(&mut self, now: Instant) {
        for app in &mut self.apps {
            app.expire(now);
        }
    }

    /// Handles one key at time `now`.
    pub fn on_key(&mut self, key: KeyEvent, now: Instant) -> Routed {
        if key.kind == KeyEventKind::Release {
            return self.routed(Action::None);
        }
        if let Some(selected) = self.picker {
            return self.on_picker_key(selected, key, now);
        }
        let plain = !key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        if self.apps.len() > 1 && plain && self.current().idle() {
            match key.code {
                KeyCode::Char('m') => {
                    self.picker = Some(self.active);
                    return self.routed(Action::None);
                }
                KeyCode::Char(']') => {
                    self.active = (self.active + 1) % self.apps.len();
                    return self.routed(Action::None);
                }
                KeyCode::Char('[') => {
                    self.active = (self.active + self.apps.len() - 1) % self.apps.len();
                    return self.routed(Action::None);
                }
                _ => {}
            }
        }
        let action = self.apps[self.active].on_key(key, now);
        self.routed(action)
    }

    fn on_picker_key(&mut self, selected: usize, key: KeyEvent, now: Instant) -> Routed {
        let n = self.apps.len();
        match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                // Ctrl-C still asks to quit, over the migration on screen.
                self.picker = None;
                let action = self.apps[self.active].on_key(key, now);
                return self.routed(action);
            }
            KeyCode::Esc | KeyCode::Char('m') | KeyCode::Char('q') => self.picker = None,
            KeyCode::Up => self.picker = Some((selected + n - 1) % n),
            KeyCode::Down => self.picker = Some((selected + 1) % n),
            KeyCode::Enter => {
                self.active = selected;
                self.picker = None;
            }
            KeyCode::Char(c @ '1'..='9') => {
                let i = c as usize - '1' as usize;
                if i < n {
                    self.active = i;
                    self.picker = None;
                }
            }
            _ => {}
        }
        self.routed(Action::None)
    }

    fn routed(&self, action: Action) -> Routed {
        Routed {
            index: self.active,
            action,
        }
    }

    /// The view model of the migration on screen, with the switcher's part when several are
    /// open (and the picker's rows, each from its own migration's view model, when it is open).
    pub fn view(&self) -> ViewModel {
        let mut vm = self.current().view();
        if self.apps.len() > 1 {
            vm.switcher = Some(SwitcherView {
                active: self.active,
                total: self.apps.len(),
                picker: self.picker.map(|selected| PickerView {
                    rows: self
                        .apps
                        .iter()
                        .enumerate()
                        .map(|(i, app)| {
                            if i == self.active {
                                row(&vm, true)
                            } else {
                                row(&app.view(), false)
                            }
                        })
                        .collect(),
                    selected,
                }),
            });
        }
        vm
    }
}

/// Sums up one migration for the picker from its view model.
pub fn row(vm: &ViewModel, active: bool) -> MigrationRow {
    let phase = vm
        .timeline
        .phases
        .iter()
        .rev()
        .find(|p| p.state != PhaseState::Pending)
        .map(|p| (p.phase, p.state));
    let all_applied = !vm.timeline.phases.is_empty()
        && vm
            .timeline
            .phases
            .iter()
            .all(|p| p.state == PhaseState::Applied);
    let gate = match (&vm.header.conn, &vm.gate) {
        (Some(ConnState::Retrying { .. }), _) => {
            GateVerdict::Unknown("database unreachable, reconnecting".to_string())
        }
        (_, Some(g)) => GateVerdict::Gate {
            phase: g.phase,
            verdict: g.verdict(),
            blockers: g.blockers.len(),
            first: g.blockers.first().cloned(),
        },
        (_, None) if all_applied => GateVerdict::Done,
        (_, None) => GateVerdict::Unknown("waiting for the first snapshot".to_string()),
    };
    let b = &vm.backfill;
    let backfill = match b.state {
        Some(
            s @ (BackfillState::Running
            | BackfillState::Throttled
            | BackfillState::Pacing
            | BackfillState::Paused),
        ) => Some((s, b.share().percent_text())),
        _ => None,
    };
    MigrationRow {
        plan_id: vm.header.plan_id.clone(),
        title: vm.header.title.clone(),
        active,
        phase,
        gate,
        backfill,
    }
}
