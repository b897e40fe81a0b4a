// The dashboard, used as a person would: headless Chromium (Debian's) driven by puppeteer-core
// through the real dashboard served by the real platform. Run by
// crates/operator/tests/dashboard.rs, which starts the services, makes the SDK calls and passes
// the configuration as JSON in DASHBOARD_TEST:
//
//   {"url": "http://127.0.0.1:PORT/ui/", "email", "password", "team", "server", "human",
//    "agent", "session", "allowed_tool", "denied_tool", "denied_reason", "screenshots": DIR,
//    "wait_seconds": 60}
//
// Protocol with the caller (stdout lines, one per event; stdin for the one hand-back):
//   STEP <what>                 progress
//   REVOKED <session>           the session was revoked in the Access view; the script then
//                               waits for one stdin line: `DENIED <reason>` once the caller's
//                               next SDK call was denied (or `FAILED <why>`), and checks that
//                               the denial shows in the Decisions view
//   RESULT <json>               figures: time to first render, bytes, accessibility, failures
// Exit 0 when every expectation held; 1 (after printing each failed one to stderr) otherwise;
// 2 when it cannot start (no Chromium, no puppeteer-core: run scripts/browser-deps.sh).

import { createRequire } from "node:module";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const SETUP = "run scripts/browser-deps.sh (and source ~/.cache/mcp-runtime/browser/env.sh)";

function fatal(message, code = 2) {
  process.stderr.write(`dashboard.mjs: ${message}\n`);
  process.exit(code);
}

const config = (() => {
  try {
    return JSON.parse(process.env.DASHBOARD_TEST || "");
  } catch (e) {
    return fatal(`DASHBOARD_TEST must hold the JSON configuration (${e.message})`);
  }
})();
const CHROMIUM = process.env.MCP_CHROMIUM || "/usr/bin/chromium";
const MODULES = process.env.BROWSER_NODE_MODULES || join(process.env.HOME || "", ".cache/mcp-runtime/browser/npm/node_modules");
if (!existsSync(CHROMIUM)) fatal(`no Chromium at ${CHROMIUM}: ${SETUP}`);
const require = createRequire(join(MODULES, "noop.js"));
let puppeteer, axeSource;
try {
  puppeteer = require("puppeteer-core");
  axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
} catch (e) {
  fatal(`puppeteer-core / axe-core not found in ${MODULES} (${e.message}): ${SETUP}`);
}

const WAIT = (config.wait_seconds || 60) * 1000;
const origin = new URL(config.url).origin;
const failures = [];
const figures = { accessibility: {}, bytes: {} };
let shot = 0;

const step = (what) => console.log(`STEP ${what}`);
/** Records a failed expectation (the journey goes on where it can). */
function expect(ok, message) {
  if (!ok) {
    failures.push(message);
    process.stderr.write(`FAILED: ${message}\n`);
  }
  return ok;
}
/** An expectation the rest of the journey depends on. */
function must(ok, message) {
  if (!ok) throw new Error(message);
}

// ---------------------------------------------------------------- the browser

const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  // --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"],
});
const page = await browser.newPage();
await page.setViewport({ width: 1280, height: 800, deviceScaleFactor: 1 });
page.setDefaultTimeout(WAIT);

// Nothing may come from another origin, violate the CSP or throw.
page.on("request", (r) => {
  const url = r.url();
  if (!url.startsWith("data:") && new URL(url).origin !== origin) expect(false, `request to another origin: ${url}`);
});
// Until the login is submitted, the page's first question (GET /v1/auth/me without a credential,
// to learn whether this server needs a login at all: `mcp-runtime dev` does not) is answered 401,
// which Chromium reports as a console error. That one answer is expected; any other is not.
let beforeLogin = true;
page.on("console", (m) => {
  if (m.type() !== "error") return;
  const where = (m.location() && m.location().url) || "";
  // Chromium asks for /favicon.ico on its own; the dashboard has none and links none.
  if (where.endsWith("/favicon.ico")) return;
  if (beforeLogin && new URL(where, "http://x/").pathname === "/v1/auth/me" && m.text().includes("401")) return;
  expect(false, `console error: ${m.text()} ${where}`);
});
page.on("pageerror", (e) => expect(false, `uncaught error in the page: ${e.message}`));

