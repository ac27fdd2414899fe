//! A repository: its tags, page by page (after the last tag shown, so a
//! 10,000-tag repository costs one indexed page), with pull commands; and
//! deleting a tag or manifest: a confirmation page, then a POST carrying
//! the CSRF token.

use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use store::{Reference, RepoName, Store};

use super::{bytes, kind, layout, manifest_href, short, time};
use crate::auth::Action;
use crate::ui::view::TagList;
use crate::ui::{csrf_ok, Ctx, UiError, Viewer};

/// Pull commands for `image` (`host/repo:tag` or `host/repo@digest`).
pub fn commands(ctx: &Ctx, image: &str) -> Markup {
    let podman_flag = if ctx.tls { "" } else { "--tls-verify=false " };
    let cmds = [
        ("docker", format!("docker pull {}/{image}", ctx.host)),
        (
            "podman",
            format!("podman pull {podman_flag}{}/{image}", ctx.host),
        ),
        ("runner", format!("runner run {}/{image}", ctx.host)),
    ];
    html! {
        ul.commands aria-label="Pull commands" {
            @for (name, cmd) in &cmds {
                li {
                    span.tool { (name) }
                    code { (cmd) }
                    button.copy type="button" data-copy=(cmd) hidden aria-label={ "Copy the " (name) " command" } { "Copy" }
                }
            }
        }
    }
}

/// The tag page.
pub fn render(ctx: &Ctx, viewer: &Viewer, list: &TagList, deleted: Option<&str>) -> Markup {
    let first = list
        .items
        .first()
        .map(|t| t.name.as_str())
        .unwrap_or("latest");
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/ui/" { "Repositories" } " / " span { (list.repo) } }
        h1 { (list.repo) }
        @if let Some(d) = deleted { p.notice role="status" { "Deleted " code { (d) } "." } }
        p { (list.total) " tags" }
        (commands(ctx, &format!("{}:{first}", list.repo)))
        div.scroll {
            table #tags {
                caption.visually-hidden { "Tags of " (list.repo) }
                thead { tr {
                    th scope="col" { "Tag" }
                    th scope="col" { "Digest" }
                    th scope="col" { "Type" }
                    th scope="col" { "Platforms" }
                    th scope="col" .num { "Size" }
                    th scope="col" { "Pushed" }
                    @if list.can_delete { th scope="col" { span.visually-hidden { "Actions" } } }
                } }
                tbody {
                    @for t in &list.items {
                        tr {
                            td { a href=(manifest_href(&list.repo, &t.name)) { (t.name) } }
                            td { a.digest href=(manifest_href(&list.repo, &t.digest)) title=(t.digest) { code { (short(&t.digest)) } } }
                            td title=(t.media_type) { (kind(&t.media_type)) }
                            td { @if t.platforms.is_empty() { "—" } @else { (t.platforms.join(", ")) } }
                            td.num { (bytes(t.size)) }
                            td { (time(t.pushed_at)) }
                            @if list.can_delete {
                                td { a.danger href={ "/ui/r/" (list.repo) "/-/delete?reference=" (t.name) } aria-label={ "Delete tag " (t.name) } { "Delete" } }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if list.last.is_some() { a href={ "/ui/r/" (list.repo) } { "← First page" } }
            @if let Some(next) = &list.next {
                a href={ "/ui/r/" (list.repo) "?last=" (next) } rel="next" { "Next page →" }
            }
        }
    };
    layout(Some(ctx), Some(viewer), &list.repo, body)
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct DeleteForm {
    reference: String,
    csrf: String,
}

fn parse_reference(text: &str) -> Result<Reference, UiError> {
    text.parse()
        .map_err(|e: store::Error| UiError::BadRequest(e.to_string()))
}

/// `GET /ui/r/<name>/-/delete?reference=`: what would go, and the form.
pub async fn confirm_delete(
    ctx: &Ctx,
    viewer: &Viewer,
    store: &Store,
    repo: &RepoName,
    uri: &Uri,
) -> Result<Markup, UiError> {
    crate::ui::view::require_pull(viewer, repo)?;
    if !viewer.may(repo.as_str(), Action::Delete) {
        return Err(UiError::Forbidden);
    }
    let form: DeleteForm = super::query(uri)?;
    let reference = parse_reference(&form.reference)?;
    let m = store.manifest(repo, &reference, false).await?;
    let what = match &reference {
        Reference::Tag(t) => {
            html! { "the tag " code { (t) } " (the manifest " code { (short(&m.digest.to_string())) } " stays)" }
        }
        Reference::Digest(_) => {
            html! { "the manifest " code { (m.digest) } " and every tag pointing at it" }
        }
    };
    let body = html! {
        h1 { "Delete from " (repo) "?" }
        p { "This deletes " (what) ". It cannot be undone; space is freed by the next garbage collection." }
        form method="post" action={ "/ui/r/" (repo) "/-/delete" } {
            input type="hidden" name="reference" value=(reference);
            input type="hidden" name="csrf" value=(viewer.csrf);
            button.danger type="submit" { "Delete" }
            " "
            a href={ "/ui/r/" (repo) } { "Cancel" }
        }
    };
    Ok(layout(Some(ctx), Some(viewer), "Delete", body))
}

/// `POST /ui/r/<name>/-/delete`: check the token and the right, delete,
/// back to the repository.
pub async fn delete(
    store: &Store,
    viewer: &Viewer,
    repo: &RepoName,
    body: &[u8],
) -> Result<Response, UiError> {
    let form: DeleteForm =
        serde_urlencoded::from_bytes(body).map_err(|e| UiError::BadRequest(e.to_string()))?;
    if !csrf_ok(viewer, Some(&form.csrf)) {
        return Err(UiError::Csrf);
    }
    crate::ui::view::require_pull(viewer, repo)?;
    if !viewer.may(repo.as_str(), Action::Delete) {
        return Err(UiError::Forbidden);
    }
    let reference = parse_reference(&form.reference)?;
    store.delete_manifest(repo, &reference).await?;
    tracing::info!(user = viewer.user().unwrap_or("-"), %repo, %reference, "ui delete");
    let notice =
        serde_urlencoded::to_string([("deleted", reference.to_string())]).unwrap_or_default();
    Ok(Redirect::to(&format!("/ui/r/{repo}?{notice}")).into_response())
}
