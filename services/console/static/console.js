// The console's own script: draws every chart from its JSON block and keeps the live parts
// of a page fresh by polling the console's JSON endpoints. No inline scripts, no eval of data.
"use strict";

(function () {
  const pollMs = Number(document.body.dataset.pollMs) || 3000;

  function figureOf(id) {
    const block = document.getElementById(id + "-data");
    return block ? JSON.parse(block.textContent) : null;
  }

  function draw(div, figure) {
    if (!window.Plotly || !div) return;
    const config = { responsive: true, displaylogo: false };
    window.Plotly.react(div, figure.data, figure.layout, config);
  }

  function drawAll() {
    document.querySelectorAll('script[type="application/json"][id$="-data"]').forEach((block) => {
      const id = block.id.slice(0, -"-data".length);
      const div = document.getElementById(id);
      if (div && div.classList.contains("chart")) draw(div, JSON.parse(block.textContent));
    });
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  }

  function every(task) {
    let busy = false;
    setInterval(async () => {
      if (busy || document.hidden) return;
      busy = true;
      try { await task(); } catch (error) { /* the next poll tries again */ } finally { busy = false; }
    }, pollMs);
  }

  // The loop: health, lag, and events per second from two reads of the end offsets.
  function liveLoop() {
    const diagram = document.getElementById("loop-diagram");
    if (!diagram) return;
    let previous = figureOf("loop");
    every(async () => {
      const now = await getJson("/api/loop");
      diagram.querySelectorAll("g.service").forEach((g) => {
        const name = g.dataset.service;
        const health = now.health[name] || "down";
        g.dataset.health = health;
        const lag = g.querySelector("text.lag");
        if (lag) lag.textContent = health + (name in now.lag ? " · lag " + now.lag[name] : "");
      });
      const seconds = previous ? (Date.parse(now.at) - Date.parse(previous.at)) / 1000 : 0;
      diagram.querySelectorAll("g.topic").forEach((g) => {
        const topic = g.dataset.topic;
        const text = g.querySelector("text.rate");
        const end = now.end_offsets[topic];
        if (!text || end === undefined) return;
        const before = previous && previous.end_offsets[topic];
        if (seconds > 0 && before !== undefined) {
          const rate = Math.max(end - before, 0) / seconds;
          text.textContent = rate.toFixed(1) + "/s · " + end;
          g.dataset.rate = rate.toFixed(3);
        } else {
          text.textContent = end + " events";
        }
      });
      previous = now;
    });
  }

  // The timeline follows the latest events (built with textContent: no markup from data).
  function liveTimeline() {
    const list = document.getElementById("timeline");
    if (!list) return;
    let tick = 0;
    every(async () => {
      if (tick++ % 3 !== 2) return; // a third as often: it asks several services
      const found = await getJson("/api/timeline");
      if (!found.events.length) return;
      const empty = document.querySelector("p.empty");
      if (empty) empty.remove();
      list.replaceChildren(...found.events.map((event) => {
        const item = document.createElement("li");
        item.className = "timeline-event";
        item.dataset.type = event.type;
        const time = document.createElement("time");
        time.dateTime = event.at;
        time.textContent = event.at.replace("T", " ").slice(0, 19);
        const type = document.createElement("span");
        type.className = "type";
        type.textContent = event.type;
        item.append(time, " ", type, " ");
        if (event.link) {
          const link = document.createElement("a");
          link.href = event.link;
          link.textContent = event.model + (event.version ? " v" + event.version : "");
          item.append(link, " ");
        }
        const text = document.createElement("span");
        text.className = "text";
        text.textContent = event.text;
        item.append(text);
        return item;
      }));
    });
  }

  // The monitoring chart follows the live figures.
  function liveCharts() {
    document.querySelectorAll(".chart[data-poll]").forEach((div) => {
      every(async () => draw(div, await getJson(div.dataset.poll)));
    });
  }

  // A running reproduction: reload the page once it has an outcome.
  function liveReproduction() {
    const box = document.getElementById("reproduction");
    if (!box || !box.dataset.poll) return;
    every(async () => {
      const state = await getJson(box.dataset.poll);
      if (state.status !== "running") window.location.reload();
    });
  }

  function start() {
    drawAll();
    liveLoop();
    liveTimeline();
    liveCharts();
    liveReproduction();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