// When the login form and the overview's cards first exist, and when a form was submitted
// (performance.now(): milliseconds since navigation start). Injected by DevTools, not by the
// page, so the page's CSP (no inline script) still holds for the page's own scripts.
await page.evaluateOnNewDocument(() => {
  const marks = (window.__marks = {});
  document.addEventListener("submit", () => (marks.submit ??= performance.now()), true);
  new MutationObserver(() => {
    if (!marks.login && document.querySelector("input[name=email]")) marks.login = performance.now();
    if (!marks.cards && document.querySelector(".overview .cards .card")) marks.cards = performance.now();
  }).observe(document, { childList: true, subtree: true });
});

// ---------------------------------------------------------------- helpers

async function screenshot(name) {
  mkdirSync(config.screenshots, { recursive: true });
  const path = join(config.screenshots, `${String(++shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  step(`screenshot ${path}`);
}

/** axe-core on the current view: serious and critical violations fail. */
async function accessibility(view) {
  // page.evaluate runs through DevTools, which the CSP does not govern; the page keeps its CSP.
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
    }));
  });
  figures.accessibility[view] = violations.map((v) => `${v.impact} ${v.id}`);
  // A value the script failed to leave out shows as the word itself.
  const leaked = await page.$eval("#main", (el) => el.innerText.split("\n").filter((l) => /^(null|undefined|NaN|\[object Object\])$/.test(l.trim())));
  expect(leaked.length === 0, `the ${view} view shows ${JSON.stringify(leaked)}`);
  for (const v of violations) {
    if (v.impact === "serious" || v.impact === "critical")
      expect(false, `accessibility (${view}): ${v.impact} ${v.id}: ${v.help} at ${v.nodes.join(", ")}`);
  }
}

/** What the focused element is, as a person hears it: its label, text or name. */
function focused() {
  return page.evaluate(() => {
    const el = document.activeElement;
    if (!el || el === document.body) return "(body)";
    const label = (el.labels && el.labels[0] && el.labels[0].textContent) || el.getAttribute("aria-label") || el.textContent || el.id;
    return `${el.tagName.toLowerCase()}:${label.trim()}`;
  });
}

/** Presses Tab from the top of the document `n` times; what had the focus after each. */
async function tabOrder(n) {
  // Focus a throw-away element placed before everything else, so the first Tab goes where a
  // freshly loaded page's would (blur() alone leaves Chromium's starting point where it was).
  await page.evaluate(() => {
    const start = document.createElement("span");
    start.id = "tab-start";
    start.tabIndex = -1;
    document.body.prepend(start);
    start.focus();
  });
  const seen = [];
  for (let i = 0; i < n; i++) {
    await page.keyboard.press("Tab");
    if (i === 0) await page.evaluate(() => document.getElementById("tab-start").remove());
    seen.push(await focused());
  }
  return seen;
}

/** The element id of the control labelled `label` (exact text) in the current view. */
async function control(label) {
  const id = await page.evaluate((text) => {
    const l = [...document.querySelectorAll("#main label")].find((x) => x.textContent.trim() === text);
    return l ? l.htmlFor : null;
  }, label);
  must(id, `no control labelled "${label}"`);
  return `[id="${id}"]`;
}

async function fill(label, value) {
  const selector = await control(label);
  await page.$eval(selector, (el) => (el.value = ""));
  await page.type(selector, value);
}

/** The rows (cell texts) of the table whose caption matches `caption` (a RegExp source). */
function rows(caption) {
  return page.evaluate((source) => {
    const re = new RegExp(source);
    const table = [...document.querySelectorAll("#main table")].find((t) => t.caption && re.test(t.caption.textContent));
    if (!table) return null;
    return [...table.tBodies[0].rows].filter((r) => !r.querySelector(".empty")).map((r) => [...r.cells].map((c) => c.textContent.trim()));
  }, caption);
}

async function waitForRows(caption, accept, what) {
  const deadline = Date.now() + WAIT;
  let last = null;
  while (Date.now() < deadline) {
    last = await rows(caption);
    if (last && accept(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not within ${WAIT / 1000} s; the table showed ${JSON.stringify(last)}`);
}

