//! The dashboard: storage used, what dedup saves, blobs, repositories,
//! uploads in flight, this process's GC runs and, with a mirror, each
//! upstream's hit rate, and each quota's usage against its budget.

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
        @if !d.quotas.is_empty() {
            h2 #quotas { "Quotas" }
            table aria-labelledby="quotas" {
                thead { tr {
                    th scope="col" { "Repositories" }
                    th scope="col" { "Use" }
                    th scope="col" .num { "Used" }
                    th scope="col" .num { "Limit" }
                } }
                tbody {
                    @for q in &d.quotas {
                        tr {
                            th scope="row" { code { (q.repositories) } }
                            td {
                                meter min="0" max="100" low=(q.warn_percent) high=(q.warn_percent)
                                    optimum="0" value=(q.percent.min(100)) { (q.percent) "%" }
                                " " (q.percent) "%"
                            }
                            td.num { (bytes(q.used)) }
                            td.num { (bytes(q.limit)) }
                        }
                    }
                }
            }
        }
        @if !d.mirrors.is_empty() {
            h2 #mirror { "Mirror since start" }
            table aria-labelledby="mirror" {
                thead { tr {
                    th scope="col" { "Upstream" }
                    th scope="col" .num { "Hit rate" }
                    th scope="col" .num { "Hits" }
                    th scope="col" .num { "Misses" }
                    th scope="col" .num { "Errors" }
                    th scope="col" .num { "Served stale" }
                    th scope="col" .num { "Fetched" }
                } }
                tbody {
                    @for m in &d.mirrors {
                        tr {
                            th scope="row" { code { (m.name) } }
                            td.num { (hit_rate(m.hits, m.misses)) }
                            td.num { (m.hits) }
                            td.num { (m.misses) }
                            td.num { (m.errors) }
                            td.num { (m.stale) }
                            td.num { (bytes(m.fetched_bytes)) }
                        }
                    }
                }
            }
        }
    };
    layout(Some(ctx), Some(viewer), "Dashboard", body)
}

/// Hits over all requests, as a whole percentage; "no requests" before any.
fn hit_rate(hits: u64, misses: u64) -> String {
    match hits + misses {
        0 => "no requests".to_owned(),
        all => format!("{:.0}%", hits as f64 * 100.0 / all as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::hit_rate;

    #[test]
    fn hit_rate_is_hits_over_all_requests() {
        assert_eq!(hit_rate(0, 0), "no requests");
        assert_eq!(hit_rate(3, 1), "75%");
        assert_eq!(hit_rate(0, 5), "0%");
    }
}
