// The browser half of conformance/ui/run.sh: drives Debian's chromium
// through playwright-core against a registry set up by run.sh.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const base = process.env.STRATA_UI_URL;
const shots = process.env.STRATA_UI_SHOTS === "0" ? "" : process.env.STRATA_UI_SHOTS;
if (shots) mkdirSync(shots, { recursive: true });
let passed = 0;
let failed = 0;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});

async function shot(page, name, fullPage = true) {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage });
}

async function step(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}\n${e.stack}`);
  }
}

async function session(user) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  // Nothing may be fetched from anywhere but the registry.
  page.on("request", (r) => {
    if (!r.url().startsWith(base)) throw new Error(`request to ${r.url()}`);
  });
  await page.goto(`${base}/ui/login`);
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill(`${user}-pw`);
  return { context, page };
}

try {
  const { context, page } = await session("alice");
  await step("alice logs in", async () => {
    await shot(page, "login", false);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.waitForURL(`${base}/ui/`);
    await page.getByText("Signed in as").waitFor();
  });
  await step("finds a repository by search (live, through the JSON API)", async () => {
    await page.getByLabel("Search repositories").fill("web");
    await page.locator("#repos tbody tr").filter({ hasText: "team/api" }).waitFor({ state: "detached" });
    assert.equal(await page.locator("#repos tbody tr").count(), 1);
    await page.getByRole("link", { name: "team/web" }).waitFor();
    await shot(page, "repositories", false);
  });
  await step("opens the repository: tags, sizes, pull commands", async () => {
    await page.getByRole("link", { name: "team/web" }).click();
    await page.getByRole("heading", { name: "team/web" }).waitFor();
    for (const tag of ["1.0", "old", "latest", "build"]) {
      await page.locator("#tags").getByRole("link", { name: tag, exact: true }).waitFor();
    }
    await page.getByText(/docker pull .*team\/web:/).waitFor();
    await shot(page, "repository", false);
  });
  await step("opens a tag: layers and config", async () => {
    await page.locator("#tags").getByRole("link", { name: "1.0", exact: true }).click();
    await page.getByRole("heading", { name: "Layers" }).waitFor();
    assert.equal(await page.locator("#layers tbody tr").count(), 1);
    const config = page.locator("dl.config").first();
    for (const text of ["/app/run.sh", "--serve", "MODE=prod", "8080/tcp", "org.opencontainers.image.title=web"]) {
      await config.getByText(text, { exact: false }).first().waitFor();
    }
    await page.getByRole("heading", { name: "application/spdx+json (1)" }).waitFor();
    await shot(page, "image");
  });
  await step("follows the referrer to the SBOM's page and back to its subject", async () => {
    await page.locator("ul.referrers a").first().click();
    await page.getByText("application/spdx+json").first().waitFor();
    await page.locator("dt", { hasText: "Subject" }).waitFor();
    await shot(page, "referrer");
    await page.locator("dd a").first().click();
    await page.getByRole("heading", { name: "Layers" }).waitFor();
  });
  await step("deletes a tag after confirming", async () => {
    await page.goto(`${base}/ui/r/team/web`);
    await page.getByRole("link", { name: "Delete tag old" }).click();
    await page.getByRole("heading", { name: /Delete from team\/web/ }).waitFor();
    await shot(page, "delete", false);
    await page.getByRole("button", { name: "Delete" }).click();
    await page.getByRole("status").filter({ hasText: "Deleted old" }).waitFor();
    assert.equal(await page.locator("#tags").getByRole("link", { name: "old", exact: true }).count(), 0);
  });
  await step("dashboard shows storage and dedup", async () => {
    await page.getByRole("link", { name: "Dashboard" }).click();
    await page.getByRole("heading", { name: "Saved by dedup" }).waitFor();
    await shot(page, "dashboard", false);
  });
  await step("a malformed digest gets an error page", async () => {
    const r = await page.goto(`${base}/ui/r/team/web/-/manifest/sha256:nothex`);
    assert.equal(r.status(), 400);
    await page.getByRole("alert").waitFor();
    await shot(page, "error", false);
  });
  await step("phone width: the repository page still fits", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/ui/r/team/web`);
    await shot(page, "repository-phone", false);
    const wide = await page.evaluate(() => [...document.querySelectorAll("body *")]
      .filter((e) => !e.closest(".scroll") && e.getBoundingClientRect().right > 391)
      .map((e) => e.tagName + "." + e.className).slice(0, 5));
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390 + 1, `page is ${width}px wide: ${wide}`);
  });
  await step("keyboard: the skip link is the first stop and leads to the content", async () => {
    await page.goto(`${base}/ui/`);
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  });
  await step("logging out ends the session", async () => {
    await page.getByRole("button", { name: "Log out" }).click();
    await page.waitForURL(`${base}/ui/login`);
  });
  await context.close();

  const bob = await session("bob");
  await step("bob (pull only) sees the repository but no delete button", async () => {
    await bob.page.getByRole("button", { name: "Log in" }).click();
    await bob.page.waitForURL(`${base}/ui/`);
    await bob.page.goto(`${base}/ui/r/team/web`);
    await bob.page.locator("#tags").getByRole("link", { name: "1.0", exact: true }).waitFor();
    assert.equal(await bob.page.getByRole("link", { name: /Delete/ }).count(), 0);
    await bob.page.goto(`${base}/ui/r/team/web/-/manifest/1.0`);
    await bob.page.getByRole("heading", { name: "Layers" }).waitFor();
    assert.equal(await bob.page.getByRole("link", { name: /Delete/ }).count(), 0);
  });
  await bob.context.close();

  const carol = await session("carol");
  await step("carol (no rights on team/**) sees neither the repository nor a delete button", async () => {
    await carol.page.getByRole("button", { name: "Log in" }).click();
    await carol.page.waitForURL(`${base}/ui/`);
    await carol.page.getByText("0 repositories").waitFor();
    assert.equal(await carol.page.getByRole("link", { name: "team/web" }).count(), 0);
    const r = await carol.page.goto(`${base}/ui/r/team/web`);
    assert.equal(r.status(), 403);
    assert.equal(await carol.page.getByRole("link", { name: /Delete/ }).count(), 0);
  });
  await carol.context.close();
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