async function go(section) {
  await page.goto(`${config.url}#/${section}`);
  await page.waitForFunction((s) => document.getElementById("nav-" + s)?.getAttribute("aria-current") === "page", {}, section);
  await page.waitForSelector("#view-title");
}

const status = () => page.$eval("#status", (el) => el.textContent.trim());
// Decision rows: [time, server, human, agent, target, decision, reason, ""].
const TARGET = 4;
const DECISION = 5;
const REASON = 6;

// ---------------------------------------------------------------- the journey

async function journey() {
  // Log in: the first thing on the page is the password form.
  step("login");
  await page.goto(config.url, { waitUntil: "load" });
  await page.waitForSelector("input[name=email]", { visible: true });
  const order = await tabOrder(4);
  expect(
    JSON.stringify(order) === JSON.stringify(["a:Skip to content", "input:Email", "input:Password", "button:Log in"]),
    `Tab order on the login page: ${order.join(" → ")} (want skip link, Email, Password, Log in)`,
  );
  await accessibility("login");
  await screenshot("login");
  // By keyboard: back to Email (Shift+Tab twice), type, Tab, type, Enter.
  await page.keyboard.down("Shift");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  await page.keyboard.up("Shift");
  must((await focused()) === "input:Email", `Shift+Tab did not reach Email (${await focused()})`);
  await page.keyboard.type(config.email);
  await page.keyboard.press("Tab");
  await page.keyboard.type(config.password);
  beforeLogin = false;
  await page.keyboard.press("Enter");

  // The overview.
  step("overview");
  await page.waitForSelector(".overview .cards .card");
  const marks = await page.evaluate(() => window.__marks);
  const paint = await page.evaluate(() => Object.fromEntries(performance.getEntriesByType("paint").map((p) => [p.name, p.startTime])));
  figures.first_render = {
    first_contentful_paint_ms: Math.round(paint["first-contentful-paint"] ?? -1),
    login_form_ms: Math.round(marks.login),
    login_submit_to_overview_cards_ms: Math.round(marks.cards - marks.submit),
  };
  figures.bytes = await page.evaluate(() => {
    const out = {};
    for (const e of [performance.getEntriesByType("navigation")[0], ...performance.getEntriesByType("resource")]) {
      const name = new URL(e.name).pathname;
      if (name.startsWith("/ui/")) out[name] = { transferred: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize };
    }
    return out;
  });
  const cards = await page.$$eval(".overview .card", (els) => Object.fromEntries(els.map((c) => [c.querySelector(".label").textContent, c.querySelector(".value").textContent])));
  expect(Number(cards["Decisions"]) >= 1, `the overview counts no decisions: ${JSON.stringify(cards)}`);
  expect(cards["Servers"] === "1" && cards["Active sessions"] === "1", `the overview's servers / sessions: ${JSON.stringify(cards)}`);
  const nav = await tabOrder(8);
  const want = ["a:Skip to content", "a:Overview", "a:Decisions", "a:Access", "a:What can this agent do?", "a:Servers", "a:Teams and API keys", "select:Team"];
  expect(JSON.stringify(nav) === JSON.stringify(want), `Tab order after login: ${nav.join(" → ")} (want ${want.join(" → ")})`);
  await accessibility("overview");
  await screenshot("overview");

  // Decisions, reached by keyboard: Tab to the nav link, Enter.
  step("decisions");
  await tabOrder(3);
  must((await focused()) === "a:Decisions", `the third Tab stop is ${await focused()}, not the Decisions link`);
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.getElementById("nav-decisions")?.getAttribute("aria-current") === "page");
  // The skip link jumps to the content and stays on this view.
  await tabOrder(1);
  await page.keyboard.press("Enter");
  const afterSkip = await page.evaluate(() => ({ focus: document.activeElement.id, hash: location.hash, title: document.getElementById("view-title")?.textContent }));
  expect(
    afterSkip.focus === "main" && afterSkip.hash === "#/decisions" && afterSkip.title === "Decisions",
    `the skip link: focus on #${afterSkip.focus}, route ${afterSkip.hash}, view "${afterSkip.title}" (want #main, #/decisions, Decisions)`,
  );
  // The SDK calls' decisions arrive through the live tail.
  await page.click("#live");
  const allowed = `tool ${config.allowed_tool}`;
  const denied = `tool ${config.denied_tool}`;
  await waitForRows(
    "decisions?, newest first",
    (r) => r.some((x) => x[TARGET] === allowed && x[DECISION] === "allow") && r.some((x) => x[TARGET] === denied && x[DECISION] === "deny"),
    `the decisions of the SDK calls (${allowed} allowed, ${denied} denied)`,
  );
  await accessibility("decisions");
  await screenshot("decisions");

  // Filter: the denied tool and deny only, submitted with Enter in the Tool field.
  await page.click("#live"); // stop the tail: the filtered list must come from the filter alone
  await fill("Tool", config.denied_tool);
  await page.select(await control("Decision"), "deny");
  await page.focus(await control("Tool"));
  await page.keyboard.press("Enter");
  const filtered = await waitForRows(
    "decisions?, newest first",
    (r) => r.length > 0 && r.every((x) => x[TARGET] === denied),
    `the list filtered to ${denied}`,
  );
  expect(
    filtered.every((x) => x[DECISION] === "deny" && x[REASON] === config.denied_reason),
    `filtered rows are not all deny/${config.denied_reason}: ${JSON.stringify(filtered)}`,
  );

  // Open one: its facts and the policy engine's explanation.
  await page.click("#main table tbody tr button.link");
  await page.waitForFunction(() => document.querySelector("#decision-detail .steps li, #decision-detail .error, #decision-detail .note"));
  const detail = await page.evaluate(() => {
    const d = document.getElementById("decision-detail");
    return {
      focus: document.activeElement === d,
      facts: d.querySelector(".facts")?.textContent || "",
      verdict: d.querySelector(".verdict")?.textContent || "",
      steps: [...d.querySelectorAll(".steps li")].map((li) => li.textContent),
      problem: d.querySelector(".error, .note")?.textContent || "",
    };
  });
  expect(detail.focus, "opening a decision does not move the focus to its details");
  expect(detail.facts.includes(config.session) && detail.facts.includes(config.human), `the decision's facts name neither the session nor the human: ${detail.facts}`);
  if (expect(detail.steps.length > 0, `no explanation steps: ${detail.problem || "(nothing shown)"}`)) {
    expect(detail.verdict.includes("deny"), `the explanation's verdict is not deny: ${detail.verdict}`);
    expect(
      detail.steps.some((s) => /trust/i.test(s)),
      `no explanation step mentions trust (the reason was ${config.denied_reason}): ${JSON.stringify(detail.steps)}`,
    );
  }
  figures.explanation = detail.steps;
  await accessibility("decision explained");
  await screenshot("decision-explained");

  // What can this agent do? (while its session is valid)
  step("capabilities");
  const capabilities = await askCapabilities();
  expect(capabilities.some((x) => x[1] === config.allowed_tool && x[2] === "allow"), `capabilities: ${config.allowed_tool} not allowed: ${JSON.stringify(capabilities)}`);
  expect(capabilities.some((x) => x[1] === config.denied_tool && x[2] === "deny"), `capabilities: ${config.denied_tool} not denied: ${JSON.stringify(capabilities)}`);
  figures.capabilities = capabilities.map((x) => `${x[1]} ${x[2]}`);
  await accessibility("capabilities");
  await screenshot("capabilities");

  // Access: revoke the session with one click.
  step("access");
  await go("access");
  const sessionRow = await waitForRows("^Agent sessions$", (r) => r.some((x) => x[0] === config.session), `the session ${config.session} in Access`);
  expect(sessionRow.find((x) => x[0] === config.session)[6] !== "revoked", "the session shows as revoked before the click");
  await page.evaluate((name) => {
    const row = [...document.querySelectorAll("#main tr")].find((r) => r.cells[0]?.textContent === name);
    [...row.querySelectorAll("button")].find((b) => b.textContent === "Revoke").click();
  }, config.session);
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Revoked") || document.getElementById("status").classList.contains("bad"));
  expect(
    (await status()) === `Revoked ${config.session}: its next call is denied`,
    `the status after Revoke says "${await status()}"`,
  );
  await waitForRows("^Agent sessions$", (r) => r.some((x) => x[0] === config.session && x[6] === "revoked"), `${config.session} shown as revoked`);
  await accessibility("access");
  await screenshot("access-revoked");

  // The caller's next SDK call is denied; the denial shows up here.
  console.log(`REVOKED ${config.session}`);
  const answer = await nextLine();
  must(answer.startsWith("DENIED "), `the caller's next call: ${answer}`);
  step("the denial in Decisions");
  await go("decisions");
  await fill("Reason", "session_revoked");
  await page.keyboard.press("Enter");
  await page.click("#live"); // the gateway ships its audit in batches: keep tailing
  await waitForRows(
    "decisions?, newest first",
    (r) => r.some((x) => x[REASON] === "session_revoked" && x[DECISION] === "deny" && x[3] === config.agent),
    "the session_revoked denial of the next call",
  );
  await screenshot("decisions-session-revoked");

  // The two views the journey does not need, checked all the same.
  for (const [section, ready] of [
    ["servers", `#server-${config.server}`],
    ["teams", "#main table"],
  ]) {
    step(section);
    await go(section);
    await page.waitForSelector(ready);
    await accessibility(section);
    await screenshot(section);
  }

  // And the question again: now nothing is admitted.
  step("capabilities after the revocation");
  await askCapabilities();
  const admission = await page.$eval("#main .results .verdict", (el) => el.textContent);
  expect(/deny/.test(admission) && /revoked/i.test(admission), `after the revocation the admission says: ${admission}`);
}

