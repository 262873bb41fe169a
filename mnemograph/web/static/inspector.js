// Mnemograph inspector: plain JS, no library, no build step.
//
// Every value shown comes from the API and is inserted with textContent / SVG attributes,
// never innerHTML: memories and facts are user text, and the page must not become a way to
// run script in a developer's browser.
"use strict";

(() => {
  const KEY_STORAGE = "mnemograph.apiKey";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const REPLY_NODE = "call_model"; // only this node's model tokens are the user's reply

  const state = {
    key: localStorage.getItem(KEY_STORAGE) || "",
    threadId: null,
    busy: false,
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, text = null) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs = {}, text = null) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== null) node.textContent = text;
    return node;
  }

  function setStatus(text, isError = false) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", isError);
  }

  // ---------------------------------------------------------------- API
  // The REST thread routes live under /api/threads; /threads is the Agent Protocol's.
  const THREADS = "/api/threads";

  class ApiError extends Error {
    constructor(status, detail) {
      super(`${status}: ${detail}`);
      this.status = status;
    }
  }

  async function api(path, { method = "GET", body = undefined } = {}) {
    const headers = { Authorization: `Bearer ${state.key}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw new ApiError(response.status, await errorDetail(response));
    if (response.status === 204) return null;
    return response.json();
  }

  async function errorDetail(response) {
    const text = await response.text();
    try {
      const parsed = JSON.parse(text);
      const detail = parsed.detail ?? parsed.message ?? text;
      return typeof detail === "string" ? detail : JSON.stringify(detail);
    } catch {
      return text || response.statusText;
    }
  }

  function reportError(where, error) {
    const hint = error instanceof ApiError && error.status === 401 ? " (check the API key)" : "";
    setStatus(`${where}: ${error.message}${hint}`, true);
    console.error(where, error);
  }

  // ---------------------------------------------------------------- threads
  async function loadThreads() {
    const threads = await api(THREADS);
    const list = $("threads");
    list.replaceChildren();
    for (const thread of threads) {
      const item = el("li", { "data-thread-id": thread.thread_id, title: thread.thread_id },
        thread.title || thread.thread_id);
      if (thread.thread_id === state.threadId) item.classList.add("selected");
      item.addEventListener("click", () => selectThread(thread.thread_id).catch(
        (e) => reportError("thread", e)));
      list.append(item);
    }
    return threads;
  }

  async function selectThread(threadId) {
    state.threadId = threadId;
    for (const item of $("threads").children) {
      item.classList.toggle("selected", item.dataset.threadId === threadId);
    }
    $("thread-label").textContent = threadId;
    const detail = await api(`${THREADS}/${encodeURIComponent(threadId)}`);
    const box = $("messages");
    box.replaceChildren();
    for (const message of detail.messages) addMessage(message.type, message.content);
    showSummary(detail.summary);
  }

  function showSummary(summary) {
    const node = $("summary");
    node.textContent = summary || "No summary yet.";
    node.classList.toggle("muted", !summary);
  }

  function newThreadId() {
    const bytes = new Uint8Array(6);
    crypto.getRandomValues(bytes);
    return "t-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function createThread(title) {
    const thread = await api(THREADS, {
      method: "POST",
      body: { thread_id: newThreadId(), title: title.slice(0, 200) },
    });
    state.threadId = thread.thread_id;
    await loadThreads();
    await selectThread(thread.thread_id);
    return thread.thread_id;
  }

  // ---------------------------------------------------------------- chat
  function addMessage(type, content) {
    const kind = type === "human" ? "human" : type === "ai" ? "ai" : "other";
    const bubble = el("div", { class: `msg ${kind}` }, content);
    $("messages").append(bubble);
    bubble.scrollIntoView({ block: "end" });
    return bubble;
  }

  function chunkText(content) {
    // Providers send either a string or a list of content blocks.
    if (typeof content === "string") return content;
    if (Array.isArray(content)) {
      return content.map((b) => (typeof b === "string" ? b : b?.text ?? "")).join("");
    }
    return "";
  }

  // Server-sent events over fetch (EventSource cannot POST or send an Authorization header).
  async function* sseEvents(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) yield { event, data: data.join("\n") };
      }
    }
  }

  async function sendMessage(text) {
    if (!state.threadId) await createThread(text.slice(0, 60));
    addMessage("human", text);
    const bubble = addMessage("ai", "");
    bubble.classList.add("streaming");
    bubble.dataset.chunks = "0";
    let chunks = 0;
    let finalText = null;

    const response = await fetch("/agent/stream_events", {
      method: "POST",
      headers: {
        Authorization: `Bearer ${state.key}`,
        "Content-Type": "application/json",
        Accept: "text/event-stream",
      },
      body: JSON.stringify({
        input: { messages: [{ type: "human", content: text }] },
        config: { configurable: { thread_id: state.threadId } },
      }),
    });
    if (!response.ok) {
      bubble.remove();
      throw new ApiError(response.status, await errorDetail(response));
    }
    try {
      for await (const { event, data } of sseEvents(response)) {
        if (event === "end") break;
        const payload = JSON.parse(data);
        if (event === "error") throw new ApiError(payload.status_code ?? 500, payload.message);
        if (payload.metadata?.langgraph_node !== REPLY_NODE) continue;
        if (payload.event === "on_chat_model_stream") {
          const piece = chunkText(payload.data?.chunk?.content);
          if (piece) {
            bubble.textContent += piece;
            chunks += 1;
            bubble.dataset.chunks = String(chunks);
            bubble.scrollIntoView({ block: "end" });
          }
        } else if (payload.event === "on_chat_model_end") {
          finalText = chunkText(payload.data?.output?.content);
        }
      }
    } catch (error) {
      bubble.classList.add("error");
      throw error;
    } finally {
      bubble.classList.remove("streaming");
    }
    // A model that cannot stream still answers: show its whole reply at the end.
    if (!chunks && finalText !== null) bubble.textContent = finalText;
    bubble.dataset.done = "true";
    await refreshAfterTurn();
  }

  async function refreshAfterTurn() {
    // The memory writes run after the reply, inside the same request, so they are done now.
    const results = await Promise.allSettled([
      loadThreads(),
      api(`${THREADS}/${encodeURIComponent(state.threadId)}`).then((d) => showSummary(d.summary)),
      loadMemories(),
      loadGraph(),
    ]);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) reportError("refresh", failed.reason);
  }

  // ---------------------------------------------------------------- memories
  async function loadMemories() {
    const query = $("memory-query").value.trim();
    const items = await api(`/memories${query ? `?query=${encodeURIComponent(query)}` : ""}`);
    const list = $("memories");
    list.replaceChildren();
    if (!items.length) list.append(el("li", { class: "muted" }, "No memories."));
    for (const item of items) {
      const row = el("li", { "data-memory-id": item.id });
      row.append(el("span", { class: "text" }, item.text));
      const meta = [item.kind, `imp ${Number(item.importance ?? 0).toFixed(2)}`];
      if (typeof item.score === "number") meta.push(`score ${item.score.toFixed(2)}`);
      row.append(el("span", { class: "meta" }, meta.join(" · ")));
      const remove = el("button", { type: "button", class: "link delete",
        title: "Delete this memory", "aria-label": `Delete memory: ${item.text}` }, "✕");
      remove.addEventListener("click", async () => {
        remove.disabled = true;
        try {
          await api(`/memories/${encodeURIComponent(item.id)}`, { method: "DELETE" });
          await loadMemories();
        } catch (error) {
          remove.disabled = false;
          reportError("delete memory", error);
        }
      });
      row.append(remove);
      list.append(row);
    }
  }

  // ---------------------------------------------------------------- graph
  let lastFacts = [];
  let nextFacts = null; // the server's cursor for the next page of facts, or null
  // A page at a time: thousands of facts at once froze the layout (issue 16 item 14).
  const GRAPH_PAGE = 150;

  async function loadGraph({ more = false } = {}) {
    const cursor = more && nextFacts ? `&cursor=${encodeURIComponent(nextFacts)}` : "";
    const body = await api(`/graph/history?limit=${GRAPH_PAGE}${cursor}`);
    lastFacts = (more ? lastFacts : []).concat(body.facts || []);
    nextFacts = body.next_cursor || null;
    const button = $("graph-more");
    button.hidden = !nextFacts;
    button.textContent = `Load ${GRAPH_PAGE} more facts (${lastFacts.length} shown)`;
    drawGraph();
  }

  // A small deterministic force layout: same facts, same picture, so screenshots compare.
  function layout(nodes, links, width, height) {
    const n = nodes.length;
    const cx = width / 2;
    const cy = height / 2;
    const radius = Math.min(width, height) * 0.36;
    nodes.forEach((node, i) => {
      const angle = (2 * Math.PI * i) / Math.max(n, 1) - Math.PI / 2;
      node.x = cx + radius * Math.cos(angle);
      node.y = cy + radius * Math.sin(angle);
    });
    if (n < 3) return;
    const ideal = Math.max(90, Math.sqrt((width * height) / n) * 0.8);
    for (let step = 0; step < 300; step++) {
      const cooling = 1 - step / 300;
      for (const node of nodes) { node.dx = 0; node.dy = 0; }
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          const a = nodes[i];
          const b = nodes[j];
          let dx = a.x - b.x;
          let dy = a.y - b.y;
          const dist = Math.max(1, Math.hypot(dx, dy));
          const push = (ideal * ideal) / dist;
          dx /= dist; dy /= dist;
          a.dx += dx * push; a.dy += dy * push;
          b.dx -= dx * push; b.dy -= dy * push;
        }
      }
      for (const link of links) {
        if (link.source === link.target) continue;
        const a = link.source;
        const b = link.target;
        const dx = b.x - a.x;
        const dy = b.y - a.y;
        const dist = Math.max(1, Math.hypot(dx, dy));
        const pull = (dist * dist) / ideal;
        a.dx += (dx / dist) * pull; a.dy += (dy / dist) * pull;
        b.dx -= (dx / dist) * pull; b.dy -= (dy / dist) * pull;
      }
      for (const node of nodes) {
        node.dx += (cx - node.x) * 0.02;
        node.dy += (cy - node.y) * 0.02;
        const len = Math.max(1, Math.hypot(node.dx, node.dy));
        const move = Math.min(len, 12 * cooling + 0.5);
        node.x = Math.min(width - 50, Math.max(50, node.x + (node.dx / len) * move));
        node.y = Math.min(height - 25, Math.max(25, node.y + (node.dy / len) * move));
      }
    }
  }

  function drawGraph() {
    const svg = $("kg");
    const showInvalid = $("show-invalidated").checked;
    const facts = lastFacts.filter((f) => showInvalid || f.invalid_at == null);
    const width = 640;
    const height = 420;
    svg.replaceChildren();
    $("graph-empty").hidden = facts.length > 0;

    const defs = svgEl("defs");
    for (const kind of ["current", "invalidated"]) {
      const marker = svgEl("marker", { id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 10,
        refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
      marker.append(svgEl("path", { d: "M0,0 L10,5 L0,10 z",
        fill: kind === "current" ? "#1d2330" : "#9aa0a8" }));
      defs.append(marker);
    }
    svg.append(defs);

    const byName = new Map();
    const node = (name, display) => {
      if (!byName.has(name)) byName.set(name, { name, label: display || name });
      return byName.get(name);
    };
    const links = facts.map((f) => ({
      fact: f,
      source: node(f.subject, f.subject_display),
      target: node(f.object, f.object_display),
      invalid: f.invalid_at != null,
    }));
    const nodes = [...byName.values()];
    layout(nodes, links, width, height);

    // Several facts between one pair of entities fan out as curves instead of overlapping.
    const pairCount = new Map();
    const edgeLayer = svgEl("g", { class: "edges" });
    const labelLayer = svgEl("g", { class: "labels" });
    const R = 22;
    let current = 0;
    let invalidated = 0;
    for (const link of links) {
      const kind = link.invalid ? "invalidated" : "current";
      if (link.invalid) invalidated++; else current++;
      const a = link.source;
      const b = link.target;
      const pairKey = [a.name, b.name].sort().join("\u0000");
      const index = pairCount.get(pairKey) || 0;
      pairCount.set(pairKey, index + 1);
      let d;
      let lx;
      let ly;
      if (a === b) {
        d = `M${a.x - 8},${a.y - R + 2} C${a.x - 40},${a.y - 80 - index * 20} ` +
            `${a.x + 40},${a.y - 80 - index * 20} ${a.x + 8},${a.y - R + 2}`;
        lx = a.x; ly = a.y - 62 - index * 15;
      } else {
        const dx = b.x - a.x;
        const dy = b.y - a.y;
        const dist = Math.max(1, Math.hypot(dx, dy));
        const ux = dx / dist;
        const uy = dy / dist;
        const sign = a.name < b.name ? 1 : -1;
        const bend = index === 0 ? 0 : sign * (Math.ceil(index / 2) * 28) * (index % 2 ? 1 : -1);
        const mx = (a.x + b.x) / 2 - uy * bend;
        const my = (a.y + b.y) / 2 + ux * bend;
        const sx = a.x + ux * R;
        const sy = a.y + uy * R;
        const tx = b.x - ux * R;
        const ty = b.y - uy * R;
        d = `M${sx},${sy} Q${mx},${my} ${tx},${ty}`;
        lx = (sx + 2 * mx + tx) / 4;
        ly = (sy + 2 * my + ty) / 4;
      }
      const path = svgEl("path", { d, class: `edge ${kind}`, "marker-end": `url(#arrow-${kind})`,
        "data-fact-id": link.fact.id ?? "", "data-state": kind });
      const when = link.invalid
        ? `invalidated ${new Date(link.fact.invalid_at).toISOString()}`
        : `since ${new Date(link.fact.valid_from || link.fact.created_at || 0).toISOString()}`;
      path.append(svgEl("title", {},
        `${a.label} ${link.fact.predicate} ${b.label} (${when})`));
      edgeLayer.append(path);
      labelLayer.append(svgEl("text", { x: lx, y: ly - 3, class: `label ${kind}` },
        link.fact.predicate));
    }
    const nodeLayer = svgEl("g", { class: "nodes" });
    for (const n of nodes) {
      const g = svgEl("g", { class: "node", transform: `translate(${n.x},${n.y})`,
        "data-entity": n.name });
      g.append(svgEl("circle", { r: R }));
      const label = n.label.length > 14 ? `${n.label.slice(0, 13)}…` : n.label;
      g.append(svgEl("text", {}, label));
      g.append(svgEl("title", {}, n.label));
      nodeLayer.append(g);
    }
    svg.append(edgeLayer, nodeLayer, labelLayer);
    svg.dataset.current = String(current);
    svg.dataset.invalidated = String(invalidated);
    svg.dataset.rendered = "true";
  }

  // ---------------------------------------------------------------- wiring
  async function loadAll() {
    if (!state.key) {
      setStatus("Enter an API key (mnemograph users create NAME prints one).");
      return;
    }
    setStatus("Loading…");
    try {
      const threads = await loadThreads();
      if (!state.threadId && threads.length) await selectThread(threads[0].thread_id);
      await Promise.all([loadMemories(), loadGraph()]);
      setStatus("Ready");
      document.body.dataset.ready = "true";
    } catch (error) {
      reportError("load", error);
    }
  }

  function wire() {
    $("api-key").value = state.key;
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.key = $("api-key").value.trim();
      state.threadId = null;
      localStorage.setItem(KEY_STORAGE, state.key);
      loadAll();
    });
    $("new-thread-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const title = $("new-thread-title").value.trim();
      createThread(title).then(() => { $("new-thread-title").value = ""; })
        .catch((e) => reportError("new thread", e));
    });
    $("chat-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("chat-input");
      const text = input.value.trim();
      if (!text || state.busy) return;
      state.busy = true;
      $("send").disabled = true;
      input.value = "";
      setStatus("Thinking…");
      try {
        await sendMessage(text);
        setStatus("Ready");
      } catch (error) {
        reportError("chat", error);
      } finally {
        state.busy = false;
        $("send").disabled = false;
        input.focus();
      }
    });
    $("chat-input").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        $("chat-form").requestSubmit();
      }
    });
    $("memory-search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      loadMemories().catch((e) => reportError("memories", e));
    });
    $("show-invalidated").addEventListener("change", drawGraph);
    $("graph-more").addEventListener("click", () => {
      loadGraph({ more: true }).catch((error) => reportError("graph", error));
    });
    $("graph-refresh").addEventListener("click", () => {
      loadGraph().catch((e) => reportError("graph", e));
    });
    loadAll();
  }

  wire();
})();
