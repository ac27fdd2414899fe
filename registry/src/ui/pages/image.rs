//! An image or index: for an index its platforms, for an image its layers
//! (with the instruction that made each) and config; annotations; the
//! referrers grouped by artifact type, each linked to its own page.

use maud::{html, Markup};

use super::repo::commands;
use super::{bytes, kind, layout, manifest_href, short, time};
use crate::ui::view::{ManifestView, RunConfig};
use crate::ui::{Ctx, Viewer};

fn list(items: &Option<Vec<String>>) -> Markup {
    html! {
        @match items {
            Some(v) if !v.is_empty() => { code { (serde_json::to_string(v).unwrap_or_default()) } }
            _ => { "—" }
        }
    }
}

fn opt(v: &Option<String>) -> Markup {
    html! {
        @match v {
            Some(s) if !s.is_empty() => { code { (s) } }
            _ => { "—" }
        }
    }
}

fn config_table(c: &RunConfig) -> Markup {
    html! {
        dl.config {
            dt { "Entrypoint" } dd { (list(&c.entrypoint)) }
            dt { "Cmd" } dd { (list(&c.cmd)) }
            dt { "Env" } dd {
                @match &c.env {
                    Some(env) if !env.is_empty() => { ul.plain { @for e in env { li { code { (e) } } } } }
                    _ => { "—" }
                }
            }
            dt { "WorkingDir" } dd { (opt(&c.working_dir)) }
            dt { "User" } dd { (opt(&c.user)) }
            dt { "ExposedPorts" } dd {
                @match &c.exposed_ports {
                    Some(p) if !p.is_empty() => { (p.keys().cloned().collect::<Vec<_>>().join(", ")) }
                    _ => { "—" }
                }
            }
            dt { "Labels" } dd {
                @match &c.labels {
                    Some(l) if !l.is_empty() => { ul.plain { @for (k, v) in l { li { code { (k) "=" (v) } } } } }
                    _ => { "—" }
                }
            }
            dt { "Healthcheck" } dd {
                @match &c.healthcheck {
                    Some(h) => { code { (h.to_string()) } }
                    None => { "—" }
                }
            }
            dt { "StopSignal" } dd { (opt(&c.stop_signal)) }
        }
    }
}

/// The page.
pub fn render(ctx: &Ctx, viewer: &Viewer, m: &ManifestView) -> Markup {
    let image = if m.reference.contains(':') {
        format!("{}@{}", m.repo, m.digest)
    } else {
        format!("{}:{}", m.repo, m.reference)
    };
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/ui/" { "Repositories" } " / " a href={ "/ui/r/" (m.repo) } { (m.repo) } " / " span { (m.reference) }
        }
        h1 { (m.repo) @if m.reference.contains(':') { "@" (short(&m.reference)) } @else { ":" (m.reference) } }
        dl.facts {
            dt { "Digest" } dd { code.wrap { (m.digest) } }
            dt { "Media type" } dd { (m.media_type) " (" (kind(&m.media_type)) ")" }
            @if let Some(a) = &m.artifact_type { dt { "Artifact type" } dd { (a) } }
            dt { "Size" } dd { (bytes(m.size)) " (manifest " (bytes(m.manifest_size)) ")" }
            dt { "Pushed" } dd { (time(m.pushed_at)) }
            dt { "Tags" } dd { @if m.tags.is_empty() { "none" } @else { (m.tags.join(", ")) } }
            @if let Some(s) = &m.subject { dt { "Subject" } dd { a href=(manifest_href(&m.repo, s)) { code { (short(s)) } } } }
        }
        (commands(ctx, &image))
        @if m.can_delete {
            p { a.danger href={ "/ui/r/" (m.repo) "/-/delete?reference=" (m.digest) } { "Delete this manifest…" } }
        }
        @if !m.platforms.is_empty() {
            section aria-labelledby="platforms-h" {
                h2 #platforms-h { "Platforms" }
                div.scroll { table {
                    thead { tr { th scope="col" { "Platform" } th scope="col" { "Manifest" } th scope="col" .num { "Size" } } }
                    tbody { @for p in &m.platforms { tr {
                        td { (p.platform) }
                        td { a href=(manifest_href(&m.repo, &p.digest)) { code { (short(&p.digest)) } } }
                        td.num { (bytes(p.size)) }
                    } } }
                } }
            }
        }
        @if !m.layers.is_empty() {
            section aria-labelledby="layers-h" {
                h2 #layers-h { "Layers" }
                div.scroll { table #layers {
                    thead { tr { th scope="col" { "#" } th scope="col" { "Digest" } th scope="col" { "Media type" } th scope="col" .num { "Size" } th scope="col" { "Instruction" } } }
                    tbody { @for (i, l) in m.layers.iter().enumerate() { tr {
                        td { (i + 1) }
                        td title=(l.digest) { code { (short(&l.digest)) } }
                        td { (l.media_type) }
                        td.num { (bytes(l.size)) }
                        td { @if let Some(ins) = &l.instruction { code.wrap { (ins) } } @else { "—" } }
                    } } }
                } }
            }
        }
        @if let Some(c) = &m.config {
            section aria-labelledby="config-h" {
                h2 #config-h { "Config" }
                p { "Platform " strong { (c.platform) } @if let Some(t) = &c.created { ", built " (t) } ". Blob " code { (short(&c.digest)) } "." }
                (config_table(&c.config))
            }
        }
        @if !m.annotations.is_empty() {
            section aria-labelledby="ann-h" {
                h2 #ann-h { "Annotations" }
                dl.config { @for (k, v) in &m.annotations { dt { (k) } dd { code.wrap { (v) } } } }
            }
        }
        section aria-labelledby="ref-h" {
            h2 #ref-h { "Referrers" }
            @if m.referrers.is_empty() { p { "No signatures, SBOMs or attestations refer to this manifest." } }
            @for g in &m.referrers {
                h3 { (g.artifact_type) " (" (g.items.len()) ")" }
                ul.referrers { @for r in &g.items {
                    li {
                        a href=(manifest_href(&m.repo, &r.digest)) { code { (short(&r.digest)) } }
                        " " (bytes(r.size))
                        @for (k, v) in &r.annotations { " · " (k) ": " (v) }
                    }
                } }
            }
        }
    };
    layout(Some(ctx), Some(viewer), &image, body)
}