async function askCapabilities() {
  await go("capabilities");
  await page.select(await control("Server"), config.server);
  await fill("Human", config.human);
  await fill("Agent", config.agent);
  await fill("Team", config.team);
  await fill("Session", config.session);
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector("#main .results table, #main .results .error, #main .results .note"));
  const problem = await page.$eval("#main .results", (el) => el.querySelector(".error, .note")?.textContent || "");
  must(!problem, `What can this agent do?: ${problem}`);
  return (await rows("allowed$")) || [];
}

let stdinLines;
function nextLine() {
  stdinLines ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  return Promise.race([
    stdinLines.next().then((r) => (r.done ? "EOF (the caller closed stdin)" : r.value.trim())),
    new Promise((resolve) => setTimeout(() => resolve(`no answer within ${(2 * WAIT) / 1000} s`), 2 * WAIT)),
  ]);
}

const started = Date.now();
let code = 0;
try {
  await journey();
} catch (e) {
  failures.push(`stopped: ${e.message}`);
  process.stderr.write(`FAILED (stopped): ${e.message}\n`);
  await screenshot("failure").catch(() => {});
} finally {
  figures.failures = failures;
  figures.seconds = Math.round((Date.now() - started) / 100) / 10;
  console.log(`RESULT ${JSON.stringify(figures)}`);
  await browser.close();
  code = failures.length ? 1 : 0;
}
process.exit(code);
