//! The live view of `pytracer top`: the routes and workers tables redrawn every second in the
//! terminal's alternate screen (ratatui over crossterm: works over ssh in a plain terminal).
//! Keys: `q` (or Ctrl-C) quits, `s` sorts by the next column, `r`/`e`/`p` by requests, errors
//! or p99.
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Row, Table};

use super::view::{route_cells, worker_cells, RouteRow, SortBy, ROUTE_HEADER, WORKER_HEADER};
use super::workers::Worker;

/// What the live view asks of its caller each refresh.
pub trait Source {
    fn rows(&mut self, sort: SortBy) -> (Vec<RouteRow>, Vec<Worker>, String);
}

/// Runs until `q`; restores the terminal whatever happens.
pub fn run(source: &mut dyn Source, mut sort: SortBy) -> anyhow::Result<()> {
    let mut terminal = ratatui::init();
    let result = (|| -> anyhow::Result<()> {
        loop {
            let (routes, workers, status) = source.rows(sort);
            terminal.draw(|f| {
                let [top, bottom, foot] =
                    Layout::vertical([Constraint::Fill(3), Constraint::Fill(1), Constraint::Length(1)]).areas(f.area());
                let header = Row::new(ROUTE_HEADER).style(Style::new().add_modifier(Modifier::BOLD));
                let rows = routes.iter().map(|r| Row::new(route_cells(r)));
                let widths = [
                    Constraint::Length(14),
                    Constraint::Fill(2),
                    Constraint::Length(7),
                    Constraint::Length(7),
                    Constraint::Length(6),
                    Constraint::Length(7),
                    Constraint::Length(7),
                    Constraint::Length(7),
                    Constraint::Fill(2),
                ];
                let title = format!(" routes (sorted by {}) ", sort.name());
                f.render_widget(Table::new(rows, widths).header(header).block(Block::bordered().title(title)), top);
                let header = Row::new(WORKER_HEADER).style(Style::new().add_modifier(Modifier::BOLD));
                let rows = workers.iter().map(|w| Row::new(worker_cells(w)));
                let widths = [
                    Constraint::Length(8),
                    Constraint::Fill(1),
                    Constraint::Length(7),
                    Constraint::Length(9),
                    Constraint::Length(8),
                    Constraint::Length(12),
                    Constraint::Length(10),
                ];
                f.render_widget(
                    Table::new(rows, widths).header(header).block(Block::bordered().title(" workers ")),
                    bottom,
                );
                f.render_widget(ratatui::text::Line::from(status), foot);
            })?;
            if event::poll(Duration::from_secs(1))? {
                if let Event::Key(k) = event::read()? {
                    if k.kind != KeyEventKind::Press {
                        continue;
                    }
                    match k.code {
                        KeyCode::Char('q') => return Ok(()),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                        KeyCode::Char('s') => sort = sort.next(),
                        KeyCode::Char('r') => sort = SortBy::Requests,
                        KeyCode::Char('e') => sort = SortBy::Errors,
                        KeyCode::Char('p') => sort = SortBy::P99,
                        _ => {}
                    }
                }
            }
        }
    })();
    ratatui::restore();
    result
}
