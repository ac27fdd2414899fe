//! The dashboard: storage used, what dedup saves, blobs, repositories,
//! uploads in flight, and this process's GC runs.

use maud::{html, Markup};

use super::{bytes, layout, time};
use crate::ui::view::DashboardView;
use crate::ui::{Ctx, Viewer};

/// The page.
pub fn render(ctx: &Ctx, viewer: &Viewer, d: &DashboardView) -> Markup {
    let saved_pct = if d.logical_bytes > 0 {
        d.saved_bytes as f64 * 100.0 / d.logical_bytes as f64
    } else {
        0.0
    };
    let body = html! {
        h1 { "Dashboard" }
        div.cards {
            section.card aria-labelledby="c-storage" {
                h2 #c-storage { "Storage used" }
                p.big { (bytes(d.stored_bytes)) }
                p { (d.blobs) " blobs, each stored once" }
            }
            section.card aria-labelledby="c-dedup" {
                h2 #c-dedup { "Saved by dedup" }
                p.big { (bytes(d.saved_bytes)) }
                p { "Repositories see " (bytes(d.logical_bytes)) "; " (format!("{saved_pct:.0}")) "% is shared" }
            }
            section.card aria-labelledby="c-repos" {
                h2 #c-repos { "Repositories" }
                p.big { (d.repositories) }
                p { (d.manifests) " manifests, " (d.tags) " tags" }
            }
            section.card aria-labelledby="c-uploads" {
                h2 #c-uploads { "Uploads in flight" }
                p.big { (d.uploads) }
                p { (bytes(d.upload_bytes)) " received so far" }
            }
            section.card aria-labelledby="c-gc" {
                h2 #c-gc { "Garbage collection" }
                @match d.gc_last_success {
                    Some(t) => {
                        p.big { (time(t as i64)) }
                        p { (d.gc_runs) " runs since start freed " (bytes(d.gc_bytes_freed)) }
                    }
                    None => {
                        p.big { "no run yet" }
                        p { "since this registry started (scheduled by " code { "[gc] interval_secs" } ")" }
                    }
                }
                @if d.gc_failures > 0 { p.error { (d.gc_failures) " runs failed; see the log" } }
            }
        }
    };
    layout(Some(ctx), Some(viewer), "Dashboard", body)
}
