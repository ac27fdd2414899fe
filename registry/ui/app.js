// Strata registry UI: the little script the pages use. Everything works
// without it; it adds copy buttons and search as you type (/ui/api/repositories).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("button.copy")) {
    b.hidden = false;
    b.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(b.dataset.copy);
        b.textContent = "Copied";
      } catch (_) {
        b.textContent = "Select and copy";
      }
      setTimeout(() => { b.textContent = "Copy"; }, 2000);
    });
  }
  const q = document.querySelector("input[data-live=repos]");
  const body = document.querySelector("#repos tbody");
  const count = document.querySelector("#repo-count");
  if (!q || !body) return;
  const form = q.form;
  let timer = 0;
  let asked = 0;
  const size = (n) => {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return i ? n.toFixed(1) + " " + u[i] : n + " B";
  };
  const when = (s) => s > 0 ? new Date(s * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC" : "never";
  const cell = (tr, text, cls) => {
    const td = tr.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  };
  const refresh = async () => {
    const mine = ++asked;
    const params = new URLSearchParams(new FormData(form));
    const r = await fetch("/ui/api/repositories?" + params, { credentials: "same-origin" });
    if (!r.ok || mine !== asked) return;
    const list = await r.json();
    body.replaceChildren();
    for (const repo of list.items) {
      const tr = body.insertRow();
      const a = document.createElement("a");
      a.href = "/ui/r/" + repo.name;
      a.textContent = repo.name;
      tr.insertCell().append(a);
      cell(tr, String(repo.tags), "num");
      cell(tr, size(repo.size), "num");
      cell(tr, size(repo.unique_size), "num");
      cell(tr, when(repo.last_push));
    }
    count.textContent = list.total + " repositories" + (list.q ? " matching “" + list.q + "”" : "");
    history.replaceState(null, "", "/ui/?" + params);
  };
  q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 200); });
});
