//! The repository list: search (substring or prefix), sort, pages.

use maud::{html, Markup};

use super::{bytes, layout, time};
use crate::ui::view::RepoList;
use crate::ui::{Ctx, Viewer};

fn link(list: &RepoList, page: usize, sort: &str) -> String {
    let q = serde_urlencoded::to_string([
        ("q", list.q.as_str()),
        ("mode", if list.prefix { "prefix" } else { "substring" }),
        ("sort", sort),
        ("page", &page.to_string()),
    ])
    .unwrap_or_default();
    format!("/ui/?{q}")
}

/// The page.
pub fn render(ctx: &Ctx, viewer: &Viewer, list: &RepoList) -> Markup {
    let body = html! {
        h1 { "Repositories" }
        form.search role="search" method="get" action="/ui/" {
            label for="q" { "Search repositories" }
            input #q type="search" name="q" value=(list.q) placeholder="name contains…" data-live="repos";
            label for="mode" { "Match" }
            select #mode name="mode" {
                option value="substring" selected[!list.prefix] { "anywhere in the name" }
                option value="prefix" selected[list.prefix] { "at the start" }
            }
            label for="sort" { "Sort by" }
            select #sort name="sort" {
                option value="name" selected[list.sort == "name"] { "name" }
                option value="size" selected[list.sort == "size"] { "size" }
                option value="pushed" selected[list.sort == "pushed"] { "last push" }
            }
            button type="submit" { "Search" }
        }
        p #repo-count role="status" { (list.total) " repositories" @if !list.q.is_empty() { " matching “" (list.q) "”" } }
        div.scroll {
            table #repos {
                caption.visually-hidden { "Repositories you may pull" }
                thead { tr {
                    th scope="col" { a href=(link(list, 1, "name")) { "Name" } }
                    th scope="col" .num { "Tags" }
                    th scope="col" .num { a href=(link(list, 1, "size")) { "Size" } }
                    th scope="col" .num { "Unique" }
                    th scope="col" { a href=(link(list, 1, "pushed")) { "Last push" } }
                } }
                tbody {
                    @for r in &list.items {
                        tr {
                            td { a href={ "/ui/r/" (r.name) } { (r.name) } }
                            td.num { (r.tags) }
                            td.num { (bytes(r.size)) }
                            td.num { (bytes(r.unique_size)) }
                            td { (time(r.last_push)) }
                        }
                    }
                }
            }
        }
        @if list.items.is_empty() {
            p { "No repositories to show." @if viewer.is_anonymous() && viewer.auth_on { " " a href="/ui/login" { "Log in" } " to see more." } }
        }
        @if list.pages > 1 {
            nav.pager aria-label="Pages" {
                @if list.page > 1 { a href=(link(list, list.page - 1, list.sort)) rel="prev" { "← Previous" } }
                span { "Page " (list.page) " of " (list.pages) }
                @if list.page < list.pages { a href=(link(list, list.page + 1, list.sort)) rel="next" { "Next →" } }
            }
        }
    };
    layout(Some(ctx), Some(viewer), "Repositories", body)
}
