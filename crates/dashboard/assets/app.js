// The mcp-runtime dashboard: one script, no framework, no build step. It talks only to the
// platform API of the origin that served it (docs/dashboard.md). Every element is built with
// the DOM API (never from HTML strings), so no value from the API is ever parsed as markup.

const state = {
  token: sessionStorage.getItem("mcp.token"),
  apiKey: sessionStorage.getItem("mcp.apiKey"),
  me: null,
  teams: [],
  team: sessionStorage.getItem("mcp.team"),
  servers: null,
  tail: null,
};

const SECTIONS = [
  ["overview", "Overview"],
  ["decisions", "Decisions"],
  ["access", "Access"],
  ["capabilities", "What can this agent do?"],
  ["servers", "Servers"],
  ["teams", "Teams and API keys"],
];

// ---------- small DOM helpers ----------

/** An element: h("td", {class: "x"}, "text", child, ...). Attributes starting with "on" are listeners. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

function main() {
  return document.getElementById("main");
}

function say(text, kind) {
  const status = document.getElementById("status");
  status.textContent = text || "";
  status.className = "status" + (kind ? " " + kind : "");
}

function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function field(label, input, help) {
  const id = input.id || "f-" + Math.random().toString(36).slice(2);
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, help ? h("small", {}, help) : null);
}

function table(caption, columns, rows, rowAttrs) {
  return h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      rows.length
        ? rows.map((cells, i) => h("tr", rowAttrs ? rowAttrs(i) : {}, cells.map((c) => h("td", {}, c))))
        : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, "Nothing yet.")),
    ),
  );
}

function badge(text, kind) {
  return h("span", { class: "badge " + (kind || "") }, text);
}

function decisionBadge(decision) {
  return badge(decision || "-", decision === "allow" ? "ok" : decision === "deny" ? "bad" : "");
}

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options = {}) {
  const headers = { accept: "application/json" };
  if (state.token) headers.authorization = "Bearer " + state.token;
  else if (state.apiKey) headers["x-api-key"] = state.apiKey;
  let body;
  if (options.body !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  const response = await fetch(path, { method: options.method || "GET", headers, body });
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { raw: text };
    }
  }
  if (response.status === 401 && !options.anonymous) {
    logout("Your login ended or was refused: log in again.");
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "http_" + response.status, error.message || "HTTP " + response.status);
  }
  return data;
}

function teamPath(rest) {
  return "/v1/teams/" + encodeURIComponent(state.team) + rest;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

function problem(error, what) {
  if (error instanceof ApiError && error.code === "kubernetes_unavailable")
    return h("p", { class: "note" }, what + ": the platform is not connected to a cluster (--kube).");
  if (error instanceof ApiError && error.code === "analytics_unavailable")
    return h("p", { class: "note" }, what + ": analytics are unavailable (" + error.message + ").");
  return h("p", { class: "error", role: "alert" }, what + ": " + error.message);
}

// ---------- login ----------

function showLogin(message) {
  document.getElementById("top").hidden = true;
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const key = h("input", { type: "password", name: "api-key", autocomplete: "off", placeholder: "mcpk_…" });
  const error = h("p", { class: "error", role: "alert" }, message || "");
  const passwordForm = h(
    "form",
    {
      "aria-labelledby": "login-title",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const answer = await api("/v1/auth/login", {
            method: "POST",
            body: { email: email.value, password: password.value },
            anonymous: true,
          });
          state.token = answer.access_token;
          sessionStorage.setItem("mcp.token", state.token);
          await start();
        } catch (err) {
          error.textContent = err.message;
        }
      },
    },
    field("Email", email),
    field("Password", password),
    h("button", { type: "submit" }, "Log in"),
  );
  const keyForm = h(
    "form",
    {
      "aria-label": "Log in with an API key",
      onsubmit: async (e) => {
        e.preventDefault();
        state.apiKey = key.value.trim();
        try {
          await api("/v1/auth/me", { anonymous: true });
          sessionStorage.setItem("mcp.apiKey", state.apiKey);
          await start();
        } catch (err) {
          state.apiKey = null;
          error.textContent = err.message;
        }
      },
    },
    field("API key", key, "Kept for this browser tab only."),
    h("button", { type: "submit", class: "secondary" }, "Use the key"),
  );
  clear(main()).append(
    h("section", { class: "login" }, h("h1", { id: "login-title" }, "Log in to mcp-runtime"), error, passwordForm, h("p", { class: "or" }, "or"), keyForm),
  );
  email.focus();
}

function logout(message) {
  state.token = null;
  state.apiKey = null;
  state.me = null;
  stopTail();
  sessionStorage.removeItem("mcp.token");
  sessionStorage.removeItem("mcp.apiKey");
  showLogin(message);
}

// ---------- shell ----------

async function start() {
  // Without stored credentials, ask anyway: a server that needs no login (`mcp-runtime dev`, on
  // 127.0.0.1 only) answers 200, and the login form is shown only on 401.
  const anonymous = !(state.token || state.apiKey);
  try {
    state.me = await api("/v1/auth/me", { anonymous });
  } catch (err) {
    // A 401 to stored credentials has logged out (and shown the form) already.
    if (!(err instanceof ApiError && err.status === 401)) showLogin(err.message);
    else if (anonymous) showLogin();
    return;
  }
  const admin = state.me.user.role === "admin";
  state.teams = admin ? (await api("/v1/teams")).teams : state.me.teams || [];
  if (!state.teams.some((t) => t.slug === state.team)) state.team = state.teams.length ? state.teams[0].slug : null;
  const select = clear(document.getElementById("team-select"));
  for (const t of state.teams) select.append(h("option", { value: t.slug, selected: t.slug === state.team }, t.display_name || t.slug));
  select.onchange = () => {
    state.team = select.value;
    sessionStorage.setItem("mcp.team", state.team);
    state.servers = null;
    route();
  };
  document.getElementById("who-email").textContent = state.me.user.email + (admin ? " (admin)" : "");
  document.getElementById("logout").onclick = () => logout("Logged out.");
  document.getElementById("logout").hidden = anonymous;
  const nav = clear(document.getElementById("nav"));
  for (const [id, label] of SECTIONS) nav.append(h("a", { href: "#/" + id, id: "nav-" + id }, label));
  document.getElementById("top").hidden = false;
  if (!location.hash) location.hash = "#/overview";
  route();
}

function route() {
  stopTail();
  const id = (location.hash.match(/^#\/([a-z]+)/) || [])[1] || "overview";
  for (const [key] of SECTIONS) {
    const link = document.getElementById("nav-" + key);
    if (link) link.setAttribute("aria-current", key === id ? "page" : "false");
  }
  const view = { overview, decisions, access, capabilities, servers, teams }[id] || overview;
  const section = h("section", { "aria-labelledby": "view-title" });
  clear(main()).append(section);
  say("");
  if (!state.team && id !== "teams") {
    section.append(h("h1", { id: "view-title" }, "No team"), h("p", {}, "You are not a member of any team yet. An admin adds you to one."));
    return;
  }
  view(section).catch((err) => section.append(problem(err, "Loading")));
}

async function teamServers() {
  if (!state.servers) {
    try {
      state.servers = (await api(teamPath("/servers"))).servers;
    } catch (err) {
      state.servers = [];
      if (!(err instanceof ApiError && err.code === "kubernetes_unavailable")) throw err;
    }
  }
  return state.servers;
}

// ---------- overview ----------

function svgEl(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

// The SVG namespace is a name, not a location: nothing is fetched from it.
const SVG_NS = "http://www.w3.org/2000/svg";

function decisionsChart(series) {
  const width = 720;
  const height = 180;
  const max = Math.max(1, ...series.map((p) => p.decisions));
  const step = width / Math.max(1, series.length);
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height + 20}`, role: "img", "aria-labelledby": "chart-title chart-desc", class: "chart" });
  const title = svgEl("title", { id: "chart-title" });
  title.textContent = "Decisions over time, allowed and denied";
  const allowed = series.reduce((a, p) => a + p.allowed, 0);
  const denied = series.reduce((a, p) => a + p.denied, 0);
  const desc = svgEl("desc", { id: "chart-desc" });
  desc.textContent = `${allowed} allowed and ${denied} denied across ${series.length} intervals; the table below lists each.`;
  svg.append(title, desc);
  series.forEach((p, i) => {
    const x = i * step + 1;
    const w = Math.max(1, step - 2);
    const hAllowed = (p.allowed / max) * height;
    const hDenied = (p.denied / max) * height;
    svg.append(svgEl("rect", { x, y: height - hAllowed, width: w, height: hAllowed, class: "allowed" }));
    svg.append(svgEl("rect", { x, y: height - hAllowed - hDenied, width: w, height: hDenied, class: "denied" }));
  });
  const first = svgEl("text", { x: 0, y: height + 16, class: "axis" });
  first.textContent = series.length ? fmtTime(series[0].start) : "";
  const last = svgEl("text", { x: width, y: height + 16, class: "axis", "text-anchor": "end" });
  last.textContent = series.length ? fmtTime(series[series.length - 1].start) : "";
  svg.append(first, last);
  return svg;
}

async function overview(section) {
  section.append(h("h1", { id: "view-title" }, "Overview"));
  const windowSelect = h("select", {}, ["1h", "24h", "7d"].map((w) => h("option", { value: w, selected: w === "24h" }, w)));
  const body = h("div", { class: "overview" });
  section.append(h("form", { class: "inline", onsubmit: (e) => e.preventDefault() }, field("Window", windowSelect)), body);
  const load = async () => {
    clear(body).append(h("p", { class: "loading" }, "Loading…"));
    const parts = [];
    try {
      const usage = await api(teamPath("/analytics/usage" + query({ window: windowSelect.value, limit: 5 })));
      const t = usage.totals;
      parts.push(
        h(
          "div",
          { class: "cards" },
          card("Decisions", t.decisions),
          card("Allowed", t.allowed, "ok"),
          card("Denied", t.denied, "bad"),
          card("Humans", t.humans),
          card("Agents", t.agents),
          card("Sessions", t.sessions),
        ),
        h("figure", {}, decisionsChart(usage.series), h("figcaption", {}, h("span", { class: "key allowed" }, "allowed"), " ", h("span", { class: "key denied" }, "denied"))),
        h(
          "div",
          { class: "columns" },
          table("Top tools", ["Server", "Tool", "Decisions", "Denied"], usage.tools.map((x) => [x.server, x.tool, x.decisions, x.denied])),
          table(
            "Top denial reasons",
            ["Reason", "Decisions"],
            usage.reasons.filter((r) => r.key !== "allowed").map((r) => [r.key, r.decisions]),
          ),
        ),
      );
    } catch (err) {
      parts.push(problem(err, "Decisions"));
    }
    try {
      const [servers, grants, sessions] = await Promise.all([teamServers(), api(teamPath("/grants")), api(teamPath("/sessions"))]);
      const active = sessions.sessions.filter((s) => !s.spec.revoked && (!s.spec.expiresAt || new Date(s.spec.expiresAt) > new Date()));
      parts.push(
        h(
          "div",
          { class: "cards" },
          card("Servers", servers.length),
          card("Ready", servers.filter((s) => s.phase === "Ready").length, "ok"),
          card("Grants", grants.grants.filter((g) => !g.spec.disabled).length),
          card("Active sessions", active.length),
        ),
      );
    } catch (err) {
      parts.push(problem(err, "Servers, grants and sessions"));
    }
    clear(body).append(...parts);
  };
  windowSelect.onchange = load;
  await load();
}

function card(label, value, kind) {
  return h("div", { class: "card " + (kind || "") }, h("div", { class: "value" }, value ?? "-"), h("div", { class: "label" }, label));
}

// ---------- decisions ----------

const FILTERS = [
  ["server", "Server"],
  ["human", "Human"],
  ["agent", "Agent"],
  ["team", "Team"],
  ["tool", "Tool"],
  ["reason", "Reason"],
];

function stopTail() {
  if (state.tail) clearInterval(state.tail);
  state.tail = null;
}

function target(e) {
  if (e.tool) return ["tool", e.tool];
  if (e.prompt) return ["prompt", e.prompt];
  if (e.resource) return ["resource", e.resource];
  return [null, e.rpc_method || e.http_method || ""];
}

async function decisions(section) {
  section.append(h("h1", { id: "view-title" }, "Decisions"));
  const inputs = {};
  const controls = FILTERS.map(([key, label]) => field(label, (inputs[key] = h("input", { type: "text", name: key }))));
  const decision = h("select", { name: "decision" }, h("option", { value: "" }, "any"), h("option", { value: "allow" }, "allow"), h("option", { value: "deny" }, "deny"));
  const since = h("input", { type: "datetime-local", name: "since" });
  const until = h("input", { type: "datetime-local", name: "until" });
  const live = h("input", { type: "checkbox", name: "live", id: "live" });
  const list = h("div", { class: "results" });
  const detail = h("div", { class: "detail", id: "decision-detail", tabindex: "-1" });
  let events = [];
  let cursor = null;

  const params = () => {
    const p = {};
    for (const [key] of FILTERS) p[key] = inputs[key].value.trim();
    p.decision = decision.value;
    if (since.value) p.since = new Date(since.value).toISOString();
    if (until.value) p.until = new Date(until.value).toISOString();
    return p;
  };
  const render = () => {
    const rows = events.map((e) => {
      const [kind, name] = target(e);
      return [
        fmtTime(e.time),
        e.server || "-",
        e.human_id || "-",
        e.agent_id || "-",
        (kind ? kind + " " : "") + name,
        decisionBadge(e.decision),
        e.reason || "-",
        h("button", { type: "button", class: "link", onclick: () => open(e), "aria-controls": "decision-detail" }, "Explain"),
      ];
    });
    // append(null) would add the text "null": only the button when there is more.
    clear(list).append(
      table(`${events.length} decision${events.length === 1 ? "" : "s"}, newest first`, ["Time", "Server", "Human", "Agent", "Target", "Decision", "Reason", ""], rows, (i) => ({ "data-event": events[i].event_id })),
      ...(cursor ? [h("button", { type: "button", class: "secondary", onclick: more }, "Older decisions")] : []),
    );
  };
  const load = async () => {
    const page = await api(teamPath("/analytics/events" + query({ ...params(), limit: 50 })));
    events = page.events;
    cursor = page.next_cursor;
    render();
  };
  const more = async () => {
    const page = await api(teamPath("/analytics/events" + query({ ...params(), limit: 50, cursor })));
    events = events.concat(page.events);
    cursor = page.next_cursor;
    render();
  };
  const poll = async () => {
    const newest = events.length ? events[0].time : null;
    const p = params();
    if (newest && !p.since) p.since = newest;
    try {
      const page = await api(teamPath("/analytics/events" + query({ ...p, limit: 100 })));
      const known = new Set(events.map((e) => e.event_id));
      const fresh = page.events.filter((e) => !known.has(e.event_id));
      if (fresh.length) {
        events = fresh.concat(events);
        render();
        say(`${fresh.length} new decision${fresh.length > 1 ? "s" : ""}.`);
      }
    } catch (err) {
      say("Live tail: " + err.message, "bad");
    }
  };
  live.onchange = () => {
    stopTail();
    if (live.checked) state.tail = setInterval(poll, 2000);
  };
  const open = async (e) => {
    const [kind, name] = target(e);
    clear(detail).append(
      h("h2", {}, "Decision " + e.event_id),
      h(
        "dl",
        { class: "facts" },
        fact("Time", fmtTime(e.time)),
        fact("Decision", decisionBadge(e.decision), " ", e.reason, e.enforced === false ? " (observe mode: not enforced)" : ""),
        fact("Server", (e.namespace ? e.namespace + "/" : "") + (e.server || "-")),
        fact("Target", kind ? kind + " " + name : name),
        fact("Human / agent / team", [e.human_id, e.agent_id, e.subject_team_id].map((x) => x || "-").join(" / ")),
        fact("Matched grant", e.matched_grant || "-"),
        fact("Session", (e.matched_session || e.session_id || "-") + (e.consented_trust ? " (consented " + e.consented_trust + ")" : "")),
        fact("Trust", `required ${e.required_trust || "-"}, grant ${e.admin_trust || "-"}, effective ${e.effective_trust || "-"}`),
        fact("Policy revision", e.policy_revision || "-"),
        fact("Latency", e.latency_ms !== undefined ? e.latency_ms + " ms" : "-"),
        e.trace_id ? fact("Trace", e.trace_id) : null,
      ),
    );
    const why = h("div", { class: "why" }, h("h3", {}, "Why"), h("p", { class: "loading" }, "Asking the policy engine…"));
    detail.append(why);
    detail.focus();
    if (!kind || !e.server) {
      clear(why).append(h("h3", {}, "Why"), h("p", {}, "This request named no tool, prompt or resource: it was decided on identity, session and grant alone."));
      return;
    }
    try {
      const x = await api(
        teamPath(
          "/servers/" +
            encodeURIComponent(e.server) +
            "/explain" +
            query({ kind, name, human: e.human_id, agent: e.agent_id, team: e.subject_team_id, session: e.session_id, at: e.time }),
        ),
      );
      clear(why).append(
        h("h3", {}, "Why"),
        h("p", {}, "Explained against the server's current policy (revision ", x.policy_revision || "-", ")", x.policy_revision && e.policy_revision && x.policy_revision !== e.policy_revision ? "; it changed since this decision" : "", ":"),
        h("p", { class: "verdict" }, decisionBadge(x.decision.allowed ? "allow" : "deny"), " ", x.decision.reason, x.summary ? " — " + x.summary : ""),
        h("ol", { class: "steps" }, x.steps.map((s) => h("li", {}, s.text))),
        ...(x.hint ? [h("p", { class: "hint" }, x.hint)] : []),
      );
    } catch (err) {
      clear(why).append(h("h3", {}, "Why"), problem(err, "Explanation"));
    }
  };

  section.append(
    h(
      "form",
      {
        class: "filters",
        "aria-label": "Filter decisions",
        onsubmit: (ev) => {
          ev.preventDefault();
          load().catch((err) => clear(list).append(problem(err, "Decisions")));
        },
      },
      controls,
      field("Decision", decision),
      field("Since", since),
      field("Until", until),
      h("div", { class: "field actions" }, h("button", { type: "submit" }, "Apply"), h("label", { for: "live", class: "check" }, live, " Live tail")),
    ),
    h("div", { class: "split" }, list, detail),
  );
  await load();
}

function fact(label, ...value) {
  return [h("dt", {}, label), h("dd", {}, ...value)];
}

// ---------- access ----------

async function access(section) {
  section.append(h("h1", { id: "view-title" }, "Access"));
  const mine = state.teams.find((t) => t.slug === state.team);
  const owner = state.me.user.role === "admin" || (mine && mine.role === "owner");
  const grantsBox = h("div", {});
  const sessionsBox = h("div", {});
  const load = async () => {
    const [grants, sessions] = await Promise.all([api(teamPath("/grants")), api(teamPath("/sessions"))]);
    clear(grantsBox).append(
      table(
        "Grants",
        ["Name", "Server", "Subject", "Max trust", "Side effects", "State", ""],
        grants.grants.map((g) => [
          g.name,
          g.spec.serverRef.name,
          subject(g.spec.subject),
          g.spec.maxTrust || "low",
          (g.spec.allowedSideEffects || []).join(", ") || "-",
          g.spec.disabled ? badge("disabled", "bad") : badge(g.phase || "enabled", "ok"),
          owner
            ? h(
                "span",
                { class: "row-actions" },
                h("button", { type: "button", class: "secondary", onclick: () => act(() => api(teamPath("/grants/" + encodeURIComponent(g.name)), { method: "PATCH", body: { disabled: !g.spec.disabled } }), (g.spec.disabled ? "Enabled " : "Disabled ") + g.name) }, g.spec.disabled ? "Enable" : "Disable"),
                h("button", { type: "button", class: "danger", onclick: () => confirm("Delete grant " + g.name + "?") && act(() => api(teamPath("/grants/" + encodeURIComponent(g.name)), { method: "DELETE" }), "Deleted " + g.name) }, "Delete"),
              )
            : "",
        ]),
      ),
    );
    clear(sessionsBox).append(
      table(
        "Agent sessions",
        ["Name", "Server", "Human", "Agent", "Trust", "Expires", "State", ""],
        sessions.sessions.map((s) => [
          s.name,
          s.spec.serverRef.name,
          s.spec.subject.humanID || "-",
          s.spec.subject.agentID || "-",
          s.spec.consentedTrust || "low",
          fmtTime(s.spec.expiresAt),
          s.spec.revoked ? badge("revoked", "bad") : badge(s.phase || "active", "ok"),
          s.spec.revoked
            ? owner
              ? h("button", { type: "button", class: "secondary", onclick: () => act(() => api(teamPath("/sessions/" + encodeURIComponent(s.name) + "/unrevoke"), { method: "POST" }), "Unrevoked " + s.name) }, "Unrevoke")
              : ""
            : h("button", { type: "button", class: "danger", onclick: () => act(() => api(teamPath("/sessions/" + encodeURIComponent(s.name) + "/revoke"), { method: "POST" }), "Revoked " + s.name + ": its next call is denied") }, "Revoke"),
        ]),
      ),
    );
  };
  const act = async (request, done) => {
    try {
      await request();
      say(done, "ok");
      await load();
    } catch (err) {
      say(err.message, "bad");
    }
  };
  section.append(grantsBox);
  if (owner) section.append(await grantForm(load));
  section.append(sessionsBox);
  await load();
}

function subject(s) {
  return [s.humanID && "human " + s.humanID, s.agentID && "agent " + s.agentID, s.teamID && "team " + s.teamID].filter(Boolean).join(", ") || "-";
}

async function grantForm(reload) {
  const servers = await teamServers();
  const name = h("input", { type: "text", required: true, pattern: "[a-z0-9]([-a-z0-9]*[a-z0-9])?" });
  const server = servers.length
    ? h("select", { required: true }, servers.map((s) => h("option", { value: s.name }, s.name)))
    : h("input", { type: "text", required: true });
  const human = h("input", { type: "text" });
  const agent = h("input", { type: "text" });
  const team = h("input", { type: "text" });
  const trust = h("select", {}, ["low", "medium", "high"].map((t) => h("option", { value: t }, t)));
  const effects = ["read", "write", "destructive"].map((e) => h("input", { type: "checkbox", value: e, checked: e === "read", id: "effect-" + e }));
  const error = h("p", { class: "error", role: "alert" });
  return h(
    "form",
    {
      class: "grant-form",
      "aria-labelledby": "grant-form-title",
      onsubmit: async (e) => {
        e.preventDefault();
        error.textContent = "";
        const subjectSpec = {};
        if (human.value.trim()) subjectSpec.humanID = human.value.trim();
        if (agent.value.trim()) subjectSpec.agentID = agent.value.trim();
        if (team.value.trim()) subjectSpec.teamID = team.value.trim();
        try {
          await api(teamPath("/grants"), {
            method: "POST",
            body: {
              name: name.value.trim(),
              spec: {
                serverRef: { name: server.value },
                subject: subjectSpec,
                maxTrust: trust.value,
                allowedSideEffects: effects.filter((x) => x.checked).map((x) => x.value),
              },
            },
          });
          say("Created grant " + name.value, "ok");
          e.target.reset();
          await reload();
        } catch (err) {
          error.textContent = err.message;
        }
      },
    },
    h("h2", { id: "grant-form-title" }, "Create a grant"),
    error,
    h(
      "div",
      { class: "row" },
      field("Name", name),
      field("Server", server),
      field("Human", human, "an email, as people log in"),
      field("Agent", agent),
      field("Team", team),
      field("Max trust", trust),
    ),
    h("fieldset", {}, h("legend", {}, "Allowed side effects"), effects.map((x) => h("label", { for: x.id, class: "check" }, x, " " + x.value))),
    h("button", { type: "submit" }, "Create grant"),
  );
}

// ---------- what can this agent do ----------

async function capabilities(section) {
  section.append(h("h1", { id: "view-title" }, "What can this agent do?"));
  const servers = await teamServers();
  if (!servers.length) {
    section.append(h("p", {}, "No servers in this team (or no cluster connected)."));
    return;
  }
  const server = h("select", { required: true }, servers.map((s) => h("option", { value: s.name }, s.name)));
  const human = h("input", { type: "text", value: state.me.user.email });
  const agent = h("input", { type: "text" });
  const team = h("input", { type: "text", value: state.team });
  const session = h("input", { type: "text" });
  const out = h("div", { class: "results", "aria-live": "polite" });
  section.append(
    h(
      "form",
      {
        class: "filters",
        "aria-label": "Who and where",
        onsubmit: async (e) => {
          e.preventDefault();
          clear(out).append(h("p", { class: "loading" }, "Asking the policy engine…"));
          try {
            const c = await api(
              teamPath("/servers/" + encodeURIComponent(server.value) + "/capabilities" + query({ human: human.value.trim(), agent: agent.value.trim(), team: team.value.trim(), session: session.value.trim() })),
            );
            const admission = c.admission || {};
            const items = c.items || c.capabilities || [];
            clear(out).append(
              h("p", { class: "verdict" }, "Admission: ", decisionBadge(admission.allowed ? "allow" : "deny"), " ", admission.reason || "", admission.summary ? " — " + admission.summary : ""),
              table(
                `${items.filter((i) => i.allowed).length} of ${items.length} allowed`,
                ["Kind", "Name", "Verdict", "Reason", "Required trust", "Side effect"],
                items.map((i) => [i.kind, i.name, decisionBadge(i.allowed ? "allow" : "deny"), i.summary || i.reason, i.required_trust || "-", i.side_effect || "-"]),
              ),
            );
          } catch (err) {
            clear(out).append(problem(err, "Capabilities"));
          }
        },
      },
      field("Server", server),
      field("Human", human),
      field("Agent", agent),
      field("Team", team),
      field("Session", session, "an MCPAgentSession name, if the server requires sessions"),
      h("div", { class: "field actions" }, h("button", { type: "submit" }, "Show")),
    ),
    out,
  );
}

// ---------- servers ----------

async function servers(section) {
  section.append(h("h1", { id: "view-title" }, "Servers"));
  state.servers = null;
  const list = await teamServers();
  if (!list.length) section.append(h("p", {}, "No servers in this team (or no cluster connected)."));
  for (const s of list) {
    section.append(
      h(
        "article",
        { class: "server", "aria-labelledby": "server-" + s.name },
        h("h2", { id: "server-" + s.name }, s.name, " ", badge(s.phase || "Unknown", s.phase === "Ready" ? "ok" : s.phase === "Error" ? "bad" : "")),
        s.description ? h("p", {}, s.description) : null,
        s.message ? h("p", { class: "note" }, s.message) : null,
        h("p", {}, "Gateway: ", s.gateway && s.gateway.enabled ? (s.gateway.ready ? "on, ready" : "on, not ready") : "off", s.policy_revision ? " · policy " + s.policy_revision : ""),
        table("Conditions of " + s.name, ["Type", "Status", "Reason", "Message"], (s.conditions || []).map((c) => [c.type, c.status, c.reason || "", c.message || ""])),
        table("Tools of " + s.name, ["Tool", "Required trust", "Side effect", "Risk", "Description"], (s.tools || []).map((t) => [t.name, t.required_trust || "low", t.side_effect || "-", t.risk_level || "-", t.description || ""])),
      ),
    );
  }
}

// ---------- teams and API keys ----------

async function teams(section) {
  section.append(h("h1", { id: "view-title" }, "Teams and API keys"));
  const teamsBox = h("div", {});
  section.append(teamsBox);
  for (const t of state.teams) {
    try {
      const detail = await api("/v1/teams/" + encodeURIComponent(t.slug));
      teamsBox.append(
        table(`Team ${t.display_name || t.slug} (namespace ${detail.team.namespace})`, ["Member", "Role"], detail.members.map((m) => [m.email, m.role])),
      );
    } catch (err) {
      teamsBox.append(problem(err, "Team " + t.slug));
    }
  }
  const keysBox = h("div", {});
  const shown = h("div", { "aria-live": "polite" });
  const keyName = h("input", { type: "text", required: true });
  const loadKeys = async () => {
    const keys = (await api("/v1/api-keys")).api_keys;
    clear(keysBox).append(
      table(
        "Your API keys",
        ["Name", "Prefix", "Created", "Last used", "State", ""],
        keys.map((k) => [
          k.name,
          k.prefix,
          fmtTime(k.created_at),
          fmtTime(k.last_used_at) || "never",
          k.revoked_at ? badge("revoked", "bad") : badge("active", "ok"),
          k.revoked_at
            ? ""
            : h(
                "button",
                {
                  type: "button",
                  class: "danger",
                  onclick: async () => {
                    try {
                      await api("/v1/api-keys/" + encodeURIComponent(k.id), { method: "DELETE" });
                      say("Revoked key " + k.prefix, "ok");
                      await loadKeys();
                    } catch (err) {
                      say(err.message, "bad");
                    }
                  },
                },
                "Revoke",
              ),
        ]),
      ),
    );
  };
  section.append(
    keysBox,
    h(
      "form",
      {
        class: "inline",
        "aria-label": "Create an API key",
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            const created = await api("/v1/api-keys", { method: "POST", body: { name: keyName.value.trim() } });
            clear(shown).append(
              h("p", { class: "once" }, "Your new key, shown once — store it now: ", h("code", {}, created.api_key)),
            );
            e.target.reset();
            await loadKeys();
          } catch (err) {
            say(err.message, "bad");
          }
        },
      },
      field("New key name", keyName),
      h("button", { type: "submit" }, "Create key"),
    ),
    shown,
  );
  await loadKeys();
}

// ---------- boot ----------

window.addEventListener("hashchange", () => state.me && route());
// The skip link moves the focus to the content without touching the hash: "#main" in the URL
// would be read as a route (and show the overview instead of the current view).
document.querySelector(".skip").addEventListener("click", (e) => {
  e.preventDefault();
  main().focus();
});
window.addEventListener("DOMContentLoaded", () => start());
